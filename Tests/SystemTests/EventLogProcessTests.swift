import Foundation
import Glibc
import XCTest
@testable import GunnIO
@testable import GunnWire
import GunnCore

/// The real `gunn-eventlog` process, a real SQLite file, real `kill -9`.
final class EventLogProcessTests: XCTestCase {
    static let loop = try! EventLoop(name: "system-io")
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    final class LogProcess {
        let process = Process()
        init(home: String) throws {
            process.executableURL = EventLogProcessTests.root.appendingPathComponent(".build/debug/gunn-eventlog")
            process.arguments = ["--home", home, "--world-id", "w1"]
            let out = Pipe()
            process.standardOutput = out
            process.standardError = FileHandle(forWritingAtPath: "/dev/null")
            try process.run()
            let line = out.fileHandleForReading.availableData
            guard String(decoding: line, as: UTF8.self).contains("ready") else { throw ConnectionError(.internalError, "gunn-eventlog did not start") }
        }
        func kill9() { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        func term() { kill(process.processIdentifier, SIGTERM); process.waitUntilExit() }
    }

    struct Chain {
        var prev: String?
        var seq: UInt64 = 0
        mutating func next() -> LogEntry {
            seq += 1
            let effect = Effect(uuid: "u\(seq)", kind: "Speak", payload: ["agent_id": "a", "text": .string("line \(seq)")], globalSeq: seq, simTime: Double(seq), sourceID: "a")
            var e = LogEntry()
            e.globalSeq = seq; e.simTime = Double(seq); e.wallTime = 1; e.effect = effect.canonicalBytes
            e.checksum = HashChain.checksum(previous: prev, canonicalEffect: e.effect)
            e.reqID = "r\(seq)"; e.agentID = "a"; e.worldID = "w1"
            prev = e.checksum
            return e
        }
    }

    var home: String!
    override func setUpWithError() throws {
        home = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-log-\(UUID().uuidString.prefix(8))").path
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: home) }

    func connect() async throws -> FramedConnection {
        try await FramedConnection.connect(path: home + "/run/eventlog.sock", loop: Self.loop,
                                           hello: Hello(protocolMajor: 1, protocolMinor: 0, role: "orchestrator", worldID: "w1", clientName: "test"))
    }

    func request(_ c: FramedConnection, _ body: Frame.Body, id: UInt64) async throws -> Frame? {
        try await c.send(body, id: id)
        while let f = await c.receive() { if f.id == id { return f } }
        return nil
    }

    func readAll(_ c: FramedConnection, id: UInt64) async throws -> [LogEntry] {
        try await c.send(.readRange(SeqRange(from: 1, to: 0, maxBatch: 100)), id: id)
        var out: [LogEntry] = []
        while let f = await c.receive() {
            guard f.id == id, case .entries(let e)? = f.body else { continue }
            out += e.entries
            if e.done { break }
        }
        return out
    }

    func testAcknowledgedEntriesSurviveTwentyKillNines() async throws {
        var sent: [UInt64: LogEntry] = [:]
        var lastAcked: UInt64 = 0
        var chain = Chain()
        var rng = SplitMix64(seed: 99)
        var nextID: UInt64 = 1
        for round in 0..<20 {
            let p = try LogProcess(home: home)
            let c = try await connect()
            // After the restart: every acknowledged entry is there, the chain verifies, no gap.
            nextID += 1
            guard case .headResult(let head)? = try await request(c, .head(Empty()), id: nextID)?.body else { return XCTFail("no head") }
            XCTAssertGreaterThanOrEqual(head.seq, lastAcked, "round \(round): an acknowledged entry was lost")
            nextID += 1
            let stored = try await readAll(c, id: nextID)
            XCTAssertEqual(stored.map(\.globalSeq), Array(1...max(1, head.seq)).filter { _ in head.seq > 0 }, "round \(round): gap")
            for e in stored { XCTAssertEqual(e, sent[e.globalSeq], "round \(round): entry \(e.globalSeq) differs from what was sent") }
            nextID += 1
            guard case .verifyResult(let v)? = try await request(c, .verify(SeqRange(from: 1, to: 0)), id: nextID)?.body else { return XCTFail("no verify") }
            XCTAssertTrue(v.ok, "round \(round): \(v)")
            // Resume from the head.
            chain.seq = head.seq
            chain.prev = head.checksum.isEmpty ? nil : head.checksum
            let delayMs = rng.next(in: 5...80)
            let pid = p.process.processIdentifier
            let killer = Task.detached {
                try? await Task.sleep(nanoseconds: UInt64(delayMs) * 1_000_000)
                kill(pid, SIGKILL)
            }
            appending: while true {
                let batch = (0..<rng.next(in: 1...20)).map { _ in chain.next() }
                for e in batch { sent[e.globalSeq] = e }
                nextID += 1
                let id = nextID
                do { try await c.send(.append(LogEntries(entries: batch)), id: id) } catch { break appending }
                var acked = false
                while let f = await c.receive() {
                    guard f.id == id else { continue }
                    if case .appendAck(let a)? = f.body { lastAcked = a.lastSeq; acked = true }
                    break
                }
                if !acked { break appending }
                XCTAssertEqual(lastAcked, batch.last!.globalSeq)
            }
            await killer.value
            p.process.waitUntilExit()
            c.close()
        }
        XCTAssertGreaterThan(lastAcked, 20, "the test appended something")
    }

    func testBadAppendsOverTheSocketGetTheirCodes() async throws {
        let p = try LogProcess(home: home)
        defer { p.term() }
        let c = try await connect()
        var chain = Chain()
        let good = [chain.next(), chain.next()]
        guard case .appendAck? = try await request(c, .append(LogEntries(entries: good)), id: 1)?.body else { return XCTFail() }
        func code(_ batch: [LogEntry], _ id: UInt64) async throws -> Int? {
            try await request(c, .append(LogEntries(entries: batch)), id: id)?.errorCode
        }
        var gap = chain
        _ = gap.next()
        let gapCode = try await code([gap.next()], 2)
        XCTAssertEqual(gapCode, ErrorCode.sequenceGap.code)
        var wrong = chain
        var w = wrong.next()
        w.checksum = String(repeating: "f", count: 64)
        let wrongCode = try await code([w], 3)
        XCTAssertEqual(wrongCode, ErrorCode.logIntegrityViolation.code)
        var changed = good[1]
        changed.effect = Array(changed.effect.dropLast(2)) + Array("x}".utf8)
        let conflictCode = try await code([changed], 4)
        XCTAssertEqual(conflictCode, ErrorCode.logIntegrityViolation.code, "same seq, other content")
        var nc = chain
        var ncEntry = nc.next()
        ncEntry.effect = Array(#"{ "global_seq":3,"kind":"Speak"}"#.utf8)
        let ncCode = try await code([ncEntry], 5)
        XCTAssertEqual(ncCode, ErrorCode.invalidJSON.code)
        var big = chain
        var bigEntry = big.next()
        bigEntry.effect = Effect(uuid: "u3", kind: "Speak", payload: ["text": .string(String(repeating: "z", count: 2 << 20))], globalSeq: 3, simTime: 3, sourceID: "a").canonicalBytes
        bigEntry.checksum = HashChain.checksum(previous: chain.prev, canonicalEffect: bigEntry.effect)
        let bigCode = try await code([bigEntry], 6)
        XCTAssertEqual(bigCode, ErrorCode.payloadTooLarge.code)
        guard case .headResult(let head)? = try await request(c, .head(Empty()), id: 7)?.body else { return XCTFail() }
        XCTAssertEqual(head.seq, 2, "nothing was written by the refused appends")
        c.close()
    }

    /// The log writer serves one world: a Hello naming another is refused at the handshake, and
    /// an appended entry of another world is refused with nothing written; an entry with no
    /// world_id is this world's.
    func testAnotherWorldsHelloAndEntriesAreRefusedWithWorldMismatch() async throws {
        let p = try LogProcess(home: home)
        defer { p.term() }
        do {
            let other = Hello(protocolMajor: 1, protocolMinor: 0, role: "orchestrator", worldID: "w2", clientName: "test")
            _ = try await FramedConnection.connect(path: home + "/run/eventlog.sock", loop: Self.loop, hello: other)
            XCTFail("a Hello of world w2 was admitted by the writer of w1")
        } catch let e as ConnectionError {
            XCTAssertEqual(e.code, .worldMismatch, "\(e)")
            XCTAssertTrue(e.message.contains("w1") && e.message.contains("w2"), e.message)
        }
        let c = try await connect()
        var chain = Chain()
        var foreign = [chain.next(), chain.next()]
        foreign[1].worldID = "w2"
        let refused = try await request(c, .append(LogEntries(entries: foreign)), id: 1)
        XCTAssertEqual(refused?.errorCode, ErrorCode.worldMismatch.code)
        guard case .headResult(let head)? = try await request(c, .head(Empty()), id: 2)?.body else { return XCTFail("no head") }
        XCTAssertEqual(head.seq, 0, "nothing of the refused batch was written")
        foreign[1].worldID = ""
        guard case .appendAck(let ack)? = try await request(c, .append(LogEntries(entries: foreign)), id: 3)?.body else { return XCTFail("no ack") }
        XCTAssertEqual(ack.lastSeq, 2)
        let stored = try await readAll(c, id: 4)
        XCTAssertEqual(stored.map(\.worldID), ["w1", "w1"], "no world_id is this world")
        c.close()
    }

    func testVerifyOverTheSocketReportsCorruptionExactly() async throws {
        var chain = Chain()
        do {
            let p = try LogProcess(home: home)
            let c = try await connect()
            _ = try await request(c, .append(LogEntries(entries: (0..<30).map { _ in chain.next() })), id: 1)
            c.close()
            p.term() // clean stop: a head anchor at 30
        }
        let db = home + "/data/events.sqlite"
        func sql(_ s: String) throws {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            p.arguments = ["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()", db, s]
            try p.run(); p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 0)
        }
        try sql("UPDATE entries SET effect = CAST(replace(CAST(effect AS TEXT), 'line 7', 'line 8') AS BLOB) WHERE global_seq = 7")
        try sql("DELETE FROM entries WHERE global_seq = 15")
        try sql("DELETE FROM entries WHERE global_seq > 27")
        let p = try LogProcess(home: home)
        defer { p.term() }
        let c = try await connect()
        guard case .verifyResult(let v)? = try await request(c, .verify(SeqRange(from: 1, to: 0)), id: 2)?.body else { return XCTFail() }
        XCTAssertFalse(v.ok)
        XCTAssertEqual(v.firstBadSeq, 7)
        XCTAssertEqual(v.gaps.map { [$0.expected, $0.found] }, [[15, 16]])
        XCTAssertTrue(v.tailTruncated)
        c.close()
    }
}

extension Frame {
    var errorCode: Int? { if case .error(let e)? = body { return Int(e.code) } else { return nil } }
}

final class ThirdPartyChainCheckTests: XCTestCase {
    func testPythonWithRFC8785AndHashlibRecomputesTheWholeChain() async throws {
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-3p-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: home) }
        let p = try EventLogProcessTests.LogProcess(home: home)
        let c = try await FramedConnection.connect(path: home + "/run/eventlog.sock", loop: EventLogProcessTests.loop,
                                                   hello: Hello(protocolMajor: 1, protocolMinor: 0, role: "orchestrator", worldID: "w1"))
        // Effects with numbers, unicode and nesting, so that canonicalization is really exercised.
        var prev: String?
        var entries: [LogEntry] = []
        for seq in UInt64(1)...200 {
            let payload: JSONValue = ["text": .string("ünïcödé \(seq) \u{1F600}"), "pos": [.number(Double(seq) / 3), .number(1e21 * Double(seq)), .number(-0.000001)],
                                      "nested": ["z": true, "a": nil, "é": .number(Double(seq))]]
            let effect = Effect(uuid: "u\(seq)", kind: "Custom", payload: payload, globalSeq: seq, simTime: Double(seq) * 0.1, sourceID: "s")
            var e = LogEntry()
            e.globalSeq = seq; e.effect = effect.canonicalBytes; e.worldID = "w1"
            e.checksum = HashChain.checksum(previous: prev, canonicalEffect: e.effect)
            prev = e.checksum
            entries.append(e)
        }
        try await c.send(.append(LogEntries(entries: entries)), id: 1)
        var acked = false
        while let f = await c.receive() { if f.id == 1 { if case .appendAck? = f.body { acked = true }; break } }
        XCTAssertTrue(acked)
        c.close()
        p.term()
        let python = EventLogProcessTests.root.appendingPathComponent(".venv-tools/bin/python").path
        guard FileManager.default.isExecutableFile(atPath: python) else { return XCTFail("run ops/setup: \(python) is missing") }
        let check = Process()
        check.executableURL = URL(fileURLWithPath: python)
        check.arguments = [EventLogProcessTests.root.appendingPathComponent("Tests/Interop/verify_chain.py").path, home + "/data/events.sqlite"]
        let out = Pipe()
        check.standardOutput = out
        check.standardError = out
        try check.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        check.waitUntilExit()
        XCTAssertEqual(check.terminationStatus, 0, text)
        XCTAssertEqual(text.trimmingCharacters(in: .whitespacesAndNewlines), "ok 200")
    }
}

final class SubscribeTests: XCTestCase {
    func testSubscribeSendsWhatExistsThenFollowsNewCommits() async throws {
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-sub-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: home) }
        let p = try EventLogProcessTests.LogProcess(home: home)
        defer { p.term() }
        let hello = Hello(protocolMajor: 1, protocolMinor: 0, role: "ctl", worldID: "w1")
        let writer = try await FramedConnection.connect(path: home + "/run/eventlog.sock", loop: EventLogProcessTests.loop, hello: hello)
        let reader = try await FramedConnection.connect(path: home + "/run/eventlog.sock", loop: EventLogProcessTests.loop, hello: hello)
        var chain = EventLogProcessTests.Chain()
        func append(_ n: Int, id: UInt64) async throws {
            try await writer.send(.append(LogEntries(entries: (0..<n).map { _ in chain.next() })), id: id)
            while let f = await writer.receive() { if f.id == id { break } }
        }
        try await append(5, id: 1)
        try await reader.send(.subscribe(Nonce(3)), id: 50)
        var seen: [UInt64] = []
        while seen.count < 3, let f = await reader.receive() {
            if case .entries(let e)? = f.body, f.id == 50 { seen += e.entries.map(\.globalSeq) }
        }
        XCTAssertEqual(seen, [3, 4, 5])
        try await append(4, id: 2)
        while seen.count < 7, let f = await reader.receive() {
            if case .entries(let e)? = f.body, f.id == 50 { seen += e.entries.map(\.globalSeq) }
        }
        XCTAssertEqual(seen, [3, 4, 5, 6, 7, 8, 9], "new commits follow")
        writer.close(); reader.close()
    }

    /// A subscriber that stops reading holds up no append and no other subscriber: once its
    /// queue is full past the slow-consumer deadline it is dropped (its connection closed), and
    /// what it did receive is a prefix without gaps.
    func testASubscriberThatStopsReadingIsDroppedAndHoldsUpNothing() async throws {
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-sub-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: home) }
        let p = try EventLogProcessTests.LogProcess(home: home)
        defer { p.term() }
        let hello = Hello(protocolMajor: 1, protocolMinor: 0, role: "ctl", worldID: "w1")
        let path = home + "/run/eventlog.sock"
        let writer = try await FramedConnection.connect(path: path, loop: EventLogProcessTests.loop, hello: hello)
        let stuck = try await FramedConnection.connect(path: path, loop: EventLogProcessTests.loop, hello: hello)
        let healthy = try await FramedConnection.connect(path: path, loop: EventLogProcessTests.loop, hello: hello)
        try await stuck.send(.subscribe(Nonce(1)), id: 7)   // and never read until the end
        try await healthy.send(.subscribe(Nonce(1)), id: 8)
        // Single-entry commits, each followed to the healthy subscriber before the next, until the
        // writer drops the stuck peer (its credit of 256 frames and the writer's outbound bound of
        // 1024 exhausted, then the slow-consumer deadline): the stuck connection's end is read off
        // the loop (`closeReason`) without reading its frames. Bounded: a writer that never drops
        // it fails the test.
        let maxCommits: UInt64 = 20_000
        var chain = EventLogProcessTests.Chain()
        var followed: [UInt64] = []
        var committed: UInt64 = 0
        while stuck.closeReason == nil && committed < maxCommits {
            committed += 1
            let id = committed
            try await writer.send(.append(LogEntries(entries: [chain.next()])), id: id)
            var acked = false
            while !acked, let f = await writer.receive() {
                if f.id == id { XCTAssertNotNil(f.body.flatMap { if case .appendAck = $0 { return true } else { return nil } }, "append \(id)"); acked = true }
            }
            while followed.last ?? 0 < id, let f = await healthy.receive() {
                if case .entries(let e)? = f.body { followed += e.entries.map(\.globalSeq) }
            }
        }
        XCTAssertNotNil(stuck.closeReason, "the writer dropped the subscriber that stopped reading (within \(maxCommits) commits)")
        XCTAssertEqual(followed, Array(1...committed), "the healthy subscriber got every commit, in order, while the other did not read")
        // What the stuck one received before its end: a prefix without gaps, short of the head.
        var got: [UInt64] = []
        while let f = await stuck.receive() {
            if case .entries(let e)? = f.body { got += e.entries.map(\.globalSeq) }
        }
        XCTAssertFalse(got.isEmpty)
        XCTAssertEqual(got, Array(1...UInt64(got.count)), "a prefix without gaps")
        XCTAssertLessThan(UInt64(got.count), committed, "dropped before it had everything")
        // The healthy one is still served after the drop.
        try await writer.send(.append(LogEntries(entries: [chain.next()])), id: committed + 1)
        while followed.last ?? 0 < committed + 1, let f = await healthy.receive() {
            if case .entries(let e)? = f.body { followed += e.entries.map(\.globalSeq) }
        }
        XCTAssertEqual(followed.last, committed + 1)
        writer.close(); healthy.close(); stuck.close()
    }
}
