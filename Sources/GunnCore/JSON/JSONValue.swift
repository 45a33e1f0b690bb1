/// A JSON value as RFC 8259 defines it, with numbers as IEEE doubles. Every payload, view and
/// observation in gunn is one. Equality is exact: strings compare by their Unicode scalars (not
/// Swift's canonical equivalence, which would call two different byte strings equal), numbers by
/// value (so `1` and `1.0` are equal, as in every JSON library), objects regardless of member order.
public enum JSONValue: Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)
}

extension JSONValue: Hashable {
    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case let (.bool(a), .bool(b)): return a == b
        case let (.number(a), .number(b)): return a == b
        case let (.string(a), .string(b)): return a.utf8.elementsEqual(b.utf8)
        case let (.array(a), .array(b)): return a == b
        case let (.object(a), .object(b)): return a == b
        default: return false
        }
    }

    public func hash(into hasher: inout Hasher) {
        switch self {
        case .null: hasher.combine(0)
        case .bool(let b): hasher.combine(1); hasher.combine(b)
        case .number(let n): hasher.combine(2); hasher.combine(n)
        case .string(let s): hasher.combine(3); JSONKey.hashUTF8(s, into: &hasher)
        case .array(let a): hasher.combine(4); hasher.combine(a)
        case .object(let o): hasher.combine(5); hasher.combine(o)
        }
    }
}

extension JSONValue {
    public var isNull: Bool { if case .null = self { return true } else { return false } }
    public var boolValue: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    public var numberValue: Double? { if case .number(let n) = self { return n } else { return nil } }
    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }
    public var objectValue: JSONObject? { if case .object(let o) = self { return o } else { return nil } }

    /// The number as an exact integer, if it is one and fits in `Int64` without loss.
    public var int64Value: Int64? {
        guard case .number(let n) = self, n == n.rounded(.towardZero), abs(n) <= 9_007_199_254_740_992 else { return nil }
        return Int64(n)
    }

    /// Member of an object, nil for a missing key or a non-object.
    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    /// The JSON type's name, for error messages.
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .number: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }
}

extension JSONValue: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral {
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int) { self = .number(Double(value)) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        var o = JSONObject()
        for (k, v) in elements { o[k] = v }
        self = .object(o)
    }
}

extension JSONValue: CustomStringConvertible {
    /// The canonical (RFC 8785) text.
    public var description: String { String(decoding: CanonicalJSON.encode(self), as: UTF8.self) }
}

/// An object key whose equality and hash are those of its UTF-8 bytes, so that two keys that
/// differ in bytes but are canonically equivalent Unicode are two keys, as JSON says.
public struct JSONKey: Hashable, Sendable, Comparable {
    public let string: String

    public init(_ string: String) { self.string = string }

    public static func == (a: JSONKey, b: JSONKey) -> Bool { a.string.utf8.elementsEqual(b.string.utf8) }

    public func hash(into hasher: inout Hasher) { JSONKey.hashUTF8(string, into: &hasher) }

    /// RFC 8785 order: by UTF-16 code units.
    public static func < (a: JSONKey, b: JSONKey) -> Bool { JSONKey.utf16Precedes(a.string, b.string) }

    static func hashUTF8(_ s: String, into hasher: inout Hasher) {
        var s = s
        s.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }

    /// Compares by UTF-16 code units. For code points below U+E000 (all of ASCII and most text)
    /// UTF-8 byte order is the same, so that cheaper comparison is tried first.
    static func utf16Precedes(_ a: String, _ b: String) -> Bool {
        var ia = a.utf8.makeIterator(), ib = b.utf8.makeIterator()
        while true {
            switch (ia.next(), ib.next()) {
            case (nil, nil): return false
            case (nil, _): return true
            case (_, nil): return false
            case let (x?, y?):
                if x == y { continue }
                // Lead bytes 0xEE/0xEF start U+E000...U+FFFF, and 0xF0... start supplementary
                // characters (surrogate pairs in UTF-16): only there do the two orders differ.
                if x >= 0xEE || y >= 0xEE { return a.utf16.lexicographicallyPrecedes(b.utf16) }
                return x < y
            }
        }
    }
}

/// A JSON object: members by key, without order (canonical output sorts them).
public struct JSONObject: Hashable, Sendable, Sequence {
    public typealias Element = (key: String, value: JSONValue)
    var storage: [JSONKey: JSONValue]

    public init() { storage = [:] }

    init(storage: [JSONKey: JSONValue]) { self.storage = storage }

    public init(_ members: [String: JSONValue]) {
        storage = Dictionary(uniqueKeysWithValues: members.map { (JSONKey($0.key), $0.value) })
    }

    public var count: Int { storage.count }
    public var isEmpty: Bool { storage.isEmpty }

    public subscript(key: String) -> JSONValue? {
        get { storage[JSONKey(key)] }
        set { storage[JSONKey(key)] = newValue }
    }

    @discardableResult
    public mutating func removeValue(forKey key: String) -> JSONValue? { storage.removeValue(forKey: JSONKey(key)) }

    /// Keys in RFC 8785 order (UTF-16 code units). Use this, never dictionary order, for anything
    /// that reaches an output.
    public var sortedKeys: [String] { storage.keys.sorted().map(\.string) }

    /// Members in RFC 8785 key order.
    public var sortedMembers: [(key: String, value: JSONValue)] {
        storage.sorted { $0.key < $1.key }.map { ($0.key.string, $0.value) }
    }

    /// Iterates in key order, so iteration is deterministic.
    public func makeIterator() -> IndexingIterator<[(key: String, value: JSONValue)]> { sortedMembers.makeIterator() }
}

extension JSONObject: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self.init()
        for (k, v) in elements { self[k] = v }
    }
}
