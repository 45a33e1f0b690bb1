import Foundation
import Glibc
import XCTest
@testable import GunnIO
@testable import GunnWire
@testable import GunnClient
import GunnOrchestratorServer
import GunnCore

/// Long runs with real processes: durable snapshots, compaction of a live log, restarts from a
/// snapshot, and a client resuming from a view older than the orchestrator's window.
final class LongRunTests: XCTestCase {
    typealias Proc = OrchestratorProcessTests.Proc
    var home: String!
    override func setUpWithError() throws {
        home = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-long-\(UUID().uuidString.prefix(8))").path
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: home) }

    func eventlog() throws -> Proc { try Proc("gunn-eventlog", ["--home", home, "--world-id", "w1"]) }
    /// A small window (200 entries in memory) and a durable snapshot every 500 effects; its
    /// stderr lines are collected (the test waits for "durable snapshot at N stored").
    func orchestrator() throws -> Orchestrator { try Orchestrator(home: home) }

    /// gunn-orchestrator with its stderr read line by line on a thread of its own.
    final class Orchestrator: @unchecked Sendable {
        // @unchecked: `process` is only started and signalled from the test's task; the lines
        // and their waiters are behind the lock.
        let process = Process()
        private let lock = NSCondition()
        private var lines: [String] = []
        private var ended = false

        init(home: String) throws {
            process.executableURL = EventLogProcessTests.root.appendingPathComponent(".build/debug/gunn-orchestrator")
            process.arguments = ["--home", home, "--world-id", "w1", "--resume-window", "200", "--snapshot-every", "500"]
            let out = Pipe(), err = Pipe()
            process.standardOutput = out
            process.standardError = err
            try process.run()
            let reader = err.fileHandleForReading
            Thread.detachNewThread { [self] in
                var pending = ""
                while case let data = reader.availableData, !data.isEmpty {
                    pending += String(decoding: data, as: UTF8.self)
                    let parts = pending.split(separator: "\n", omittingEmptySubsequences: false)
                    lock.lock(); lines += parts.dropLast().map(String.init); lock.broadcast(); lock.unlock()
                    pending = String(parts.last ?? "")
                }
                lock.lock(); ended = true; lock.broadcast(); lock.unlock()
            }
            guard String(decoding: out.fileHandleForReading.availableData, as: UTF8.self).contains("ready") else {
                throw ConnectionError(.internalError, "gunn-orchestrator did not start")
            }
        }

        /// The first stderr line `match` accepts, waiting for it for at most `seconds` (nil: none came).
        func line(within seconds: Double = 60, where match: (String) -> Bool) -> String? {
            let until = Date().addingTimeInterval(seconds)
            lock.lock(); defer { lock.unlock() }
            while true {
                if let l = lines.first(where: match) { return l }
                if ended || !lock.wait(until: until) { return lines.first(where: match) }
            }
        }

        func kill9() { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        func term() { kill(process.processIdentifier, SIGTERM); process.waitUntilExit() }
    }
    func client(_ name: String) -> GunnClient { GunnClient(path: home + "/run/orchestrator.sock", loop: EventLogProcessTests.loop, name: name) }
    var ctl: GunnHome { GunnHome(home) }

    func gauge(_ name: String) throws -> Double? {
        guard case .array(let gauges)? = try ctl.gunnctl(["--json", "status"]).json?["gauges"] else { return nil }
        return gauges.first { $0["name"]?.stringValue == name }?["value"]?.numberValue
    }

    func python(_ args: [String]) throws -> (status: Int32, out: String) {
        let python = EventLogProcessTests.root.appendingPathComponent(".venv-tools/bin/python").path
        guard FileManager.default.isExecutableFile(atPath: python) else { XCTFail("run ops/setup: \(python) is missing"); return (1, "") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out; p.standardError = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, text)
    }

    /// Moves of `agent` to x = from..<to, pipelined; every one must be committed (retried while
    /// the orchestrator restarts).
    static func moves(_ c: GunnClient, _ agent: AgentID, _ range: Range<Int>) async throws -> [Effect] {
        var effects: [Effect] = []
        for start in stride(from: range.lowerBound, to: range.upperBound, by: 50) {
            let intents = (start..<min(range.upperBound, start + 50)).map {
                Intent(kind: .move, payload: ["to": [.number(Double($0 % 40)), 5]], contextSeq: 0, reqID: ReqID("m\($0)"), agentID: agent)
            }
            for t in try await c.send(intents) {
                let o = try await t.outcome(deadlineSeconds: 30)
                guard let e = o.effect else { throw GunnError(.internalError, "a move was refused: \(o)") }
                effects.append(e)
            }
        }
        return effects
    }

    func testCompactingALiveLogUnderLoadKeepsVerifyReplayRestartAndResume() async throws {
        var log = try eventlog()
        var orch = try orchestrator()
        // Whichever processes are current when the test ends (or fails) are stopped.
        defer { orch.term(); log.term() }
        // No snapshot yet: a compaction is refused with its code, and nothing is dropped.
        let early = try ctl.gunnctl(["compact", "--before", "100"])
        XCTAssertEqual(early.status, 4, early.out + early.err)
        XCTAssertTrue(early.err.contains("SNAPSHOT_REQUIRED (6005)"), early.err)

        let watcher = client("watcher"), mover = client("mover")
        try await watcher.register(["agent_id": "watcher", "spawn": [0, 0], "staleness_threshold": 1_000_000])
        try await mover.register(["agent_id": "mover", "spawn": [1, 1], "staleness_threshold": 1_000_000])
        // Load in the background while the log is compacted.
        let load = Task.detached { [mover] () async throws -> [Effect] in try await LongRunTests.moves(mover, "mover", 0..<3000) }
        // The orchestrator names each durable snapshot the writer stored; wait for one at 1000 or later.
        let stored = orch.line { l in
            guard let n = l.split(separator: " ").drop(while: { $0 != "at" }).dropFirst().first.flatMap({ Int($0) }) else { return false }
            return l.contains("durable snapshot at") && l.hasSuffix("stored") && n >= 1000
        }
        XCTAssertNotNil(stored, "the orchestrator stores durable snapshots every 500 effects")
        let snapSeq = try XCTUnwrap(try ctl.gunnctl(["--json", "snapshot"]).json?["global_seq"]?.numberValue)
        XCTAssertGreaterThanOrEqual(snapSeq, 1000)
        let compacted = try ctl.gunnctl(["--json", "compact", "--before", String(Int(snapSeq) + 1)])
        XCTAssertEqual(compacted.status, 0, compacted.out + compacted.err)
        let dropped = try XCTUnwrap(compacted.json?["dropped"]?.numberValue)
        XCTAssertEqual(compacted.json?["snapshot_seq"]?.numberValue, snapSeq)
        XCTAssertEqual(dropped, snapSeq, "every entry up to the snapshot")
        let first = try await load.value
        XCTAssertEqual(first.count, 3000)
        let sawLoad = await waitFor(watcher) { watcher.view(of: "watcher")?.doc["entities"]?["mover"]?["pos"] == [.number(Double(2999 % 40)), 5, 0] }
        XCTAssertTrue(sawLoad, "the watcher followed the moves")
        let held = try XCTUnwrap(watcher.view(of: "watcher"))
        let heldGlobal = try XCTUnwrap(watcher.viewGlobalSeq(of: "watcher"))

        // Reads from before the compaction are refused with the code; the rest still verifies.
        let tail = try ctl.gunnctl(["tail", "--from", "1", "--limit", "3"])
        XCTAssertEqual(tail.status, 4, tail.out + tail.err)
        XCTAssertTrue(tail.err.contains("SNAPSHOT_REQUIRED"), tail.err)

        // kill -9 of both; they recover from the newest snapshot of the compacted log.
        orch.kill9()
        log.kill9()
        log = try eventlog()
        orch = try orchestrator()
        XCTAssertGreaterThan(try gauge("last_durable_snapshot_seq") ?? 0, snapSeq, "recovered from a snapshot after the compaction point")
        // The world moves on past the window while the watcher is away; then it comes back.
        let second = try await Self.moves(mover, "mover", 3000..<3600)
        XCTAssertEqual(second.count, 600)
        XCTAssertEqual(Set((first + second).map(\.globalSeq)).count, 3600, "no intent committed twice")
        _ = try await watcher.status() // reconnects; the re-registration resumes from the held view
        let caughtUp = await waitFor(watcher) { watcher.view(of: "watcher")?.doc["entities"]?["mover"]?["pos"] == [.number(Double(3599 % 40)), 5, 0] }
        XCTAssertTrue(caughtUp, "the watcher caught up: \(String(describing: watcher.view(of: "watcher")))")
        XCTAssertEqual(watcher.resumedWithDelta, 1, "one delta from the held view at \(heldGlobal) (view_seq \(held.seq)), rebuilt from the log")
        XCTAssertEqual(try gauge("resumed_from_log"), 1)
        let fresh = try await watcher.filteredView(of: "watcher")
        XCTAssertEqual(watcher.view(of: "watcher")?.doc, fresh.doc)

        // gunn's verify, the third-party check from the file, replay --check (from the log's
        // base snapshot, and from a seq after it).
        let verify = try ctl.gunnctl(["--json", "verify"])
        XCTAssertEqual(verify.status, 0, verify.out + verify.err)
        XCTAssertEqual(verify.json?["ok"], true)
        let head = try XCTUnwrap(try ctl.gunnctl(["--json", "status"]).json?["head_seq"]?.numberValue)
        XCTAssertEqual(verify.json?["checked"]?.numberValue, head - snapSeq)
        let third = try python([EventLogProcessTests.root.appendingPathComponent("Tests/Interop/verify_chain.py").path, home + "/data/events.sqlite"])
        XCTAssertEqual(third.status, 0, third.out)
        XCTAssertEqual(third.out.trimmingCharacters(in: .whitespacesAndNewlines), "ok \(Int(head - snapSeq)) from snapshot \(Int(snapSeq))")
        for from in ["1", String(Int(snapSeq) + 700)] {
            let replay = try ctl.gunnctl(["--json", "replay", "--from", from, "--check"])
            XCTAssertEqual(replay.status, 0, replay.out + replay.err)
            XCTAssertEqual(replay.json?["matches_orchestrator"], true, replay.out)
            XCTAssertGreaterThanOrEqual(replay.json?["snapshot_seq"]?.numberValue ?? 0, snapSeq, replay.out)
        }
        watcher.close(); mover.close()
    }

    /// A clean stop stores the durable world as a snapshot: the next start replays nothing, and
    /// a retry of a request committed before the stop gets its effect from the writer's table.
    func testACleanStopStoresASnapshotAndIdempotencyOutlivesTheRestart() async throws {
        let log = try eventlog()
        defer { log.term() }
        var orch = try orchestrator()
        defer { orch.term() } // the current one, when the test ends or fails
        let c = client("c")
        try await c.register(["agent_id": "c", "spawn": [0, 0], "staleness_threshold": 1_000_000])
        let effects = try await Self.moves(c, "c", 0..<120)
        let head = try XCTUnwrap(effects.last?.globalSeq)
        orch.term()
        let snap = try ctl.gunnctl(["--json", "snapshot"])
        XCTAssertEqual(snap.json?["global_seq"]?.numberValue, Double(head), snap.out + snap.err)
        orch = try orchestrator()
        XCTAssertEqual(try gauge("last_durable_snapshot_seq"), Double(head))
        XCTAssertEqual(try gauge("log_window_entries"), 0, "nothing after the snapshot to replay")
        // Every memory bound in status, with its limit, and the process's RSS.
        let status = try ctl.gunnctl(["status"])
        for bound in ["log_window_entries", "snapshots_in_memory", "view_cache_bytes", "idempotency_entries", "agent_queue_max", "rss_bytes"] {
            XCTAssertTrue(status.out.contains(bound), "\(bound) in:\n\(status.out)")
        }
        XCTAssertGreaterThan(try gauge("rss_bytes") ?? 0, 1_048_576)
        // A retry of m7 (committed before the stop) is answered with the same effect.
        let retry = try await c.submit(Intent(kind: .move, payload: ["to": [7, 5]], contextSeq: 0, reqID: "m7", agentID: "c"))
        XCTAssertEqual(retry.effect, effects[7])
        let after = try await c.head()
        XCTAssertEqual(after.seq, head, "no second effect")
        c.close()
    }

    /// Takes the watcher's observations until `condition` holds of its held view (each one is
    /// the event that may make it true); false when the deadline closes the client first.
    func waitFor(_ watcher: GunnClient, seconds: Double = 60, _ condition: () -> Bool) async -> Bool {
        let deadline = DispatchWorkItem { watcher.close() }
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds, execute: deadline)
        defer { deadline.cancel() }
        while !condition() {
            guard await watcher.nextObservation(for: "watcher") != nil else { return condition() }
        }
        return true
    }
}

/// The log writer's snapshot, idempotency and compaction frames over a real socket: who may send
/// them, and each refusal's code.
final class SnapshotFramesTests: XCTestCase {
    func connect(_ home: String, role: String, name: String) async throws -> FramedConnection {
        try await FramedConnection.connect(path: home + "/run/eventlog.sock", loop: EventLogProcessTests.loop,
                                           hello: Hello(protocolMajor: 1, protocolMinor: 0, role: role, worldID: "w1", clientName: name))
    }

    func reply(_ c: FramedConnection, _ body: Frame.Body, id: UInt64) async throws -> Frame.Body? {
        try await c.send(body, id: id)
        while let f = await c.receive() { if f.id == id { return f.body } }
        return nil
    }

    func code(_ b: Frame.Body?) -> String? { if case .error(let e)? = b { return e.name } else { return nil } }

    func testSnapshotSaveIdempotencyAndCompactAreCheckedAndOnlyTheRightRolesMaySendThem() async throws {
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-snapframes-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: home) }
        let p = try EventLogProcessTests.LogProcess(home: home)
        defer { p.term() }
        let orch = try await connect(home, role: "orchestrator", name: "orchestrator#5")
        defer { orch.close() }
        var chain = EventLogProcessTests.Chain()
        let entries = (0..<30).map { _ in chain.next() }
        guard case .appendAck? = try await reply(orch, .append(LogEntries(entries: entries)), id: 1) else { return XCTFail("append") }
        let state = CanonicalJSON.encode(["entities": [:], "relationships": [:], "custom": [:], "sim_time": 20, "last_global_seq": 20])
        let digest = HashChain.checksum(previous: nil, canonicalEffect: state)
        // A snapshot whose bytes do not match its digest, or of a seq the log does not hold.
        let got1 = code(try await reply(orch, .snapshotSave(SnapshotMessage(globalSeq: 20, state: state, digest: String(repeating: "a", count: 64))), id: 2))
        XCTAssertEqual(got1, "WORLD_STATE_CORRUPTED")
        let got2 = code(try await reply(orch, .snapshotSave(SnapshotMessage(globalSeq: 99, state: state, digest: digest)), id: 3))
        XCTAssertEqual(got2, "SEQUENCE_GAP")
        // Only the orchestrator stores snapshots; only operators compact.
        let ctl = try await connect(home, role: "ctl", name: "gunnctl")
        defer { ctl.close() }
        let got3 = code(try await reply(ctl, .snapshotSave(SnapshotMessage(globalSeq: 20, state: state, digest: digest)), id: 4))
        XCTAssertEqual(got3, "FORBIDDEN")
        let got4 = code(try await reply(orch, .compact(Nonce(25)), id: 5))
        XCTAssertEqual(got4, "FORBIDDEN")
        let got5 = code(try await reply(ctl, .compact(Nonce(25)), id: 6))
        XCTAssertEqual(got5, "SNAPSHOT_REQUIRED", "no snapshot stored yet")
        guard case .controlResult(let ok)? = try await reply(orch, .snapshotSave(SnapshotMessage(globalSeq: 20, state: state, digest: digest)), id: 7) else {
            return XCTFail("the snapshot was not stored")
        }
        XCTAssertTrue(ok.ok)
        guard case .snapshot(let s)? = try await reply(ctl, .snapshotRequest(Nonce(0)), id: 8) else { return XCTFail("snapshot request") }
        XCTAssertEqual(s.globalSeq, 20)
        XCTAssertEqual(s.chainChecksum, entries[19].checksum)
        // The idempotency table: the newest asked for, oldest first, each with its effect.
        guard case .idempotencyRecords(let recs)? = try await reply(ctl, .idempotencyRequest(Nonce(5)), id: 9) else { return XCTFail("idempotency") }
        XCTAssertTrue(recs.done)
        XCTAssertEqual(recs.records.map(\.globalSeq), [26, 27, 28, 29, 30])
        XCTAssertEqual(recs.records.first?.effect, entries[25].effect)
        // Compaction to the snapshot; then reads before the log's first entry are refused with the code.
        guard case .compactResult(let r)? = try await reply(ctl, .compact(Nonce(25)), id: 10) else { return XCTFail("compact") }
        XCTAssertEqual(r.snapshotSeq, 20); XCTAssertEqual(r.dropped, 20); XCTAssertEqual(r.firstSeq, 21)
        let got6 = code(try await reply(ctl, .readRange(SeqRange(from: 5, to: 0, maxBatch: 10)), id: 11))
        XCTAssertEqual(got6, "SNAPSHOT_REQUIRED")
        let got7 = code(try await reply(ctl, .subscribe(Nonce(20)), id: 12))
        XCTAssertEqual(got7, "SNAPSHOT_REQUIRED")
        guard case .entries(let kept)? = try await reply(ctl, .readRange(SeqRange(from: 21, to: 0, maxBatch: 100)), id: 13) else { return XCTFail("read") }
        XCTAssertEqual(kept.entries.first?.globalSeq, 21)
        guard case .verifyResult(let v)? = try await reply(ctl, .verify(SeqRange(from: 1, to: 0)), id: 14) else { return XCTFail("verify") }
        XCTAssertTrue(v.ok, "\(v)")
        XCTAssertEqual(v.checked, 10)
        // The compacted requests still answer from the table (their effects were kept).
        guard case .idempotencyRecords(let all)? = try await reply(ctl, .idempotencyRequest(Nonce(100)), id: 15) else { return XCTFail("idempotency") }
        XCTAssertEqual(all.records.count, 30)
        XCTAssertEqual(all.records.first?.effect, entries[0].effect)
    }
}
