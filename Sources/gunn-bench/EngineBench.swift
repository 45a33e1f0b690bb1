import Foundation
import GunnCore

/// `gunn-bench engine`: intents through the whole in-process pipeline (idempotency, quota,
/// backpressure, staleness, fairness, validator, effect, hash-chained log append, world update),
/// for 10 and 1,000 agents, beside the upstream Python figures of ../shared/BASELINE.md.
enum EngineBench {
    struct Figures: Codable {
        var agents: Int
        var intents: Int
        var quantumMs: Double
        var intentsPerSecond: Double
        var p50Micros: Double
        var p99Micros: Double
        var baselinePerSecond: Double?
    }

    static func config(quantumMs: Double) -> EngineConfig {
        var c = EngineConfig()
        c.quantumMs = quantumMs
        c.maxIntentsPerQuantum = 1 << 20
        c.agentQuota = TokenBucket(capacity: 1e12, refillPerSecond: 1e12)
        c.tenantQuota = TokenBucket(capacity: 1e12, refillPerSecond: 1e12)
        c.backpressure = BackpressureConfig(maxQueueDepth: 1 << 20)
        c.snapshotEvery = 10_000
        // A round of 1,000 agents can straddle a quantum boundary, and an agent whose context was
        // read before the boundary would then be (rightly) stale; the bench measures throughput,
        // so staleness is computed on every intent but tolerated.
        c.stalenessThreshold = 1 << 30
        return c
    }

    /// Each agent submits `perAgent` intents (alternating Move and Speak, fresh context), interleaved
    /// across agents as concurrent agents would be. With quantum 0 each intent is committed inside
    /// its own `handle` call, which is what the per-intent latency measures.
    static func run(agents: Int, perAgent: Int, quantumMs: Double, baseline: Double?) -> Figures {
        var engine = Engine(config: config(quantumMs: quantumMs), worldID: "bench", worldSeed: 1)
        var now: HostTime = 1
        let ids = (0..<agents).map { AgentID("agent-\($0)") }
        // Agents 20 apart, each seeing 5 around it (a sparse world: the observation work per
        // intent is its own view's delta), and taking their observations after every round.
        let homes = (0..<agents).map { Position(x: Double($0 % 50) * 20, y: Double($0 / 50) * 20) }
        for (i, id) in ids.enumerated() {
            _ = engine.handle(.registerAgent(AgentRegistration(agentID: id, spawn: homes[i], observation: ObservationPolicy(distanceLimit: 5))), at: now)
        }
        let clock = ContinuousClock()
        var latencies: [Double] = []
        latencies.reserveCapacity(agents * perAgent)
        var committed = 0
        var firstRejection: GunnError?
        let start = clock.now
        for round in 0..<perAgent {
            for (i, id) in ids.enumerated() {
                let ctx = engine.viewSeq(of: id)!
                let intent = round % 2 == 0
                    ? Intent(kind: .move, payload: ["to": [.number(homes[i].x + Double(round % 3)), .number(homes[i].y)]], contextSeq: ctx, reqID: ReqID("r\(round)"), agentID: id)
                    : Intent(kind: .speak, payload: ["text": "hello from the bench"], contextSeq: ctx, reqID: ReqID("r\(round)"), agentID: id)
                now += 0.000_001
                let t0 = clock.now
                let out = engine.handle(.submitIntent(intent), at: now)
                if quantumMs == 0 { latencies.append(seconds(clock.now - t0)) }
                for o in out {
                    if case .intentCommitted = o { committed += 1 }
                    if case .intentRejected(_, _, let e) = o, firstRejection == nil { firstRejection = e }
                }
            }
            for id in ids { while engine.nextObservation(for: id, at: now) != nil {} }
            if quantumMs > 0 {
                // Close a quantum after each round of all agents.
                now += quantumMs / 1000
                let t0 = clock.now
                for o in engine.handle(.flush, at: now) { if case .intentCommitted = o { committed += 1 } }
                latencies.append(seconds(clock.now - t0) / Double(agents))
            }
        }
        let total = seconds(clock.now - start)
        if committed != agents * perAgent {
            FileHandle.standardError.write(Data("gunn-bench: only \(committed) of \(agents * perAgent) intents committed; first refusal: \(firstRejection.map(String.init(describing:)) ?? "none")\n".utf8))
            exit(1)
        }
        precondition(engine.log.validateIntegrity().isValid)
        latencies.sort()
        return Figures(agents: agents, intents: committed, quantumMs: quantumMs, intentsPerSecond: Double(committed) / total,
                       p50Micros: latencies[latencies.count / 2] * 1e6, p99Micros: latencies[latencies.count * 99 / 100] * 1e6,
                       baselinePerSecond: baseline)
    }

    static func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

    static func run(arguments: [String]) -> [Figures] {
        // Baselines: ../shared/BASELINE.md (upstream Python, one process, same shape of work).
        let shapes: [(agents: Int, perAgent: Int, quantumMs: Double, baseline: Double?)] = [
            (10, 200, 0, 1429), (10, 1000, 0, 773), (10, 20_000, 0, nil), (1000, 200, 0, nil), (10, 20_000, 20, nil), (1000, 200, 20, nil),
        ]
        var all: [Figures] = []
        print("engine: intents committed in process (pipeline + hash-chained in-memory log + world update + observation deltas, delivered each round)")
        // `--only K` runs just the K-th shape (for profiling).
        var selected = shapes[...]
        if let i = arguments.firstIndex(of: "--only"), i + 1 < arguments.count, let k = Int(arguments[i + 1]), shapes.indices.contains(k) {
            selected = shapes[k...k]
        }
        for s in selected {
            let f = run(agents: s.agents, perAgent: s.perAgent, quantumMs: s.quantumMs, baseline: s.baseline)
            all.append(f)
            let base = s.baseline.map { String(format: "upstream %6.0f/s   ratio %6.1fx", $0, f.intentsPerSecond / $0) } ?? "upstream      n/a"
            let lat = s.quantumMs == 0 ? "per intent" : "per intent, amortised over a quantum"
            print(String(format: "  %4d agents x %5d, quantum %2.0f ms: %9.0f intents/s   p50 %6.2f us  p99 %6.2f us (%@)   %@",
                         s.agents, s.perAgent, s.quantumMs, f.intentsPerSecond, f.p50Micros, f.p99Micros, lat, base))
        }
        return all
    }
}
