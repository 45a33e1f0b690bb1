import XCTest
@testable import GunnWire
import GunnCore

final class FrameCodecTests: XCTestCase {
    let frames: [Frame] = [
        Frame(id: 1, .hello(Hello(protocolMajor: 1, protocolMinor: 0, role: "agent", worldID: "w", token: "t", clientName: "c"))),
        Frame(id: 1, epoch: 2, .welcome(Welcome())),
        Frame(.ping(Nonce(42))),
        Frame(id: 5, .submitIntent(JSONPayload(Array(#"{"kind":"Speak"}"#.utf8)))),
        Frame(.error(WireErrorMessage(code: 1002, name: "FRAME_TOO_LARGE", message: "big", retryAfterMs: 0))),
        Frame(.head(Empty())),
    ]

    func testFramesSurviveAnyChunking() throws {
        let stream = frames.flatMap(FrameCodec.encode)
        for chunk in [1, 2, 3, 7, 64, stream.count] {
            var d = FrameDecoder()
            var got: [Frame] = []
            var i = 0
            while i < stream.count {
                d.append(Array(stream[i..<min(stream.count, i + chunk)]))
                i += chunk
                while let f = try d.next() { got.append(f) }
            }
            XCTAssertEqual(got, frames, "chunk \(chunk)")
            XCTAssertEqual(d.bufferedBytes, 0)
        }
    }

    func testZeroLengthIsMalformedFrame() {
        var d = FrameDecoder()
        d.append([0, 0, 0, 0])
        XCTAssertThrowsError(try d.next()) {
            XCTAssertEqual($0 as? FrameError, .emptyFrame)
            XCTAssertEqual(($0 as? FrameError)?.errorCode, .malformedFrame)
        }
    }

    func testFourGigabyteLengthIsRefusedBeforeAllocation() {
        var d = FrameDecoder()
        d.append([0xFF, 0xFF, 0xFF, 0xFF])
        XCTAssertThrowsError(try d.next()) {
            XCTAssertEqual($0 as? FrameError, .tooLarge(length: .max, limit: 4 << 20))
            XCTAssertEqual(($0 as? FrameError)?.errorCode, .frameTooLarge)
        }
        XCTAssertEqual(d.bufferedBytes, 4, "nothing was read past the prefix")
        // Stays failed: the stream cannot be resynchronised.
        d.append(FrameCodec.encode(frames[0]))
        XCTAssertThrowsError(try d.next())
    }

    func testGarbageBodyIsMalformed() {
        var d = FrameDecoder()
        d.append([0, 0, 0, 3, 0xFF, 0xFF, 0xFF])
        XCTAssertThrowsError(try d.next()) { XCTAssertEqual(($0 as? FrameError)?.errorCode, .malformedFrame) }
    }

    func testTruncatedFrameWaitsForMoreBytes() throws {
        var d = FrameDecoder()
        let bytes = FrameCodec.encode(frames[0])
        d.append(Array(bytes.dropLast()))
        XCTAssertNil(try d.next())
        d.append([bytes.last!])
        XCTAssertEqual(try d.next(), frames[0])
    }

    func testUnknownBodyDecodesAsNilBody() throws {
        var w = ProtoWriter()
        w.uint64(1, 3)
        w.tag(500, .lengthDelimited); w.varint(0)
        let f = try Frame(serialized: w.bytes)
        XCTAssertEqual(f.id, 3)
        XCTAssertNil(f.body)
    }
}
