import Foundation
import XCTest
@testable import GunnIO
@testable import GunnWire
import GunnCore

final class ReconnectingLinkTests: XCTestCase {
    func testBreakerOpensWhileThePeerIsDownAndTheLinkRecoversWhenItReturns() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-link-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("down.sock").path
        var breaker = CircuitBreakerConfig()
        breaker.consecutiveFailuresThreshold = 3
        breaker.openBaseSeconds = 0.2
        breaker.openJitter = 0
        breaker.halfOpenProbes = 1
        let link = ReconnectingLink(path: path, loop: FramedConnectionTests.loop, hello: hello("link"), breaker: breaker,
                                    backoff: Backoff(baseSeconds: 0.01, capSeconds: 0.05))
        // Nobody listens: three refused connects open the breaker; then calls fail fast.
        for _ in 0..<3 {
            do { _ = try await link.connection(); XCTFail("connected to nothing") } catch let e as ConnectionError { XCTAssertEqual(e.code, .adapterUnavailable) }
        }
        XCTAssertEqual(link.breakerState, .open)
        do { try await link.send(.ping(Nonce(1))); XCTFail() } catch let e as ConnectionError {
            XCTAssertEqual(e.code, .adapterUnavailable)
            XCTAssertTrue(e.message.contains("retry after"), e.message)
        }
        // The peer comes up: after the open duration a probe connects and the breaker closes.
        let server = try await UnixSocketServer(path: path, loop: FramedConnectionTests.loop) { _ in .success(Welcome()) } onConnection: { c in
            Task { while let f = await c.receive() { if let b = f.body { try? await c.send(b, id: f.id) } } }
        }
        let conn = try await link.connectWithRetry(deadlineSeconds: 10)
        XCTAssertEqual(link.breakerState, .closed)
        XCTAssertEqual(link.transitions.map(\.to), [.open, .halfOpen, .closed])
        try await conn.send(.emit(JSONPayload([1])), id: 4)
        let echoed = await conn.receive()
        XCTAssertEqual(echoed?.id, 4)
        conn.close()
        await server.stop()
    }

    func testMinorVersionMismatchIsAcceptedWithTheCapabilityIntersection() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-minor-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var serverOptions = ConnectionOptions()
        serverOptions.capabilities = ["deltas", "tokens", "tracing"]
        let server = try await UnixSocketServer(path: dir.appendingPathComponent("m.sock").path, loop: FramedConnectionTests.loop, options: serverOptions) { _ in
            .success(Welcome())
        } onConnection: { _ in }
        var h = hello("newer")
        h.protocolMinor = 7
        h.capabilities = ["tokens", "deltas", "compression"]
        let conn = try await FramedConnection.connect(path: server.path, loop: FramedConnectionTests.loop, hello: h)
        XCTAssertEqual(conn.welcome?.protocolMinor, ProtocolVersion.minor)
        XCTAssertEqual(conn.welcome?.capabilities, ["deltas", "tokens"])
        let openBefore = await server.openConnections()
        XCTAssertEqual(openBefore, 1)
        conn.close()
        // The server forgets a connection once it is closed.
        var open = 1
        for _ in 0..<200 where open > 0 {
            try await Task.sleep(nanoseconds: 10_000_000)
            open = await server.openConnections()
        }
        XCTAssertEqual(open, 0)
        await server.stop()
    }
}

final class BatchedSendTests: XCTestCase {
    func testBatchesArriveWholeAndInOrderAcrossCreditRefills() async throws {
        let peer = try PeerProcess(mode: "echo")
        defer { peer.stop() }
        var options = ConnectionOptions()
        options.maxOutboundFrames = 100 // smaller than the batch: the batch waits for room part by part
        let conn = try await FramedConnection.connect(path: peer.path, loop: FramedConnectionTests.loop, hello: hello("batch"), options: options)
        let bodies: [Frame.Body] = (0..<1000).map { .emit(JSONPayload(Array("\($0)".utf8))) }
        async let sent: Void = conn.send(contentsOf: bodies)
        var got: [Frame] = []
        while got.count < 1000 {
            let batch = await conn.receive(upTo: 300)
            XCTAssertFalse(batch.isEmpty)
            got += batch
        }
        try await sent
        XCTAssertEqual(got.map(\.body), bodies)
        conn.close()
    }
}
