import GunnCrypto

/// The event log's hash chain: `checksum(entry) = lowercase hex SHA-256(prev_checksum_hex_ascii
/// || canonical_json(effect))`, with an empty prefix for the first entry. Any SHA-256 and any
/// RFC 8785 implementation can recompute it (see docs/hash-chain.md).
public enum HashChain {
    /// Checksum of an entry whose effect canonicalizes to `canonicalEffect`, after the entry
    /// whose checksum was `previous` (nil for the first entry of a log).
    public static func checksum(previous: String?, canonicalEffect: [UInt8]) -> String {
        var hasher = SHA256.hasher()
        if let previous { hasher.update(previous) }
        hasher.update(canonicalEffect)
        return hasher.finalize().hex
    }

    public static func checksum(previous: String?, effect: JSONValue) -> String {
        checksum(previous: previous, canonicalEffect: CanonicalJSON.encode(effect))
    }

    /// Walks a chain of (previous-implied) entries and returns the index of the first entry whose
    /// recorded checksum differs from the recomputed one, or nil if the whole chain holds.
    public static func firstBrokenLink(_ entries: [(canonicalEffect: [UInt8], checksum: String)], startingAfter previous: String? = nil) -> Int? {
        var prev = previous
        for (i, e) in entries.enumerated() {
            let expected = checksum(previous: prev, canonicalEffect: e.canonicalEffect)
            guard expected == e.checksum else { return i }
            prev = expected
        }
        return nil
    }
}
