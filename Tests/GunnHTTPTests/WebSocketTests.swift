import XCTest
import GunnCore
@testable import GunnHTTP

/// The WebSocket pieces without sockets: the handshake's accept value, the UTF-8 validator against
/// Swift's own decoder, and the session's verdicts on frames fed whole and byte by byte.
final class WebSocketTests: XCTestCase {
    func testAcceptValueOfRFC6455() {
        XCTAssertEqual(WebSocketHandshake.acceptValue(forKey: "dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }

    func testUTF8ValidatorAgreesWithSwiftOnRandomAndEdgeInputs() {
        var rng = SplitMix64(seed: 6455)
        let edges: [[UInt8]] = [
            [0xC0, 0x80], [0xC1, 0xBF], [0xE0, 0x80, 0x80], [0xE0, 0x9F, 0xBF], [0xE0, 0xA0, 0x80], [0xED, 0x9F, 0xBF], [0xED, 0xA0, 0x80],
            [0xEF, 0xBF, 0xBF], [0xF0, 0x8F, 0xBF, 0xBF], [0xF0, 0x90, 0x80, 0x80], [0xF4, 0x8F, 0xBF, 0xBF], [0xF4, 0x90, 0x80, 0x80],
            [0xF5, 0x80, 0x80, 0x80], [0xFF], [0x80], [0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5], [0xE2, 0x82],
        ]
        var inputs = edges
        for _ in 0..<20000 {
            let n = Int(rng.next() % 12)
            inputs.append((0..<n).map { _ in
                let r = rng.next()
                return r % 3 == 0 ? UInt8(truncatingIfNeeded: r >> 8) : [0x41, 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x98, 0x80, 0xED, 0xBF][Int(r >> 16) % 12]
            })
        }
        for input in inputs {
            let swift = String(validating: input, as: UTF8.self) != nil
            XCTAssertEqual(UTF8Validator.isValid(input), swift, "whole \(input)")
            // Byte by byte: the same verdict.
            var v = UTF8Validator()
            var ok = true
            for b in input { ok = [b].withUnsafeBytes { v.feed($0) } && ok; if !ok { break } }
            XCTAssertEqual(ok && v.isComplete, swift, "byte by byte \(input)")
        }
    }

    /// The session's events for `bytes`, as strings.
    static func session(_ bytes: [UInt8], chunk: Int, maxMessage: Int = 1 << 20) -> [String] {
        var options = WebSocketOptions()
        options.maxMessageBytes = maxMessage
        var s = WebSocketSession(options: options)
        var out: [String] = []
        var i = 0
        while i < bytes.count {
            var piece = Array(bytes[i..<min(bytes.count, i + chunk)])
            piece.withUnsafeMutableBytes { b in
                s.receive(b) { e in
                    switch e {
                    case .message(let op, let m): out.append("\(op) \(String(decoding: m, as: UTF8.self))")
                    case .send(let f): out.append("send \(f.map { String($0, radix: 16) }.joined(separator: " "))")
                    case .ping(let p): out.append("ping \(p.count)")
                    case .pong(let p): out.append("pong \(p.count)")
                    case .closed(let code, _, let clean): out.append("closed \(code) clean=\(clean)")
                    }
                }
            }
            i += chunk
        }
        return out
    }

    static func check(_ bytes: [UInt8], _ expected: [String], maxMessage: Int = 1 << 20, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(session(bytes, chunk: bytes.count + 1, maxMessage: maxMessage), expected, "whole", file: file, line: line)
        XCTAssertEqual(session(bytes, chunk: 1, maxMessage: maxMessage), expected, "byte by byte", file: file, line: line)
        XCTAssertEqual(session(bytes, chunk: 3, maxMessage: maxMessage), expected, "by threes", file: file, line: line)
    }


    /// The code of the close frame the session sent, from its events.
    static func closeCode(_ events: [String]) -> UInt16? {
        guard let s = events.first(where: { $0.hasPrefix("send 88") }) else { return nil }
        let bytes = s.split(separator: " ").dropFirst().compactMap { UInt8($0, radix: 16) }
        guard bytes.count >= 4 else { return nil }
        return UInt16(bytes[2]) << 8 | UInt16(bytes[3])
    }

    func testMessagesFragmentsAndInterleavedControlFrames() {
        Self.check(clientFrame(1, Array("hello".utf8)), ["text hello"])
        Self.check(clientFrame(2, Array(repeating: 0x41, count: 300)), ["binary " + String(repeating: "A", count: 300)])
        // Fragmented with a ping in the middle: the pong goes out before the message completes.
        let frames = clientFrame(1, Array("hel".utf8), fin: false) + clientFrame(9, [1, 2]) + clientFrame(0, Array("lo".utf8), fin: false) + clientFrame(0, [], fin: true)
        Self.check(frames, ["send 8a 2 1 2", "ping 2", "text hello"])
        // A valid UTF-8 character split across fragments.
        Self.check(clientFrame(1, [0xE2, 0x82], fin: false) + clientFrame(0, [0xAC]), ["text €"])
        Self.check(clientFrame(10, [9]), ["pong 1"])
    }

    func testProtocolViolationsCloseWithTheirCodes() {
        let cases: [([UInt8], UInt16)] = [
            (clientFrame(1, Array("x".utf8), mask: nil), 1002),               // unmasked client frame
            (clientFrame(1, [0x41], rsv: 1), 1002),                           // RSV bit
            (clientFrame(3, []), 1002),                                       // reserved opcode
            (clientFrame(11, []), 1002),
            (clientFrame(9, [], fin: false), 1002),                           // fragmented ping
            (clientFrame(9, Array(repeating: 0, count: 126)), 1002),         // ping too long
            (clientFrame(0, Array("x".utf8)), 1002),                          // nothing to continue
            (clientFrame(1, Array("a".utf8), fin: false) + clientFrame(1, Array("b".utf8)), 1002), // new message inside one
            (clientFrame(1, [0xCE, 0xBA, 0xFF]), 1007),                       // invalid UTF-8
            (clientFrame(1, [0xED, 0xA0, 0x80]), 1007),                       // a surrogate
            (clientFrame(1, [0xE2, 0x82]), 1007),                             // cut at FIN
            (clientFrame(8, [0x03]), 1002),                                   // 1-byte close
            (clientFrame(8, [0x03, 0xED]), 1002),                             // close code 1005 may not be sent
            (clientFrame(8, [0x03, 0xE8, 0xFF]), 1007),                       // bad UTF-8 reason
            ([0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0], 1002),                  // a 2^63 length
        ]
        for (bytes, code) in cases {
            let events = Self.session(bytes, chunk: 1)
            XCTAssertEqual(Self.closeCode(events), code, "\(bytes.prefix(12)): \(events)")
            XCTAssertTrue(events.last?.hasPrefix("closed \(code) clean=false") ?? false, "\(events)")
            XCTAssertFalse(events.contains { $0.hasPrefix("text") || $0.hasPrefix("binary") }, "no message after a violation: \(events)")
        }
        // Too big: refused at the frame header, before its payload arrives.
        let big = Array(clientFrame(2, Array(repeating: 7, count: 2000)).prefix(8))
        let events = Self.session(big, chunk: 1, maxMessage: 1000)
        XCTAssertEqual(Self.closeCode(events), 1009)
        // Invalid UTF-8 is found at its byte, inside an unfinished frame (fail fast).
        let partial = Array(clientFrame(1, [0x41, 0xFF] + Array(repeating: 0x41, count: 100)).prefix(9))
        XCTAssertEqual(Self.closeCode(Self.session(partial, chunk: 1)), 1007)
    }

    func testCloseHandshake() {
        // A close with a code is echoed; an empty one is answered 1000; later frames are ignored.
        let withCode = Self.session(clientFrame(8, [0x03, 0xE8] + Array("bye".utf8)) + clientFrame(1, Array("late".utf8)), chunk: 1)
        XCTAssertEqual(Self.closeCode(withCode), 1000)
        XCTAssertEqual(withCode.last, "closed 1000 clean=true")
        let empty = Self.session(clientFrame(8, []), chunk: 1)
        XCTAssertEqual(Self.closeCode(empty), 1000)
        let code4000 = Self.session(clientFrame(8, [0x0F, 0xA0]), chunk: 1)
        XCTAssertEqual(Self.closeCode(code4000), 4000)
    }
}
