import CCrypto

/// The digest algorithms gunn uses, each backed by libcrypto's EVP interface.
public enum DigestAlgorithm: Sendable {
    case sha256
    case sha1

    /// Output size in bytes.
    public var byteCount: Int {
        switch self {
        case .sha256: return 32
        case .sha1: return 20
        }
    }

    /// SHA-256 and SHA-1 both work on 64-byte blocks (used by HMAC).
    public var blockByteCount: Int { 64 }

    var evpMD: OpaquePointer? {
        switch self {
        case .sha256: return FetchedDigests.shared.sha256
        case .sha1: return FetchedDigests.shared.sha1
        }
    }
}

/// Algorithm objects fetched once. With OpenSSL 3, `EVP_sha256()` triggers an implicit fetch on
/// every `EVP_DigestInit_ex`, which costs more than hashing a short message; an explicitly fetched
/// `EVP_MD` skips it.
///
/// `@unchecked Sendable` is safe here: both pointers are written once, in `init`, before the
/// value is published through a `static let` (which Swift initialises exactly once, thread-safely);
/// OpenSSL documents fetched algorithm objects as immutable and shareable between threads; and
/// they are never freed (they live as long as the process).
final class FetchedDigests: @unchecked Sendable {
    let sha256: OpaquePointer?
    let sha1: OpaquePointer?

    static let shared = FetchedDigests()

    private init() {
        sha256 = EVP_MD_fetch(nil, "SHA2-256", nil) ?? EVP_sha256()
        sha1 = EVP_MD_fetch(nil, "SHA1", nil) ?? EVP_sha1()
    }
}

/// An incremental hash over libcrypto's EVP digest context. Non-copyable because it owns the
/// context: it is freed exactly once, when the hasher is finalized or goes out of scope.
public struct DigestHasher: ~Copyable {
    private let context: OpaquePointer
    public let algorithm: DigestAlgorithm

    /// Starts a hash. libcrypto failing to allocate or initialise a context is out of memory or
    /// a broken library install, neither of which a caller can handle: it traps.
    public init(_ algorithm: DigestAlgorithm) {
        guard let ctx = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new: out of memory") }
        guard EVP_DigestInit_ex(ctx, algorithm.evpMD, nil) == 1 else {
            EVP_MD_CTX_free(ctx)
            fatalError("\(CryptoError.fromOpenSSL("EVP_DigestInit_ex"))")
        }
        self.context = ctx
        self.algorithm = algorithm
    }

    deinit { EVP_MD_CTX_free(context) }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        let ok = EVP_DigestUpdate(context, bytes.baseAddress, bytes.count)
        precondition(ok == 1, "EVP_DigestUpdate failed on a valid context")
    }

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    public mutating func update(_ bytes: ArraySlice<UInt8>) {
        bytes.withUnsafeBytes { update($0) }
    }

    public mutating func update(_ text: String) {
        var text = text
        text.withUTF8 { update(UnsafeRawBufferPointer($0)) }
    }

    /// Ends the hash and returns its digest; the hasher is consumed.
    public consuming func finalize() -> Digest {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let ok = EVP_DigestFinal_ex(context, &out, &length)
        precondition(ok == 1, "EVP_DigestFinal_ex failed on a valid context")
        return Digest(bytes: Array(out.prefix(Int(length))))
    }
}

/// SHA-256 (FIPS 180-4). The hash chain, `context_digest` and checksums all use it.
public enum SHA256 {
    public static let byteCount = 32

    public static func hash(_ bytes: UnsafeRawBufferPointer) -> Digest {
        oneShot(.sha256, bytes)
    }

    public static func hash(_ bytes: [UInt8]) -> Digest {
        bytes.withUnsafeBytes { oneShot(.sha256, $0) }
    }

    public static func hash(_ text: String) -> Digest {
        hash(Array(text.utf8))
    }

    public static func hasher() -> DigestHasher { DigestHasher(.sha256) }
}

/// SHA-1 (FIPS 180-4). Only for protocols that require it (the WebSocket handshake); never for integrity.
public enum SHA1 {
    public static let byteCount = 20

    public static func hash(_ bytes: [UInt8]) -> Digest {
        bytes.withUnsafeBytes { oneShot(.sha1, $0) }
    }

    public static func hash(_ text: String) -> Digest {
        hash(Array(text.utf8))
    }

    public static func hasher() -> DigestHasher { DigestHasher(.sha1) }
}

/// One-shot digest through `EVP_Digest`, which avoids a separate context allocation per call.
func oneShot(_ algorithm: DigestAlgorithm, _ bytes: UnsafeRawBufferPointer) -> Digest {
    var out = [UInt8](repeating: 0, count: algorithm.byteCount)
    var length: UInt32 = 0
    // EVP_Digest accepts a null data pointer only when the length is 0; give it a valid one.
    let ok: Int32 = withUnsafeBytes(of: UInt8(0)) { empty in
        let base = bytes.baseAddress ?? empty.baseAddress
        return EVP_Digest(base, bytes.count, &out, &length, algorithm.evpMD, nil)
    }
    precondition(ok == 1 && Int(length) == algorithm.byteCount, "EVP_Digest failed")
    return Digest(bytes: out)
}
