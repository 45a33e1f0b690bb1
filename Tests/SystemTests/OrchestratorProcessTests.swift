import Foundation
import Glibc
import XCTest
@testable import GunnIO
@testable import GunnWire
@testable import GunnClient
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
            process.standardError = FileHandle(forWritingAtPath: "/dev/null")
            try process.run()
            guard String(decoding: out.fileHandleForReading.availableData, as: UTF8.self).contains("ready") else {
                throw ConnectionError(.internalError, "\(binary) did not start")
            }
        }
        func kill9() { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        func term() { kill(process.processIdentifier, SIGTERM); process.waitUntilExit() }
    }

    var home: String!
    override func setUpWithError() throws {
        home = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-orch-\(UUID().uuidString.prefix(8))").path
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: home) }

    func eventlog() throws -> Proc { try Proc("gunn-eventlog", ["--home", home, "--world-id", "w1"]) }
    func orchestrator() throws -> Proc { try Proc("gunn-orchestrator", ["--home", home, "--world-id", "w1", "--world-seed", "5"]) }

    /// Every entry in the log writer, read directly.
    func logEntries() async throws -> [LogEntry] {
        let c = try await FramedConnection.connect(path: home + "/run/eventlog.sock", loop: EventLogProcessTests.loop,
                                                   hello: Hello(protocolMajor: 1, protocolMinor: 0, role: "ctl", worldID: "w1"))
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
        client.close()
    }

    func testKillNineOfOrchestratorAndLogWriterLosesNoAcknowledgedIntentAndDuplicatesNone() async throws {
        var log = try eventlog()
        var orch = try orchestrator()
        let client = GunnClient(path: home + "/run/orchestrator.sock", loop: EventLogProcessTests.loop, name: "load")
        // Context 0 with a large staleness threshold: the load agent's context never goes stale or
        // ahead of its view, whatever restarts do to its view_seq.
        try await client.register(["agent_id": "a", "staleness_threshold": 1_000_000])
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
                if let earlier = committed[req] { XCTAssertEqual(earlier, e.globalSeq) }
                committed[req] = e.globalSeq
            }
            if round % 2 == 0 {
                orch.kill9()
                orch = try orchestrator()
            } else {
                log.kill9()
                log = try eventlog()
            }
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
        client.close()
        orch.term()
        log.term()
    }
}
