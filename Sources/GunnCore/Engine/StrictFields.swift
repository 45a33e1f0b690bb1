/// Reads the members of one JSON request object strictly: every read names its field and checks
/// its type and range, and `finish()` refuses any member nobody read. A request that passes has
/// no field that was ignored, defaulted from a wrong type, or clamped.
public struct StrictFields {
    let object: JSONObject
    /// What the object is, for messages ("registration", "intent").
    let what: String
    /// The code every refusal carries (INVALID_FIELD, or INVALID_INTENT for intents).
    let code: ErrorCode
    /// The fields asked for, once each, and how many of them the object has: when that is every
    /// member, nothing was ignored (the hot path: no set, no sort, per request).
    private var read: [String] = []
    private var present = 0

    public init(_ json: JSONValue, what: String, code: ErrorCode = .invalidField) throws(GunnError) {
        guard case .object(let o) = json else { throw GunnError(code, "\(what) must be a JSON object, not \(json.typeName)") }
        object = o; self.what = what; self.code = code
    }

    func fail(_ field: String, _ problem: String) -> GunnError { GunnError(code, "\(what) field \"\(field)\" \(problem)") }

    /// The raw member (any type), marked as read.
    public mutating func value(_ field: String) -> JSONValue? {
        let v = object[field]
        if !read.contains(field) {
            read.append(field)
            if v != nil { present += 1 }
        }
        return v
    }

    public mutating func string(_ field: String, required: Bool = false, maxBytes: Int = 1024) throws(GunnError) -> String? {
        guard let v = value(field) else {
            if required { throw fail(field, "is required") }
            return nil
        }
        guard case .string(let s) = v else { throw fail(field, "must be a string, not \(v.typeName)") }
        guard s.utf8.count <= maxBytes else { throw fail(field, "is longer than \(maxBytes) bytes") }
        return s
    }

    public mutating func integer(_ field: String, required: Bool = false, in range: ClosedRange<Int64>) throws(GunnError) -> Int64? {
        guard let v = value(field) else {
            if required { throw fail(field, "is required") }
            return nil
        }
        guard case .number = v, let n = v.int64Value else { throw fail(field, "must be an integer, not \(Self.show(v))") }
        guard range.contains(n) else { throw fail(field, "must be in \(range.lowerBound)...\(range.upperBound), not \(n)") }
        return n
    }

    public mutating func number(_ field: String, in range: ClosedRange<Double>) throws(GunnError) -> Double? {
        guard let v = value(field) else { return nil }
        guard case .number(let d) = v, d.isFinite else { throw fail(field, "must be a finite number, not \(Self.show(v))") }
        guard range.contains(d) else { throw fail(field, "must be in \(range.lowerBound)...\(range.upperBound), not \(d)") }
        return d
    }

    public mutating func bool(_ field: String) throws(GunnError) -> Bool? {
        guard let v = value(field) else { return nil }
        guard case .bool(let b) = v else { throw fail(field, "must be true or false, not \(Self.show(v))") }
        return b
    }

    public mutating func strings(_ field: String, maxCount: Int, maxBytes: Int = 256) throws(GunnError) -> [String]? {
        guard let v = value(field) else { return nil }
        guard case .array(let items) = v else { throw fail(field, "must be an array of strings, not \(v.typeName)") }
        guard items.count <= maxCount else { throw fail(field, "has \(items.count) entries, over \(maxCount)") }
        var out: [String] = []
        for (i, item) in items.enumerated() {
            guard case .string(let s) = item else { throw fail(field, "entry \(i) must be a string, not \(item.typeName)") }
            guard !s.isEmpty, s.utf8.count <= maxBytes else { throw fail(field, "entry \(i) must be 1 to \(maxBytes) bytes") }
            out.append(s)
        }
        return out
    }

    /// `[x, y]` or `[x, y, z]` of finite numbers, each within ±`limit`.
    public mutating func position(_ field: String, limit: Double = 1e12) throws(GunnError) -> Position? {
        guard let v = value(field) else { return nil }
        guard let p = Position(json: v) else { throw fail(field, "must be [x, y] or [x, y, z] of finite numbers, not \(Self.show(v))") }
        guard abs(p.x) <= limit, abs(p.y) <= limit, abs(p.z) <= limit else { throw fail(field, "has a coordinate beyond ±\(limit)") }
        return p
    }

    public mutating func object(_ field: String) throws(GunnError) -> JSONObject? {
        guard let v = value(field) else { return nil }
        guard case .object(let o) = v else { throw fail(field, "must be an object, not \(v.typeName)") }
        return o
    }

    /// Refuses the first member (in key order) that no read asked for.
    public func finish() throws(GunnError) {
        guard present != object.count else { return }
        if let unknown = object.sortedKeys.first(where: { !read.contains($0) }) {
            throw GunnError(code, "\(what) has an unknown field \"\(unknown)\" (known: \(read.sorted().joined(separator: ", ")))")
        }
    }

    static func show(_ v: JSONValue) -> String {
        let text = String(decoding: CanonicalJSON.encode(v), as: UTF8.self)
        return text.utf8.count <= 40 ? text : String(text.prefix(40)) + "…"
    }
}
