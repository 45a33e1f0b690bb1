import Foundation
import Glibc
import GunnClient
import GunnCore
import GunnIO
import GunnWire

/// `gunn-bench system`: the real gunn-eventlog and gunn-orchestrator processes, GunnClient agents.
enum SystemBench {
    struct Row: Codable { var durability: String; var agents: Int; var inFlightPerAgent: Int; var intentsPerSecond: Double; var replyP50Micros: Double; var replyP99Micros: Double }
    struct Figures: Codable {
        var rows: [Row]
        var deliveryP50Micros: Double, deliveryP99Micros: Double
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
        for durability in ["full", "normal"] {
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

        // Delivery across processes: 10 observers, one speaker at 50 events/s; latency from the
        // speaker's submit to the delta arriving at each observer (one clock: same machine).
        let home = base + "/delivery"
        let log = try BenchSupport.launch("gunn-eventlog", ["--home", home, "--world-id", "b"]).process
        var orch = try BenchSupport.launch("gunn-orchestrator", ["--home", home, "--world-id", "b"]).process
        let path = home + "/run/orchestrator.sock"
        let speaker = GunnClient(path: path, loop: loop, name: "speaker")
        try await speaker.register(["agent_id": "speaker", "spawn": [0, 0], "staleness_threshold": 1_000_000_000])
        var observers: [GunnClient] = []
        for i in 0..<10 {
            let c = GunnClient(path: path, loop: loop, name: "o\(i)")
            try await c.register(["agent_id": .string("o\(i)"), "spawn": [.number(Double(i + 1)), 0]])
            observers.append(c)
        }
        let events = 200
        let origin = Date().timeIntervalSince1970
        let delivery = try await withThrowingTaskGroup(of: [Double].self) { group in
            for (i, c) in observers.enumerated() {
                group.addTask {
                    var l: [Double] = []
                    while l.count < events, let o = await c.nextObservation(for: AgentID("o\(i)")) {
                        // The patch carries the speaker's send time in its text.
                        let text = String(decoding: o.patches, as: UTF8.self)
                        if let r = text.range(of: "sent "), let end = text[r.upperBound...].firstIndex(of: "\""), let t = Double(text[r.upperBound..<end]) {
                            l.append(Date().timeIntervalSince1970 - (origin + t))
                        }
                    }
                    return l
                }
            }
            for k in 0..<events {
                let sent = Date().timeIntervalSince1970 - origin
                _ = try await speaker.submit(Intent(kind: .speak, payload: ["text": .string("sent \(sent)")], contextSeq: 0, reqID: ReqID("e\(k)"), agentID: "speaker"))
                try await Task.sleep(nanoseconds: 20_000_000) // 50 events/s
            }
            var all: [Double] = []
            for try await l in group { all += l }
            return all
        }
        print(String(format: "  delivery, 10 agents at 50 events/s: submit->delta at another process p50 %.1f us  p99 %.1f us (%d deltas)",
                     BenchSupport.percentileMicros(delivery, 50), BenchSupport.percentileMicros(delivery, 99), delivery.count))

        // kill -9 of the orchestrator -> the first intent accepted after its restart.
        kill(orch.processIdentifier, SIGKILL); orch.waitUntilExit()
        let k0 = clock.now
        orch = try BenchSupport.launch("gunn-orchestrator", ["--home", home, "--world-id", "b"]).process
        let o = try await speaker.submit(Intent(kind: .speak, payload: ["text": "back"], contextSeq: 0, reqID: "after-kill", agentID: "speaker"))
        let backMs = EngineBench.seconds(clock.now - k0) * 1000
        precondition(o.effect != nil, "\(o)")
        print(String(format: "  kill -9 of the orchestrator -> first accepted intent after restart: %.0f ms", backMs))
        speaker.close(); for c in observers { c.close() }
        kill(orch.processIdentifier, SIGTERM); orch.waitUntilExit()
        kill(log.processIdentifier, SIGTERM); log.waitUntilExit()


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
        return Figures(rows: rows, deliveryP50Micros: BenchSupport.percentileMicros(delivery, 50), deliveryP99Micros: BenchSupport.percentileMicros(delivery, 99), killToFirstAcceptedMillis: backMs, bareRoundTripP50Micros: BenchSupport.percentileMicros(bare, 50))
    }
}
