import Foundation
import Glibc
import Synchronization
import XCTest
import GunnCore
@testable import GunnLLM

/// GunnLLM's HTTP streaming against a local server that speaks the real wire formats
/// (Tests/Interop/llm_stream_server.py, Debian's python3).
final class HTTPStreamTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    var server: Process!
    var port: UInt16 = 0
    var serverOut: FileHandle!

    override func setUpWithError() throws {
        (server, serverOut, port) = try Self.startStreamServer()
    }

    /// Tests/Interop/llm_stream_server.py with `arguments`: the process, its stdout, its port.
    static func startStreamServer(_ arguments: [String] = []) throws -> (Process, FileHandle, UInt16) {
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        server.arguments = [root.appendingPathComponent("Tests/Interop/llm_stream_server.py").path] + arguments
        let out = Pipe()
        server.standardOutput = out
        server.standardError = FileHandle.nullDevice
        try server.run()
        let line = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
        let port = try XCTUnwrap(UInt16(line.split(separator: " ").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""), "server said: \(line)")
        return (server, out.fileHandleForReading, port)
    }

    override func tearDownWithError() throws {
        server.terminate()
        server.waitUntilExit()
    }

    struct Outcome { var chunks: [StreamChunk]; var error: GunnError?; var afterCancel = 0 }

    /// Streams a request through the decoder, as a backend does; `cancelAfter` tokens → cancel().
    func stream(_ path: String, model: String, format: TokenStreamDecoder.Format, stall: Double = 10, cancelAfter: Int? = nil,
                port: UInt16? = nil) -> Outcome {
        var req = HTTPStream.Request(host: "127.0.0.1", port: port ?? self.port, path: path,
                                     body: CanonicalJSON.encode(["model": .string(model), "stream": true, "messages": [["role": "user", "content": "hi"]]]))
        req.stallSeconds = stall
        let http = HTTPStream()
        let state = Mutex((decoder: TokenStreamDecoder(format: format), chunks: [StreamChunk](), error: GunnError?.none, cancelled: false, afterCancel: 0))
        let done = DispatchSemaphore(value: 0)
        http.start(req, onBody: { bytes in
            let tokens = state.withLock { s -> Int in
                if s.cancelled { s.afterCancel += 1 }
                guard s.error == nil else { return 0 }
                do { s.chunks += try s.decoder.feed(bytes) } catch { s.error = error as? GunnError ?? GunnError(.internalError, "\(error)") }
                return s.chunks.count
            }
            if let n = cancelAfter, tokens >= n, !state.withLock({ $0.cancelled }) {
                http.cancel()
                state.withLock { $0.cancelled = true }
            }
        }, onEnd: { error in
            state.withLock { s in
                if s.error == nil {
                    if let error { s.error = error } else if cancelAfter == nil {
                        do { s.chunks += try s.decoder.finish() } catch { s.error = error as? GunnError ?? GunnError(.internalError, "\(error)") }
                    }
                }
            }
            done.signal()
        })
        XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
        return state.withLock { Outcome(chunks: $0.chunks, error: $0.error, afterCancel: $0.afterCancel) }
    }

    func testAStreamedChatCompletion() {
        let o = stream("/v1/chat/completions", model: "ok", format: .openAISSE)
        XCTAssertNil(o.error)
        XCTAssertEqual(o.chunks, [.token("Hello"), .token(","), .token(" wörld"), .done(reason: "stop")])
    }

    func testAnOllamaStream() {
        let o = stream("/api/generate", model: "ok", format: .ollamaNDJSON)
        XCTAssertNil(o.error)
        XCTAssertEqual(o.chunks, [.token("Hel"), .token("lo"), .done(reason: "stop")])
        let bad = stream("/api/generate", model: "error", format: .ollamaNDJSON)
        XCTAssertEqual(bad.error?.code, .llmServiceError)
        XCTAssertTrue(bad.error?.message.contains("out of memory") == true, "\(String(describing: bad.error))")
    }

    func testUpstreamFailuresAreLLMServiceErrorsWithTheReason() {
        let cases: [(String, String)] = [("500", "HTTP 500"), ("cut", "closed"), ("garbage", "not JSON"), ("stall", "stalled")]
        for (model, reason) in cases {
            let o = stream("/v1/chat/completions", model: model, format: .openAISSE, stall: 0.5)
            XCTAssertEqual(o.error?.code, .llmServiceError, model)
            XCTAssertTrue(o.error?.message.contains(reason) == true, "\(model): \(String(describing: o.error))")
        }
        // 500 carries the server's message.
        XCTAssertTrue(stream("/v1/chat/completions", model: "500", format: .openAISSE).error?.message.contains("model exploded") == true)
        // Nothing listening.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: 0, sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        let closedPort = UInt16(bigEndian: addr.sin_port)
        close(fd)
        let refused = stream("/v1/chat/completions", model: "ok", format: .openAISSE, port: closedPort)
        XCTAssertEqual(refused.error?.code, .llmServiceError)
        XCTAssertTrue(refused.error?.message.contains("cannot connect") == true, "\(String(describing: refused.error))")
    }

    /// cancel() closes the connection: no token after it, and the server sees the stream closed.
    func testCancelClosesTheStreamAndTheServerStops() throws {
        let o = stream("/v1/chat/completions", model: "slow", format: .openAISSE, cancelAfter: 5)
        XCTAssertNil(o.error, "a cancellation is not an error")
        XCTAssertEqual(o.afterCancel, 0, "no bytes handed over after cancel()")
        XCTAssertGreaterThanOrEqual(o.chunks.count, 5)
        XCTAssertLessThan(o.chunks.count, 500)
        // The server notices the closed connection at its next write.
        var said = ""
        let until = Date().addingTimeInterval(10)
        while !said.contains("closed after") && Date() < until { said += String(decoding: serverOut.availableData, as: UTF8.self) }
        XCTAssertTrue(said.contains("closed after"), said)
        // "closed after N": the server's own count of the tokens it wrote before it saw the close.
        let closed = try XCTUnwrap(said.components(separatedBy: "\n").first { $0.hasPrefix("closed after ") }, said)
        let n = try XCTUnwrap(Int(closed.dropFirst("closed after ".count).prefix { $0.isASCIIDigit }), closed)
        XCTAssertLessThan(n, 500, "the server stopped generating")
        XCTAssertGreaterThanOrEqual(n, o.chunks.count, "it wrote at least the tokens we read")
    }

    // MARK: - A black-holed endpoint

    /// A loopback listener that never accepts, with backlog 0 and its accept queue filled: the
    /// kernel drops every further SYN, so a connect to it hangs (for minutes of retransmissions)
    /// like one to a black-holed host.
    final class BlackHole {
        let listener: Int32
        var fillers: [Int32] = []
        let port: UInt16

        init() throws {
            let l = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: 0, sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")),
                                   sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(l, $0, len) } }
            _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(l, $0, &len) } }
            listener = l
            port = UInt16(bigEndian: addr.sin_port)
            XCTAssertEqual(listen(l, 0), 0)
            // Fill the accept queue until a connect stays pending: that one proves the trick works here.
            for _ in 0..<8 {
                let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
                fillers.append(s)
                let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, len) } }
                if r == 0 { continue }
                XCTAssertEqual(errno, EINPROGRESS)
                var p = pollfd(fd: s, events: Int16(POLLOUT), revents: 0)
                if poll(&p, 1, 500) == 0 { return } // still connecting after half a second: SYNs are dropped
            }
            // Not a skip: a test that cannot build its black hole proves nothing, so it fails.
            throw NoBlackHole()
        }

        deinit {
            for f in fillers { close(f) }
            close(listener)
        }
    }

    /// A connect that gets no answer ends at the connect timeout, as an upstream failure.
    func testAConnectToABlackHoleEndsAtTheConnectTimeout() throws {
        let hole = try BlackHole()
        let http = HTTPStream()
        var req = HTTPStream.Request(host: "127.0.0.1", port: hole.port, path: "/v1/chat/completions", body: Array("{}".utf8))
        req.connectTimeoutSeconds = 0.3
        let end = Mutex<(ended: Bool, error: GunnError?, bytes: Int)>((false, nil, 0))
        let done = DispatchSemaphore(value: 0)
        http.start(req, onBody: { b in end.withLock { $0.bytes += b.count } },
                   onEnd: { e in end.withLock { $0.ended = true; $0.error = e }; done.signal() })
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success, "the connect timeout ended the attempt")
        let r = end.withLock { $0 }
        XCTAssertEqual(r.error?.code, .llmServiceError)
        XCTAssertTrue(r.error?.message.contains("no answer within the connect timeout of 300 ms") == true, "\(String(describing: r.error))")
        XCTAssertEqual(r.bytes, 0)
        XCTAssertFalse(http.isCancelled)
    }

    /// cancel() while the connect is still waiting ends it at once and is a cancellation, not an
    /// upstream failure (the timeout here is far beyond the test's wait).
    func testCancelDuringConnectEndsItAtOnceAsACancellation() throws {
        let hole = try BlackHole()
        let http = HTTPStream()
        var req = HTTPStream.Request(host: "127.0.0.1", port: hole.port, path: "/v1/chat/completions", body: Array("{}".utf8))
        req.connectTimeoutSeconds = 600
        let end = Mutex<(ended: Bool, error: GunnError?, bytes: Int)>((false, nil, 0))
        let done = DispatchSemaphore(value: 0)
        http.start(req, onBody: { b in end.withLock { $0.bytes += b.count } },
                   onEnd: { e in end.withLock { $0.ended = true; $0.error = e }; done.signal() })
        XCTAssertEqual(done.wait(timeout: .now() + 0.3), .timedOut, "still connecting: the black hole holds it")
        http.cancel()
        XCTAssertEqual(done.wait(timeout: .now() + 30), .success, "cancel ended the connect (the kernel alone would take minutes)")
        let r = end.withLock { $0 }
        XCTAssertNil(r.error, "a cancellation is not an upstream failure")
        XCTAssertEqual(r.bytes, 0)
        XCTAssertTrue(http.isCancelled)
    }

    /// The same through the HTTP backend behind its breaker (a Cancel from the orchestrator during
    /// the connect): the stream ends without an error, and the breaker — which one failure would
    /// open — records no failure (it records before the backend's end is reported).
    func testABackendCancelledWhileConnectingIsNoBreakerFailure() throws {
        let hole = try BlackHole()
        var settings = AdapterConfig.Breaker()
        settings.consecutiveFailures = 1
        let breakers = EndpointBreakers(settings)
        var backend = HTTPBackend(host: "127.0.0.1", port: hole.port, format: .openAISSE)
        backend.connectTimeoutSeconds = 600
        let guarded = GuardedBackend(backend, breakers: breakers)
        let end = Mutex<(ended: Bool, error: GunnError?)>((false, nil))
        let done = DispatchSemaphore(value: 0)
        let stream = guarded.stream(GenerationParams(messages: [("user", "hi")]), onToken: { _ in }, onEnd: { e in
            end.withLock { $0 = (true, e) }
            done.signal()
        })
        XCTAssertEqual(done.wait(timeout: .now() + 0.3), .timedOut, "still connecting")
        stream.cancel()
        XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
        XCTAssertNil(end.withLock { $0.error })
        XCTAssertEqual(breakers.state(of: guarded.endpoint), .closed)
    }
}

/// Connects to a full-backlog listener were accepted: this machine gave no black hole to test against.
struct NoBlackHole: Error, CustomStringConvertible {
    var description: String { "cannot make a black hole on this machine: connects to a full backlog completed" }
}
