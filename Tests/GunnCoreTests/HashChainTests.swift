import XCTest
@testable import GunnCore

final class HashChainTests: XCTestCase {
    // Expected values computed independently (Python's hashlib over the canonical bytes).
    func testChecksumMatchesIndependentComputation() throws {
        let e1 = try JSONParser.parse(#"{"payload": {"text": "hi"}, "kind": "Speak"}"#)
        let e2 = try JSONParser.parse(#"{"payload": {"to": [1.0, 2]}, "kind": "Move"}"#)
        let c1 = HashChain.checksum(previous: nil, effect: e1)
        XCTAssertEqual(c1, "3a55b1313bfc490b2674ee40e912a8d82180f6b6e92a07adabb7aaa6858c1060")
        let c2 = HashChain.checksum(previous: c1, effect: e2)
        XCTAssertEqual(c2, "9478928a17c27b453d1959a17edaeacef1d0fe0a5c88fc04a8809043846c2bf4")
    }

    func testFirstBrokenLinkFindsTheAlteredEntry() {
        var entries: [(canonicalEffect: [UInt8], checksum: String)] = []
        var prev: String?
        for i in 0..<10 {
            let bytes = CanonicalJSON.encode(["i": .number(Double(i))])
            let c = HashChain.checksum(previous: prev, canonicalEffect: bytes)
            entries.append((bytes, c))
            prev = c
        }
        XCTAssertNil(HashChain.firstBrokenLink(entries))
        entries[6].canonicalEffect = CanonicalJSON.encode(["i": 600])
        XCTAssertEqual(HashChain.firstBrokenLink(entries), 6)
    }
}
