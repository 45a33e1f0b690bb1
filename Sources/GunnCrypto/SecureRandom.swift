import CCrypto

/// Cryptographically secure random bytes from libcrypto's DRBG (`RAND_bytes`). For secrets
/// (tokens, session ids) only: simulation randomness comes from the seeded generator in GunnCore.
public enum SecureRandom {
    /// Largest request in one call: a bound so that a bad argument cannot ask for gigabytes.
    public static let maxByteCount = 1 << 20

    public static func bytes(count: Int) throws(CryptoError) -> [UInt8] {
        guard count >= 0, count <= maxByteCount else {
            throw CryptoError(operation: "SecureRandom.bytes", detail: "count \(count) outside 0...\(maxByteCount)")
        }
        var out = [UInt8](repeating: 0, count: count)
        guard count > 0 else { return out }
        guard RAND_bytes(&out, Int32(count)) == 1 else { throw CryptoError.fromOpenSSL("RAND_bytes") }
        return out
    }

    public static func uint64() throws(CryptoError) -> UInt64 {
        let b = try bytes(count: 8)
        return b.reduce(0) { $0 << 8 | UInt64($1) }
    }
}
