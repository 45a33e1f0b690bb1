/// Limits for parsing untrusted JSON. Both turn into errors, never into crashes or unbounded memory.
public struct JSONParseOptions: Sendable {
    /// Deepest nesting of arrays and objects accepted.
    public var maxDepth: Int
    /// Largest input accepted, in bytes; checked before anything is parsed.
    public var maxInputBytes: Int
    /// RFC 8259 leaves duplicate keys undefined; gunn refuses them. Only for reading third-party
    /// files known to contain them may the last occurrence win.
    public var allowDuplicateKeys: Bool

    public init(maxDepth: Int = 512, maxInputBytes: Int = 16 << 20, allowDuplicateKeys: Bool = false) {
        self.maxDepth = maxDepth
        self.maxInputBytes = maxInputBytes
        self.allowDuplicateKeys = allowDuplicateKeys
    }

    public static let `default` = JSONParseOptions()
}

/// Why a JSON text was refused, and the byte offset where the parser found out.
public struct JSONParseError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Problem: Equatable, Sendable {
        case empty
        case unexpectedEnd
        case unexpectedByte(UInt8, expected: String)
        case invalidUTF8
        case loneSurrogate
        case invalidEscape
        case controlCharacterInString
        case invalidNumber
        case numberOutOfRange
        case duplicateKey(String)
        case tooDeep(limit: Int)
        case tooLarge(limit: Int, actual: Int)
        case trailingContent
    }

    public let offset: Int
    public let problem: Problem

    /// The table code: PAYLOAD_TOO_LARGE for the size limit, INVALID_JSON for everything else.
    public var errorCode: ErrorCode {
        if case .tooLarge = problem { return .payloadTooLarge }
        return .invalidJSON
    }

    public var description: String {
        let what: String
        switch problem {
        case .empty: what = "empty input"
        case .unexpectedEnd: what = "unexpected end of input"
        case let .unexpectedByte(b, expected):
            let shown = (0x21...0x7e).contains(b) ? "'\(Character(Unicode.Scalar(b)))'" : "0x" + String(b, radix: 16)
            what = "unexpected byte \(shown), expected \(expected)"
        case .invalidUTF8: what = "invalid UTF-8"
        case .loneSurrogate: what = "lone UTF-16 surrogate in \\u escape"
        case .invalidEscape: what = "invalid escape sequence"
        case .controlCharacterInString: what = "unescaped control character in string"
        case .invalidNumber: what = "invalid number"
        case .numberOutOfRange: what = "number out of the range of a double"
        case .duplicateKey(let k): what = "duplicate object key \"\(k)\""
        case .tooDeep(let limit): what = "nesting deeper than the limit of \(limit)"
        case let .tooLarge(limit, actual): what = "input of \(actual) bytes exceeds the limit of \(limit) bytes"
        case .trailingContent: what = "content after the JSON value"
        }
        return "invalid JSON at byte \(offset): \(what)"
    }

    public var gunnError: GunnError { GunnError(errorCode, description) }
}

/// A strict RFC 8259 parser: UTF-8 only, no trailing commas, no comments, no NaN, no lone
/// surrogates, no duplicate keys. Iterative, so input depth never reaches the call stack.
public enum JSONParser {
    public static func parse(_ bytes: [UInt8], options: JSONParseOptions = .default) throws(JSONParseError) -> JSONValue {
        try bytes.withUnsafeBufferPointer { (buffer) throws(JSONParseError) -> JSONValue in
            try parse(buffer, options: options)
        }
    }

    public static func parse(_ text: String, options: JSONParseOptions = .default) throws(JSONParseError) -> JSONValue {
        try parse(Array(text.utf8), options: options)
    }

    public static func parse(_ buffer: UnsafeBufferPointer<UInt8>, options: JSONParseOptions = .default) throws(JSONParseError) -> JSONValue {
        guard buffer.count <= options.maxInputBytes else {
            throw JSONParseError(offset: 0, problem: .tooLarge(limit: options.maxInputBytes, actual: buffer.count))
        }
        var parser = Parser(input: buffer, maxDepth: options.maxDepth, allowDuplicateKeys: options.allowDuplicateKeys)
        return try parser.parseDocument()
    }
}

private struct Parser {
    let input: UnsafeBufferPointer<UInt8>
    let maxDepth: Int
    let allowDuplicateKeys: Bool
    var pos = 0

    // The open containers, innermost last: `isObject` says which stack holds its state.
    var isObject: [Bool] = []
    var arrays: [[JSONValue]] = []
    var objects: [(members: [JSONKey: JSONValue], key: JSONKey, keyOffset: Int)] = []

    init(input: UnsafeBufferPointer<UInt8>, maxDepth: Int, allowDuplicateKeys: Bool) {
        self.input = input
        self.maxDepth = maxDepth
        self.allowDuplicateKeys = allowDuplicateKeys
    }

    func fail(_ problem: JSONParseError.Problem, at offset: Int? = nil) -> JSONParseError {
        JSONParseError(offset: offset ?? pos, problem: problem)
    }

    mutating func skipWhitespace() {
        while pos < input.count {
            switch input[pos] {
            case 0x20, 0x09, 0x0a, 0x0d: pos += 1
            default: return
            }
        }
    }

    mutating func expectByte(_ expected: UInt8, _ what: String) throws(JSONParseError) {
        guard pos < input.count else { throw fail(.unexpectedEnd) }
        guard input[pos] == expected else { throw fail(.unexpectedByte(input[pos], expected: what)) }
        pos += 1
    }

    mutating func parseDocument() throws(JSONParseError) -> JSONValue {
        skipWhitespace()
        guard pos < input.count else { throw fail(input.isEmpty ? .empty : .unexpectedEnd) }
        var value = try parseValueOpening()
        while true {
            // `value` is complete: attach it to the innermost open container, or finish.
            guard let top = isObject.last else {
                skipWhitespace()
                guard pos == input.count else { throw fail(.trailingContent) }
                return value
            }
            if top {
                let last = objects.count - 1
                let key = objects[last].key
                if objects[last].members.updateValue(value, forKey: key) != nil && !allowDuplicateKeys {
                    throw fail(.duplicateKey(key.string), at: objects[last].keyOffset)
                }
                skipWhitespace()
                guard pos < input.count else { throw fail(.unexpectedEnd) }
                switch input[pos] {
                case UInt8(ascii: ","):
                    pos += 1
                    skipWhitespace()
                    let keyOffset = pos
                    objects[last].key = try parseKey()
                    objects[last].keyOffset = keyOffset
                    value = try parseValueOpening()
                case UInt8(ascii: "}"):
                    pos += 1
                    isObject.removeLast()
                    value = .object(JSONObject(storage: objects.removeLast().members))
                default:
                    throw fail(.unexpectedByte(input[pos], expected: "',' or '}'"))
                }
            } else {
                let last = arrays.count - 1
                arrays[last].append(value)
                skipWhitespace()
                guard pos < input.count else { throw fail(.unexpectedEnd) }
                switch input[pos] {
                case UInt8(ascii: ","):
                    pos += 1
                    value = try parseValueOpening()
                case UInt8(ascii: "]"):
                    pos += 1
                    isObject.removeLast()
                    value = .array(arrays.removeLast())
                default:
                    throw fail(.unexpectedByte(input[pos], expected: "',' or ']'"))
                }
            }
        }
    }

    /// Parses a scalar, or opens containers until it reaches the first scalar or an empty
    /// container, and returns that (complete) value.
    mutating func parseValueOpening() throws(JSONParseError) -> JSONValue {
        while true {
            skipWhitespace()
            guard pos < input.count else { throw fail(.unexpectedEnd) }
            let byte = input[pos]
            switch byte {
            case UInt8(ascii: "{"):
                guard isObject.count < maxDepth else { throw fail(.tooDeep(limit: maxDepth)) }
                pos += 1
                skipWhitespace()
                if pos < input.count, input[pos] == UInt8(ascii: "}") {
                    pos += 1
                    return .object(JSONObject())
                }
                let keyOffset = pos
                let key = try parseKey()
                isObject.append(true)
                objects.append((members: [:], key: key, keyOffset: keyOffset))
            case UInt8(ascii: "["):
                guard isObject.count < maxDepth else { throw fail(.tooDeep(limit: maxDepth)) }
                pos += 1
                skipWhitespace()
                if pos < input.count, input[pos] == UInt8(ascii: "]") {
                    pos += 1
                    return .array([])
                }
                isObject.append(false)
                arrays.append([])
            case UInt8(ascii: "\""):
                return .string(try parseString())
            case UInt8(ascii: "t"):
                try parseLiteral("true")
                return .bool(true)
            case UInt8(ascii: "f"):
                try parseLiteral("false")
                return .bool(false)
            case UInt8(ascii: "n"):
                try parseLiteral("null")
                return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                return .number(try parseNumber())
            default:
                throw fail(.unexpectedByte(byte, expected: "a JSON value"))
            }
        }
    }

    mutating func parseKey() throws(JSONParseError) -> JSONKey {
        guard pos < input.count else { throw fail(.unexpectedEnd) }
        guard input[pos] == UInt8(ascii: "\"") else { throw fail(.unexpectedByte(input[pos], expected: "'\"' (an object key)")) }
        let key = JSONKey(try parseString())
        skipWhitespace()
        try expectByte(UInt8(ascii: ":"), "':'")
        return key
    }

    mutating func parseLiteral(_ word: StaticString) throws(JSONParseError) {
        let n = word.utf8CodeUnitCount
        let w = UnsafeBufferPointer(start: word.utf8Start, count: n)
        for i in 0..<n {
            guard pos + i < input.count else { throw fail(.unexpectedEnd, at: pos + i) }
            guard input[pos + i] == w[i] else {
                throw fail(.unexpectedByte(input[pos + i], expected: "'\(word)'"), at: pos + i)
            }
        }
        pos += n
    }

    mutating func parseNumber() throws(JSONParseError) -> Double {
        let start = pos
        var negative = false
        if input[pos] == UInt8(ascii: "-") {
            negative = true
            pos += 1
        }
        guard pos < input.count else { throw fail(.unexpectedEnd) }
        let intStart = pos
        if input[pos] == UInt8(ascii: "0") {
            pos += 1
        } else if isDigit(input[pos]) {
            while pos < input.count, isDigit(input[pos]) { pos += 1 }
        } else {
            throw fail(.invalidNumber, at: start)
        }
        let intDigits = pos - intStart
        var simple = true
        if pos < input.count, input[pos] == UInt8(ascii: ".") {
            simple = false
            pos += 1
            let fracStart = pos
            while pos < input.count, isDigit(input[pos]) { pos += 1 }
            guard pos > fracStart else { throw fail(.invalidNumber, at: start) }
        }
        if pos < input.count, input[pos] == UInt8(ascii: "e") || input[pos] == UInt8(ascii: "E") {
            simple = false
            pos += 1
            if pos < input.count, input[pos] == UInt8(ascii: "+") || input[pos] == UInt8(ascii: "-") { pos += 1 }
            let expStart = pos
            while pos < input.count, isDigit(input[pos]) { pos += 1 }
            guard pos > expStart else { throw fail(.invalidNumber, at: start) }
        }
        // A leading zero followed by more digits ("01") is not JSON.
        if pos < input.count, intDigits == 1, input[intStart] == UInt8(ascii: "0"), isDigit(input[pos]) {
            throw fail(.invalidNumber, at: start)
        }
        if simple && intDigits <= 15 {
            // Exact in a double: no rounding question, no string conversion.
            var v: Int64 = 0
            for i in intStart..<pos { v = v &* 10 &+ Int64(input[i] &- UInt8(ascii: "0")) }
            return negative ? (v == 0 ? -0.0 : -Double(v)) : Double(v)
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: input[start..<pos]), as: UTF8.self)
        guard let value = Double(text) else { throw fail(.invalidNumber, at: start) }
        guard value.isFinite else { throw fail(.numberOutOfRange, at: start) }
        return value
    }

    @inline(__always) func isDigit(_ b: UInt8) -> Bool { b &- UInt8(ascii: "0") < 10 }

    /// Parses a string starting at its opening quote. Runs without escapes are validated as
    /// UTF-8 and copied in one piece.
    mutating func parseString() throws(JSONParseError) -> String {
        pos += 1 // opening quote
        var runStart = pos
        var sawNonASCII = false
        // Fast path: no escape at all.
        while pos < input.count {
            let b = input[pos]
            if b == UInt8(ascii: "\"") {
                let run = UnsafeBufferPointer(rebasing: input[runStart..<pos])
                if sawNonASCII { try validateUTF8(run, base: runStart) }
                pos += 1
                return String(decoding: run, as: UTF8.self)
            }
            if b == UInt8(ascii: "\\") { break }
            if b < 0x20 { throw fail(.controlCharacterInString) }
            if b >= 0x80 { sawNonASCII = true }
            pos += 1
        }
        guard pos < input.count else { throw fail(.unexpectedEnd) }
        // Slow path: accumulate bytes across escapes.
        var out: [UInt8] = []
        out.reserveCapacity(pos - runStart + 16)
        while true {
            let run = UnsafeBufferPointer(rebasing: input[runStart..<pos])
            if sawNonASCII { try validateUTF8(run, base: runStart) }
            out.append(contentsOf: run)
            sawNonASCII = false
            guard pos < input.count else { throw fail(.unexpectedEnd) }
            if input[pos] == UInt8(ascii: "\"") {
                pos += 1
                return String(decoding: out, as: UTF8.self)
            }
            // A backslash.
            let escapeStart = pos
            pos += 1
            guard pos < input.count else { throw fail(.unexpectedEnd) }
            let e = input[pos]
            pos += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5c)
            case UInt8(ascii: "/"): out.append(0x2f)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0c)
            case UInt8(ascii: "n"): out.append(0x0a)
            case UInt8(ascii: "r"): out.append(0x0d)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try parseHex4(escapeStart)
                if scalar >= 0xD800 && scalar <= 0xDBFF {
                    // A high surrogate must be followed by an escaped low surrogate.
                    guard pos + 1 < input.count, input[pos] == UInt8(ascii: "\\"), input[pos + 1] == UInt8(ascii: "u") else {
                        throw fail(.loneSurrogate, at: escapeStart)
                    }
                    pos += 2
                    let low = try parseHex4(escapeStart)
                    guard low >= 0xDC00 && low <= 0xDFFF else { throw fail(.loneSurrogate, at: escapeStart) }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if scalar >= 0xDC00 && scalar <= 0xDFFF {
                    throw fail(.loneSurrogate, at: escapeStart)
                }
                appendUTF8(scalar, to: &out)
            default:
                throw fail(.invalidEscape, at: escapeStart)
            }
            runStart = pos
            while pos < input.count {
                let b = input[pos]
                if b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") { break }
                if b < 0x20 { throw fail(.controlCharacterInString) }
                if b >= 0x80 { sawNonASCII = true }
                pos += 1
            }
        }
    }

    mutating func parseHex4(_ escapeStart: Int) throws(JSONParseError) -> UInt32 {
        guard pos + 4 <= input.count else { throw fail(.unexpectedEnd) }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let b = input[pos]
            let d: UInt32
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(b - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(b - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(b - UInt8(ascii: "A") + 10)
            default: throw fail(.invalidEscape, at: escapeStart)
            }
            v = v << 4 | d
            pos += 1
        }
        return v
    }

    /// Strict UTF-8 (RFC 3629): no overlong forms, no encoded surrogates, nothing above U+10FFFF.
    func validateUTF8(_ bytes: UnsafeBufferPointer<UInt8>, base: Int) throws(JSONParseError) {
        var i = 0
        while i < bytes.count {
            if bytes[i] < 0x80 { i += 1; continue }
            guard let next = utf8SequenceEnd(bytes, at: i) else { throw fail(.invalidUTF8, at: base + i) }
            i = next
        }
    }
}

/// The index after the multi-byte UTF-8 sequence that starts at `i`, or nil when it is not
/// strict UTF-8 (RFC 3629: no overlong forms, no encoded surrogates, nothing above U+10FFFF).
/// The parser and `CanonicalCheck` share it, so both accept exactly the same strings.
@inline(__always)
func utf8SequenceEnd(_ bytes: UnsafeBufferPointer<UInt8>, at i: Int) -> Int? {
    let need: Int
    var lower: UInt8 = 0x80, upper: UInt8 = 0xBF
    switch bytes[i] {
    case 0xC2...0xDF: need = 1
    case 0xE0: need = 2; lower = 0xA0
    case 0xE1...0xEC, 0xEE...0xEF: need = 2
    case 0xED: need = 2; upper = 0x9F
    case 0xF0: need = 3; lower = 0x90
    case 0xF1...0xF3: need = 3
    case 0xF4: need = 3; upper = 0x8F
    default: return nil
    }
    guard i + need < bytes.count, bytes[i + 1] >= lower && bytes[i + 1] <= upper else { return nil }
    for k in stride(from: 2, through: need, by: 1) where bytes[i + k] & 0xC0 != 0x80 { return nil }
    return i + need + 1
}

@inline(__always)
func appendUTF8(_ scalar: UInt32, to out: inout [UInt8]) {
    switch scalar {
    case 0..<0x80:
        out.append(UInt8(scalar))
    case 0x80..<0x800:
        out.append(UInt8(0xC0 | (scalar >> 6)))
        out.append(UInt8(0x80 | (scalar & 0x3F)))
    case 0x800..<0x10000:
        out.append(UInt8(0xE0 | (scalar >> 12)))
        out.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
        out.append(UInt8(0x80 | (scalar & 0x3F)))
    default:
        out.append(UInt8(0xF0 | (scalar >> 18)))
        out.append(UInt8(0x80 | ((scalar >> 12) & 0x3F)))
        out.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
        out.append(UInt8(0x80 | (scalar & 0x3F)))
    }
}
