import CSQLite
import Foundation
import Glibc
import GunnCore
import GunnIO
import GunnStore
import GunnWire

/// `gunn-bench log`: acknowledged appends through the real gunn-eventlog process for batches of
/// 1, 16 and 256 entries with `full` and `normal` durability, beside a bare SQLite loop over the C
/// API inserting the same rows in one transaction per batch; then verification and replay speed.
enum LogBench {
    struct Row: Codable {
        var durability: String, batch: Int, entries: Int
        var entriesPerSecond: Double, ackP50Micros: Double, ackP99Micros: Double, bareEntriesPerSecond: Double
    }
    struct Figures: Codable { var rows: [Row]; var pipelined256FullPerSecond: Double; var verifyPerSecond: Double; var replayPerSecond: Double }

    static func entries(_ n: Int) -> [LogEntry] {
        var prev: String?
        return (1...n).map { i in
            let seq = UInt64(i)
            let effect = Effect(uuid: "u\(i)", kind: "Move", payload: ["agent_id": .string("agent-\(i % 10)"), "to": [.number(Double(i % 100)), 1.5, 0]],
                                globalSeq: seq, simTime: Double(i) * 0.02, sourceID: "agent-\(i % 10)")
            var e = LogEntry()
            e.globalSeq = seq; e.simTime = effect.simTime; e.wallTime = 1; e.effect = effect.canonicalBytes
            e.checksum = HashChain.checksum(previous: prev, canonicalEffect: e.effect)
            e.reqID = "r\(i)"; e.agentID = "agent-\(i % 10)"; e.worldID = "bench"
            prev = e.checksum
            return e
        }
    }

    static func bare(_ rows: [LogEntry], batch: Int, durability: String, path: String) throws -> Double {
        var db: OpaquePointer?
        sqlite3_open(path, &db)
        defer { sqlite3_close(db) }
        sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=\(durability == "full" ? "FULL" : "NORMAL");", nil, nil, nil)
        sqlite3_exec(db, "CREATE TABLE entries (global_seq INTEGER PRIMARY KEY, sim_time REAL, wall_time REAL, kind TEXT, req_id TEXT, agent_id TEXT, source_metadata TEXT, effect BLOB, checksum TEXT)", nil, nil, nil)
        var stmt: OpaquePointer?
        sqlite3_prepare_v2(db, "INSERT INTO entries VALUES (?,?,?,?,?,?,?,?,?)", -1, &stmt, nil)
        defer { sqlite3_finalize(stmt) }
        let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
        let clock = ContinuousClock()
        let t0 = clock.now
        var i = 0
        while i < rows.count {
            sqlite3_exec(db, "BEGIN", nil, nil, nil)
            for r in rows[i..<min(rows.count, i + batch)] {
                sqlite3_reset(stmt)
                sqlite3_bind_int64(stmt, 1, Int64(r.globalSeq)); sqlite3_bind_double(stmt, 2, r.simTime); sqlite3_bind_double(stmt, 3, r.wallTime)
                sqlite3_bind_text(stmt, 4, "Move", -1, transient); sqlite3_bind_text(stmt, 5, r.reqID, -1, transient)
                sqlite3_bind_text(stmt, 6, r.agentID, -1, transient); sqlite3_bind_text(stmt, 7, "{\"world_id\":\"bench\"}", -1, transient)
                _ = r.effect.withUnsafeBytes { sqlite3_bind_blob(stmt, 8, $0.baseAddress, Int32($0.count), transient) }
                sqlite3_bind_text(stmt, 9, r.checksum, -1, transient)
                sqlite3_step(stmt)
            }
            sqlite3_exec(db, "COMMIT", nil, nil, nil)
            i += batch
        }
        return Double(rows.count) / EngineBench.seconds(clock.now - t0)
    }

    /// Acknowledged entries/s through a real gunn-eventlog, `inFlight` batches of `batch` entries
    /// outstanding at a time; the writer's CPU per entry (µs) beside it.
    static func appendRate(home: String, durability: String, batch: Int, inFlight: Int, total: Int, loop: EventLoop) async throws -> (perSecond: Double, cpuMicrosPerEntry: Double) {
        let p = try BenchSupport.launch("gunn-eventlog", ["--home", home, "--world-id", "bench", "--durability", durability]).process
        defer { kill(p.processIdentifier, SIGTERM); p.waitUntilExit() }
        let c = try await FramedConnection.connect(path: home + "/run/eventlog.sock", loop: loop, hello: Hello(protocolMajor: 1, protocolMinor: 0, role: "orchestrator", worldID: "bench"))
        defer { c.close() }
        let all = entries(total)
        var chunks = stride(from: 0, to: total, by: batch).map { Array(all[$0..<min(total, $0 + batch)]) }[...]
        let clock = ContinuousClock()
        let cpu0 = BenchSupport.cpuSeconds(pid: p.processIdentifier)
        let t0 = clock.now
        var outstanding = 0, acked = 0, id: UInt64 = 0
        while acked < total {
            while outstanding < inFlight, let chunk = chunks.popFirst() {
                id += 1
                try await c.send(.append(LogEntries(entries: chunk)), id: id)
                outstanding += 1
            }
            guard let f = await c.receive(), case .appendAck(let a) = f.body else { throw ConnectionError(.internalError, "no ack") }
            outstanding -= 1
            acked = Int(a.lastSeq)
        }
        let seconds = EngineBench.seconds(clock.now - t0)
        let cpu = BenchSupport.cpuSeconds(pid: p.processIdentifier) - cpu0
        return (Double(total) / seconds, cpu / Double(total) * 1e6)
    }

    static func run(arguments: [String]) async throws -> Figures {
        let loop = try EventLoop(name: "bench-log")
        let clock = ContinuousClock()
        var rows: [Row] = []
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-bench-log-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: base) }
        print("log: acknowledged appends through gunn-eventlog (checks, chain recomputed, one transaction per batch) vs a bare SQLite insert loop")
        var pipelined = 0.0
        for durability in ["full", "normal"] {
            for (batch, total) in [(1, 1000), (16, 8000), (256, 51200)] {
                let home = base + "/\(durability)-\(batch)"
                let p = try BenchSupport.launch("gunn-eventlog", ["--home", home, "--world-id", "bench", "--durability", durability]).process
                let c = try await FramedConnection.connect(path: home + "/run/eventlog.sock", loop: loop, hello: Hello(protocolMajor: 1, protocolMinor: 0, role: "orchestrator", worldID: "bench"))
                let all = entries(total)
                var acks: [Double] = []
                let t0 = clock.now
                var i = 0, id: UInt64 = 0
                while i < total {
                    id += 1
                    let b = Array(all[i..<min(total, i + batch)])
                    let s = clock.now
                    try await c.send(.append(LogEntries(entries: b)), id: id)
                    guard let f = await c.receive(), case .appendAck = f.body else { throw ConnectionError(.internalError, "no ack") }
                    acks.append(EngineBench.seconds(clock.now - s))
                    i += batch
                }
                let rate = Double(total) / EngineBench.seconds(clock.now - t0)
                if durability == "full" && batch == 256 {
                    // Pipelined: 8 batches in flight, as an orchestrator under load sends them.
                    let more = entries(total * 2).suffix(total)
                    let m0 = clock.now
                    var inFlight = 0, sentCount = 0, acked = 0
                    var chunks = stride(from: 0, to: more.count, by: 256).map { Array(more[(more.startIndex + $0)..<min(more.endIndex, more.startIndex + $0 + 256)]) }[...]
                    while acked < more.count {
                        while inFlight < 8, let chunk = chunks.popFirst() {
                            id += 1
                            try await c.send(.append(LogEntries(entries: chunk)), id: id)
                            inFlight += 1; sentCount += chunk.count
                        }
                        guard let f = await c.receive(), case .appendAck = f.body else { throw ConnectionError(.internalError, "no ack") }
                        inFlight -= 1; acked += 256
                    }
                    pipelined = Double(more.count) / EngineBench.seconds(clock.now - m0)
                }
                c.close()
                kill(p.processIdentifier, SIGTERM); p.waitUntilExit()
                let bareRate = try bare(all, batch: batch, durability: durability, path: home + "/bare.sqlite")
                acks.sort()
                let row = Row(durability: durability, batch: batch, entries: total, entriesPerSecond: rate,
                              ackP50Micros: acks[acks.count / 2] * 1e6, ackP99Micros: acks[min(acks.count - 1, acks.count * 99 / 100)] * 1e6, bareEntriesPerSecond: bareRate)
                rows.append(row)
                print(String(format: "  %@ batch %3d: %8.0f entries/s  ack p50 %8.1f us  p99 %8.1f us   bare SQLite %8.0f entries/s   ratio %.2fx",
                             durability, batch, rate, row.ackP50Micros, row.ackP99Micros, bareRate, rate / bareRate))
            }
        }
        print(String(format: "  full, batches of 256, 8 in flight: %.0f acknowledged entries/s", pipelined))
        // Verification and replay of 200,000 entries.
        let vpath = base + "/verify.sqlite"
        let store = try EventLogStore(path: vpath, worldID: "bench", worldSeed: 1, options: { var o = EventLogStoreOptions(); o.durability = .normal; return o }(), now: 1)
        let big = entries(200_000).map { StoredEntry(globalSeq: $0.globalSeq, simTime: $0.simTime, wallTime: 1, reqID: $0.reqID, agentID: $0.agentID, worldID: "bench", effect: $0.effect, checksum: $0.checksum) }
        var k = 0
        while k < big.count { try store.append(Array(big[k..<min(big.count, k + 4096)]), at: 1); k += 4096 }
        let v0 = clock.now
        let report = try store.verify()
        let verifyRate = Double(report.checked) / EngineBench.seconds(clock.now - v0)
        precondition(report.ok)
        // Replay: the stored effects decoded and applied by the reducers to a fresh world.
        let r0 = clock.now
        var world = WorldState()
        let reducers = ReducerRegistry()
        try world.apply(EntityUpsertsFor: 10)
        var replayed = 0
        for e in try store.read(from: 1, limit: 200_000) {
            let effect = try Effect(json: JSONParser.parse(e.effect))
            try reducers.apply(effect, to: &world)
            replayed += 1
        }
        let replayRate = Double(replayed) / EngineBench.seconds(clock.now - r0)
        print(String(format: "  verify: %.0f entries/s (chain recomputed from the SQLite file)   replay: %.0f entries/s (read, parse, reduce)", verifyRate, replayRate))
        loop.shutdown()
        return Figures(rows: rows, pipelined256FullPerSecond: pipelined, verifyPerSecond: verifyRate, replayPerSecond: replayRate)
    }
}

extension WorldState {
    /// The bench's agents as entities, so that Move effects have movers.
    mutating func apply(EntityUpsertsFor agents: Int) throws {
        for i in 0..<agents { setEntity("agent-\(i)", ["id": .string("agent-\(i)"), "pos": [0, 0, 0]]) }
    }
}
