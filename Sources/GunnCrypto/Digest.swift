import CCrypto

/// A message digest's bytes: 32 for SHA-256, 20 for SHA-1. Value type, comparable by content,
/// printable as lowercase hex (the form the hash chain and `context_digest` use on the wire).
public struct Digest: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) { self.bytes = bytes }

    /// Lowercase hexadecimal, two characters per byte.
    public var hex: String {
        @inline(__always) func digit(_ n: UInt8) -> UInt8 { n < 10 ? n + 0x30 : n + 0x57 }
        return String(unsafeUninitializedCapacity: bytes.count * 2) { out in
            for (i, b) in bytes.enumerated() {
                out[2 * i] = digit(b >> 4)
                out[2 * i + 1] = digit(b & 0x0f)
            }
            return bytes.count * 2
        }
    }

    /// Parses lowercase or uppercase hex; nil on odd length or a non-hex character.
    public init?(hex: String) {
        let utf8 = Array(hex.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(utf8.count / 2)
        var i = 0
        while i < utf8.count {
            guard let hi = Digest.nibble(utf8[i]), let lo = Digest.nibble(utf8[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        self.bytes = out
    }

    public var description: String { hex }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

/// An error reported by libcrypto, carrying OpenSSL's own error string.
public struct CryptoError: Error, Sendable, CustomStringConvertible {
    public let operation: String
    public let detail: String

    public var description: String { "\(operation) failed: \(detail)" }

    static func fromOpenSSL(_ operation: String) -> CryptoError {
        let code = ERR_get_error()
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        let text = buffer.withUnsafeBufferPointer { ptr in
            String(decoding: ptr.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        return CryptoError(operation: operation, detail: code == 0 ? "no OpenSSL error queued" : text)
    }
}
