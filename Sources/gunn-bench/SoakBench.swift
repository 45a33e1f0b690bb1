import Foundation
import Glibc
import GunnClient
import GunnCore
import GunnIO
import GunnStore
import GunnWire

/// `gunn-bench soak` and `gunn-bench restart`: long runs through the real processes.
///
/// - soak: `--effects` (2,000,000) Move intents from `--agents` (100) agents, pipelined; every
///   100,000 effects the resident set of the orchestrator and of the log writer and the
///   throughput of that stretch are printed. The figures: max RSS / RSS at 200,000 for each
///   process (flat after warm-up: aim ≤ 1.2), and the throughput of the last 100,000 over the first.
/// - restart: a log of `--entries` (1,000,000) chained entries with the durable snapshots an
///   orchestrator stores, written by an in-process engine and store; then gunn-eventlog and
///   gunn-orchestrator on it, kill -9 of the orchestrator, and the time from starting a new one
///   to its first accepted intent — beside the same with a 10,000-entry log, in the same run.
enum SoakBench {
    struct Sample: Codable { var effects: Int; var orchestratorRSS: UInt64; var eventlogRSS: UInt64; var intentsPerSecond: Double }
    struct Figures: Codable {
        var samples: [Sample]
        var orchestratorRSSRatio: Double, eventlogRSSRatio: Double
        var lastOverFirstThroughput: Double
    }
    struct RestartFigures: Codable { var entries: [Int]; var restartMillis: [Double]; var recoveredEntries: [String] }

    static func int(_ arguments: [String], _ flag: String, _ fallback: Int) -> Int {
        guard let i = arguments.firstIndex(of: flag), i + 1 < arguments.count, let n = Int(arguments[i + 1]), n > 0 else { return fallback }
        return n
    }

    static func run(arguments: [String]) async throws -> Figures {
        let effects = int(arguments, "--effects", 2_000_000)
        let agents = int(arguments, "--agents", 100)
        let window = int(arguments, "--window", 64)
        let stretch = 100_000
        let loop = try EventLoop(name: "bench-soak")
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-bench-soak-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: home) }
        let log = try BenchSupport.launch("gunn-eventlog", ["--home", home, "--world-id", "b"]).process
        // Limits passed on to the orchestrator (e.g. --idempotency-entries, --resume-window).
        var extra: [String] = []
        for flag in ["--idempotency-entries", "--resume-window", "--view-cache-bytes"] {
            if let i = arguments.firstIndex(of: flag), i + 1 < arguments.count { extra += [flag, arguments[i + 1]] }
        }
        let orch = try BenchSupport.launch("gunn-orchestrator", ["--home", home, "--world-id", "b"] + extra).process
        defer {
            kill(orch.processIdentifier, SIGTERM); orch.waitUntilExit()
            kill(log.processIdentifier, SIGTERM); log.waitUntilExit()
        }
        var clients: [GunnClient] = []
        for i in 0..<agents {
            let c = GunnClient(path: home + "/run/orchestrator.sock", loop: loop, name: "a\(i)")
            // Each agent in a cell of its own, 10 apart, seeing 3 around it: its moves reach its own view.
            try await c.register(["agent_id": .string("a\(i)"), "spawn": [.number(Double(i % 10) * 10), .number(Double(i / 10) * 10)],
                                  "staleness_threshold": 1_000_000_000, "distance_limit": 3])
            clients.append(c)
        }
        defer { for c in clients { c.close() } }
        print("soak: \(effects) Move effects from \(agents) agents (\(window) in flight each), full durability, real processes")
        print("  effects   orchestrator RSS   eventlog RSS   intents/s (this stretch)")
        var samples: [Sample] = []
        let clock = ContinuousClock()
        let perAgent = stretch / agents
        var done = 0
        var round = 0
        while done < effects {
            let t0 = clock.now
            let r = round
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (i, c) in clients.enumerated() {
                    group.addTask {
                        let agent = AgentID("a\(i)")
                        var inFlight: [[GunnClient.IntentTicket]] = []
                        let half = max(1, window / 2)
                        for start in stride(from: 0, to: perAgent, by: half) {
                            let intents = (start..<min(perAgent, start + half)).map { k -> Intent in
                                // Moves inside a bounded square: the world's size stays the same.
                                let x = Double(i % 10) * 10 + Double(k % 3), y = Double(i / 10) * 10 + Double((k / 3) % 3)
                                return Intent(kind: .move, payload: ["to": [.number(x), .number(y)]], contextSeq: 0,
                                              reqID: ReqID("r\(r)-\(k)"), agentID: agent)
                            }
                            inFlight.append(try await c.send(intents))
                            if inFlight.count >= 2 {
                                for t in inFlight.removeFirst() { guard try await t.outcome().effect != nil else { throw GunnError(.internalError, "refused") } }
                            }
                        }
                        for batch in inFlight { for t in batch { guard try await t.outcome().effect != nil else { throw GunnError(.internalError, "refused") } } }
                    }
                }
                try await group.waitForAll()
            }
            let seconds = EngineBench.seconds(clock.now - t0)
            done += perAgent * agents
            round += 1
            let s = Sample(effects: done, orchestratorRSS: Sys.residentBytes(pid: orch.processIdentifier), eventlogRSS: Sys.residentBytes(pid: log.processIdentifier),
                           intentsPerSecond: Double(perAgent * agents) / seconds)
            samples.append(s)
            print(String(format: "  %8d   %10.1f MiB   %9.1f MiB   %9.0f", s.effects, Double(s.orchestratorRSS) / 1048576, Double(s.eventlogRSS) / 1048576, s.intentsPerSecond))
        }
        let at200k = samples.first { $0.effects >= 200_000 } ?? samples[0]
        let orchRatio = Double(samples.map(\.orchestratorRSS).max()!) / Double(max(1, at200k.orchestratorRSS))
        let logRatio = Double(samples.map(\.eventlogRSS).max()!) / Double(max(1, at200k.eventlogRSS))
        let tp = samples.last!.intentsPerSecond / samples.first!.intentsPerSecond
        print(String(format: "  max RSS / RSS at 200k: orchestrator %.2f, eventlog %.2f (aim <= 1.2); throughput last / first 100k: %.2f", orchRatio, logRatio, tp))
        return Figures(samples: samples, orchestratorRSSRatio: orchRatio, eventlogRSSRatio: logRatio, lastOverFirstThroughput: tp)
    }

    /// Writes a log of `entries` chained entries into `home` as gunn-orchestrator and
    /// gunn-eventlog would have: an engine with 100 agents moving, the store appending its
    /// entries in batches, a durable snapshot at every `snapshotEvery`.
    static func buildLog(home: String, entries: Int, snapshotEvery: Int = OrchestratorDefaults.durableSnapshotEvery) throws {
        try FileManager.default.createDirectory(atPath: home + "/data", withIntermediateDirectories: true)
        var options = EventLogStoreOptions()
        options.durability = .normal
        let store = try EventLogStore(path: home + "/data/events.sqlite", worldID: "b", worldSeed: 0, options: options, now: Date().timeIntervalSince1970)
        var config = EngineConfig()
        config.quantumMs = 0
        config.agentQuota = TokenBucket(capacity: 1e9, refillPerSecond: 1e9)
        config.tenantQuota = TokenBucket(capacity: 1e9, refillPerSecond: 1e9)
        var engine = Engine(config: config, worldID: "b", worldSeed: 0)
        var now = Date().timeIntervalSince1970
        var batch: [StoredEntry] = []
        var lastSnapshot: UInt64 = 0
        func take(_ out: [EngineOutput]) throws {
            for o in out {
                guard case .effectCommitted(let e) = o else { continue }
                batch.append(StoredEntry(globalSeq: e.globalSeq, simTime: e.simTime, wallTime: e.wallTime, reqID: e.reqID?.rawValue, agentID: e.agentID?.rawValue,
                                         worldID: "b", effect: e.canonicalEffect, checksum: e.checksum))
            }
            if batch.count >= 512 {
                try store.append(batch, at: Date().timeIntervalSince1970)
                batch.removeAll(keepingCapacity: true)
                if let s = engine.log.snapshots.last, s.globalSeq >= lastSnapshot + UInt64(snapshotEvery), s.globalSeq <= store.headSeq {
                    let bytes = CanonicalJSON.encode(s.state.json)
                    try store.saveSnapshot(globalSeq: s.globalSeq, state: bytes, digest: HashChain.checksum(previous: nil, canonicalEffect: bytes))
                    lastSnapshot = s.globalSeq
                }
            }
        }
        for i in 0..<100 {
            // Apart, as in the soak: each agent's moves reach its own view only.
            try take(engine.handle(.registerAgent(AgentRegistration(agentID: AgentID("a\(i)"), spawn: Position(x: Double(i % 10) * 10, y: Double(i / 10) * 10),
                                                                    observation: ObservationPolicy(distanceLimit: 3))), at: now))
        }
        var k = 0
        while engine.headSeq < UInt64(entries) {
            now += 1e-5
            let i = k % 100
            try take(engine.handle(.submitIntent(Intent(kind: .move, payload: ["to": [.number(Double(i % 10) * 10 + Double(k % 3)), .number(Double(i / 10) * 10 + Double(k % 2))]],
                                                        contextSeq: engine.viewSeq(of: AgentID("a\(i)"))!,
                                                        reqID: ReqID("r\(k)"), agentID: AgentID("a\(i)"))), at: now))
            k += 1
        }
        if !batch.isEmpty { try store.append(batch, at: Date().timeIntervalSince1970) }
        try store.anchor(at: Date().timeIntervalSince1970, clean: true)
    }

    enum OrchestratorDefaults { static let durableSnapshotEvery = 10_000 }

    static func restart(arguments: [String]) async throws -> RestartFigures {
        let big = int(arguments, "--entries", 1_000_000)
        let loop = try EventLoop(name: "bench-restart")
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-bench-restart-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: base) }
        print("restart: kill -9 of the orchestrator, then a new one's start to its first accepted intent, by log length")
        var millis: [Double] = []
        var recovered: [String] = []
        for n in [10_000, big] {
            let home = base + "/\(n)"
            let t = ContinuousClock().now
            try buildLog(home: home, entries: n)
            print("  built a \(n)-entry log in \(String(format: "%.1f", EngineBench.seconds(ContinuousClock().now - t))) s")
            let log = try BenchSupport.launch("gunn-eventlog", ["--home", home, "--world-id", "b"]).process
            defer { kill(log.processIdentifier, SIGTERM); log.waitUntilExit() }
            let first = try BenchSupport.launch("gunn-orchestrator", ["--home", home, "--world-id", "b"]).process
            kill(first.processIdentifier, SIGKILL)
            first.waitUntilExit()
            let clock = ContinuousClock()
            let t0 = clock.now
            let stderrPath = home + "/orchestrator.err"
            FileManager.default.createFile(atPath: stderrPath, contents: nil)
            let p = Process()
            p.executableURL = BenchSupport.binary("gunn-orchestrator")
            p.arguments = ["--home", home, "--world-id", "b"]
            p.standardError = FileHandle(forWritingAtPath: stderrPath)
            p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
            try p.run()
            defer { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
            // The first intent accepted: a client that connects (retrying) and submits.
            var ms = 0.0
            while true {
                let c = GunnClient(path: home + "/run/orchestrator.sock", loop: loop, name: "probe")
                do {
                    try await c.register(["agent_id": "a0"])
                    let o = try await c.submit(Intent(kind: .move, payload: ["to": [1, 1]], contextSeq: c.view(of: "a0")?.seq ?? 0, reqID: ReqID("probe-\(n)"), agentID: "a0"))
                    c.close()
                    guard o.effect != nil else { throw GunnError(.internalError, "probe refused: \(o)") }
                    ms = EngineBench.seconds(clock.now - t0) * 1000
                    break
                } catch {
                    c.close()
                    if EngineBench.seconds(clock.now - t0) > 120 { throw error }
                    try await Task.sleep(nanoseconds: 2_000_000)
                }
            }
            let line = (try? String(contentsOfFile: stderrPath, encoding: .utf8))?.split(separator: "\n").first { $0.contains("recovered") }.map(String.init) ?? "?"
            millis.append(ms)
            recovered.append(line)
            print(String(format: "  %8d entries: restart to first accepted intent %.0f ms", n, ms) + "  (\(line.replacingOccurrences(of: "gunn-orchestrator: ", with: "")))")
        }
        print(String(format: "  ratio %d / %d entries: %.2f", big, 10_000, millis[1] / millis[0]))
        return RestartFigures(entries: [10_000, big], restartMillis: millis, recoveredEntries: recovered)
    }
}

/// `gunn-bench memory`: the orchestrator's resident set for worlds of A agents and E entities
/// (agents on a few connections, distance-limited views, entities spread over the map), after
/// 20,000 moves so the log window, the view cache and the idempotency table are in use —
/// beside the RSS of an empty world in the same run.
enum MemoryBench {
    struct Row: Codable { var agents: Int; var entities: Int; var orchestratorRSS: UInt64; var eventlogRSS: UInt64 }

    static func measure(agents: Int, entities: Int, moves: Int, loop: EventLoop, home: String) async throws -> Row {
        let log = try BenchSupport.launch("gunn-eventlog", ["--home", home, "--world-id", "b", "--durability", "normal"]).process
        let orch = try BenchSupport.launch("gunn-orchestrator", ["--home", home, "--world-id", "b"]).process
        defer {
            kill(orch.processIdentifier, SIGTERM); orch.waitUntilExit()
            kill(log.processIdentifier, SIGTERM); log.waitUntilExit()
        }
        let side = max(10, Int(Double(entities).squareRoot() * 3))
        let connections = max(1, min(10, agents))
        var clients: [GunnClient] = []
        for k in 0..<connections { clients.append(GunnClient(path: home + "/run/orchestrator.sock", loop: loop, name: "c\(k)")) }
        defer { for c in clients { c.close() } }
        for i in 0..<agents {
            try await clients[i % connections].register(["agent_id": .string("a\(i)"), "spawn": [.number(Double((i * 37) % side)), .number(Double((i * 91) % side))],
                                                         "staleness_threshold": 1_000_000_000, "distance_limit": 6])
        }
        for j in 0..<max(0, entities - agents) {
            _ = try await clients[0].emit(EffectDraft(kind: "EntityUpsert", payload: ["id": .string("e\(j)"), "entity": ["kind": "thing", "hp": .number(Double(j % 10)),
                "pos": [.number(Double((j * 13) % side)), .number(Double((j * 29) % side))]]], sourceID: "world"))
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (k, c) in clients.enumerated() {
                group.addTask {
                    let mine = stride(from: k, to: agents, by: connections).map { $0 }
                    let per = moves / connections
                    for start in stride(from: 0, to: per, by: 64) {
                        let intents = (start..<min(per, start + 64)).map { n -> Intent in
                            let i = mine[n % mine.count]
                            return Intent(kind: .move, payload: ["to": [.number(Double((i * 37 + n) % side)), .number(Double((i * 91) % side))]], contextSeq: 0,
                                          reqID: ReqID("m\(n)"), agentID: AgentID("a\(i)"))
                        }
                        for t in try await c.send(intents) { _ = try await t.outcome() }
                    }
                }
            }
            try await group.waitForAll()
        }
        return Row(agents: agents, entities: entities, orchestratorRSS: Sys.residentBytes(pid: orch.processIdentifier),
                   eventlogRSS: Sys.residentBytes(pid: log.processIdentifier))
    }

    static func run(arguments: [String]) async throws -> [Row] {
        let loop = try EventLoop(name: "bench-memory")
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-bench-mem-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: base) }
        print("memory: orchestrator RSS by world size, after 20,000 moves (default limits; agents see 6 around them)")
        print("  agents  entities   orchestrator RSS   eventlog RSS")
        var rows: [Row] = []
        for (a, e, moves) in [(0, 0, 0), (10, 100, 20_000), (100, 1_000, 20_000), (1_000, 10_000, 20_000)] {
            let row = try await measure(agents: a, entities: e, moves: moves, loop: loop, home: base + "/\(a)-\(e)")
            rows.append(row)
            print(String(format: "  %6d  %8d   %10.1f MiB   %9.1f MiB", a, e, Double(row.orchestratorRSS) / 1048576, Double(row.eventlogRSS) / 1048576))
        }
        return rows
    }
}
