/// HMAC-SHA256 (RFC 2104, test vectors of RFC 4231), built on the EVP SHA-256 hasher.
/// Used to sign and check session tokens.
public enum HMACSHA256 {
    public static let byteCount = 32

    public static func authenticate(key: [UInt8], message: [UInt8]) -> Digest {
        let block = DigestAlgorithm.sha256.blockByteCount
        var k = key.count > block ? SHA256.hash(key).bytes : key
        k += [UInt8](repeating: 0, count: block - k.count)

        var inner = SHA256.hasher()
        inner.update(k.map { $0 ^ 0x36 })
        inner.update(message)
        let innerDigest = inner.finalize()

        var outer = SHA256.hasher()
        outer.update(k.map { $0 ^ 0x5c })
        outer.update(innerDigest.bytes)
        return outer.finalize()
    }

    public static func authenticate(key: [UInt8], message: String) -> Digest {
        authenticate(key: key, message: Array(message.utf8))
    }

    /// Compares a presented MAC with the expected one in time independent of where they differ.
    public static func isValid(mac: [UInt8], key: [UInt8], message: [UInt8]) -> Bool {
        constantTimeEquals(mac, authenticate(key: key, message: message).bytes)
    }
}

/// Equality whose running time depends only on the lengths, not on the position of the first difference.
public func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var diff: UInt8 = 0
    for i in 0..<a.count { diff |= a[i] ^ b[i] }
    return diff == 0
}
