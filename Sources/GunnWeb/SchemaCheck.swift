import Foundation
import GunnCore

/// Checks a request body against its schema in the served OpenAPI document — the same JSON the
/// document holds, so what the document promises and what the server accepts cannot differ. The
/// subset of JSON Schema those schemas use: type (or a list of types), enum, const, pattern,
/// minimum/maximum, minLength/maxLength (code points), minItems/maxItems, items, properties,
/// required, additionalProperties: false, and $ref to components.schemas. A violation is
/// INVALID_FIELD (400) naming the field; nothing reaches the orchestrator before it passes.
struct SchemaCheck {
    let components: JSONValue
    let code: ErrorCode

    func check(_ value: JSONValue, _ schema: JSONValue, at path: String = "") throws(GunnError) {
        var schema = schema
        if let ref = schema["$ref"]?.stringValue {
            let name = String(ref.split(separator: "/").last ?? "")
            guard let s = components[name] else { throw GunnError(.internalError, "schema \(ref) is missing") }
            schema = s
        }
        let field = path.isEmpty ? "the body" : "field \"\(path)\""
        if let types = schema["type"] {
            let names = types.arrayValue?.compactMap(\.stringValue) ?? [types.stringValue ?? ""]
            guard names.contains(where: { Self.has(value, type: $0) }) else {
                throw GunnError(code, "\(field) must be \(names.joined(separator: " or ")), not \(value.typeName)")
            }
        }
        if let options = schema["enum"]?.arrayValue, !options.contains(value) {
            throw GunnError(code, "\(field) must be one of \(options.map { CanonicalJSON.encodeString($0) }.joined(separator: ", "))")
        }
        if let c = schema["const"], c != value { throw GunnError(code, "\(field) must be \(CanonicalJSON.encodeString(c))") }
        switch value {
        case .string(let s):
            let n = s.unicodeScalars.count
            if let min = schema["minLength"]?.numberValue, Double(n) < min { throw GunnError(code, "\(field) is shorter than \(Int(min))") }
            if let max = schema["maxLength"]?.numberValue, Double(n) > max { throw GunnError(code, "\(field) is longer than \(Int(max))") }
            if let p = schema["pattern"]?.stringValue, !Self.matches(s, p) { throw GunnError(code, "\(field) does not match \(p)") }
        case .number(let d):
            if let min = schema["minimum"]?.numberValue, d < min { throw GunnError(code, "\(field) is below \(min)") }
            if let max = schema["maximum"]?.numberValue, d > max { throw GunnError(code, "\(field) is above \(max)") }
        case .array(let items):
            if let min = schema["minItems"]?.numberValue, Double(items.count) < min { throw GunnError(code, "\(field) has fewer than \(Int(min)) items") }
            if let max = schema["maxItems"]?.numberValue, Double(items.count) > max { throw GunnError(code, "\(field) has more than \(Int(max)) items") }
            if let itemSchema = schema["items"] {
                for (i, item) in items.enumerated() { try check(item, itemSchema, at: path + "[\(i)]") }
            }
        case .object(let obj):
            let props = schema["properties"]?.objectValue ?? JSONObject()
            for name in schema["required"]?.arrayValue?.compactMap(\.stringValue) ?? [] where obj[name] == nil {
                throw GunnError(code, "field \"\(path.isEmpty ? name : path + "." + name)\" is required")
            }
            for (k, v) in obj {
                let sub = path.isEmpty ? k : path + "." + k
                if let s = props[k] { try check(v, s, at: sub) } else if schema["additionalProperties"] == .bool(false) {
                    throw GunnError(code, "field \"\(sub)\" is unknown")
                }
            }
        default:
            break
        }
    }

    static func has(_ v: JSONValue, type: String) -> Bool {
        switch (type, v) {
        case ("object", .object), ("array", .array), ("string", .string), ("boolean", .bool), ("null", .null), ("number", .number): return true
        case ("integer", .number(let d)): return d.isFinite && d == d.rounded() && abs(d) <= 9_007_199_254_740_992
        default: return false
        }
    }

    /// The patterns the schemas use are anchored character classes with a length, e.g.
    /// `^[A-Za-z0-9._:-]{1,128}$`; they are matched by ICU (NSRegularExpression), cached.
    static func matches(_ s: String, _ pattern: String) -> Bool {
        guard let re = regexCache.withLock({ cache -> NSRegularExpression? in
            if let r = cache[pattern] { return r }
            let r = try? NSRegularExpression(pattern: pattern)
            if let r, cache.count < 64 { cache[pattern] = r }
            return r
        }) else { return false }
        return re.firstMatch(in: s, range: NSRange(s.startIndex..., in: s)) != nil
    }
}

import Synchronization
/// Compiled patterns (a handful, from the schemas). `NSRegularExpression` is immutable after
/// creation and documented as safe to use from several threads.
private let regexCache = Mutex<[String: NSRegularExpression]>([:])
