import Foundation
import Glibc
import Synchronization
import GunnCore
import GunnCrypto

/// What a bearer token allows.
public enum Right: String, Sendable, CaseIterable {
    /// Read an agent's view and stream its observations.
    case observe
    /// Register an agent and submit its intents.
    case act
    /// Emit effect drafts.
    case emit
    /// Everything, for every agent of the tenant.
    case admin
}

/// The claims a token carries, signed with the home's secret.
public struct TokenClaims: Sendable, Equatable {
    /// The token's id (16 random bytes, hex): what logs, `gunnctl token list` and revocation name.
    public var id: String
    public var tenant: String
    public var world: String
    /// The agents the token may act as or observe; `*` is every agent of the tenant.
    public var agents: [String]
    public var rights: Set<Right>
    /// Issued at and expiry, in seconds since 1970 (wall time: tokens outlive processes).
    public var issuedAt: Int64
    public var expiresAt: Int64

    public init(id: String, tenant: String, world: String, agents: [String], rights: Set<Right>, issuedAt: Int64, expiresAt: Int64) {
        self.id = id; self.tenant = tenant; self.world = world; self.agents = agents
        self.rights = rights; self.issuedAt = issuedAt; self.expiresAt = expiresAt
    }

    public func allows(_ right: Right) -> Bool { rights.contains(.admin) || rights.contains(right) }
    public func covers(agent: String) -> Bool { rights.contains(.admin) || agents.contains("*") || agents.contains(agent) }

    public var json: JSONValue {
        .object(JSONObject([
            "v": 1, "id": .string(id), "tenant": .string(tenant), "world": .string(world),
            "agents": .array(agents.map { .string($0) }), "rights": .array(rights.map(\.rawValue).sorted().map { .string($0) }),
            "iat": .number(Double(issuedAt)), "exp": .number(Double(expiresAt)),
        ]))
    }

    public static let maxAgents = 64

    /// Reads claims strictly (unknown keys, wrong types and bad values refused).
    public init(json: JSONValue) throws(GunnError) {
        var f = try StrictFields(json, what: "token claims", code: .unauthorized)
        guard try f.integer("v", required: true, in: 1...1) == 1 else { throw GunnError(.unauthorized, "token version") }
        id = try f.string("id", required: true, maxBytes: 64)!
        tenant = try f.string("tenant", required: true, maxBytes: 128)!
        world = try f.string("world", required: true, maxBytes: 128)!
        agents = try f.strings("agents", maxCount: Self.maxAgents, maxBytes: 128) ?? []
        let r = try f.strings("rights", maxCount: 4, maxBytes: 16) ?? []
        var rights = Set<Right>()
        for name in r {
            guard let right = Right(rawValue: name) else { throw GunnError(.unauthorized, "unknown right \(name)") }
            rights.insert(right)
        }
        self.rights = rights
        issuedAt = try f.integer("iat", required: true, in: 0...(1 << 40))!
        expiresAt = try f.integer("exp", required: true, in: 0...(1 << 40))!
        try f.finish()
    }
}

/// The token format: `gunn1.<base64url(canonical JSON claims)>.<base64url(HMAC-SHA256(secret, "gunn1." + claims part))>`.
/// Anyone can read the claims; only the holder of the home's secret can make a valid MAC.
public enum TokenCodec {
    public static let prefix = "gunn1."
    public static let maxTokenBytes = 4096

    public static func sign(_ claims: TokenClaims, secret: [UInt8]) -> String {
        let body = Base64URL.encode(CanonicalJSON.encode(claims.json))
        let mac = HMACSHA256.authenticate(key: secret, message: prefix + body)
        return prefix + body + "." + Base64URL.encode(mac.bytes)
    }

    /// Checks the MAC (in constant time) and reads the claims; every failure is UNAUTHORIZED with
    /// a reason that never repeats the token.
    public static func verify(_ token: String, secret: [UInt8]) throws(GunnError) -> TokenClaims {
        guard token.utf8.count <= maxTokenBytes else { throw GunnError(.unauthorized, "the token is longer than \(maxTokenBytes) bytes") }
        guard token.hasPrefix(prefix) else { throw GunnError(.unauthorized, "malformed token (not gunn1)") }
        let rest = token.dropFirst(prefix.count)
        let parts = rest.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let body = Base64URL.decode(String(parts[0])), let mac = Base64URL.decode(String(parts[1])),
              mac.count == HMACSHA256.byteCount else {
            throw GunnError(.unauthorized, "malformed token")
        }
        guard HMACSHA256.isValid(mac: mac, key: secret, message: Array((prefix + parts[0]).utf8)) else {
            throw GunnError(.unauthorized, "the token's signature does not verify (forged, or signed by another home)")
        }
        let json: JSONValue
        do { json = try JSONParser.parse(body) } catch { throw GunnError(.unauthorized, "malformed token claims") }
        return try TokenClaims(json: json)
    }
}

/// RFC 4648 §5 base64url without padding.
public enum Base64URL {
    public static func encode(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    public static func decode(_ text: String) -> [UInt8]? {
        guard text.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2D || $0 == 0x5F }) else { return nil }
        var s = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while s.utf8.count % 4 != 0 { s += "=" }
        return Data(base64Encoded: s).map { [UInt8]($0) }
    }
}

/// A home's token state under `data/`: the secret (`web-secret`, 32 random bytes, mode 0600,
/// created once by whoever needs it first) and the registry (`web-tokens.json`: each issued
/// token's claims — never the token itself — and the ids revoked). gunnctl writes the registry;
/// the web adapter reads it again whenever the file changes, so a revocation holds at once.
public final class TokenStore: Sendable {
    public let dataDir: String
    private let file: WatchedFile<Registry>

    /// Tokens kept in the registry at most (the oldest expired ones go first).
    public static let maxIssued = 10_000
    public static let maxRevoked = 100_000

    public struct Registry: Sendable, Equatable {
        public var issued: [TokenClaims] = []
        public var revoked: Set<String> = []
        /// The file exists but cannot be read: every token is refused (fail closed) until it can.
        public var unreadable = false
    }

    public init(dataDir: String) {
        self.dataDir = dataDir
        file = WatchedFile(path: dataDir + "/web-tokens.json", empty: Registry()) { Self.read($0) }
    }

    public var secretPath: String { dataDir + "/web-secret" }
    public var registryPath: String { dataDir + "/web-tokens.json" }

    /// The secret, created (O_EXCL, 0600) when missing.
    public func secret() throws(GunnError) -> [UInt8] {
        try? FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        let fd = Glibc.open(secretPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if fd >= 0 {
            defer { Glibc.close(fd) }
            let bytes: [UInt8]
            do { bytes = try SecureRandom.bytes(count: 32) } catch { throw GunnError(.internalError, "no random bytes for the secret: \(error)") }
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            guard n == 32, fsync(fd) == 0 else { throw GunnError(.configInvalid, "cannot write \(secretPath)") }
            return bytes
        }
        guard errno == EEXIST else { throw GunnError(.configInvalid, "cannot create \(secretPath): \(String(cString: strerror(errno)))") }
        var st = stat()
        guard stat(secretPath, &st) == 0 else { throw GunnError(.configInvalid, "cannot read \(secretPath)") }
        guard st.st_mode & 0o077 == 0 else { throw GunnError(.configInvalid, "\(secretPath) is readable by others (mode \(String(st.st_mode & 0o777, radix: 8))); it must be 0600") }
        guard let data = FileManager.default.contents(atPath: secretPath), data.count == 32 else {
            throw GunnError(.configInvalid, "\(secretPath) is not 32 bytes")
        }
        return [UInt8](data)
    }

    /// The registry as the file holds it now (re-read only when its size or mtime changed).
    public func registry() -> Registry { file.current }

    public func isRevoked(_ id: String) -> Bool {
        let r = registry()
        return r.unreadable || r.revoked.contains(id)
    }

    static func read(_ path: String) -> Registry {
        guard FileManager.default.fileExists(atPath: path) else { return Registry() }
        guard let data = FileManager.default.contents(atPath: path), data.count <= 64 << 20,
              let v = try? JSONParser.parse([UInt8](data)) else { return Registry(unreadable: true) }
        var r = Registry()
        r.issued = (v["issued"]?.arrayValue ?? []).compactMap { try? TokenClaims(json: $0) }
        r.revoked = Set((v["revoked"]?.arrayValue ?? []).compactMap(\.stringValue))
        return r
    }

    /// Changes the registry under an exclusive lock on the file (gunnctl processes may race) and
    /// writes it atomically (a temporary file renamed over it).
    public func update(_ change: (inout Registry) throws(GunnError) -> Void) throws(GunnError) {
        try? FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        let lockFD = Glibc.open(registryPath + ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lockFD >= 0 else { throw GunnError(.configInvalid, "cannot open \(registryPath).lock") }
        defer { Glibc.close(lockFD) }
        guard flock(lockFD, LOCK_EX) == 0 else { throw GunnError(.configInvalid, "cannot lock \(registryPath)") }
        var r = Self.read(registryPath)
        guard !r.unreadable else { throw GunnError(.configInvalid, "\(registryPath) cannot be read; fix or remove it (every token is refused meanwhile)") }
        try change(&r)
        let now = Int64(Date().timeIntervalSince1970)
        if r.issued.count > Self.maxIssued {
            // Expired tokens make room; live ones are never dropped (their revocation would be lost).
            r.issued.removeAll { $0.expiresAt < now && !r.revoked.contains($0.id) }
            guard r.issued.count <= Self.maxIssued else {
                throw GunnError(.quotaExceeded, "\(Self.maxIssued) live tokens are issued already; revoke some or wait for them to expire")
            }
        }
        if r.revoked.count > Self.maxRevoked {
            // Revoked ids of tokens that have expired need no entry any more.
            let live = Set(r.issued.filter { $0.expiresAt >= now }.map(\.id))
            r.revoked = r.revoked.filter { live.contains($0) }
        }
        let doc: JSONValue = .object(JSONObject([
            "issued": .array(r.issued.map(\.json)),
            "revoked": .array(r.revoked.sorted().map { .string($0) }),
        ]))
        let tmp = registryPath + ".tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: Data(CanonicalJSON.encode(doc)), attributes: [.posixPermissions: 0o600]),
              Glibc.rename(tmp, registryPath) == 0 else {
            throw GunnError(.configInvalid, "cannot write \(registryPath)")
        }
    }

    /// Issues a token: new id, signed with the secret, recorded in the registry.
    public func issue(tenant: String, world: String, agents: [String], rights: Set<Right>, ttlSeconds: Int64) throws(GunnError) -> (String, TokenClaims) {
        let secret = try secret()
        let idBytes: [UInt8]
        do { idBytes = try SecureRandom.bytes(count: 16) } catch { throw GunnError(.internalError, "no random bytes: \(error)") }
        let now = Int64(Date().timeIntervalSince1970)
        let claims = TokenClaims(id: Digest(bytes: idBytes).hex, tenant: tenant, world: world, agents: agents, rights: rights,
                                 issuedAt: now, expiresAt: now + ttlSeconds)
        _ = try TokenClaims(json: claims.json)  // the same checks a verifier applies
        try update { $0.issued.append(claims) }
        return (TokenCodec.sign(claims, secret: secret), claims)
    }

    /// Revokes a token by id; false when no such token was issued here.
    public func revoke(id: String) throws(GunnError) -> Bool {
        var known = false
        try update { r in
            known = r.issued.contains { $0.id == id }
            if known { r.revoked.insert(id) }
        }
        return known
    }
}

/// Checks a request's bearer token for one world: the signature, expiry, revocation, world, right
/// and agent, in that order. Refusals are UNAUTHORIZED (401: no, malformed, forged, expired or
/// revoked token), WORLD_MISMATCH (answered 403: a token of another world) or FORBIDDEN (403: a
/// right or an agent the token does not carry). Messages name the token's id at most, never the token.
public struct Authenticator: Sendable {
    public let store: TokenStore
    public let world: String
    private let secret: [UInt8]

    public init(store: TokenStore, world: String) throws(GunnError) {
        self.store = store
        self.world = world
        secret = try store.secret()
    }

    /// The claims of a valid `Authorization` value ("Bearer <token>").
    public func claims(authorization: String?) throws(GunnError) -> TokenClaims {
        guard let header = authorization else { throw GunnError(.unauthorized, "no bearer token (send Authorization: Bearer <token>)") }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { throw GunnError(.unauthorized, "the Authorization header is not \"Bearer <token>\"") }
        return try claims(token: String(parts[1]))
    }

    public func claims(token: String) throws(GunnError) -> TokenClaims {
        let c = try TokenCodec.verify(token, secret: secret)
        if Int64(Date().timeIntervalSince1970) >= c.expiresAt { throw GunnError(.unauthorized, "token \(c.id) has expired") }
        if store.isRevoked(c.id) { throw GunnError(.unauthorized, "token \(c.id) has been revoked") }
        if c.world != world { throw GunnError(.worldMismatch, "token \(c.id) is for world \(c.world), this is \(world)") }
        return c
    }

    /// Refuses unless the claims carry `right` (and cover `agent`, when one is named).
    public static func require(_ c: TokenClaims, _ right: Right, agent: String? = nil) throws(GunnError) {
        guard c.allows(right) else { throw GunnError(.forbidden, "token \(c.id) does not carry the right \(right.rawValue)") }
        if let agent, !c.covers(agent: agent) { throw GunnError(.forbidden, "token \(c.id) does not cover agent \(agent)") }
    }
}
