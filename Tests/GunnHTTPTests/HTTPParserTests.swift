import XCTest
import GunnCore
@testable import GunnHTTP

/// The request parser on vectors written for gunn (in the spirit of llhttp's request tests, not
/// copied from them): each is parsed whole, cut in two at every offset, and fed one byte at a time,
/// and every feeding must give the same requests and the same error at the same place.
final class HTTPParserTests: XCTestCase {
    /// What a parse produced: each request as "METHOD target vN body=<bytes> trailers=<n> keep=<b>",
    /// then the error (status and code) if one ended it.
    static func run(_ input: [UInt8], cuts: [Int], limits: HTTPLimits = HTTPLimits()) -> [String] {
        var p = HTTPRequestParser(limits: limits)
        var out: [String] = []
        var head: HTTPRequestHead?
        var body: [UInt8] = []
        var pieces: [ArraySlice<UInt8>] = []
        var start = 0
        for c in cuts where c > start && c < input.count { pieces.append(input[start..<c]); start = c }
        pieces.append(input[start...])
        for piece in pieces {
            var rest = Array(piece)
            while !rest.isEmpty {
                do {
                    let n = try rest.withUnsafeBytes { (b) throws(HTTPParseError) -> Int in
                        try p.parse(b) { e in
                            switch e {
                            case .head(let h): head = h; body = []
                            case .body(let b): body += b
                            case .end(let t):
                                let h = head!
                                out.append("\(h.method) \(h.target) path=\(h.path) v\(h.minorVersion) body=\(String(decoding: body, as: UTF8.self)) trailers=\(t.count) keep=\(h.keepAlive) continue=\(h.expectContinue) upgrade=\(h.upgrade ?? "-")")
                            }
                        }
                    }
                    rest.removeFirst(n)
                } catch {
                    let e = error as! HTTPParseError
                    out.append("error \(e.status) \(e.code.name)")
                    return out
                }
            }
        }
        return out
    }

    static func check(_ raw: String, _ expected: [String], limits: HTTPLimits = HTTPLimits(), file: StaticString = #filePath, line: UInt = #line) {
        let input = Array(raw.utf8)
        let whole = run(input, cuts: [], limits: limits)
        XCTAssertEqual(whole, expected, "whole input", file: file, line: line)
        for cut in 1..<max(1, input.count) {
            let two = run(input, cuts: [cut], limits: limits)
            if two != whole { XCTFail("cut at \(cut) gave \(two), whole gave \(whole)", file: file, line: line); return }
        }
        let bytes = run(input, cuts: Array(1..<max(1, input.count)), limits: limits)
        XCTAssertEqual(bytes, whole, "byte by byte", file: file, line: line)
    }

    func testWellFormedRequests() {
        Self.check("GET / HTTP/1.1\r\nHost: a\r\n\r\n", ["GET / path=/ v1 body= trailers=0 keep=true continue=false upgrade=-"])
        Self.check("GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: a\r\n\r\n", ["GET /a/b?x=1&y=%20 path=/a/b v1 body= trailers=0 keep=true continue=false upgrade=-"])
        Self.check("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", ["POST /p path=/p v1 body=hello trailers=0 keep=true continue=false upgrade=-"])
        Self.check("GET / HTTP/1.0\r\n\r\n", ["GET / path=/ v0 body= trailers=0 keep=false continue=false upgrade=-"])
        Self.check("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", ["GET / path=/ v0 body= trailers=0 keep=true continue=false upgrade=-"])
        Self.check("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n", ["GET / path=/ v1 body= trailers=0 keep=false continue=false upgrade=-"])
        Self.check("GET http://example.com/x/y?q HTTP/1.1\r\nHost: example.com\r\n\r\n", ["GET http://example.com/x/y?q path=/x/y v1 body= trailers=0 keep=true continue=false upgrade=-"])
        Self.check("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", ["OPTIONS * path=* v1 body= trailers=0 keep=true continue=false upgrade=-"])
        // HTTP/1.2 is answered as 1.1 (RFC 9110 §2.5: same major, higher minor).
        Self.check("GET / HTTP/1.2\r\nHost: a\r\n\r\n", ["GET / path=/ v1 body= trailers=0 keep=true continue=false upgrade=-"])
        // Empty lines before the request line are skipped (RFC 9112 §2.2).
        Self.check("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", ["GET / path=/ v1 body= trailers=0 keep=true continue=false upgrade=-"])
        // Header values: surrounding whitespace dropped, inner kept, empty allowed, obs-text allowed.
        Self.check("GET / HTTP/1.1\r\nHost: a\r\nX-A: \t spaced  value \t\r\nX-Empty:\r\n\r\n", ["GET / path=/ v1 body= trailers=0 keep=true continue=false upgrade=-"])
        Self.check("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n\r\n", ["GET /ws path=/ws v1 body= trailers=0 keep=true continue=false upgrade=websocket"])
        Self.check("PUT /u HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\nok", ["PUT /u path=/u v1 body=ok trailers=0 keep=true continue=true upgrade=-"])
    }

    func testChunkedBodiesWithExtensionsAndTrailers() {
        Self.check("POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;name=value;x\r\n world\r\n0\r\n\r\n",
                   ["POST /c path=/c v1 body=hello world trailers=0 keep=true continue=false upgrade=-"])
        Self.check("POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\nA\r\n0123456789\r\n0\r\nX-Sum: 1\r\nX-Other: 2\r\n\r\n",
                   ["POST /c path=/c v1 body=0123456789 trailers=2 keep=true continue=false upgrade=-"])
        Self.check("POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", ["POST /c path=/c v1 body= trailers=0 keep=true continue=false upgrade=-"])
    }

    func testPipelinedRequestsComeOutInOrder() {
        let one = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
        let two = "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
        let three = "POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n"
        Self.check(one + two + three + one, [
            "GET /1 path=/1 v1 body= trailers=0 keep=true continue=false upgrade=-",
            "POST /2 path=/2 v1 body=abc trailers=0 keep=true continue=false upgrade=-",
            "POST /3 path=/3 v1 body=z trailers=0 keep=true continue=false upgrade=-",
            "GET /1 path=/1 v1 body= trailers=0 keep=true continue=false upgrade=-",
        ])
        // A good request and then a bad one: the first is delivered, then the error.
        Self.check(one + "GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n", ["GET /1 path=/1 v1 body= trailers=0 keep=true continue=false upgrade=-", "error 400 MALFORMED_HTTP"])
    }

    func testSmugglingPatternsAreRefused() {
        let e400 = ["error 400 MALFORMED_HTTP"]
        Self.check("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", e400)
        Self.check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", e400)
        Self.check("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd", e400)
        Self.check("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 4\r\n\r\nabcd", e400)
        Self.check("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\nabcd", e400)
        Self.check("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x4\r\n\r\nabcd", e400)
        Self.check("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", e400)
        Self.check("POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 4\r\n\r\nabcd", e400)
        Self.check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", e400)
        Self.check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", e400)
        Self.check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", e400)
        Self.check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", ["error 501 NOT_IMPLEMENTED"])
        Self.check("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", e400)
        // Folded header lines (obs-fold) and leading whitespace.
        Self.check("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", e400)
        Self.check("GET / HTTP/1.1\r\n Host: a\r\n\r\n", e400)
        // Bare LF and bare CR.
        Self.check("GET / HTTP/1.1\nHost: a\n\n", e400)
        Self.check("GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", e400)
        // Chunk syntax.
        Self.check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX0\r\n\r\n", e400)
        Self.check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n", e400)
        Self.check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", e400)
        Self.check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", e400)
        Self.check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", e400)
    }

    func testSyntaxErrorsAndVersions() {
        let e400 = ["error 400 MALFORMED_HTTP"]
        Self.check("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", e400)
        Self.check("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", e400)
        Self.check("GET /\r\n\r\n", e400)
        Self.check("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", e400)
        Self.check("GET /\u{7F} HTTP/1.1\r\nHost: a\r\n\r\n", e400)
        Self.check("GET x HTTP/1.1\r\nHost: a\r\n\r\n", e400)
        Self.check("GET * HTTP/1.1\r\nHost: a\r\n\r\n", e400)
        Self.check("GET / HTTP/1.1\r\n\r\n", e400)                          // no Host
        Self.check("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", e400)     // two Hosts
        Self.check("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", e400)
        Self.check("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\u{01}c\r\n\r\n", e400)
        Self.check("GET / HTTP/1.1\r\nHost: a\r\nX-A\r\n\r\n", e400)
        Self.check("GET / HTTP/1.1\r\nHost: a\r\n: empty name\r\n\r\n", e400)
        Self.check("GET / http/1.1\r\nHost: a\r\n\r\n", e400)
        Self.check("GET / HTTP/11\r\nHost: a\r\n\r\n", e400)
        Self.check("GET / HTTP/2.0\r\nHost: a\r\n\r\n", ["error 505 HTTP_VERSION_NOT_SUPPORTED"])
        Self.check("GET / HTTP/0.9\r\nHost: a\r\n\r\n", ["error 505 HTTP_VERSION_NOT_SUPPORTED"])
        Self.check("GET / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n", ["error 417 EXPECTATION_FAILED"])
        Self.check("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", e400)
    }

    func testLimitsAnswerWithTheirOwnStatus() {
        var limits = HTTPLimits()
        limits.maxRequestLineBytes = 40
        limits.maxHeaderBytes = 60
        limits.maxHeaderCount = 3
        limits.maxBodyBytes = 10
        limits.maxChunkLineBytes = 12
        Self.check("GET /" + String(repeating: "a", count: 60) + " HTTP/1.1\r\nHost: a\r\n\r\n", ["error 414 URI_TOO_LONG"], limits: limits)
        Self.check("GET /" + String(repeating: "a", count: 60), ["error 414 URI_TOO_LONG"], limits: limits)
        Self.check("GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + String(repeating: "b", count: 70) + "\r\n\r\n", ["error 431 HEADERS_TOO_LARGE"], limits: limits)
        Self.check("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", ["error 431 HEADERS_TOO_LARGE"], limits: limits)
        Self.check("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", ["error 413 PAYLOAD_TOO_LARGE"], limits: limits)
        Self.check("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789", ["POST / path=/ v1 body=0123456789 trailers=0 keep=true continue=false upgrade=-"], limits: limits)
        Self.check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n5\r\nabcde\r\n0\r\n\r\n", ["error 413 PAYLOAD_TOO_LARGE"], limits: limits)
        Self.check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffff\r\n", ["error 413 PAYLOAD_TOO_LARGE"], limits: limits)
        Self.check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + String(repeating: "f", count: 30) + "\r\n", ["error 400 MALFORMED_HTTP"], limits: limits)
        Self.check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;aaaaaaaaaaaaaaaa\r\n", ["error 400 MALFORMED_HTTP"], limits: limits)
        // Trailers count against the header limits.
        Self.check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT1: a\r\nT2: b\r\nT3: c\r\n\r\n", ["error 431 HEADERS_TOO_LARGE"], limits: limits)
    }

    /// Random requests built from the vectors' pieces and random bytes: never a crash, and any cut
    /// gives the whole input's verdict.
    func testRandomInputsAreCutIndependent() {
        var rng = SplitMix64(seed: 18)
        let parts = ["GET ", "POST ", "/", "a", "?", " HTTP/1.1", " HTTP/1.0", "\r\n", "\n", "\r", "Host: a", "Content-Length: ", "3", "0",
                     "Transfer-Encoding: chunked", ": ", " ", "\t", "abc", "5", ";x=y", "Connection: close", "Expect: 100-continue", "\u{0}", "é"]
        for _ in 0..<3000 {
            var s: [UInt8] = []
            for _ in 0..<Int(rng.next() % 24) {
                if rng.next() % 8 == 0 { s.append(UInt8(truncatingIfNeeded: rng.next())) } else { s += Array(parts[Int(rng.next() % UInt64(parts.count))].utf8) }
            }
            let whole = Self.run(s, cuts: [])
            let cuts = (0..<3).map { _ in Int(rng.next() % UInt64(max(1, s.count))) }.sorted()
            XCTAssertEqual(Self.run(s, cuts: cuts), whole, "input \(s)")
        }
    }
}
