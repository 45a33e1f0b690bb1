import Foundation
import Glibc
import XCTest
@testable import GunnIO
@testable import GunnWire
@testable import GunnClient
import GunnOrchestratorServer
import GunnCore

/// Commit before publish with real processes and real signals: a log writer held by SIGSTOP while
/// a batch is in flight, a partition under load, a full disk, a kill -9 of the orchestrator.
final class CommitBeforePublishTests: XCTestCase {
    typealias Proc = OrchestratorProcessTests.Proc
    var home: String!
    override func setUpWithError() throws {
        home = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-cbp-\(UUID().uuidString.prefix(8))").path
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: home) }

    func eventlog(_ extra: [String] = []) throws -> Proc { try Proc("gunn-eventlog", ["--home", home, "--world-id", "w1"] + extra) }
    func orchestrator() throws -> Proc { try Proc("gunn-orchestrator", ["--home", home, "--world-id", "w1", "--world-seed", "5"]) }
    func client(_ name: String) -> GunnClient { GunnClient(path: home + "/run/orchestrator.sock", loop: EventLogProcessTests.loop, name: name) }

    func ctl() async throws -> FramedConnection { try await RawOrchestratorClient.connect(home: home, role: "ctl", name: "ctl") }


    func logEntries() async throws -> [LogEntry] { try await OrchestratorProcessTests.logEntries(home: home, worldID: "w1") }

    /// The writer is stopped while a move is with it: no view, status or head shows the move;
    /// then the orchestrator dies (kill -9) and the writer goes on. Whether or not the writer had
    /// taken the batch's bytes, the restarted orchestrator and the log agree, and no client held
    /// an effect the log lacks.
    func testNoReadRevealsABatchTheWriterHasNotAcknowledged() async throws {
        let log = try eventlog()
        defer { kill(log.process.processIdentifier, SIGCONT); log.term() }
        var orch = try orchestrator()
        let mover = client("mover"), watcher = client("watcher")
        try await mover.register(["agent_id": "a", "spawn": [0, 0]])
        try await watcher.register(["agent_id": "w", "spawn": [1, 1]])
        let c = try await ctl()
        guard case .headResult(let before)? = try await c.ask(.head(Empty()), id: 1).body else { return XCTFail("no head") }

        kill(log.process.processIdentifier, SIGSTOP)
        let ctx = mover.view(of: "a")?.seq ?? 0
        let submit = Task { try await mover.submit(Intent(kind: .move, payload: ["to": [7, 7]], contextSeq: ctx, reqID: "m1", agentID: "a"), deadlineSeconds: 30) }
        // Time for the move to reach the orchestrator and its batch the stopped writer. No assertion
        // depends on it: had the move not arrived, every read below would still show the old state.
        try await Task.sleep(nanoseconds: 300_000_000)
        // Every read: none may show the move. Reads wait for the batch or, once the writer is
        // deemed away, are refused (status answers from what is durable).
        let head = try await c.ask(.head(Empty()), id: 2)
        switch head.body {
        case .headResult(let h)?: XCTAssertEqual(h.seq, before.seq, "head revealed an unacknowledged batch")
        case .error(let e)?: XCTAssertEqual(e.name, "ADAPTER_UNAVAILABLE", e.message)
        default: XCTFail("\(head)")
        }
        guard case .statusResult(let st)? = try await c.ask(.status(Empty()), id: 3).body else { return XCTFail("no status") }
        XCTAssertEqual(st.headSeq, before.seq, "status revealed an unacknowledged batch")
        var v = ViewSnapshot()
        v.agentID = "w"
        let view = try await c.ask(.view(v), id: 4)
        switch view.body {
        case .view(let snapshot)?:
            XCTAssertEqual(snapshot.globalSeq, before.seq)
            XCTAssertEqual(try JSONParser.parse(snapshot.view)["entities"]?["a"]?["pos"], [0, 0, 0], "a view revealed the move")
        case .error(let e)?: XCTAssertEqual(e.name, "ADAPTER_UNAVAILABLE", e.message)
        default: XCTFail("\(view)")
        }
        XCTAssertEqual(watcher.view(of: "w")?.doc["entities"]?["a"]?["pos"], [0, 0, 0], "the watcher was told of the move")
        XCTAssertEqual(watcher.viewGlobalSeq(of: "w"), before.seq)

        orch.kill9()
        kill(log.process.processIdentifier, SIGCONT)
        orch = try orchestrator()
        defer { orch.term() }
        _ = try? await submit.value // re-sent to the new orchestrator with the same req_id
        let entries = try await logEntries()
        let moved = entries.contains { $0.reqID == "m1" }
        // The restarted orchestrator agrees with the log, and the clients with it.
        guard case .headResult(let after)? = try await ctl().ask(.head(Empty()), id: 5).body else { return XCTFail("no head") }
        XCTAssertEqual(after.seq, entries.last?.globalSeq ?? 0)
        XCTAssertEqual(after.checksum, entries.last?.checksum ?? "")
        let retried = try await mover.submit(Intent(kind: .move, payload: ["to": [7, 7]], contextSeq: ctx, reqID: "m1", agentID: "a"), deadlineSeconds: 30)
        if moved {
            XCTAssertEqual(retried.effect?.globalSeq, entries.first { $0.reqID == "m1" }?.globalSeq, "the retry returns the first effect")
        }
        let final = try await logEntries()
        XCTAssertEqual(final.filter { $0.reqID == "m1" }.count, retried.effect == nil ? 0 : 1, "m1 is in the log at most once")
        let fresh = try await watcher.filteredView(of: "w")
        for _ in 0..<200 where watcher.view(of: "w")?.doc != fresh.doc { try await Task.sleep(nanoseconds: 10_000_000) }
        XCTAssertEqual(watcher.view(of: "w")?.doc, fresh.doc, "the watcher's view is filter(world) of the log")
        XCTAssertLessThanOrEqual(watcher.viewGlobalSeq(of: "w") ?? 0, final.last?.globalSeq ?? 0)
        mover.close(); watcher.close()
    }

    /// A partition: the writer stopped for 10 s under load. Intents are refused fast with
    /// ADAPTER_UNAVAILABLE and a retry_after, the breaker opens, and after SIGCONT everything
    /// resumes; every acknowledged intent is in the log exactly once.
    func testAPartitionFromTheWriterRefusesFastAndLosesNothing() async throws {
        let log = try eventlog()
        defer { kill(log.process.processIdentifier, SIGCONT); log.term() }
        let orch = try orchestrator()
        defer { orch.term() }
        let agents = ["p0", "p1", "p2"]
        var clients: [GunnClient] = []
        for (i, a) in agents.enumerated() {
            let c = client(a)
            try await c.register(["agent_id": .string(a), "spawn": [.number(Double(i)), 0], "staleness_threshold": 1_000_000])
            clients.append(c)
        }
        let stopAt = Date().addingTimeInterval(1)
        let resumeAt = stopAt.addingTimeInterval(10)
        let endAt = resumeAt.addingTimeInterval(3)
        struct Tally: Sendable { var committed: [String] = []; var unavailable = 0; var retryAfterMissing = 0; var other: [String] = [] }
        let load = clients.enumerated().map { (i, c) in
            Task { () -> Tally in
                var t = Tally()
                var n = 0
                while Date() < endAt {
                    n += 1
                    let req = "\(agents[i])-\(n)"
                    let outcome = try await c.submit(Intent(kind: .speak, payload: ["text": .string(req)], contextSeq: 0, reqID: ReqID(req), agentID: AgentID(agents[i])),
                                                     deadlineSeconds: 30)
                    switch outcome {
                    case .committed: t.committed.append(req)
                    case .rejected(let e) where e.code == .adapterUnavailable:
                        t.unavailable += 1
                        if (e.retryAfterMs ?? 0) == 0 { t.retryAfterMissing += 1 }
                        try await Task.sleep(nanoseconds: min(e.retryAfterMs ?? 50, 1_000) * 1_000_000) // as the refusal says
                    case .rejected(let e): t.other.append("\(req): \(e)")
                    }
                }
                return t
            }
        }
        try await Task.sleep(nanoseconds: UInt64(max(0, stopAt.timeIntervalSinceNow) * 1e9))
        kill(log.process.processIdentifier, SIGSTOP)
        let c = try await ctl()
        var states: Set<String> = []
        var id: UInt64 = 10
        while Date() < resumeAt {
            id += 1
            if case .statusResult(let st)? = try await c.ask(.status(Empty()), id: id).body { states.formUnion(st.breakers.map(\.state)) }
            try await Task.sleep(nanoseconds: 200_000_000)
        }
        kill(log.process.processIdentifier, SIGCONT)
        var tallies: [Tally] = []
        for t in load { tallies.append(try await t.value) }
        XCTAssertTrue(states.contains("open"), "the log link's breaker never opened: \(states)")
        XCTAssertGreaterThan(tallies.map(\.unavailable).reduce(0, +), 0, "no intent was refused during the partition")
        XCTAssertEqual(tallies.map(\.retryAfterMissing).reduce(0, +), 0, "a refusal without retry_after")
        XCTAssertEqual(tallies.flatMap(\.other), [])
        // Everything resumed, nothing lost or doubled.
        let after = try await clients[0].submit(Intent(kind: .speak, payload: ["text": "after"], contextSeq: 0, reqID: "after", agentID: "p0"))
        XCTAssertNotNil(after.effect, "\(after)")
        let entries = try await logEntries()
        var count: [String: Int] = [:]
        for e in entries where !e.reqID.isEmpty { count[e.reqID, default: 0] += 1 }
        XCTAssertEqual(count.values.filter { $0 > 1 }.count, 0, "an intent is in the log twice")
        for req in tallies.flatMap(\.committed) { XCTAssertEqual(count[req], 1, "acknowledged \(req) is not in the log once") }
        for cl in clients { cl.close() }
    }

    /// A full disk (the database at its page cap: SQLITE_FULL): the writer's own code,
    /// LOG_STORAGE_FAILURE, reaches the client instead of ADAPTER_UNAVAILABLE, and nothing that
    /// was acknowledged is lost.
    func testTheWritersOwnCodeReachesTheClientOnAFullDisk() async throws {
        let log = try eventlog(["--max-db-pages", "40"])
        defer { log.term() }
        let orch = try orchestrator()
        defer { orch.term() }
        let c = client("filler")
        try await c.register(["agent_id": "f", "spawn": [0, 0], "staleness_threshold": 1_000_000])
        var committed: [String] = []
        var refusal: GunnError?
        let text = String(repeating: "x", count: 2000)
        for n in 1...2000 where refusal == nil {
            let outcome = try await c.submit(Intent(kind: .speak, payload: ["text": .string(text)], contextSeq: 0, reqID: ReqID("f\(n)"), agentID: "f"))
            switch outcome {
            case .committed: committed.append("f\(n)")
            case .rejected(let e): refusal = e
            }
        }
        XCTAssertEqual(refusal?.code, .logStorageFailure, "\(String(describing: refusal))")
        XCTAssertGreaterThan(committed.count, 0)
        // Later intents keep getting the writer's code, with a retry_after.
        let next = try await c.submit(Intent(kind: .speak, payload: ["text": "more"], contextSeq: 0, reqID: "more", agentID: "f"))
        guard case .rejected(let e) = next else { return XCTFail("\(next)") }
        XCTAssertEqual(e.code, .logStorageFailure, "\(e)")
        XCTAssertNotNil(e.retryAfterMs)
        let entries = try await logEntries()
        for req in committed { XCTAssertEqual(entries.filter { $0.reqID == req }.count, 1, "\(req)") }
        c.close()
    }

    /// The same full disk under pipelined load (two batches with the writer, several appends out
    /// at once): every intent gets an answer — committed, or the writer's code — none hangs, the
    /// orchestrator still serves afterwards, and what was acknowledged is in the log once.
    func testAFullDiskUnderPipelinedLoadAnswersEveryIntentOnce() async throws {
        let log = try eventlog(["--max-db-pages", "400"])
        defer { log.term() }
        let orch = try orchestrator()
        defer { orch.term() }
        let c = client("flood")
        try await c.register(["agent_id": "p", "spawn": [0, 0], "staleness_threshold": 1_000_000])
        let text = String(repeating: "y", count: 1000)
        var tickets: [GunnClient.IntentTicket] = []
        for chunk in stride(from: 0, to: 3000, by: 300) {
            tickets += try await c.send((chunk..<(chunk + 300)).map {
                Intent(kind: .speak, payload: ["text": .string(text)], contextSeq: 0, reqID: ReqID("p\($0)"), agentID: "p")
            })
        }
        var committed: [String] = [], codes: [String: Int] = [:]
        for (k, t) in tickets.enumerated() {
            switch try await t.outcome() {
            case .committed: committed.append("p\(k)")
            case .rejected(let e): codes[e.code.name, default: 0] += 1
            }
        }
        XCTAssertGreaterThan(committed.count, 0)
        XCTAssertGreaterThan(codes["LOG_STORAGE_FAILURE"] ?? 0, 0, "the disk never filled: \(codes)")
        XCTAssertEqual(Set(codes.keys).subtracting(["LOG_STORAGE_FAILURE", "ADAPTER_UNAVAILABLE"]), [], "\(codes)")
        // Still serving: status answers, and a new intent gets the writer's code, not silence.
        let status = try await c.status()
        XCTAssertGreaterThan(status.headSeq, 0)
        let next = try await c.submit(Intent(kind: .speak, payload: ["text": "more"], contextSeq: 0, reqID: "after", agentID: "p"))
        guard case .rejected(let e) = next else { return XCTFail("\(next)") }
        XCTAssertEqual(e.code, .logStorageFailure, "\(e)")
        let entries = try await logEntries()
        let count = Dictionary(grouping: entries.map(\.reqID).filter { !$0.isEmpty }, by: { $0 }).mapValues(\.count)
        for req in committed { XCTAssertEqual(count[req], 1, "acknowledged \(req) is not in the log once") }
        XCTAssertEqual(count.values.filter { $0 > 1 }.count, 0, "an intent is in the log twice")
        c.close()
    }

    /// After a kill -9 of the orchestrator the client re-registers with its spawn: the agent
    /// keeps its position and its last speech (spawn places a new agent only).
    func testReRegistrationAfterAKill9KeepsTheAgentsEntity() async throws {
        let log = try eventlog()
        defer { log.term() }
        var orch = try orchestrator()
        let c = client("keeper")
        try await c.register(["agent_id": "k", "spawn": [0, 0]])
        _ = try await c.submit(Intent(kind: .move, payload: ["to": [5, 5]], contextSeq: c.view(of: "k")?.seq ?? 0, reqID: "mv", agentID: "k"))
        _ = try await c.submit(Intent(kind: .speak, payload: ["text": "still here"], contextSeq: c.view(of: "k")?.seq ?? 0, reqID: "sp", agentID: "k"))
        let before = try await logEntries()
        orch.kill9()
        orch = try orchestrator()
        defer { orch.term() }
        let view = try await c.filteredView(of: "k") // reconnects, re-registers with spawn [0, 0]
        XCTAssertGreaterThan(c.reconnects, 0)
        XCTAssertEqual(view.doc["entities"]?["k"]?["pos"], [5, 5, 0], "the agent jumped home")
        XCTAssertEqual(view.doc["entities"]?["k"]?["last_speech"]?["text"], "still here", "the agent lost its speech")
        let after = try await logEntries()
        XCTAssertEqual(after.count, before.count, "the re-registration committed something: \(after.suffix(after.count - before.count).map(\.effect))")
        for _ in 0..<200 where c.view(of: "k")?.doc != view.doc { try await Task.sleep(nanoseconds: 10_000_000) }
        XCTAssertEqual(c.view(of: "k")?.doc, view.doc)
        c.close()
    }

    /// The log writer lets only the newest orchestrator append: once a newer one spoke, an older
    /// one's append (a dead predecessor's frame still in flight) is refused and nothing written.
    func testTheLogWriterFencesAnOlderOrchestrator() async throws {
        let log = try eventlog()
        defer { log.term() }
        func writer(_ incarnation: Int) async throws -> FramedConnection {
            try await FramedConnection.connect(path: home + "/run/eventlog.sock", loop: EventLogProcessTests.loop,
                                               hello: Hello(protocolMajor: 1, protocolMinor: 0, role: "orchestrator", worldID: "w1",
                                                            clientName: "orchestrator#\(incarnation)"))
        }
        var engine = Engine(worldID: "w1", worldSeed: 5)
        let entries = engine.handle(.registerAgent(AgentRegistration(agentID: "a", spawn: Position(x: 0, y: 0))), at: 1)
            .compactMap { o -> LogEntry? in if case .effectCommitted(let e) = o { return WireJSON.logEntry(e) } else { return nil } }
        XCTAssertEqual(entries.count, 1)
        let old = try await writer(100)
        guard case .headResult? = try await old.ask(.head(Empty()), id: 1).body else { return XCTFail("the old one is served") }
        let new = try await writer(200)
        guard case .headResult? = try await new.ask(.head(Empty()), id: 1).body else { return XCTFail("the new one is served") }
        let refused = try await old.ask(.append(LogEntries(entries: entries)), id: 2)
        guard case .error(let e)? = refused.body else { return XCTFail("the fenced append was taken: \(refused)") }
        XCTAssertEqual(e.name, "LOG_INTEGRITY_VIOLATION", e.message)
        let none = try await logEntries()
        XCTAssertEqual(none.count, 0, "nothing was written")
        guard case .appendAck(let ack)? = try await new.ask(.append(LogEntries(entries: entries)), id: 2).body else { return XCTFail("the newest may append") }
        XCTAssertEqual(ack.lastSeq, 1)
        XCTAssertEqual(old.welcome?.latestGlobalSeq, 0)
        let later = try await writer(300)
        XCTAssertEqual(later.welcome?.latestGlobalSeq, 1, "the log writer's Welcome carries its head")
        old.close(); new.close(); later.close()
    }
}
