import Foundation
import Glibc
import XCTest
@testable import GunnIO
@testable import GunnWire
@testable import GunnClient
import GunnOrchestratorServer
import GunnCore

/// gunn-eventlog and gunn-orchestrator as real processes, GunnClient in the test.
final class OrchestratorProcessTests: XCTestCase {
    final class Proc {
        let process = Process()
        init(_ binary: String, _ args: [String]) throws {
            process.executableURL = EventLogProcessTests.root.appendingPathComponent(".build/debug/\(binary)")
            process.arguments = args
            let out = Pipe()
            process.standardOutput = out
            process.standardError = Self.stderr(for: binary)
            try process.run()
            guard String(decoding: out.fileHandleForReading.availableData, as: UTF8.self).contains("ready") else {
                throw ConnectionError(.internalError, "\(binary) did not start")
            }
        }
        func kill9() { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }

        /// Where a child's stderr goes: /dev/null, or a file of its own under GUNN_TEST_STDERR_DIR
        /// (a failing test's post-mortem).
        static func stderr(for binary: String) -> FileHandle? {
            guard let dir = ProcessInfo.processInfo.environment["GUNN_TEST_STDERR_DIR"] else { return FileHandle(forWritingAtPath: "/dev/null") }
            let path = "\(dir)/\(binary)-\(UUID().uuidString.prefix(8)).stderr"
            FileManager.default.createFile(atPath: path, contents: nil)
            return FileHandle(forWritingAtPath: path)
        }
        func term() { kill(process.processIdentifier, SIGTERM); process.waitUntilExit() }
    }

    var home: String!
    override func setUpWithError() throws {
        home = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-orch-\(UUID().uuidString.prefix(8))").path
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: home) }

    func eventlog() throws -> Proc { try Proc("gunn-eventlog", ["--home", home, "--world-id", "w1"]) }
    func orchestrator() throws -> Proc { try Proc("gunn-orchestrator", ["--home", home, "--world-id", "w1", "--world-seed", "5"]) }
    func client(_ name: String) -> GunnClient { GunnClient(path: home + "/run/orchestrator.sock", loop: EventLogProcessTests.loop, name: name) }

    /// Every entry in the log writer, read directly.
    func logEntries() async throws -> [LogEntry] { try await Self.logEntries(home: home, worldID: "w1") }

    /// Every entry in the log writer under `home`, read directly, with the chain checked by the writer.
    static func logEntries(home: String, worldID: String) async throws -> [LogEntry] {
        let c = try await FramedConnection.connect(path: home + "/run/eventlog.sock", loop: EventLogProcessTests.loop,
                                                   hello: Hello(protocolMajor: 1, protocolMinor: 0, role: "ctl", worldID: worldID))
        defer { c.close() }
        try await c.send(.readRange(SeqRange(from: 1, to: 0, maxBatch: 512)), id: 1)
        var out: [LogEntry] = []
        while let f = await c.receive() {
            guard case .entries(let e)? = f.body else { continue }
            out += e.entries
            if e.done { break }
        }
        try await c.send(.verify(SeqRange(from: 1, to: 0)), id: 2)
        while let f = await c.receive() {
            if case .verifyResult(let v)? = f.body { XCTAssertTrue(v.ok, "chain: \(v)"); break }
        }
        return out
    }

    func testIntentsAreCommittedBeforeRepliesAndObservationsFlow() async throws {
        let log = try eventlog()
        defer { log.term() }
        let orch = try orchestrator()
        defer { orch.term() }
        let client = GunnClient(path: home + "/run/orchestrator.sock", loop: EventLogProcessTests.loop, name: "t")
        let view = try await client.register(["agent_id": "a", "spawn": [0, 0]])
        XCTAssertNotNil(view)
        let ctx = client.view(of: "a")?.seq ?? 0
        let outcome = try await client.submit(Intent(kind: .move, payload: ["to": [3, 4]], contextSeq: ctx, reqID: "m1", agentID: "a"))
        guard case .committed(let effect) = outcome else { return XCTFail("\(outcome)") }
        XCTAssertEqual(effect.payload["to"], [3, 4, 0])
        // The reply came after the commit: the log writer has it.
        let entries = try await logEntries()
        XCTAssertTrue(entries.contains { $0.reqID == "m1" && $0.globalSeq == effect.globalSeq })
        // The agent's own move reached its view.
        var moved = false
        for _ in 0..<200 where !moved {
            moved = client.view(of: "a")?.doc["entities"]?["a"]?["pos"] == [3, 4, 0]
            if !moved { try await Task.sleep(nanoseconds: 5_000_000) }
        }
        XCTAssertTrue(moved, "\(String(describing: client.view(of: "a")))")
        // Errors keep their codes across the process boundary.
        let bad = try await client.submit(Intent(kind: .speak, payload: ["text": ""], contextSeq: client.view(of: "a")?.seq ?? 0, reqID: "s1", agentID: "a"))
        XCTAssertEqual(bad.error?.code, .intentValidationFailed)
        let ghost = try await client.submit(Intent(kind: .speak, payload: ["text": "x"], contextSeq: 0, reqID: "g1", agentID: "ghost"))
        XCTAssertEqual(ghost.error?.code, .invalidAgentID)
        // Introspection.
        let status = try await client.status()
        XCTAssertEqual(status.agents.map(\.agentID), ["a"])
        XCTAssertTrue(status.agents[0].connected)
        let head = try await client.head()
        XCTAssertEqual(status.headSeq, head.seq)
        XCTAssertEqual(status.worldDigest.count, 64)
        XCTAssertEqual(status.breakers.first?.name, "eventlog")
        XCTAssertEqual(status.breakers.first?.state, "closed")
        client.close()
    }

    /// A client that reconnects to a restarted orchestrator gets one delta from the view it holds
    /// (rebuilt from the log and matched by digest), not the whole view, and ends at filter(world).
    func testReconnectingClientResumesWithADeltaFromItsOwnView() async throws {
        let log = try eventlog()
        defer { log.term() }
        var orch = try orchestrator()
        let a = GunnClient(path: home + "/run/orchestrator.sock", loop: EventLogProcessTests.loop, name: "a")
        let b = GunnClient(path: home + "/run/orchestrator.sock", loop: EventLogProcessTests.loop, name: "b")
        try await a.register(["agent_id": "a", "spawn": [0, 0], "staleness_threshold": 1_000_000])
        try await b.register(["agent_id": "b", "spawn": [1, 1], "staleness_threshold": 1_000_000])
        func move(_ n: Int) async throws {
            var outcome: IntentOutcome = .rejected(GunnError(.internalError, "not tried"))
            for _ in 0..<100 {
                outcome = try await b.submit(Intent(kind: .move, payload: ["to": [.number(Double(n)), 2]], contextSeq: 0, reqID: ReqID("m\(n)"), agentID: "b"))
                if outcome.error?.code == .adapterUnavailable { try await Task.sleep(nanoseconds: 50_000_000); continue }
                break
            }
            guard case .committed = outcome else { return XCTFail("move \(n): \(outcome)") }
        }
        func aSees(_ x: Double) async throws -> Bool {
            for _ in 0..<400 {
                if a.view(of: "a")?.doc["entities"]?["b"]?["pos"] == [.number(x), 2, 0] { return true }
                try await Task.sleep(nanoseconds: 5_000_000)
            }
            return false
        }
        for n in 1...3 { try await move(n) }
        let sawThree = try await aSees(3)
        XCTAssertTrue(sawThree, "a saw b's moves before the crash")
        let seqBefore = try XCTUnwrap(a.view(of: "a")?.seq)
        orch.kill9()
        orch = try orchestrator()
        defer { orch.term() }
        // The world moves on while a is away.
        for n in 4...6 { try await move(n) }
        // a's next request reconnects it; its re-registration asks to resume from its view.
        _ = try await a.status()
        let sawSix = try await aSees(6)
        XCTAssertTrue(sawSix, "a's view caught up: \(String(describing: a.view(of: "a")))")
        XCTAssertEqual(a.reconnects, 1)
        XCTAssertEqual(a.resumedWithDelta, 1, "resumed with a delta, not a whole view")
        let fresh = try await a.filteredView(of: "a")
        XCTAssertEqual(a.view(of: "a")?.doc, fresh.doc)
        // view_seq went on from the held view's, so an intent decided before the crash is judged
        // for staleness (one unseen change: the resume), not refused as ahead of the view.
        XCTAssertGreaterThan(try XCTUnwrap(a.view(of: "a")?.seq), seqBefore)
        let late = try await a.submit(Intent(kind: .speak, payload: ["text": "decided before the crash"], contextSeq: seqBefore, reqID: "late", agentID: "a"))
        XCTAssertNotNil(late.effect, "\(late)")
        a.close(); b.close()
    }

    /// Tokens of a live generation reach the agents that see the speaker at once, are not logged,
    /// and are refused (with their codes) from a connection that does not own the agent or after
    /// the generation ended.
    func testPartialSpeechIsRelayedToThoseWhoSeeTheSpeakerOnly() async throws {
        let log = try eventlog()
        defer { log.term() }
        let orch = try orchestrator()
        defer { orch.term() }
        let a = client("a")
        let b = client("b")
        let far = client("far")
        try await a.register(["agent_id": "a", "spawn": [0, 0]])
        try await b.register(["agent_id": "b", "spawn": [1, 0], "distance_limit": 10])
        try await far.register(["agent_id": "far", "spawn": [500, 500], "distance_limit": 10])
        let headBefore = try await a.head().seq
        let token = try await a.beginGeneration("a", reqID: "g1")
        XCTAssertEqual(token.reqID, "g1")
        for (i, text) in ["Hel", "lo ", "there"].enumerated() {
            try await a.relayToken("a", reqID: "g1", index: UInt32(i), text: text)
        }
        var heard: [String] = []
        for _ in 0..<3 {
            guard let t = await b.nextTokenChunk() else { break }
            XCTAssertEqual(t.agentID, "a"); XCTAssertEqual(t.reqID, "g1")
            heard.append(t.text)
        }
        XCTAssertEqual(heard, ["Hel", "lo ", "there"])
        // Someone else may not speak for a; a token after the generation ended goes nowhere.
        try await b.relayToken("a", reqID: "g1", index: 3, text: "forged")
        try await a.endGeneration("g1", tokensEmitted: 3)
        try await a.relayToken("a", reqID: "g1", index: 4, text: "late")
        var codes: [String] = []
        for _ in 0..<200 where codes.count < 2 {
            codes = (b.pushedErrors + a.pushedErrors).map(\.name)
            if codes.count < 2 { try await Task.sleep(nanoseconds: 5_000_000) }
        }
        XCTAssertEqual(Set(codes), ["FORBIDDEN", "GENERATION_CANCELLED"])
        // Nothing of it was logged, and the far agent (out of range) heard nothing.
        let headAfter = try await a.head().seq
        XCTAssertEqual(headAfter, headBefore)
        let speak = try await a.submit(Intent(kind: .speak, payload: ["text": "Hello there"], contextSeq: a.view(of: "a")?.seq ?? 0, reqID: "s1", agentID: "a"))
        XCTAssertNotNil(speak.effect, "\(speak)")
        far.close()
        let farHeard = await far.nextTokenChunk()
        XCTAssertNil(farHeard, "an agent that does not see the speaker gets no token")
        a.close(); b.close()
    }

    /// The registration's interrupt policy and debounce, and their refusals.
    func testRegistrationCarriesTheInterruptPolicy() throws {
        let r = try WireJSON.registration(["agent_id": "a", "interrupt": "only_conflict", "debounce_ms": 250])
        XCTAssertEqual(r.observation.interrupt, .onlyConflict)
        XCTAssertEqual(r.observation.debounceMs, 250)
        XCTAssertEqual(try WireJSON.registration(["agent_id": "a"]).observation.interrupt, .always)
        for bad: JSONValue in [["agent_id": "a", "interrupt": "sometimes"], ["agent_id": "a", "interrupt": 1], ["agent_id": "a", "debounce_ms": -1],
                               ["agent_id": "a", "debounce_ms": "soon"]] {
            XCTAssertThrowsError(try WireJSON.registration(bad), "\(bad)") { XCTAssertEqual(($0 as? GunnError)?.code, .invalidField) }
        }
    }

    /// A Cancel reaches the worker after the change that caused it, with the time it was issued;
    /// the worker's Halted is logged as a GenerationCancelled record; only the owner may report a
    /// halt; a worker that leaves without one is logged with the tokens that were relayed.
    func testCancellationsAreLoggedFromTheHaltReportOrWhenTheWorkerLeaves() async throws {
        let log = try eventlog()
        defer { log.term() }
        let orch = try orchestrator()
        defer { orch.term() }
        let a = client("a")
        let b = client("b")
        try await a.register(["agent_id": "a", "spawn": [0, 0]])
        try await b.register(["agent_id": "b", "spawn": [1, 0]])
        func records() async throws -> [JSONValue] {
            try await Self.logEntries(home: home, worldID: "w1").compactMap { e in
                let effect = try JSONParser.parse(e.effect)
                return effect["kind"] == "GenerationCancelled" ? effect["payload"] : nil
            }
        }
        _ = try await a.beginGeneration("a", reqID: "g1")
        for i in 0..<2 { try await a.relayToken("a", reqID: "g1", index: UInt32(i), text: "t\(i)") }
        for _ in 0..<2 { _ = await b.nextTokenChunk() } // relayed before b speaks
        let said = try await b.submit(Intent(kind: .speak, payload: ["text": "stop"], contextSeq: b.view(of: "b")?.seq ?? 0, reqID: "b1", agentID: "b"))
        let bSeq = try XCTUnwrap(said.effect).globalSeq
        let cancel = await a.nextCancel(for: "a")
        XCTAssertEqual(cancel?.reason, "stale_due_to:\(bSeq)")
        XCTAssertGreaterThan(cancel?.issuedAtMicros ?? 0, 0)
        XCTAssertGreaterThanOrEqual(a.viewGlobalSeq(of: "a") ?? 0, bSeq, "the change arrives before the Cancel it caused")
        // Not the owner: refused, nothing logged.
        try await b.endGeneration("g1", agent: "a", tokensEmitted: 99, cancelled: true)
        for _ in 0..<200 where b.pushedErrors.isEmpty { try await Task.sleep(nanoseconds: 5_000_000) }
        XCTAssertEqual(b.pushedErrors.map(\.name), ["FORBIDDEN"])
        try await a.endGeneration("g1", agent: "a", tokensEmitted: 2, haltLatencyUs: 777, cancelled: true)
        var logged: [JSONValue] = []
        for _ in 0..<200 where logged.isEmpty { logged = try await records(); if logged.isEmpty { try await Task.sleep(nanoseconds: 5_000_000) } }
        XCTAssertEqual(logged, [["agent_id": "a", "req_id": "g1", "reason": .string("stale_due_to:\(bSeq)"), "tokens_discarded": 2, "halt_latency_us": 777]])
        // Cancelled again, and the worker goes away without a halt report: logged with the 3 tokens relayed.
        _ = try await a.beginGeneration("a", reqID: "g2")
        for i in 0..<3 { try await a.relayToken("a", reqID: "g2", index: UInt32(i), text: "u\(i)") }
        // b heard all three before it speaks: all three were relayed.
        for _ in 0..<3 { _ = await b.nextTokenChunk() }
        let again = try await b.submit(Intent(kind: .speak, payload: ["text": "stop again"], contextSeq: b.view(of: "b")?.seq ?? 0, reqID: "b2", agentID: "b"))
        XCTAssertNotNil(again.effect)
        let second = await a.nextCancel(for: "a")
        XCTAssertEqual(second?.reqID, "g2")
        // And a generation still live when the worker goes (a kill -9): cancelled as worker_lost.
        _ = try await a.beginGeneration("a", reqID: "g3")
        try await a.relayToken("a", reqID: "g3", index: 0, text: "v")
        _ = await b.nextTokenChunk()
        a.close()
        for _ in 0..<400 where logged.count < 3 { logged = try await records(); if logged.count < 3 { try await Task.sleep(nanoseconds: 5_000_000) } }
        XCTAssertEqual(logged.count, 3, "\(logged)")
        let byReq = Dictionary(uniqueKeysWithValues: logged.compactMap { r in r["req_id"]?.stringValue.map { ($0, r) } })
        XCTAssertEqual(byReq["g2"]?["tokens_discarded"], 3)
        XCTAssertEqual(byReq["g2"]?["halt_latency_us"], 0)
        XCTAssertEqual(byReq["g3"]?["reason"], "worker_lost")
        XCTAssertEqual(byReq["g3"]?["tokens_discarded"], 1)
        b.close()
    }

    func testKillNineOfOrchestratorAndLogWriterLosesNoAcknowledgedIntentAndDuplicatesNone() async throws {
        var log = try eventlog()
        var orch = try orchestrator()
        let client = GunnClient(path: home + "/run/orchestrator.sock", loop: EventLogProcessTests.loop, name: "load")
        // Context 0 with a large staleness threshold: the load agent's context never goes stale or
        // ahead of its view, whatever restarts do to its view_seq.
        try await client.register(["agent_id": "a", "spawn": [1, 2], "staleness_threshold": 1_000_000])
        var committed: [String: UInt64] = [:]
        var rng = SplitMix64(seed: 17)
        var n = 0
        for round in 0..<6 {
            // A burst of intents, then a kill -9 of one of the two processes, then its restart.
            for _ in 0..<rng.next(in: 10...30) {
                n += 1
                let req = "r\(n)"
                var outcome: IntentOutcome = .rejected(GunnError(.internalError, "not tried"))
                for _ in 0..<100 {
                    outcome = try await client.submit(Intent(kind: .speak, payload: ["text": .string("line \(n)")], contextSeq: 0, reqID: ReqID(req), agentID: "a"))
                    if outcome.error?.code == .adapterUnavailable { try await Task.sleep(nanoseconds: 50_000_000); continue }
                    break
                }
                guard case .committed(let e) = outcome else { return XCTFail("\(req): \(outcome)") }
                XCTAssertNil(committed[req], "\(req) is new")
                committed[req] = e.globalSeq
            }
            if round % 2 == 0 {
                orch.kill9()
                orch = try orchestrator()
            } else {
                log.kill9()
                log = try eventlog()
            }
            // An old req_id retried after the kill -9: its first effect, not a second one.
            let k = rng.next(in: 1...n)
            var again: IntentOutcome = .rejected(GunnError(.internalError, "not tried"))
            for _ in 0..<100 {
                again = try await client.submit(Intent(kind: .speak, payload: ["text": .string("line \(k)")], contextSeq: 0, reqID: ReqID("r\(k)"), agentID: "a"))
                if again.error?.code == .adapterUnavailable { try await Task.sleep(nanoseconds: 50_000_000); continue }
                break
            }
            XCTAssertEqual(again.effect?.globalSeq, committed["r\(k)"], "round \(round): r\(k) retried after a kill -9")
        }
        // One more after the last restart, with a retry of an old req_id.
        let again = try await client.submit(Intent(kind: .speak, payload: ["text": "line 1"], contextSeq: 0, reqID: "r1", agentID: "a"))
        XCTAssertEqual(again.effect?.globalSeq, committed["r1"], "a retried req_id gets its first outcome")
        let entries = try await logEntries()
        XCTAssertEqual(entries.map(\.globalSeq), Array(1...UInt64(entries.count)), "no gap")
        var perReq: [String: Int] = [:]
        for e in entries where !e.reqID.isEmpty { perReq[e.reqID, default: 0] += 1 }
        for (req, seq) in committed {
            XCTAssertEqual(perReq[req], 1, "\(req) must be in the log exactly once")
            XCTAssertEqual(entries.first { $0.reqID == req }?.globalSeq, seq)
        }
        XCTAssertGreaterThan(client.reconnects, 0, "the client reconnected by itself")
        // The resumed client's view is filter(world) once its deltas are in.
        let fresh = try await client.filteredView(of: "a")
        var same = false
        for _ in 0..<200 where !same {
            same = client.view(of: "a")?.doc == fresh.doc
            if !same { try await Task.sleep(nanoseconds: 5_000_000) }
        }
        XCTAssertTrue(same, "client view \(String(describing: client.view(of: "a"))) vs \(fresh)")
        client.close()
        orch.term()
        log.term()
    }
}

/// Clients that misbehave against the real orchestrator, while a good one goes on.
final class BadClientTests: XCTestCase {
    /// A blocking socket for sending whatever bytes a test wants.
    struct Raw {
        let fd: Int32
        init(path: String) throws {
            fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var tv = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            let r: Int32 = try Sys.withAddress(path) { connect(fd, $0, $1) }
            guard r == 0 else { throw Errno(code: errno, call: "connect") }
        }
        func send(_ f: Frame) { write(FrameCodec.encode(f)) }
        func write(_ b: [UInt8]) { _ = b.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }
        /// Frames until one matches, the connection closes (nil) or 10 s pass.
        func readFrame(until match: (Frame) -> Bool) -> Frame? {
            var d = FrameDecoder()
            var buf = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 { return nil }
                d.append(Array(buf[0..<n]))
                while let f = try? d.next() { if match(f) { return f } }
            }
        }
        /// Reads until the server closes the connection (true) or 10 s pass without a byte (false);
        /// also returns the code of the last Error frame, if one got through.
        func readUntilClosed() -> (closed: Bool, errorCode: Int?) {
            var d = FrameDecoder()
            var buf = [UInt8](repeating: 0, count: 1 << 16)
            var code: Int?
            while true {
                let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n == 0 { return (true, code) }
                if n < 0 { return (false, code) }
                d.append(Array(buf[0..<n]))
                while let f = try? d.next() { if case .error(let e)? = f.body { code = Int(e.code) } }
            }
        }
        func handshake(epoch: UInt64) -> Bool {
            send(Frame(epoch: epoch, .hello(Hello(protocolMajor: 1, protocolMinor: 0, role: "agent", worldID: "w1", clientName: "raw"))))
            guard readFrame(until: { if case .welcome? = $0.body { return true } else { return false } }) != nil else { return false }
            send(Frame(epoch: epoch, .credit(Credit(frames: 1 << 20))))
            return true
        }
        func close() { Glibc.close(fd) }
    }

    func testGarbageStaleEpochAndANonReaderAreHandledWhileOthersGoOn() async throws {
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-bad-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: home) }
        let log = try OrchestratorProcessTests.Proc("gunn-eventlog", ["--home", home, "--world-id", "w1"])
        defer { log.term() }
        let orch = try OrchestratorProcessTests.Proc("gunn-orchestrator", ["--home", home, "--world-id", "w1", "--world-seed", "5"])
        defer { orch.term() }
        let path = home + "/run/orchestrator.sock"
        let good = GunnClient(path: path, loop: EventLogProcessTests.loop, name: "good")
        try await good.register(["agent_id": "mover", "spawn": [0, 0], "staleness_threshold": 1_000_000])
        var n = 0
        func goodMove() async throws {
            n += 1
            let o = try await good.submit(Intent(kind: .move, payload: ["to": [.number(Double(n % 7)), 0]], contextSeq: 0, reqID: ReqID("m\(n)"), agentID: "mover"))
            XCTAssertNotNil(o.effect, "the good client goes on: \(o)")
        }
        // Garbage: MALFORMED_FRAME, that connection closed.
        let garbage = try Raw(path: path)
        garbage.write([0, 0, 0, 5, 0xFF, 0xFE, 0xFD, 0xFC, 0xFB])
        let err = garbage.readFrame(until: { (f: Frame) -> Bool in if case .error? = f.body { return true } else { return false } })
        if case .error(let e)? = err?.body { XCTAssertEqual(Int(e.code), ErrorCode.malformedFrame.code) } else { XCTFail("no error frame") }
        garbage.close()
        try await goodMove()
        // A stale epoch: its frame is dropped; the same request at the current epoch is answered.
        let stale = try Raw(path: path)
        XCTAssertTrue(stale.handshake(epoch: 5))
        let intent = Intent(kind: .speak, payload: ["text": "late"], contextSeq: 0, reqID: "late-1", agentID: "mover")
        stale.send(Frame(id: 41, epoch: 4, .submitIntent(JSONPayload(CanonicalJSON.encode(intent.json)))))
        stale.send(Frame(id: 42, epoch: 5, .head(Empty())))
        let first = stale.readFrame(until: { (f: Frame) -> Bool in f.id != 0 })
        XCTAssertEqual(first?.id, 42, "the epoch-4 frame got no answer: it was dropped")
        stale.close()
        try await goodMove()
        // A client that registers an observer and never reads: closed with QUEUE_FULL once its
        // queue is full, while the mover's intents keep being answered.
        let sleeper = try Raw(path: path)
        XCTAssertTrue(sleeper.handshake(epoch: 1))
        var reg = RegisterAgent()
        reg.agentID = "sleeper"
        reg.registration = CanonicalJSON.encode(["agent_id": "sleeper", "spawn": [0, 1]])
        sleeper.send(Frame(id: 1, epoch: 1, .registerAgent(reg)))
        for _ in 0..<3000 { try await goodMove() }
        // Its error frame cannot reach a peer that does not read (the socket buffer is full); what
        // it sees, once it drains the socket, is the server closing the connection.
        let (closed, code) = sleeper.readUntilClosed()
        XCTAssertTrue(closed, "the server closed the non-reader")
        XCTAssertTrue(code == nil || code == ErrorCode.queueFull.code, "\(String(describing: code))")
        sleeper.close()
        // The server's side: the orchestrator dropped the non-reader (its agent is no longer connected).
        var connected: Bool? = true
        for _ in 0..<500 where connected == true {
            connected = try await good.status().agents.first { $0.agentID == "sleeper" }?.connected
            if connected == true { try await Task.sleep(nanoseconds: 10_000_000) }
        }
        XCTAssertEqual(connected, false, "the orchestrator dropped the non-reader")
        try await goodMove()
        good.close()
    }
}

/// The conversation of the engine tests with A, B and C as three separate client processes.
final class ConversationAcrossProcessesTests: XCTestCase {
    final class ScriptAgent {
        let process = Process()
        let input = Pipe(), output = Pipe()
        var buffer = ""
        init(socket: String, id: String, x: Int) throws {
            process.executableURL = EventLogProcessTests.root.appendingPathComponent(".build/debug/gunn-script-agent")
            process.arguments = [socket, id, String(x), "0"]
            process.standardInput = input
            process.standardOutput = output
            process.standardError = OrchestratorProcessTests.Proc.stderr(for: "gunn-script-agent")
            try process.run()
        }
        func send(_ line: String) { input.fileHandleForWriting.write(Data((line + "\n").utf8)) }
        /// The next line it prints ("" if it exits).
        func line() -> String {
            while !buffer.contains("\n") {
                let d = output.fileHandleForReading.availableData
                if d.isEmpty { return "" }
                buffer += String(decoding: d, as: UTF8.self)
            }
            let i = buffer.firstIndex(of: "\n")!
            let l = String(buffer[..<i])
            buffer = String(buffer[buffer.index(after: i)...])
            return l
        }
        func quit() { send("quit"); process.waitUntilExit() }
    }

    func testABCConversationAcrossThreeProcesses() throws {
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-abc-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: home) }
        let log = try OrchestratorProcessTests.Proc("gunn-eventlog", ["--home", home, "--world-id", "w1"])
        defer { log.term() }
        let orch = try OrchestratorProcessTests.Proc("gunn-orchestrator", ["--home", home, "--world-id", "w1", "--world-seed", "2026"])
        defer { orch.term() }
        let socket = home + "/run/orchestrator.sock"
        let a = try ScriptAgent(socket: socket, id: "A", x: 0)
        XCTAssertTrue(a.line().hasPrefix("registered"))
        let b = try ScriptAgent(socket: socket, id: "B", x: 1)
        XCTAssertTrue(b.line().hasPrefix("registered"))
        let c = try ScriptAgent(socket: socket, id: "C", x: 2)
        XCTAssertTrue(c.line().hasPrefix("registered"))
        // A starts generating; B speaks; A's token is cancelled naming B's effect.
        a.send("begin a-1")
        XCTAssertTrue(a.line().hasPrefix("token "))
        b.send("speak b-1 the bridge is out")
        let bLine = b.line()
        XCTAssertTrue(bLine.hasPrefix("committed "), bLine)
        let bSeq = bLine.split(separator: " ").last.map(String.init) ?? "?"
        a.send("wait-cancel")
        XCTAssertEqual(a.line(), "cancel a-1 stale_due_to:\(bSeq)")
        // A regenerates against its new view and its Speak commits after B's.
        a.send("begin a-2")
        XCTAssertTrue(a.line().hasPrefix("token "))
        a.send("speak a-2 then we take the ford")
        let aLine = a.line()
        XCTAssertTrue(aLine.hasPrefix("committed "), aLine)
        XCTAssertGreaterThan(Int(aLine.split(separator: " ").last!)!, Int(bSeq)!)
        // C received deltas in order (B's speech, then A's), and its view shows both.
        c.send("observe 2")
        let o1 = c.line(), o2 = c.line(), view = c.line()
        let s1 = Int(o1.split(separator: " ").last ?? "") ?? 0, s2 = Int(o2.split(separator: " ").last ?? "") ?? 0
        XCTAssertTrue(o1.hasPrefix("obs ") && o2.hasPrefix("obs "), "\(o1) \(o2)")
        XCTAssertLessThan(s1, s2)
        XCTAssertTrue(view.contains("the bridge is out") && view.contains("then we take the ford"), view)
        a.quit(); b.quit(); c.quit()
    }
}

final class ConcurrentClientsTests: XCTestCase {
    func testTenClientsSubmittingAtOnceAreEachCommittedExactlyOnce() async throws {
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-many-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: home) }
        let log = try OrchestratorProcessTests.Proc("gunn-eventlog", ["--home", home, "--world-id", "w1"])
        defer { log.term() }
        let orch = try OrchestratorProcessTests.Proc("gunn-orchestrator", ["--home", home, "--world-id", "w1"])
        defer { orch.term() }
        let path = home + "/run/orchestrator.sock"
        var clients: [GunnClient] = []
        for i in 0..<10 {
            let c = GunnClient(path: path, loop: EventLogProcessTests.loop, name: "c\(i)")
            try await c.register(["agent_id": .string("c\(i)"), "spawn": [.number(Double(i)), 0], "staleness_threshold": 1_000_000])
            clients.append(c)
        }
        let seqs = try await withThrowingTaskGroup(of: [UInt64].self) { group in
            for (i, c) in clients.enumerated() {
                group.addTask {
                    var out: [UInt64] = []
                    for k in 0..<30 {
                        let o = try await c.submit(Intent(kind: .speak, payload: ["text": .string("\(i)-\(k)")], contextSeq: 0, reqID: ReqID("q\(k)"), agentID: AgentID("c\(i)")))
                        guard let e = o.effect else { throw GunnError(.internalError, "\(o)") }
                        out.append(e.globalSeq)
                    }
                    return out
                }
            }
            var all: [UInt64] = []
            for try await s in group { all += s }
            return all
        }
        XCTAssertEqual(seqs.count, 300)
        XCTAssertEqual(Set(seqs).count, 300, "every intent its own effect")
        let status = try await clients[0].status()
        XCTAssertEqual(status.headSeq, UInt64(300 + 10), "300 speeches and 10 spawns, nothing twice")
        for c in clients { c.close() }
    }
}
