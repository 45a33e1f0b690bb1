import Foundation
import XCTest
import GunnCore
@testable import GunnAuth

/// The token format and the home's token store, without a server.
final class TokenTests: XCTestCase {
    var dir: String!
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-auth-\(UUID().uuidString.prefix(8))").path
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    func claims(exp: Int64 = 2_000_000_000) -> TokenClaims {
        TokenClaims(id: "00112233445566778899aabbccddeeff", tenant: "t", world: "w", agents: ["a", "b"], rights: [.observe, .act], issuedAt: 1_700_000_000, expiresAt: exp)
    }

    func testSignedTokensVerifyAndEveryTamperingIsRefused() throws {
        let secret = [UInt8](repeating: 9, count: 32)
        let token = TokenCodec.sign(claims(), secret: secret)
        XCTAssertTrue(token.hasPrefix("gunn1."))
        XCTAssertEqual(try TokenCodec.verify(token, secret: secret), claims())
        // Another secret, a flipped character in either part, a dropped part, padding, junk.
        var cases = [TokenCodec.sign(claims(), secret: [UInt8](repeating: 8, count: 32)), "gunn1.", "gunn1..", "gunn2" + token.dropFirst(5), token + ".x",
                     String(token.dropLast()), token + "=", "Bearer " + token, String(repeating: "a", count: 5000)]
        let body = token.split(separator: ".")[1]
        for i in [0, body.count / 2, body.count - 1] {
            var chars = Array(token)
            let at = 6 + i
            chars[at] = chars[at] == "A" ? "B" : "A"
            cases.append(String(chars))
        }
        for bad in cases {
            XCTAssertThrowsError(try TokenCodec.verify(bad, secret: secret), bad.prefix(40).description) { e in
                XCTAssertEqual((e as? GunnError)?.code, .unauthorized)
                XCTAssertFalse((e as? GunnError)?.message.contains(String(token.suffix(20))) ?? true, "the message repeats the token")
            }
        }
        // Claims that are well signed but malformed are refused too (an unknown right, a missing field).
        var wrong = claims().json.objectValue!
        wrong["rights"] = ["fly"]
        let forgedShape = "gunn1." + Base64URL.encode(CanonicalJSON.encode(.object(wrong)))
        let mac = Base64URL.encode(GunnCryptoShim.mac(secret, forgedShape))
        XCTAssertThrowsError(try TokenCodec.verify(forgedShape + "." + mac, secret: secret))
    }

    func testBase64URLRoundTripsAndRefusesOtherAlphabets() {
        var rng = SplitMix64(seed: 4648)
        for n in 0..<100 {
            let bytes = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let text = Base64URL.encode(bytes)
            XCTAssertFalse(text.contains("=") || text.contains("+") || text.contains("/"))
            XCTAssertEqual(Base64URL.decode(text), bytes)
        }
        XCTAssertNil(Base64URL.decode("ab+c"))
        XCTAssertNil(Base64URL.decode("ab/c"))
        XCTAssertNil(Base64URL.decode("ab=="))
    }

    func testTheStoreMakesOneSecretIssuesRevokesAndTheAuthenticatorChecksInOrder() throws {
        let store = TokenStore(dataDir: dir)
        let secret = try store.secret()
        XCTAssertEqual(try store.secret(), secret, "the secret is made once")
        let mode = (try FileManager.default.attributesOfItem(atPath: store.secretPath)[.posixPermissions] as? Int) ?? 0
        XCTAssertEqual(mode & 0o777, 0o600)
        let (token, c) = try store.issue(tenant: "t1", world: "w1", agents: ["ann"], rights: [.observe], ttlSeconds: 60)
        let auth = try Authenticator(store: store, world: "w1")
        XCTAssertEqual(try auth.claims(authorization: "Bearer " + token).id, c.id)
        XCTAssertEqual(try auth.claims(authorization: "bearer " + token).id, c.id, "the scheme is case-insensitive")
        XCTAssertThrowsError(try Authenticator.require(c, .act))
        XCTAssertThrowsError(try Authenticator.require(c, .observe, agent: "bob"))
        XCTAssertNoThrow(try Authenticator.require(c, .observe, agent: "ann"))
        let other = try Authenticator(store: store, world: "w2")
        XCTAssertThrowsError(try other.claims(token: token)) { XCTAssertEqual(($0 as? GunnError)?.code, .worldMismatch) }
        XCTAssertTrue(try store.revoke(id: c.id))
        XCTAssertFalse(try store.revoke(id: "nope"))
        XCTAssertThrowsError(try auth.claims(token: token)) { XCTAssertEqual(($0 as? GunnError)?.code, .unauthorized) }
        XCTAssertEqual(store.registry().issued.map(\.id), [c.id])
        XCTAssertFalse(String(decoding: FileManager.default.contents(atPath: store.registryPath) ?? Data(), as: UTF8.self).contains(String(token.suffix(43))),
                       "the registry never holds a token")
        XCTAssertThrowsError(try auth.claims(authorization: nil)) { XCTAssertEqual(($0 as? GunnError)?.code, .unauthorized) }
        XCTAssertThrowsError(try auth.claims(authorization: "Basic abc")) { XCTAssertEqual(($0 as? GunnError)?.code, .unauthorized) }
        // A secret readable by others is refused.
        chmod(store.secretPath, 0o644)
        XCTAssertThrowsError(try store.secret()) { XCTAssertEqual(($0 as? GunnError)?.code, .configInvalid) }
    }
}

import GunnCrypto
enum GunnCryptoShim { static func mac(_ key: [UInt8], _ s: String) -> [UInt8] { HMACSHA256.authenticate(key: key, message: s).bytes } }
