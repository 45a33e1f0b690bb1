import Foundation
import Glibc
import XCTest
@testable import GunnIO
@testable import GunnWire
import GunnCore
import Synchronization

/// Real sockets, and for most tests a second process (`gunn-wire-peer`).
final class FramedConnectionTests: XCTestCase {
    static let loop = try! EventLoop(name: "test-io")

    func testTwoProcessesExchangeFramesInOrder() async throws {
        let peer = try PeerProcess()
        defer { peer.stop() }
        let conn = try await FramedConnection.connect(path: peer.path, loop: Self.loop, hello: hello("pair"))
        XCTAssertEqual(conn.welcome?.sessionID, "s-pair")
        XCTAssertEqual(conn.welcome?.protocolMajor, ProtocolVersion.major)
        for i in 1...500 {
            try await conn.send(.submitIntent(JSONPayload(Array("{\"n\":\(i)}".utf8))), id: UInt64(i))
        }
        for i in 1...500 {
            let received = await conn.receive()
            let f = try XCTUnwrap(received)
            XCTAssertEqual(f.id, UInt64(i))
            XCTAssertEqual(f.body, .submitIntent(JSONPayload(Array("{\"n\":\(i)}".utf8))))
        }
        conn.close()
        let afterClose = await conn.receive()
        XCTAssertNil(afterClose)
    }

    /// `stats`, `closeReason`, `welcome` and `peerCredentials` are read from a thread of their own
    /// while frames flow and the connection closes (the loop writes them): the values seen only
    /// grow, and the last ones are the real counts. (Run under `--sanitize=thread`, today's
    /// unguarded fields are a reported race.)
    func testSharedStateIsReadFromAnyThreadWhileFramesFlow() async throws {
        let peer = try PeerProcess()
        defer { peer.stop() }
        let conn = try await FramedConnection.connect(path: peer.path, loop: Self.loop, hello: hello("reader"))
        let stop = Atomic<Bool>(false)
        let seen = Mutex((reads: 0, backwards: 0, closed: false))
        let reader = Thread {
            var last = 0
            while !stop.load(ordering: .acquiring) {
                let s = conn.stats
                let closed = conn.closeReason != nil
                _ = conn.welcome?.sessionID
                _ = conn.peerCredentials
                seen.withLock { v in
                    v.reads += 1
                    if s.framesIn < last { v.backwards += 1 }
                    v.closed = v.closed || closed
                }
                last = s.framesIn
            }
        }
        reader.start()
        for i in 1...300 { try await conn.send(.submitIntent(JSONPayload(Array("{\"n\":\(i)}".utf8))), id: UInt64(i)) }
        var echoed = 0
        while echoed < 300, let f = await conn.receive() { if case .submitIntent? = f.body { echoed += 1 } }
        XCTAssertEqual(echoed, 300)
        XCTAssertGreaterThanOrEqual(conn.stats.framesIn, 300, "every echo counted, read off the loop")
        XCTAssertGreaterThanOrEqual(conn.stats.framesOut, 301, "the Hello and 300 intents")
        conn.close()
        let end = await conn.receive()
        XCTAssertNil(end)
        XCTAssertEqual(conn.closeReason?.code, .adapterUnavailable, "closed by us: the reason is set before receive() ends")
        while seen.withLock({ !$0.closed }) { usleep(1000) } // the reader sees the close too
        stop.store(true, ordering: .releasing)
        while !reader.isFinished { usleep(1000) }
        let v = seen.withLock { $0 }
        XCTAssertGreaterThan(v.reads, 0)
        XCTAssertEqual(v.backwards, 0, "a counter never went backwards")
    }

    /// Each hostile input gets its coded error, its connection is closed, and the server goes on
    /// serving a well-behaved client.
    func hostile(_ send: (RawClient) -> Void, expect code: ErrorCode, heartbeatMs: Int = 1000, file: StaticString = #filePath, line: UInt = #line) async throws -> [Frame] {
        let peer = try PeerProcess(heartbeatMs: heartbeatMs)
        defer { peer.stop() }
        let raw = try RawClient(path: peer.path)
        send(raw)
        let (frames, closed) = raw.readUntilClosed()
        raw.close()
        XCTAssertTrue(closed, "the server closed the bad connection", file: file, line: line)
        XCTAssertEqual(frames.last?.errorCode, code.code, "\(frames)", file: file, line: line)
        let good = try await FramedConnection.connect(path: peer.path, loop: Self.loop, hello: hello("after"))
        try await good.send(.ping(Nonce(1)))
        try await good.send(.emit(JSONPayload([1])), id: 9)
        let echo = await good.receive()
        XCTAssertEqual(echo?.id, 9, "the server still serves others", file: file, line: line)
        good.close()
        return frames
    }

    func testGarbageIsMalformedFrame() async throws {
        _ = try await hostile({ $0.write([0, 0, 0, 6, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]) }, expect: .malformedFrame)
    }

    func testZeroLengthIsMalformedFrame() async throws {
        _ = try await hostile({ $0.write([0, 0, 0, 0]) }, expect: .malformedFrame)
    }

    func testFourGigabyteLengthIsFrameTooLarge() async throws {
        _ = try await hostile({ $0.write([0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3]) }, expect: .frameTooLarge)
    }

    func testFrameBeforeHandshakeIsHandshakeRequired() async throws {
        _ = try await hostile({ $0.send(Frame(.ping(Nonce(1)))) }, expect: .handshakeRequired)
    }

    func testTruncatedFrameThenSilenceIsHandshakeTimeout() async throws {
        // Half a Hello and nothing more: the handshake deadline (2 s in the peer) closes it.
        let bytes = FrameCodec.encode(Frame(.hello(hello())))
        _ = try await hostile({ $0.write(Array(bytes.prefix(bytes.count / 2))) }, expect: .handshakeRequired)
    }

    func testWrongMajorVersionIsRefusedNamingBothVersions() async throws {
        let frames = try await hostile({ $0.send(Frame(.hello(hello(major: 9)))) }, expect: .versionMismatch)
        guard case .error(let e)? = frames.last?.body else { return XCTFail() }
        XCTAssertTrue(e.message.contains("1.0") && e.message.contains("9.0"), e.message)
    }

    func testSilencePastTheHeartbeatClosesTheConnection() async throws {
        let frames = try await hostile({ raw in
            raw.send(Frame(epoch: 1, .hello(hello("quiet"))))
            // Then say nothing at all: the server pings, then gives up after 3 intervals.
        }, expect: .adapterUnavailable, heartbeatMs: 100)
        XCTAssertTrue(frames.contains { if case .welcome? = $0.body { return true } else { return false } })
        XCTAssertTrue(frames.contains { if case .ping? = $0.body { return true } else { return false } }, "pinged while idle")
        guard case .error(let e)? = frames.last?.body else { return XCTFail() }
        XCTAssertTrue(e.message.contains("silent"), e.message)
    }

    func testUnknownBodyGetsUnknownMessageAndTheConnectionLives() async throws {
        let peer = try PeerProcess()
        defer { peer.stop() }
        let raw = try RawClient(path: peer.path)
        raw.send(Frame(epoch: 1, .hello(hello())))
        XCTAssertNotNil(raw.readFrame { if case .welcome? = $0.body { return true } else { return false } })
        raw.send(Frame(epoch: 1, .credit(Credit(frames: 100)))) // the client's receive window
        var w = ProtoWriter()
        w.uint64(1, 77)
        w.tag(700, .lengthDelimited); w.varint(0)
        raw.write([0, 0, 0, UInt8(w.bytes.count)] + w.bytes)
        let reply = raw.readFrame { $0.errorCode != nil }
        XCTAssertEqual(reply?.errorCode, ErrorCode.unknownMessage.code)
        XCTAssertEqual(reply?.id, 77)
        raw.send(Frame(id: 5, epoch: 1, .emit(JSONPayload([7]))))
        XCTAssertEqual(raw.readFrame { $0.id == 5 }?.id, 5, "still open")
        raw.close()
    }

    func testAConsumerThatStopsReadingDoesNotGrowTheSendersMemory() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-slow-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var serverOptions = ConnectionOptions()
        serverOptions.receiveWindow = 16
        let held = HeldConnections()
        let server = try await UnixSocketServer(path: dir.appendingPathComponent("s.sock").path, loop: Self.loop, options: serverOptions) { _ in
            .success(Welcome())
        } onConnection: { c in held.add(c) } // and never reads
        var options = ConnectionOptions()
        options.maxOutboundFrames = 64
        options.slowConsumer = .shed(waitMs: 20)
        let conn = try await FramedConnection.connect(path: server.path, loop: Self.loop, hello: hello(), options: options)
        var shed = 0
        let payload = JSONPayload([UInt8](repeating: 0x61, count: 1000))
        for i in 0..<400 {
            do { try await conn.send(.emit(payload), id: UInt64(i)) } catch let e as ConnectionError {
                XCTAssertEqual(e.code, .queueFull)
                shed += 1
            }
            let queued = await conn.outboundQueued()
            XCTAssertLessThanOrEqual(queued, 64, "bounded")
        }
        XCTAssertGreaterThan(shed, 300, "16 frames of credit + 64 queued; the rest are shed")
        let stats = await conn.currentStats()
        XCTAssertLessThanOrEqual(stats.maxOutboundQueued, 64)
        conn.close()
        await server.stop()
    }

    func testSocketFileIsPrivateAndOtherUidsAreRefused() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-perm-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var options = ConnectionOptions()
        options.allowedUIDs = [getuid() &+ 4242] // not us
        let path = dir.appendingPathComponent("p.sock").path
        let server = try await UnixSocketServer(path: path, loop: Self.loop, options: options) { _ in .success(Welcome()) } onConnection: { _ in }
        var st = stat()
        XCTAssertEqual(stat(path, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600)
        do {
            _ = try await FramedConnection.connect(path: path, loop: Self.loop, hello: hello())
            XCTFail("connected")
        } catch let e as ConnectionError {
            XCTAssertEqual(e.code, .unauthorized)
        }
        await server.stop()
    }

    func testFramesFromAnOlderEpochAreDropped() async throws {
        let peer = try PeerProcess()
        defer { peer.stop() }
        let raw = try RawClient(path: peer.path)
        raw.send(Frame(epoch: 5, .hello(hello())))
        XCTAssertNotNil(raw.readFrame { if case .welcome? = $0.body { return true } else { return false } })
        raw.send(Frame(epoch: 5, .credit(Credit(frames: 100))))
        raw.send(Frame(id: 1, epoch: 4, .emit(JSONPayload([1]))))   // a late frame of a previous incarnation
        raw.send(Frame(id: 2, epoch: 5, .emit(JSONPayload([2]))))
        let echoed = raw.readFrame { $0.id != 0 }
        XCTAssertEqual(echoed?.id, 2, "the epoch-4 frame was dropped")
        raw.close()
    }
}

/// Keeps server-side connections alive without reading them.
final class HeldConnections: Sendable {
    private let list = Mutex<[FramedConnection]>([])
    func add(_ c: FramedConnection) { list.withLock { $0.append(c) } }
}
