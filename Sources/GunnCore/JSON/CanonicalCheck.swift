/// Checks that bytes are already in canonical form (RFC 8785, as `CanonicalJSON` writes it) in
/// one pass over them, without building a value: exactly the inputs for which
/// `CanonicalJSON.encode(try JSONParser.parse(bytes, options:)) == bytes`. The log writer checks
/// every effect it is sent this way (parsing and encoding each again cost it more than SQLite did).
/// The JSON fuzzer compares the two on every input.
public enum CanonicalCheck {
    /// The byte ranges of top-level object members' values, by key, for the keys asked for.
    public typealias Members = [String: Range<Int>]

    /// Whether `bytes` is canonical JSON; when it is and its top level is an object, the value
    /// ranges of the members named in `keys` (nil when it is not canonical).
    public static func check(_ bytes: [UInt8], options: JSONParseOptions = .default, keys: Set<String> = []) -> Members? {
        guard !bytes.isEmpty, bytes.count <= options.maxInputBytes else { return nil }
        return bytes.withUnsafeBufferPointer { b -> Members? in
            var c = Checker(b: b, maxDepth: options.maxDepth, keys: keys)
            guard c.value(depth: 0), c.pos == b.count else { return nil }
            return c.members
        }
    }

    public static func isCanonical(_ bytes: [UInt8], options: JSONParseOptions = .default) -> Bool {
        check(bytes, options: options) != nil
    }

    /// A canonical integer's value (digits only, as `CanonicalJSON` writes integers below 2^53),
    /// for bytes `check` already accepted (it does not check canonical form itself).
    public static func integer(_ bytes: ArraySlice<UInt8>) -> UInt64? {
        guard !bytes.isEmpty, bytes.count <= 16, bytes.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return bytes.reduce(0) { $0 * 10 + UInt64($1 - 0x30) }
    }

    /// A canonical string's value, from its bytes with the quotes; nil for any other value.
    public static func string(_ bytes: ArraySlice<UInt8>) -> String? {
        guard bytes.count >= 2, bytes.first == UInt8(ascii: "\""), bytes.last == UInt8(ascii: "\"") else { return nil }
        let inner = bytes.dropFirst().dropLast()
        if !inner.contains(UInt8(ascii: "\\")) { return String(decoding: inner, as: UTF8.self) }
        guard case .string(let s)? = try? JSONParser.parse(Array(bytes)) else { return nil }
        return s
    }

    private struct Checker {
        let b: UnsafeBufferPointer<UInt8>
        let maxDepth: Int
        let keys: Set<String>
        var pos = 0
        var members: Members = [:]

        init(b: UnsafeBufferPointer<UInt8>, maxDepth: Int, keys: Set<String>) {
            self.b = b; self.maxDepth = maxDepth; self.keys = keys
        }

        /// One value at `pos`; `depth` containers are open around it. Recursion is bounded by
        /// `maxDepth` (the parser's own limit, 512 by default).
        mutating func value(depth: Int) -> Bool {
            guard pos < b.count else { return false }
            switch b[pos] {
            case UInt8(ascii: "{"): return depth < maxDepth && object(depth: depth + 1)
            case UInt8(ascii: "["): return depth < maxDepth && array(depth: depth + 1)
            case UInt8(ascii: "\""): return string()
            case UInt8(ascii: "t"): return literal("true")
            case UInt8(ascii: "f"): return literal("false")
            case UInt8(ascii: "n"): return literal("null")
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return number()
            default: return false
            }
        }

        mutating func literal(_ word: StaticString) -> Bool {
            let n = word.utf8CodeUnitCount
            guard pos + n <= b.count else { return false }
            for k in 0..<n where b[pos + k] != word.utf8Start[k] { return false }
            pos += n
            return true
        }

        mutating func array(depth: Int) -> Bool {
            pos += 1
            if pos < b.count && b[pos] == UInt8(ascii: "]") { pos += 1; return true }
            while true {
                guard value(depth: depth), pos < b.count else { return false }
                if b[pos] == UInt8(ascii: "]") { pos += 1; return true }
                guard b[pos] == UInt8(ascii: ",") else { return false }
                pos += 1
            }
        }

        mutating func object(depth: Int) -> Bool {
            let top = depth == 1
            pos += 1
            if pos < b.count && b[pos] == UInt8(ascii: "}") { pos += 1; return true }
            var previous: Range<Int>?
            while true {
                let keyStart = pos
                guard pos < b.count, b[pos] == UInt8(ascii: "\""), string() else { return false }
                let key = keyStart..<pos
                // Members in RFC 8785 order, each key once.
                if let previous, !precedes(previous, key) { return false }
                previous = key
                guard pos < b.count, b[pos] == UInt8(ascii: ":") else { return false }
                pos += 1
                let valueStart = pos
                guard value(depth: depth), pos < b.count else { return false }
                if top && !keys.isEmpty, let name = CanonicalCheck.string(ArraySlice(b[key])), keys.contains(name) {
                    members[name] = valueStart..<pos
                }
                if b[pos] == UInt8(ascii: "}") { pos += 1; return true }
                guard b[pos] == UInt8(ascii: ",") else { return false }
                pos += 1
            }
        }

        /// Whether the key at `a` sorts before the key at `c` by UTF-16 code units (both are
        /// canonical strings with their quotes). Escapes are compared as the characters they stand for.
        func precedes(_ a: Range<Int>, _ c: Range<Int>) -> Bool {
            let x = b[(a.lowerBound + 1)..<(a.upperBound - 1)], y = b[(c.lowerBound + 1)..<(c.upperBound - 1)]
            if x.contains(UInt8(ascii: "\\")) || y.contains(UInt8(ascii: "\\")) {
                guard let s = CanonicalCheck.string(ArraySlice(b[a])), let t = CanonicalCheck.string(ArraySlice(b[c])) else { return false }
                return JSONKey.utf16Precedes(s, t)
            }
            // UTF-8 byte order is UTF-16 order below U+E000 (as `JSONKey.utf16Precedes` uses).
            var i = x.startIndex, j = y.startIndex
            while i < x.endIndex && j < y.endIndex {
                if x[i] != y[j] {
                    if x[i] >= 0xEE || y[j] >= 0xEE {
                        return JSONKey.utf16Precedes(String(decoding: x, as: UTF8.self), String(decoding: y, as: UTF8.self))
                    }
                    return x[i] < y[j]
                }
                i += 1; j += 1
            }
            return i == x.endIndex && j < y.endIndex
        }

        /// A string as `CanonicalJSON.appendString` writes it: strict UTF-8, no raw control
        /// character, and only the escapes it uses (\" \\ \b \t \n \f \r, \u00xx in lowercase hex
        /// for the other control characters).
        mutating func string() -> Bool {
            pos += 1
            while pos < b.count {
                let c = b[pos]
                switch c {
                case UInt8(ascii: "\""):
                    pos += 1
                    return true
                case 0..<0x20:
                    return false
                case UInt8(ascii: "\\"):
                    guard pos + 1 < b.count else { return false }
                    switch b[pos + 1] {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "b"), UInt8(ascii: "t"), UInt8(ascii: "n"), UInt8(ascii: "f"), UInt8(ascii: "r"):
                        pos += 2
                    case UInt8(ascii: "u"):
                        guard pos + 5 < b.count, b[pos + 2] == UInt8(ascii: "0"), b[pos + 3] == UInt8(ascii: "0") else { return false }
                        let hi = b[pos + 4], lo = b[pos + 5]
                        guard hi == UInt8(ascii: "0") || hi == UInt8(ascii: "1") else { return false }
                        guard let l = Self.lowerHex(lo) else { return false }
                        let v = (hi - UInt8(ascii: "0")) << 4 | l
                        guard ![0x08, 0x09, 0x0a, 0x0c, 0x0d].contains(v) else { return false }
                        pos += 6
                    default:
                        return false
                    }
                case 0x20..<0x80:
                    pos += 1
                default:
                    guard utf8Sequence() else { return false }
                }
            }
            return false
        }

        static func lowerHex(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
            default: return nil
            }
        }

        /// One multi-byte UTF-8 sequence at `pos`, by the parser's own rules (`utf8SequenceEnd`).
        mutating func utf8Sequence() -> Bool {
            guard let next = utf8SequenceEnd(b, at: pos) else { return false }
            pos = next
            return true
        }

        /// A number exactly as `CanonicalJSON.appendNumber` writes the value it stands for: the
        /// token is read by the parser itself and written again.
        mutating func number() -> Bool {
            let start = pos
            while pos < b.count {
                switch b[pos] {
                case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "+"), UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E"):
                    pos += 1
                default:
                    return same(start..<pos)
                }
            }
            return same(start..<pos)
        }

        func same(_ token: Range<Int>) -> Bool {
            let bytes = Array(b[token])
            // Small integers, the common case, need no parse: digits without a leading zero.
            if bytes.count <= 15, bytes.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) { return bytes.count == 1 || bytes[0] != 0x30 }
            guard case .number(let d)? = try? JSONParser.parse(bytes) else { return false }
            var out: [UInt8] = []
            CanonicalJSON.appendNumber(d, into: &out)
            return out == bytes
        }
    }
}
