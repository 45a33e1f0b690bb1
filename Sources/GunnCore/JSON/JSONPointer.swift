/// An RFC 6901 JSON Pointer: a path of reference tokens, written `/a/b~1c/0` with `~0` for `~`
/// and `~1` for `/`. The empty pointer designates the whole document; `-` designates the
/// position after the last element of an array (only `add` may use it).
public struct JSONPointer: Hashable, Sendable, CustomStringConvertible {
    public let tokens: [String]

    public init(tokens: [String]) { self.tokens = tokens }

    public static let root = JSONPointer(tokens: [])

    /// Parses the string form; refuses text that does not start with `/` (unless empty) and
    /// `~` followed by anything but `0` or `1`.
    public init(_ text: String) throws(JSONPointerError) {
        if text.isEmpty { self.tokens = []; return }
        let bytes = Array(text.utf8)
        guard bytes[0] == UInt8(ascii: "/") else { throw JSONPointerError(pointer: text, message: "must be empty or start with '/'") }
        var tokens: [String] = []
        var current: [UInt8] = []
        var i = 1
        while i < bytes.count {
            let b = bytes[i]
            if b == UInt8(ascii: "/") {
                tokens.append(String(decoding: current, as: UTF8.self))
                current.removeAll(keepingCapacity: true)
            } else if b == UInt8(ascii: "~") {
                guard i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: "0") || bytes[i + 1] == UInt8(ascii: "1") else {
                    throw JSONPointerError(pointer: text, message: "'~' must be followed by '0' or '1'")
                }
                current.append(bytes[i + 1] == UInt8(ascii: "0") ? UInt8(ascii: "~") : UInt8(ascii: "/"))
                i += 1
            } else {
                current.append(b)
            }
            i += 1
        }
        tokens.append(String(decoding: current, as: UTF8.self))
        self.tokens = tokens
    }

    public func appending(_ token: String) -> JSONPointer { JSONPointer(tokens: tokens + [token]) }
    public func appending(index: Int) -> JSONPointer { appending(String(index)) }

    public var parent: JSONPointer? { tokens.isEmpty ? nil : JSONPointer(tokens: Array(tokens.dropLast())) }

    /// True when `self` is `other` or lies inside it.
    public func hasPrefix(_ other: JSONPointer) -> Bool {
        guard other.tokens.count <= tokens.count else { return false }
        for (a, b) in zip(tokens, other.tokens) where !a.utf8.elementsEqual(b.utf8) { return false }
        return true
    }

    public var description: String {
        var out = ""
        for t in tokens {
            out += "/"
            for ch in t.unicodeScalars {
                switch ch {
                case "~": out += "~0"
                case "/": out += "~1"
                default: out.unicodeScalars.append(ch)
                }
            }
        }
        return out
    }

    /// The value this pointer designates, or nil when any step is missing.
    public func resolve(in document: JSONValue) -> JSONValue? {
        var current = document
        for token in tokens {
            switch current {
            case .object(let o):
                guard let next = o.storage[JSONKey(token)] else { return nil }
                current = next
            case .array(let a):
                guard let i = JSONPointer.arrayIndex(token), i < a.count else { return nil }
                current = a[i]
            default:
                return nil
            }
        }
        return current
    }

    /// An array index token: `0` or a digit string without a leading zero, that fits an Int.
    /// `-` and everything else is nil.
    public static func arrayIndex(_ token: String) -> Int? {
        let u = token.utf8
        guard let first = u.first, u.count <= 18 else { return nil }
        if first == UInt8(ascii: "0") { return u.count == 1 ? 0 : nil }
        var v = 0
        for b in u {
            guard b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") else { return nil }
            v = v * 10 + Int(b - UInt8(ascii: "0"))
        }
        return v
    }
}

public struct JSONPointerError: Error, Equatable, Sendable, CustomStringConvertible {
    public let pointer: String
    public let message: String
    public var description: String { "invalid JSON pointer \"\(pointer)\": \(message)" }
}
