import Foundation
import Glibc
import XCTest
import GunnCore
import GunnIO
@testable import GunnHTTP

/// The server over real sockets: routing, keep-alive, pipelining, 100-continue, streaming, and
/// hostile clients (smuggling, oversize everything, slowloris, a client that never reads, half-open
/// TCP, the connection cap), each answered with its status and code while a well-behaved client is
/// served at the same time.
final class HTTPServerTests: XCTestCase {
    var server: HTTPServer!
    var port: UInt16 { server.port }

    func start(_ adjust: (inout HTTPServerConfiguration) -> Void = { _ in }) throws {
        var config = HTTPServerConfiguration()
        adjust(&config)
        server = try HTTPServer(configuration: config, router: makeTestRouter())
    }

    override func tearDown() async throws {
        await server?.stop()
        server = nil
    }

    func testRoutingStatusesAndHeadersOnOneKeepAliveConnection() throws {
        try start()
        let c = try RawClient(port: port)
        var pending: [UInt8] = []
        func ask(_ raw: String, head: Bool = false) -> (status: Int, headers: [String: String], body: [UInt8]) {
            try? c.send(raw)
            return c.readResponse(&pending, head: head) ?? (0, [:], [])
        }
        let hello = ask("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(hello.status, 200)
        XCTAssertEqual(String(decoding: hello.body, as: UTF8.self), "{\"ok\":true}")
        XCTAssertEqual(hello.headers["content-type"], "application/json")
        XCTAssertEqual(hello.headers["server"], "gunn")
        XCTAssertNotNil(hello.headers["date"].flatMap { $0.hasSuffix(" GMT") ? $0 : nil })
        let item = ask("GET /items/42?q=a%20b HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(String(decoding: item.body, as: UTF8.self), "{\"id\":42,\"q\":\"a b\"}")
        let badItem = ask("GET /items/abc HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(badItem.status, 400)
        XCTAssertEqual(errorCode(badItem.body), ErrorCode.invalidField.code)
        let missing = ask("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(missing.status, 404)
        XCTAssertEqual(errorCode(missing.body), ErrorCode.notFound.code)
        let wrongMethod = ask("DELETE /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(wrongMethod.status, 405)
        XCTAssertEqual(wrongMethod.headers["allow"], "GET, HEAD")
        XCTAssertEqual(errorCode(wrongMethod.body), ErrorCode.methodNotAllowed.code)
        let trace = ask("TRACE /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(trace.status, 405)
        let brew = ask("BREW /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(brew.status, 501)
        XCTAssertEqual(errorCode(brew.body), ErrorCode.notImplemented.code)
        let head = ask("HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n", head: true)
        XCTAssertEqual(head.status, 200)
        XCTAssertEqual(head.headers["content-length"], "11")
        let json = ask("PUT /json HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n{\"a\":[1]}")
        XCTAssertEqual(String(decoding: json.body, as: UTF8.self), "{\"echo\":{\"a\":[1]}}")
        let badJSON = ask("PUT /json HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n{\"a\":1,")
        XCTAssertEqual(badJSON.status, 400)
        XCTAssertEqual(errorCode(badJSON.body), ErrorCode.invalidJSON.code)
        // The connection is still open after all of that (keep-alive), and after the HEAD no body bytes leaked.
        XCTAssertEqual(ask("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").status, 200)
        // Connection: close is honoured: answered with Connection: close, then the server closes.
        let last = ask("GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        XCTAssertEqual(last.headers["connection"], "close")
        XCTAssertTrue(c.readToEnd().closed)
    }

    func testHTTP10ClosesAndExpect100ContinueWaitsForTheBody() throws {
        try start()
        let old = try RawClient(port: port)
        try old.send("GET /hello HTTP/1.0\r\n\r\n")
        var p: [UInt8] = []
        XCTAssertEqual(old.readResponse(&p)?.status, 200)
        XCTAssertTrue(old.readToEnd().closed, "HTTP/1.0 without keep-alive closes")

        let c = try RawClient(port: port)
        try c.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        var pending: [UInt8] = []
        XCTAssertEqual(c.readResponse(&pending)?.status, 100, "100 Continue before the body is sent")
        try c.send("hello")
        let r = c.readResponse(&pending)
        XCTAssertEqual(r?.status, 200)
        XCTAssertEqual(r.flatMap { try? JSONParser.parse($0.body) }?["bytes"]?.numberValue, 5)
        // A body over the limit is refused with 413 before it is sent (no 100).
        try c.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\nExpect: 100-continue\r\n\r\n")
        let big = c.readResponse(&pending)
        XCTAssertEqual(big?.status, 413)
        XCTAssertEqual(big.flatMap { errorCode($0.body) }, ErrorCode.payloadTooLarge.code)
    }

    func testTenThousandPipelinedRequestsAreAnsweredInOrder() throws {
        try start()
        let c = try RawClient(port: port, timeout: 60)
        let n = 10_000
        var all: [UInt8] = []
        for i in 0..<n { all += Array("GET /items/\(i) HTTP/1.1\r\nHost: x\r\n\r\n".utf8) }
        let box = SendBox(client: c, bytes: all)
        let sender = Thread { try? box.client.send(box.bytes) }
        sender.start()
        var pending: [UInt8] = []
        var inOrder = 0
        for i in 0..<n {
            guard let r = c.readResponse(&pending) else { break }
            if r.status == 200, (try? JSONParser.parse(r.body))?["id"]?.numberValue == Double(i) { inOrder += 1 } else { break }
            if i == n / 2 { assertServed(port) }
        }
        XCTAssertEqual(inOrder, n, "every pipelined request answered, in order")
        XCTAssertGreaterThanOrEqual(server.stats.requests, n)
    }

    func testHTTP10StreamsWithoutChunksAnd100ContinueKeepsItsPlaceInThePipeline() throws {
        try start()
        let old = try RawClient(port: port)
        try old.send("GET /stream/2 HTTP/1.0\r\n\r\n")
        let (bytes, closed) = old.readToEnd()
        let text = String(decoding: bytes, as: UTF8.self)
        XCTAssertFalse(text.lowercased().contains("transfer-encoding"), text)
        XCTAssertTrue(text.hasSuffix("\r\n\r\nchunk 0\nchunk 1\n"), text)
        XCTAssertTrue(closed, "an HTTP/1.0 stream ends with the connection")
        let keep = try RawClient(port: port)
        try keep.send("GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        var kp: [UInt8] = []
        XCTAssertEqual(keep.readResponse(&kp)?.headers["connection"], "keep-alive")

        // A slow answer owed first: the 100 comes after it, never before.
        let c = try RawClient(port: port)
        try c.send("GET /slow/200 HTTP/1.1\r\nHost: x\r\n\r\nPOST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        var pending: [UInt8] = []
        XCTAssertEqual(c.readResponse(&pending)?.body, Array("slow 200".utf8))
        XCTAssertEqual(c.readResponse(&pending)?.status, 100)
        try c.send("abc")
        XCTAssertEqual(c.readResponse(&pending).flatMap { try? JSONParser.parse($0.body) }?["bytes"]?.numberValue, 3)
        // A stray CRLF between requests is ignored.
        try c.send("\r\n")
        try c.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(c.readResponse(&pending)?.status, 200)
    }

    func testStreamedAndServerSentEventResponses() throws {
        try start()
        let c = try RawClient(port: port)
        var pending: [UInt8] = []
        try c.send("GET /stream/3 HTTP/1.1\r\nHost: x\r\n\r\nGET /events/2 HTTP/1.1\r\nHost: x\r\n\r\nHEAD /stream/2 HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        let s = c.readResponse(&pending)
        XCTAssertEqual(s?.headers["transfer-encoding"], "chunked")
        XCTAssertEqual(s.map { String(decoding: $0.body, as: UTF8.self) }, "chunk 0\nchunk 1\nchunk 2\n")
        let e = c.readResponse(&pending)
        XCTAssertEqual(e?.headers["content-type"], "text/event-stream")
        XCTAssertEqual(e.map { String(decoding: $0.body, as: UTF8.self) }, "event: tick\nid: 0\ndata: {\"i\":0}\n\nevent: tick\nid: 1\ndata: {\"i\":1}\n\n")
        let h = c.readResponse(&pending, head: true)
        XCTAssertEqual(h?.status, 200)
        XCTAssertEqual(c.readResponse(&pending)?.status, 200, "the HEAD of a stream sent no chunks")
    }

    func testSmugglingIsRefusedAndTheSmuggledRequestNeverRuns() throws {
        try start()
        for attack in [
            "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /items/666 HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\nGET /items/666 HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabcGET /items/666 HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\nGET /items/666 HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\u{0B}chunked\r\n\r\n0\r\n\r\nGET /items/666 HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            let c = try RawClient(port: port)
            try c.send(attack)
            assertServed(port)
            let (bytes, closed) = c.readToEnd()
            let text = String(decoding: bytes, as: UTF8.self)
            XCTAssertTrue(text.hasPrefix("HTTP/1.1 400 "), "\(attack.prefix(80)): \(text.prefix(200))")
            XCTAssertTrue(text.contains("\"code\":\(ErrorCode.malformedHTTP.code)"), text)
            XCTAssertFalse(text.contains("666"), "the smuggled request ran: \(text)")
            XCTAssertTrue(closed, "the connection closes after a framing error")
        }
    }

    func testOversizeEverythingIsAnsweredWithItsOwnStatus() throws {
        try start { c in
            c.limits.maxBodyBytes = 1000
        }
        let cases: [(String, Int, ErrorCode)] = [
            ("GET /" + String(repeating: "a", count: 9000) + " HTTP/1.1\r\nHost: x\r\n\r\n", 414, .uriTooLong),
            ("GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: " + String(repeating: "b", count: 17000) + "\r\n\r\n", 431, .headersTooLarge),
            ("GET /hello HTTP/1.1\r\nHost: x\r\n" + (0..<101).map { "X-\($0): v\r\n" }.joined() + "\r\n", 431, .headersTooLarge),
            ("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n", 413, .payloadTooLarge),
            ("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n" + String(repeating: "z", count: 1000) + "\r\n1\r\nz\r\n0\r\n\r\n", 413, .payloadTooLarge),
            ("GET /hello HTTP/2.0\r\nHost: x\r\n\r\n", 505, .httpVersionNotSupported),
            ("GET /hello HTTP/1.1\r\nHost: x\r\nExpect: tea\r\n\r\n", 417, .expectationFailed),
            ("GET /hello HTTP/1.1\r\n\r\n", 400, .malformedHTTP),
            ("\u{16}\u{03}\u{01}\u{02}\u{00}\u{01}\u{00}\u{01}\u{fc}\u{03}\u{03} garbage\r\n\r\n", 400, .malformedHTTP),
        ]
        for (raw, status, code) in cases {
            let c = try RawClient(port: port)
            try? c.send(raw)
            assertServed(port)
            var pending: [UInt8] = []
            let r = c.readResponse(&pending)
            XCTAssertEqual(r?.status, status, String(raw.prefix(60)))
            XCTAssertEqual(r.flatMap { errorCode($0.body) }, code.code, String(raw.prefix(60)))
            XCTAssertEqual(r?.headers["connection"], "close")
            XCTAssertTrue(c.readToEnd().closed)
        }
    }

    func testSlowlorisHeadersAndBodiesGet408() throws {
        try start { c in
            c.headerTimeout = 0.5
            c.bodyTimeout = 0.5
        }
        let heads = try RawClient(port: port)
        try heads.send("GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: a")
        let body = try RawClient(port: port)
        try body.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly some")
        assertServed(port)
        for (c, what) in [(heads, "header"), (body, "body")] {
            var pending: [UInt8] = []
            let r = c.readResponse(&pending)
            XCTAssertEqual(r?.status, 408, what)
            XCTAssertEqual(r.flatMap { errorCode($0.body) }, ErrorCode.requestTimeout.code, what)
            XCTAssertTrue(c.readToEnd().closed, what)
        }
        XCTAssertEqual(server.stats.timeouts, 2)
    }

    func testAClientThatNeverReadsIsDroppedAndOthersAreServed() throws {
        try start { c in
            c.maxOutboundBytes = 256 << 10
            c.writeTimeout = 0.5
        }
        let c = try RawClient(port: port)
        // Responses of 1 MiB each, requested again and again, never read.
        var requests: [UInt8] = []
        for _ in 0..<64 { requests += Array("GET /big/1048576 HTTP/1.1\r\nHost: x\r\n\r\n".utf8) }
        try c.send(requests)
        assertServed(port)
        waitUntil("the server to drop the client that does not read") { server.stats.timeouts >= 1 }
        // Reading paused at the outbound bound (1 MiB answers past a 256 KiB bound), long before
        // the pipelining bound of 32 requests; the kernel's socket buffers hold a few answers.
        XCTAssertLessThan(server.stats.requests, 32, "reading paused at the outbound bound")
        assertServed(port)
        waitUntil("the connection count to fall back") { server.connectionCount == 0 }
    }

    /// Forty pipelined requests to an answer that comes from another thread, then the FIN: parsing
    /// pauses at the pipelining bound with whole requests still buffered, and every one is answered.
    func testEveryRequestBeforeTheFINIsAnsweredEvenWhenParsingWasPaused() throws {
        try start()
        let c = try RawClient(port: port)
        var all = ""
        for _ in 0..<40 { all += "GET /slow/20 HTTP/1.1\r\nHost: x\r\n\r\n" }
        try c.send(all)
        Glibc.shutdown(c.fd, Int32(SHUT_WR))
        var pending: [UInt8] = []
        var answered = 0
        while let r = c.readResponse(&pending), r.status == 200 { answered += 1 }
        XCTAssertEqual(answered, 40)
        XCTAssertTrue(c.readToEnd().closed)
    }

    /// A peer that floods pings and never reads: reading stops at the outbound bound (the pongs
    /// queue no further) and the connection is closed by the write deadline.
    func testAPingFloodIsBoundedByTheOutboundQueue() throws {
        try start { c in
            c.maxOutboundBytes = 64 << 10
            c.writeTimeout = 0.5
        }
        let (c, _) = try openSocket()
        let ping = clientFrame(9, [UInt8](repeating: 1, count: 125))
        var all: [UInt8] = []
        for _ in 0..<400_000 { all += ping }
        let box = SendBox(client: c, bytes: all)
        let sender = Thread { try? box.client.send(box.bytes) }
        sender.start()
        waitUntil("the flooding socket to be closed") { server.stats.timeouts >= 1 }
        waitUntil("its connection to end") { server.connectionCount == 0 }
        // At most the bound plus the pongs of one 64 KiB read (each 131-byte ping, 127-byte pong).
        XCTAssertLessThanOrEqual(server.stats.outboundHighWater, (64 << 10) + (64 << 10), "the pongs queued past the outbound bound")
        assertServed(port)
    }

    func testHalfOpenAndVanishedClients() throws {
        try start { c in c.idleTimeout = 0.5 }
        // Half-closed while a handler is still working on the answer (from another thread): still answered.
        let early = try RawClient(port: port)
        try early.send("GET /slow/100 HTTP/1.1\r\nHost: x\r\n\r\n")
        Glibc.shutdown(early.fd, Int32(SHUT_WR))
        let (earlyBytes, earlyClosed) = early.readToEnd()
        XCTAssertTrue(String(decoding: earlyBytes, as: UTF8.self).hasSuffix("\r\n\r\nslow 100"), String(decoding: earlyBytes, as: UTF8.self))
        XCTAssertTrue(earlyClosed)
        // A client that sends its request and shuts down its side is still answered, then closed.
        let half = try RawClient(port: port)
        try half.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        Glibc.shutdown(half.fd, Int32(SHUT_WR))
        let (bytes, closed) = half.readToEnd()
        XCTAssertTrue(String(decoding: bytes, as: UTF8.self).hasPrefix("HTTP/1.1 200 OK"))
        XCTAssertTrue(closed)
        // A client that connects and says nothing is closed by the idle timeout.
        let silent = try RawClient(port: port)
        assertServed(port)
        waitUntil("the idle connection to be closed") { server.connectionCount == 0 }
        XCTAssertTrue(silent.readToEnd().closed)
    }

    func testPastTheConnectionCapTheNewestIsRefused() throws {
        try start { c in c.maxConnections = 4 }
        var held: [RawClient] = []
        for _ in 0..<4 { held.append(try RawClient(port: port)) }
        waitUntil("four connections") { server.connectionCount == 4 }
        let extra = try RawClient(port: port)
        var pending: [UInt8] = []
        let r = extra.readResponse(&pending)
        XCTAssertEqual(r?.status, 503)
        XCTAssertEqual(r.flatMap { errorCode($0.body) }, ErrorCode.tooManyConnections.code)
        XCTAssertEqual(r?.headers["retry-after"], "1")
        XCTAssertTrue(extra.readToEnd().closed)
        // The held connections still work.
        for c in held {
            try c.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            var p: [UInt8] = []
            XCTAssertEqual(c.readResponse(&p)?.status, 200)
        }
        XCTAssertEqual(server.stats.refusedOverCap, 1)
    }

    // MARK: WebSocket

    func openSocket(path: String = "/echo", extra: String = "") throws -> (RawClient, [UInt8]) {
        let c = try RawClient(port: port)
        try c.send(upgradeRequest.replacingOccurrences(of: "GET /echo", with: "GET \(path)").replacingOccurrences(of: "\r\n\r\n", with: "\r\n" + extra + "\r\n"))
        var pending: [UInt8] = []
        let r = c.readResponse(&pending)
        XCTAssertEqual(r?.status, 101)
        XCTAssertEqual(r?.headers["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        return (c, pending)
    }

    /// Reads server frames until a close; returns the messages' payloads and the close code.
    func readFrames(_ c: RawClient, _ pending: inout [UInt8]) -> (messages: [[UInt8]], close: UInt16?) {
        var messages: [[UInt8]] = []
        while true {
            guard c.read(atLeast: 2, into: &pending) else { return (messages, nil) }
            var len = Int(pending[1] & 0x7F), off = 2
            if len == 126 { guard c.read(atLeast: 4, into: &pending) else { return (messages, nil) }; len = Int(pending[2]) << 8 | Int(pending[3]); off = 4 }
            if len == 127 { guard c.read(atLeast: 10, into: &pending) else { return (messages, nil) }; len = pending[2..<10].reduce(0) { $0 << 8 | Int($1) }; off = 10 }
            guard c.read(atLeast: off + len, into: &pending) else { return (messages, nil) }
            let op = pending[0] & 0x0F
            let payload = Array(pending[off..<(off + len)])
            pending.removeFirst(off + len)
            if op == 8 { return (messages, payload.count >= 2 ? UInt16(payload[0]) << 8 | UInt16(payload[1]) : 1005) }
            if op == 1 || op == 2 { messages.append(payload) }
        }
    }

    func testWebSocketEchoSubprotocolAndOrigin() throws {
        try start()
        let (c, pendingStart) = try openSocket(extra: "Sec-WebSocket-Protocol: other, gunn.test.v1\r\n")
        var pending = pendingStart
        try c.send(clientFrame(1, Array("hello €".utf8)) + clientFrame(2, [1, 2, 3]) + clientFrame(8, [0x03, 0xE8]))
        let (messages, close) = readFrames(c, &pending)
        XCTAssertEqual(messages, [Array("hello €".utf8), [1, 2, 3]])
        XCTAssertEqual(close, 1000)
        XCTAssertTrue(c.readToEnd().closed, "TCP closes after the close handshake")

        // The Origin hook refuses with 403 FORBIDDEN; a bad key and a wrong version have their own answers.
        for (extra, path, status) in [("Origin: http://evil.example\r\n", "/origin-checked", 403), ("", "/origin-checked", 403)] {
            let r = try RawClient(port: port)
            try r.send(upgradeRequest.replacingOccurrences(of: "GET /echo", with: "GET \(path)").replacingOccurrences(of: "\r\n\r\n", with: "\r\n" + extra + "\r\n"))
            var p: [UInt8] = []
            let resp = r.readResponse(&p)
            XCTAssertEqual(resp?.status, status)
            XCTAssertEqual(resp.flatMap { errorCode($0.body) }, ErrorCode.forbidden.code)
        }
        let ok = try RawClient(port: port)
        try ok.send(upgradeRequest.replacingOccurrences(of: "GET /echo", with: "GET /origin-checked").replacingOccurrences(of: "\r\n\r\n", with: "\r\nOrigin: http://allowed.example\r\n\r\n"))
        var p0: [UInt8] = []
        XCTAssertEqual(ok.readResponse(&p0)?.status, 101)
        let badKey = try RawClient(port: port)
        try badKey.send(upgradeRequest.replacingOccurrences(of: "dGhlIHNhbXBsZSBub25jZQ==", with: "c2hvcnQ="))
        var p1: [UInt8] = []
        let bk = badKey.readResponse(&p1)
        XCTAssertEqual(bk?.status, 400)
        XCTAssertEqual(bk.flatMap { errorCode($0.body) }, ErrorCode.webSocketHandshakeFailed.code)
        // A plain GET (no upgrade) on a WebSocket path is a failed handshake, not a 405.
        let plain = try RawClient(port: port)
        try plain.send("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        var pp: [UInt8] = []
        let pr = plain.readResponse(&pp)
        XCTAssertEqual(pr?.status, 400)
        XCTAssertEqual(pr.flatMap { errorCode($0.body) }, ErrorCode.webSocketHandshakeFailed.code)
        let v8 = try RawClient(port: port)
        try v8.send(upgradeRequest.replacingOccurrences(of: "Version: 13", with: "Version: 8"))
        var p2: [UInt8] = []
        let vr = v8.readResponse(&p2)
        XCTAssertEqual(vr?.status, 426)
        XCTAssertEqual(vr?.headers["sec-websocket-version"], "13")
    }

    func testHostileWebSocketFramesCloseWithTheirCodesWhileAnotherSocketEchoes() throws {
        try start()
        let (good, goodPending) = try openSocket()
        var gp = goodPending
        let attacks: [([UInt8], UInt16, String)] = [
            (clientFrame(1, [0x41, 0xCE, 0xBA, 0xFF, 0x41]), 1007, "bad UTF-8 in a text frame"),
            (clientFrame(1, [0xE2, 0x82], fin: false) + clientFrame(0, [0x41]), 1007, "bad UTF-8 across fragments"),
            (clientFrame(1, Array("x".utf8), mask: nil), 1002, "an unmasked client frame"),
            ([0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4], 1002, "a 2^63 length"),
            ([0x82, 0xFF, 0, 0, 0, 0, 0x7F, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4], 1009, "a 2 GiB frame"),
        ]
        for (bytes, code, what) in attacks {
            let (c, start) = try openSocket()
            var pending = start
            try c.send(bytes)
            try good.send(clientFrame(1, Array(what.utf8)))
            var echo: [UInt8] = []
            XCTAssertTrue(good.read(atLeast: 2 + what.utf8.count, into: &echo), what)
            XCTAssertEqual(Array(echo.dropFirst(2)), Array(what.utf8), "the good socket's echo during \(what)")
            let (messages, close) = readFrames(c, &pending)
            XCTAssertEqual(messages, [], what)
            XCTAssertEqual(close, code, what)
            XCTAssertTrue(c.readToEnd().closed, what)
            _ = gp
        }
        gp = []
    }

    /// A WebSocket peer that sends and never reads: under `.disconnect` the server closes it with
    /// 1008 (the close waits behind the full queue, so the connection ends by the close deadline);
    /// under `.shed` the echoes past the bound are dropped and counted, and the socket lives on.
    func testWebSocketSlowConsumerPolicies() throws {
        for policy in [SlowConsumerPolicy.disconnect(waitMs: 0), .shed(waitMs: 0)] {
            try start { c in
                c.maxOutboundBytes = 64 << 10
                c.slowConsumer = policy
                c.closeTimeout = 0.5
            }
            let (c, _) = try openSocket()
            var rcv: Int32 = 4096
            setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &rcv, socklen_t(4))
            // 40 KiB messages against a 64 KiB bound: once the kernel's buffers are full, the second
            // echo queued always crosses the bound, whatever the reads' sizes.
            let message = clientFrame(2, [UInt8](repeating: 0x5A, count: 40 << 10))
            var all: [UInt8] = []
            for _ in 0..<1000 { all += message }
            let box = SendBox(client: c, bytes: all)
            let sender = Thread { try? box.client.send(box.bytes) }
            sender.start()
            assertServed(port)
            if case .disconnect = policy {
                waitUntil("the slow consumer to be disconnected") { server.stats.slowConsumerCloses >= 1 }
                waitUntil("its connection to close") { server.connectionCount == 0 }
            } else {
                waitUntil("echoes to be shed") { server.stats.shedMessages >= 1 }
                XCTAssertEqual(server.stats.slowConsumerCloses, 0)
                waitUntil("only the shedding socket to stay open") { server.connectionCount == 1 }
            }
            let s = server!
            let done = DispatchSemaphore(value: 0)
            Task { await s.stop(); done.signal() }
            done.wait()
            server = nil
        }
    }
}
