/// RFC 8785 JSON Canonicalization Scheme: object members sorted by UTF-16 code units, numbers
/// in ECMAScript's shortest round-trip form, strings with the minimal escaping. The hash chain and
/// `context_digest` are computed over these bytes, so any JCS implementation reproduces them.
public enum CanonicalJSON {
    public static func encode(_ value: JSONValue) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        encode(value, into: &out)
        return out
    }

    public static func encodeString(_ value: JSONValue) -> String {
        String(decoding: encode(value), as: UTF8.self)
    }

    public static func encode(_ value: JSONValue, into out: inout [UInt8]) {
        switch value {
        case .null: out.append(contentsOf: [0x6e, 0x75, 0x6c, 0x6c])
        case .bool(true): out.append(contentsOf: [0x74, 0x72, 0x75, 0x65])
        case .bool(false): out.append(contentsOf: [0x66, 0x61, 0x6c, 0x73, 0x65])
        case .number(let n): appendNumber(n, into: &out)
        case .string(let s): appendString(s, into: &out)
        case .array(let a):
            out.append(UInt8(ascii: "["))
            var first = true
            for element in a {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                encode(element, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            out.append(UInt8(ascii: "{"))
            var first = true
            for (key, member) in o.storage.sorted(by: { $0.key < $1.key }) {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                appendString(key.string, into: &out)
                out.append(UInt8(ascii: ":"))
                encode(member, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// Appends `"name":` for a member whose key the caller writes in canonical order itself.
    @inline(__always)
    static func appendKey(_ name: StaticString, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
        out.append(contentsOf: [UInt8(ascii: "\""), UInt8(ascii: ":")])
    }

    /// RFC 8785 §3.2.2.2: `"` and `\` escaped, control characters as \b \t \n \f \r or \u00xx
    /// (lowercase hex), everything else as its UTF-8 bytes.
    public static func appendString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { bytes in
            // Fast path: most strings need no escaping and are copied in one piece.
            var runStart = 0
            for i in 0..<bytes.count {
                let b = bytes[i]
                guard b < 0x20 || b == 0x22 || b == 0x5c else { continue }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<i]))
                runStart = i + 1
                switch b {
                case 0x22: out.append(0x5c); out.append(0x22)
                case 0x5c: out.append(0x5c); out.append(0x5c)
                case 0x08: out.append(0x5c); out.append(UInt8(ascii: "b"))
                case 0x09: out.append(0x5c); out.append(UInt8(ascii: "t"))
                case 0x0a: out.append(0x5c); out.append(UInt8(ascii: "n"))
                case 0x0c: out.append(0x5c); out.append(UInt8(ascii: "f"))
                case 0x0d: out.append(0x5c); out.append(UInt8(ascii: "r"))
                default:
                    out.append(contentsOf: [0x5c, UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hexDigit(b >> 4), hexDigit(b & 0xf)])
                }
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart...]))
        }
        out.append(UInt8(ascii: "\""))
    }

    @inline(__always)
    static func hexDigit(_ nibble: UInt8) -> UInt8 { nibble < 10 ? nibble + 0x30 : nibble - 10 + 0x61 }

    /// Decimal digits of a non-negative integer below 2^53, without a String in between.
    @inline(__always)
    static func appendDecimal(_ value: UInt64, into out: inout [UInt8]) {
        if value < 10 { out.append(UInt8(value) + 0x30); return }
        var digits: (UInt64, UInt64) = (0, 0) // 16 bytes of scratch: up to 16 digits
        var n = value, count = 0
        withUnsafeMutableBytes(of: &digits) { scratch in
            while n > 0 {
                scratch[15 - count] = UInt8(n % 10) + 0x30
                n /= 10
                count += 1
            }
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: scratch[(16 - count)...]))
        }
    }

    /// ECMAScript `Number.prototype.toString` for a finite double (RFC 8785 §3.2.2.3).
    /// Non-finite values cannot come from the parser; encoding one is a bug of the caller.
    public static func appendNumber(_ value: Double, into out: inout [UInt8]) {
        precondition(value.isFinite, "JSON has no representation for \(value)")
        if value == 0 { out.append(UInt8(ascii: "0")); return } // also -0
        // Integers below 2^53 print exactly as integers.
        if value == value.rounded(.towardZero) && abs(value) < 9_007_199_254_740_992 {
            if value < 0 { out.append(UInt8(ascii: "-")) }
            appendDecimal(UInt64(abs(value)), into: &out)
            return
        }
        if value < 0 { out.append(UInt8(ascii: "-")) }
        let (digits, n) = shortestDigits(abs(value))
        let k = digits.count
        if k <= n && n <= 21 {
            out.append(contentsOf: digits)
            out.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: n - k))
        } else if 0 < n && n <= 21 {
            out.append(contentsOf: digits[0..<n])
            out.append(UInt8(ascii: "."))
            out.append(contentsOf: digits[n...])
        } else if -6 < n && n <= 0 {
            out.append(contentsOf: [UInt8(ascii: "0"), UInt8(ascii: ".")])
            out.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: -n))
            out.append(contentsOf: digits)
        } else {
            out.append(digits[0])
            if k > 1 {
                out.append(UInt8(ascii: "."))
                out.append(contentsOf: digits[1...])
            }
            out.append(UInt8(ascii: "e"))
            let e = n - 1
            out.append(e < 0 ? UInt8(ascii: "-") : UInt8(ascii: "+"))
            out.append(contentsOf: String(abs(e)).utf8)
        }
    }

    /// The shortest digit string `d` and exponent `n` with value = 0.d × 10^n that round-trips,
    /// taken from Swift's `description`, which prints the shortest round-trip form (and among
    /// equally short ones the closest), as ECMAScript requires.
    static func shortestDigits(_ positive: Double) -> (digits: [UInt8], n: Int) {
        let text = Array(positive.description.utf8)
        var mantissa: ArraySlice<UInt8> = text[...]
        var exponent = 0
        if let e = text.firstIndex(where: { $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") }) {
            mantissa = text[..<e]
            exponent = Int(String(decoding: text[(e + 1)...], as: UTF8.self))!
        }
        var digits: [UInt8] = []
        var pointAt = mantissa.count
        for b in mantissa {
            if b == UInt8(ascii: ".") { pointAt = digits.count } else { digits.append(b) }
        }
        if !mantissa.contains(UInt8(ascii: ".")) { pointAt = digits.count }
        var n = pointAt + exponent
        // Leading zeros (0.00123) move the point; trailing zeros (1.0, 1200.0) carry nothing.
        var lead = 0
        while lead < digits.count - 1 && digits[lead] == UInt8(ascii: "0") { lead += 1 }
        digits.removeFirst(lead)
        n -= lead
        while digits.count > 1 && digits.last == UInt8(ascii: "0") { digits.removeLast() }
        return (digits, n)
    }
}
