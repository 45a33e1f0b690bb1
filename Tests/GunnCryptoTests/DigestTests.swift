import XCTest
import GunnCrypto

/// Known answers from FIPS 180-4's examples (via NIST's published vectors) and RFC 4231.
final class DigestTests: XCTestCase {
    func testSHA256KnownAnswers() {
        XCTAssertEqual(SHA256.hash("abc").hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hash("").hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hash("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq").hex,
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(SHA256.hash("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu").hex,
                       "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")
        XCTAssertEqual(SHA256.hash([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)).hex,
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    func testSHA1KnownAnswers() {
        XCTAssertEqual(SHA1.hash("abc").hex, "a9993e364706816aba3e25717850c26c9cd0d89d")
        XCTAssertEqual(SHA1.hash("").hex, "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        XCTAssertEqual(SHA1.hash("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq").hex,
                       "84983e441c3bd26ebaae4aa1f95129e5e54670f1")
        XCTAssertEqual(SHA1.hash([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)).hex,
                       "34aa973cd4c4daa4f61eeb2bdbad27316534016f")
    }

    func testStreamingEqualsOneShotForEverySplit() {
        var generator: UInt64 = 0x9E3779B97F4A7C15
        let message: [UInt8] = (0..<300).map { _ in
            generator = generator &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: generator >> 33)
        }
        for algorithm in [DigestAlgorithm.sha256, .sha1] {
            let expected = algorithm == .sha256 ? SHA256.hash(message) : SHA1.hash(message)
            for split in stride(from: 0, through: message.count, by: 7) {
                var hasher = DigestHasher(algorithm)
                hasher.update(message[..<split])
                hasher.update(message[split...])
                let streamed = hasher.finalize()
                XCTAssertEqual(streamed, expected, "split at \(split)")
            }
            var byteAtATime = DigestHasher(algorithm)
            for b in message { byteAtATime.update([b]) }
            let streamed = byteAtATime.finalize()
            XCTAssertEqual(streamed, expected)
        }
    }

    func testHexRoundTrip() {
        let digest = SHA256.hash("gunn")
        XCTAssertEqual(Digest(hex: digest.hex), digest)
        XCTAssertEqual(Digest(hex: digest.hex.uppercased()), digest)
        XCTAssertNil(Digest(hex: "abc"))
        XCTAssertNil(Digest(hex: "zz"))
    }

    // RFC 4231 test cases 1-7 (case 5's truncated output is checked on its first 16 bytes).
    func testHMACSHA256RFC4231() {
        func bytes(_ hex: String) -> [UInt8] { Digest(hex: hex)!.bytes }
        let cases: [(key: [UInt8], data: [UInt8], mac: String)] = [
            (bytes(String(repeating: "0b", count: 20)), Array("Hi There".utf8),
             "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
            (Array("Jefe".utf8), Array("what do ya want for nothing?".utf8),
             "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
            (bytes(String(repeating: "aa", count: 20)), bytes(String(repeating: "dd", count: 50)),
             "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
            (bytes("0102030405060708090a0b0c0d0e0f10111213141516171819"), bytes(String(repeating: "cd", count: 50)),
             "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
            (bytes(String(repeating: "aa", count: 131)), Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8),
             "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
            (bytes(String(repeating: "aa", count: 131)),
             Array("This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.".utf8),
             "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
        ]
        for (i, c) in cases.enumerated() {
            XCTAssertEqual(HMACSHA256.authenticate(key: c.key, message: c.data).hex, c.mac, "RFC 4231 case \(i)")
        }
        let truncated = HMACSHA256.authenticate(key: bytes(String(repeating: "0c", count: 20)), message: Array("Test With Truncation".utf8))
        XCTAssertEqual(Digest(bytes: Array(truncated.bytes.prefix(16))).hex, "a3b6167473100ee06e0c796c2955552b")
    }

    func testHMACValidationRejectsAlteredMac() {
        let key = Array("secret".utf8), message = Array("agent-1".utf8)
        var mac = HMACSHA256.authenticate(key: key, message: message).bytes
        XCTAssertTrue(HMACSHA256.isValid(mac: mac, key: key, message: message))
        mac[31] ^= 1
        XCTAssertFalse(HMACSHA256.isValid(mac: mac, key: key, message: message))
        XCTAssertFalse(HMACSHA256.isValid(mac: Array(mac.prefix(16)), key: key, message: message))
    }

    func testSecureRandomBytes() throws {
        let a = try SecureRandom.bytes(count: 32)
        let b = try SecureRandom.bytes(count: 32)
        XCTAssertEqual(a.count, 32)
        XCTAssertNotEqual(a, b, "two 256-bit draws collided")
        XCTAssertEqual(try SecureRandom.bytes(count: 0), [])
        XCTAssertThrowsError(try SecureRandom.bytes(count: -1))
        XCTAssertThrowsError(try SecureRandom.bytes(count: SecureRandom.maxByteCount + 1))
    }
}
