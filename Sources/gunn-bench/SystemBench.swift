import Foundation
import Glibc
import GunnClient
import GunnCore
import GunnIO
import GunnWire

/// `gunn-bench system`: the real gunn-eventlog and gunn-orchestrator processes, GunnClient agents.
enum SystemBench {
    struct Row: Codable { var durability: String; var agents: Int; var inFlightPerAgent: Int; var intentsPerSecond: Double; var replyP50Micros: Double; var replyP99Micros: Double }
    /// Pipelined: every agent keeps `window` intents in flight on its connection (GunnClient.send).
    struct PipelinedRow: Codable {
        var durability: String; var agents: Int; var window: Int; var intents: Int
        var intentsPerSecond: Double; var replyP50Micros: Double; var replyP99Micros: Double
        /// CPU per acknowledged intent by process: orchestrator, eventlog, clients (this process).
        var cpuMicrosPerIntent: [String: Double]
    }
    struct Figures: Codable {
        var rows: [Row]
        var pipelined: [PipelinedRow]
        var deliveryP50Micros: Double, deliveryP99Micros: Double
        var worldDeliveryP50Micros: Double, worldDeliveryP99Micros: Double
        var killToFirstAcceptedMillis: Double
        var bareRoundTripP50Micros: Double
    }

    static func run(arguments: [String]) async throws -> Figures {
        let loop = try EventLoop(name: "bench-system")
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-bench-sys-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: base) }
        let clock = ContinuousClock()
        var rows: [Row] = []
        print("system: gunn-eventlog + gunn-orchestrator as processes, GunnClient agents (one connection each), intents committed end to end")
        print("  upstream (BASELINE.md, one process, no durable log): 1,429 intents/s for 10 agents; delivery p50 630 us, p99 1450 us")
        // `--delivery-only`: skip the throughput rows (for working on delivery).
        let rowsWanted = !arguments.contains("--delivery-only")
        var pipelinedRows: [PipelinedRow] = []
        for durability in ["full", "normal"] where rowsWanted {
            for (agents, window) in [(10, 512), (100, 64)] {
                let row = try await pipelined(home: base + "/p-\(durability)-\(agents)", durability: durability, agents: agents, window: window,
                                              perAgent: 200_000 / agents, loop: loop)
                pipelinedRows.append(row)
                print(row.line)
            }
        }
        for durability in ["full", "normal"] where rowsWanted {
            for (agents, inFlight) in [(1, 1), (10, 1), (100, 1), (10, 16)] {
                let home = base + "/\(durability)-\(agents)-\(inFlight)"
                let log = try BenchSupport.launch("gunn-eventlog", ["--home", home, "--world-id", "b", "--durability", durability]).process
                let orch = try BenchSupport.launch("gunn-orchestrator", ["--home", home, "--world-id", "b"]).process
                let perAgent = max(20, 2000 / agents) * (inFlight > 1 ? 4 : 1)
                var clients: [GunnClient] = []
                for i in 0..<agents {
                    let c = GunnClient(path: home + "/run/orchestrator.sock", loop: loop, name: "a\(i)")
                    try await c.register(["agent_id": .string("a\(i)"), "staleness_threshold": 1_000_000_000])
                    clients.append(c)
                }
                let t0 = clock.now
                let latencies = try await withThrowingTaskGroup(of: [Double].self) { group in
                    for (i, c) in clients.enumerated() {
                        for lane in 0..<inFlight {
                        group.addTask {
                            var l: [Double] = []
                            for k in stride(from: lane, to: perAgent, by: inFlight) {
                                let s = ContinuousClock().now
                                let o = try await c.submit(Intent(kind: .speak, payload: ["text": "hello"], contextSeq: 0, reqID: ReqID("r\(k)"), agentID: AgentID("a\(i)")))
                                guard o.effect != nil else { throw GunnError(.internalError, "\(o)") }
                                l.append(EngineBench.seconds(ContinuousClock().now - s))
                            }
                            return l
                        }
                        }
                    }
                    var all: [Double] = []
                    for try await l in group { all += l }
                    return all
                }
                let rate = Double(latencies.count) / EngineBench.seconds(clock.now - t0)
                let row = Row(durability: durability, agents: agents, inFlightPerAgent: inFlight, intentsPerSecond: rate, replyP50Micros: BenchSupport.percentileMicros(latencies, 50), replyP99Micros: BenchSupport.percentileMicros(latencies, 99))
                rows.append(row)
                print(String(format: "  %@ %3d agents x %2d in flight: %7.0f intents/s   submit->reply p50 %7.1f us  p99 %8.1f us", durability, agents, inFlight, rate, row.replyP50Micros, row.replyP99Micros))
                for c in clients { c.close() }
                kill(orch.processIdentifier, SIGTERM); orch.waitUntilExit()
                kill(log.processIdentifier, SIGTERM); log.waitUntilExit()
            }
        }

        let measured = try await delivery(home: base + "/delivery", loop: loop, events: 200, killTest: true)
        let delivery = measured.fromCommit
        print(String(format: "  delivery, 10 agents at 50 events/s: committed->delta received p50 %.1f us  p99 %.1f us; submit->delta p50 %.1f us  p99 %.1f us (%d deltas)",
                     BenchSupport.percentileMicros(measured.fromCommit, 50), BenchSupport.percentileMicros(measured.fromCommit, 99),
                     BenchSupport.percentileMicros(measured.fromSubmit, 50), BenchSupport.percentileMicros(measured.fromSubmit, 99), measured.fromSubmit.count))
        let backMs = measured.killToAcceptedMillis
        print(String(format: "  kill -9 of the orchestrator -> first accepted intent after restart: %.0f ms", backMs))

        let world = try await worldDelivery(base: base, loop: loop)
        print(String(format: "  delivery, 1,000 agents (10 clients x 100, view radius 50) and 10,000 entities in a 1,000 x 1,000 world, 50 moves/s: committed->delta received p50 %.1f us  p99 %.1f us (%d deltas)",
                     BenchSupport.percentileMicros(world, 50), BenchSupport.percentileMicros(world, 99), world.count))

        // The bare round trip on the same socket type (no protocol), for scale.
        let rawPath = base + "/raw.sock"
        let raw = try BenchSupport.launch("gunn-wire-peer", ["raw-echo", rawPath, "64"]).process
        let fd = try WireBench.rawConnect(rawPath)
        var bare: [Double] = []
        var msg = [UInt8](repeating: 1, count: 64)
        for _ in 0..<5000 {
            let t = clock.now
            _ = msg.withUnsafeBytes { write(fd, $0.baseAddress, 64) }
            var got = 0
            while got < 64 { got += msg.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, 64 - got) } }
            bare.append(EngineBench.seconds(clock.now - t))
        }
        close(fd); raw.waitUntilExit()
        print(String(format: "  bare read/write round trip on a Unix socket: p50 %.1f us", BenchSupport.percentileMicros(bare, 50)))
        loop.shutdown()
        return Figures(rows: rows, pipelined: pipelinedRows, deliveryP50Micros: BenchSupport.percentileMicros(delivery, 50), deliveryP99Micros: BenchSupport.percentileMicros(delivery, 99),
                       worldDeliveryP50Micros: BenchSupport.percentileMicros(world, 50), worldDeliveryP99Micros: BenchSupport.percentileMicros(world, 99), killToFirstAcceptedMillis: backMs, bareRoundTripP50Micros: BenchSupport.percentileMicros(bare, 50))
    }

    /// Each agent's connection keeps `window` intents in flight (two halves, the next sent as the
    /// older completes); submit -> reply is from a half's send to each outcome taken in order.
    static func pipelined(home: String, durability: String, agents: Int, window: Int, perAgent: Int, loop: EventLoop,
                          orchestratorArgs: [String] = []) async throws -> PipelinedRow {
        let log = try BenchSupport.launch("gunn-eventlog", ["--home", home, "--world-id", "b", "--durability", durability]).process
        let orch = try BenchSupport.launch("gunn-orchestrator", ["--home", home, "--world-id", "b"] + orchestratorArgs).process
        defer {
            kill(orch.processIdentifier, SIGTERM); orch.waitUntilExit()
            kill(log.processIdentifier, SIGTERM); log.waitUntilExit()
        }
        var clients: [GunnClient] = []
        for i in 0..<agents {
            let c = GunnClient(path: home + "/run/orchestrator.sock", loop: loop, name: "a\(i)")
            try await c.register(["agent_id": .string("a\(i)"), "staleness_threshold": 1_000_000_000])
            clients.append(c)
        }
        defer { for c in clients { c.close() } }
        defer { if ProcessInfo.processInfo.environment["GUNN_BENCH_DEBUG"] != nil { print("dropped pushes", clients.map(\.droppedPushes), "resyncs", clients.map(\.resyncs)) } }
        let half = max(1, window / 2)
        let me = getpid()
        let cpu0 = (BenchSupport.cpuSeconds(pid: orch.processIdentifier), BenchSupport.cpuSeconds(pid: log.processIdentifier), BenchSupport.cpuSeconds(pid: me))
        let clock = ContinuousClock()
        let t0 = clock.now
        let latencies = try await withThrowingTaskGroup(of: [Double].self) { group in
            for (i, c) in clients.enumerated() {
                group.addTask {
                    let agent = AgentID("a\(i)")
                    var l: [Double] = []
                    l.reserveCapacity(perAgent)
                    var inFlight: [(ContinuousClock.Instant, [GunnClient.IntentTicket])] = []
                    func drainOldest() async throws {
                        let (sent, tickets) = inFlight.removeFirst()
                        for t in tickets {
                            let o = try await t.outcome()
                            guard o.effect != nil else { throw GunnError(.internalError, "\(o)") }
                            l.append(EngineBench.seconds(ContinuousClock().now - sent))
                        }
                    }
                    for start in stride(from: 0, to: perAgent, by: half) {
                        let intents = (start..<min(perAgent, start + half)).map {
                            Intent(kind: .speak, payload: ["text": "hello"], contextSeq: 0, reqID: ReqID("r\($0)"), agentID: agent)
                        }
                        inFlight.append((ContinuousClock().now, try await c.send(intents)))
                        if inFlight.count >= 2 { try await drainOldest() }
                    }
                    while !inFlight.isEmpty { try await drainOldest() }
                    return l
                }
            }
            var all: [Double] = []
            for try await l in group { all += l }
            return all
        }
        let seconds = EngineBench.seconds(clock.now - t0)
        let n = Double(latencies.count)
        let cpu = ["orchestrator": (BenchSupport.cpuSeconds(pid: orch.processIdentifier) - cpu0.0) / n * 1e6,
                   "eventlog": (BenchSupport.cpuSeconds(pid: log.processIdentifier) - cpu0.1) / n * 1e6,
                   "clients": (BenchSupport.cpuSeconds(pid: me) - cpu0.2) / n * 1e6]
        return PipelinedRow(durability: durability, agents: agents, window: window, intents: latencies.count, intentsPerSecond: n / seconds,
                            replyP50Micros: BenchSupport.percentileMicros(latencies, 50), replyP99Micros: BenchSupport.percentileMicros(latencies, 99),
                            cpuMicrosPerIntent: cpu)
    }

    /// Delivery across processes: 10 observers, one speaker at 50 events/s. Two clocks on the
    /// same machine: from the speaker's submit, and from the orchestrator publishing the delta
    /// right after the log writer acknowledged the effect (committed -> received). With
    /// `killTest`, then kill -9 of the orchestrator -> the first intent accepted after its restart.
    static func delivery(home: String, loop: EventLoop, events: Int, killTest: Bool, orchestratorArgs: [String] = []) async throws
        -> (fromCommit: [Double], fromSubmit: [Double], killToAcceptedMillis: Double) {
        let log = try BenchSupport.launch("gunn-eventlog", ["--home", home, "--world-id", "b"]).process
        var orch = try BenchSupport.launch("gunn-orchestrator", ["--home", home, "--world-id", "b"] + orchestratorArgs).process
        let path = home + "/run/orchestrator.sock"
        let speaker = GunnClient(path: path, loop: loop, name: "speaker")
        try await speaker.register(["agent_id": "speaker", "spawn": [0, 0], "staleness_threshold": 1_000_000_000])
        var observers: [GunnClient] = []
        for i in 0..<10 {
            let c = GunnClient(path: path, loop: loop, name: "o\(i)")
            try await c.register(["agent_id": .string("o\(i)"), "spawn": [.number(Double(i + 1)), 0]])
            observers.append(c)
        }
        let origin = Date().timeIntervalSince1970
        let measured = try await withThrowingTaskGroup(of: ([Double], [Double]).self) { group in
            for (i, c) in observers.enumerated() {
                group.addTask {
                    var fromSubmit: [Double] = [], fromCommit: [Double] = []
                    while fromSubmit.count < events, let o = await c.nextObservation(for: AgentID("o\(i)")) {
                        let now = Date().timeIntervalSince1970
                        // The patch carries the speaker's send time in its text.
                        let text = String(decoding: o.patches, as: UTF8.self)
                        if let r = text.range(of: "sent "), let end = text[r.upperBound...].firstIndex(of: "\""), let t = Double(text[r.upperBound..<end]) {
                            fromSubmit.append(now - (origin + t))
                            fromCommit.append(now - Double(o.committedAtMicros) / 1e6)
                        }
                    }
                    return (fromSubmit, fromCommit)
                }
            }
            for k in 0..<events {
                let sent = Date().timeIntervalSince1970 - origin
                _ = try await speaker.submit(Intent(kind: .speak, payload: ["text": .string("sent \(sent)")], contextSeq: 0, reqID: ReqID("e\(k)"), agentID: "speaker"))
                try await Task.sleep(nanoseconds: 20_000_000) // 50 events/s
            }
            var all: ([Double], [Double]) = ([], [])
            for try await l in group { all.0 += l.0; all.1 += l.1 }
            return all
        }
        var backMs = 0.0
        if killTest {
            kill(orch.processIdentifier, SIGKILL); orch.waitUntilExit()
            let clock = ContinuousClock()
            let k0 = clock.now
            orch = try BenchSupport.launch("gunn-orchestrator", ["--home", home, "--world-id", "b"]).process
            let o = try await speaker.submit(Intent(kind: .speak, payload: ["text": "back"], contextSeq: 0, reqID: "after-kill", agentID: "speaker"))
            backMs = EngineBench.seconds(clock.now - k0) * 1000
            precondition(o.effect != nil, "\(o)")
        }
        speaker.close(); for c in observers { c.close() }
        kill(orch.processIdentifier, SIGTERM); orch.waitUntilExit()
        kill(log.processIdentifier, SIGTERM); log.waitUntilExit()
        return (measured.1, measured.0, backMs)
    }

    /// 1,000 agents hosted by 10 clients in a 2D world of 10,000 entities; trees move at 50/s and
    /// every delta's committed->received time is kept.
    static func worldDelivery(base: String, loop: EventLoop) async throws -> [Double] {
        let home = base + "/world"
        let log = try BenchSupport.launch("gunn-eventlog", ["--home", home, "--world-id", "b"]).process
        let orch = try BenchSupport.launch("gunn-orchestrator", ["--home", home, "--world-id", "b"]).process
        let path = home + "/run/orchestrator.sock"
        var rng = SplitMix64(seed: 11)
        let clients = (0..<10).map { GunnClient(path: path, loop: loop, name: "host\($0)") }
        var spawns: [[JSONValue]] = []
        for _ in 0..<10 { spawns.append((0..<100).map { _ -> JSONValue in [.number(Double(rng.next(below: 1000))), .number(Double(rng.next(below: 1000)))] }) }
        let trees = (0..<9000).map { k in EffectDraft(kind: "EntityUpsert", payload: ["id": .string("t\(k)"),
            "entity": ["pos": [.number(Double(rng.next(below: 1000))), .number(Double(rng.next(below: 1000)))], "kind": "tree"]], sourceID: "setup", draftID: "t\(k)") }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (c, client) in clients.enumerated() {
                let positions = spawns[c]
                group.addTask {
                    for (k, pos) in positions.enumerated() {
                        try await client.register(["agent_id": .string("a\(c)-\(k)"), "spawn": pos, "distance_limit": 50])
                    }
                }
                for lane in 0..<4 {
                    group.addTask {
                        for k in stride(from: c * 4 + lane, to: trees.count, by: 40) {
                            if let e = try await client.emit(trees[k]) { throw e }
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        // What the setup delivered is taken first and not counted; then a pause lets the
        // orchestrator and the clients settle.
        let setupHead = try await clients[0].head().seq
        try await Task.sleep(nanoseconds: 500_000_000)
        let measured = try await withThrowingTaskGroup(of: [Double].self) { group in
            for (c, client) in clients.enumerated() {
                for k in 0..<100 {
                    group.addTask {
                        var l: [Double] = []
                        while let o = await client.nextObservation(for: AgentID("a\(c)-\(k)")) {
                            guard o.globalSeq > setupHead else { continue }
                            l.append(Date().timeIntervalSince1970 - Double(o.committedAtMicros) / 1e6)
                        }
                        return l
                    }
                }
            }
            for k in 0..<200 {
                let move = EffectDraft(kind: "Move", payload: ["agent_id": .string("t\(rng.next(below: 9000))"),
                    "to": [.number(Double(rng.next(below: 1000))), .number(Double(rng.next(below: 1000)))]], sourceID: "physics", draftID: "mv\(k)")
                if let e = try await clients[0].emit(move) { throw e }
                try await Task.sleep(nanoseconds: 20_000_000) // 50 events/s
            }
            try await Task.sleep(nanoseconds: 300_000_000)
            for c in clients { c.close() }
            var all: [Double] = []
            for try await l in group { all += l }
            return all
        }
        kill(orch.processIdentifier, SIGTERM); orch.waitUntilExit()
        kill(log.processIdentifier, SIGTERM); log.waitUntilExit()
        return measured
    }
}

extension SystemBench.PipelinedRow {
    var line: String {
        let total = cpuMicrosPerIntent.values.reduce(0, +)
        return String(format: "  %@ %3d agents x %3d pipelined: %7.0f intents/s   submit->reply p50 %7.1f us  p99 %8.1f us   CPU %5.1f us/intent "
                      + "(orchestrator %4.1f, eventlog %4.1f, clients %4.1f)",
                      durability, agents, window, intentsPerSecond, replyP50Micros, replyP99Micros, total,
                      cpuMicrosPerIntent["orchestrator"] ?? 0, cpuMicrosPerIntent["eventlog"] ?? 0, cpuMicrosPerIntent["clients"] ?? 0)
    }
}
