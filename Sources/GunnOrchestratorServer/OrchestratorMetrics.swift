import Dispatch
import GunnCore
import GunnTelemetry
import GunnWire

/// What the orchestrator counts (docs/operations.md names each family). Recorded where outcomes
/// leave the core: intent replies, published effects and observations, cancels, log appends.
public final class OrchestratorMetrics: Sendable {
    public let telemetry: Telemetry
    let intents, intentSeconds, emits, effects, cancellations, observations, observationBytes: Recorder
    let fallbacks, fallbackBytes, appendSeconds, appendEntries, queueDepth, queueLimit, queueHighWater: Recorder
    let breaker, headSeq, connections, linkFrames, linkBytes, generationsHalted, tokensRelayed: Recorder

    public init(_ telemetry: Telemetry) {
        self.telemetry = telemetry
        let t = telemetry
        intents = t.counter("gunn_intents_total", help: "Intents answered, by outcome (committed, rejected) and error code name", labels: ["outcome", "code"])
        intentSeconds = t.histogram("gunn_intent_seconds", help: "Intent received to its answer sent, the log's commit included (seconds)")
        emits = t.counter("gunn_emits_total", help: "Effect drafts emitted by adapters, by outcome and error code name", labels: ["outcome", "code"])
        effects = t.counter("gunn_effects_total", help: "Effects committed to the log and published, by kind", labels: ["kind"])
        cancellations = t.counter("gunn_cancellations_total", help: "Generations cancelled, by reason", labels: ["reason"])
        observations = t.counter("gunn_observations_total", help: "Observation deltas sent to agents")
        observationBytes = t.counter("gunn_observation_bytes_total", help: "Bytes of observation patches sent to agents")
        fallbacks = t.counter("gunn_whole_view_fallbacks_total", help: "Deltas sent as a whole view because the diff passed max_patch_ops")
        fallbackBytes = t.counter("gunn_whole_view_fallback_bytes_total", help: "Bytes of those whole-view deltas")
        appendSeconds = t.histogram("gunn_log_append_seconds", help: "A batch sent to the log writer to its acknowledgement (seconds)")
        appendEntries = t.counter("gunn_log_appended_entries_total", help: "Entries the log writer acknowledged")
        queueDepth = t.gauge("gunn_queue_depth", help: "What each bound holds now", labels: ["queue"])
        queueLimit = t.gauge("gunn_queue_limit", help: "Each bound's limit (0: none)", labels: ["queue"])
        queueHighWater = t.gauge("gunn_queue_high_water", help: "The most each bound held", labels: ["queue"])
        breaker = t.gauge("gunn_breaker_state", help: "The log link's breaker: 0 closed, 1 half open, 2 open", labels: ["breaker"])
        headSeq = t.gauge("gunn_head_seq", help: "The durable head: the global_seq of the last committed effect")
        connections = t.gauge("gunn_connections", help: "Connections open to the orchestrator")
        linkFrames = t.counter("gunn_link_frames_total", help: "Frames over the orchestrator's connections, by the peer's role and direction",
                               labels: ["role", "direction"])
        linkBytes = t.counter("gunn_link_bytes_total", help: "Bytes over the orchestrator's connections, by the peer's role and direction",
                              labels: ["role", "direction"])
        generationsHalted = t.counter("gunn_generations_halted_total", help: "Generations a worker reported halted or finished")
        // The series every run has exist from the start, at 0: a rate over a window that begins
        // before the first intent then starts from a sample of 0 (Prometheus's advice too).
        intents.inc(["committed", ""], by: 0)
        emits.inc(["accepted", ""], by: 0)
        observations.inc(by: 0)
        tokensRelayed = t.counter("gunn_tokens_relayed_total", help: "Token chunks relayed from workers to the agents that see the speaker")
    }

    static func breakerValue(_ s: String) -> Double { s == "open" ? 2 : s == "half_open" ? 1 : 0 }

    /// A peer's role as a label: the roles gunn's own processes use, else `other` (a Hello's role
    /// is the client's to choose; the label set stays bounded).
    static func roleLabel(_ role: String?) -> String {
        guard let role else { return "other" }
        return ["agent", "adapter", "ctl", "orchestrator", "supervisor", "client", ""].contains(role) ? (role.isEmpty ? "client" : role) : "other"
    }

    struct Request: Hashable { let conn: UInt64, id: UInt64 }

    /// Counts the frames an action sends: intent and emit answers, observations, cancels (summed
    /// over the frames first: one recording per family and action).
    func sent(_ frames: [Frame], received: inout [Request: UInt64], conn: UInt64) {
        guard telemetry.recording else { return }
        var committed = 0.0, accepted = 0.0, observed = 0.0, bytes = 0.0, tokens = 0.0
        var refused: [String: Double] = [:], emitRefused: [String: Double] = [:], cancelled: [String: Double] = [:]
        var latencies: [Double] = []
        let now = DispatchTime.now().uptimeNanoseconds
        for f in frames {
            switch f.body {
            case .intentResult(let r)?:
                if r.committed { committed += 1 } else { refused[r.error?.name ?? "UNKNOWN", default: 0] += 1 }
                if f.id != 0, let start = received.removeValue(forKey: Request(conn: conn, id: f.id)) { latencies.append(Double(now &- start) / 1e9) }
            case .emitResult(let r)?:
                if r.accepted { accepted += 1 } else { emitRefused[r.error?.name ?? "UNKNOWN", default: 0] += 1 }
            case .observation(let o)?:
                observed += 1
                bytes += Double(o.patches.count)
            case .cancel(let c)?:
                // `stale_due_to:<seq>` names its cause's seq: the label keeps the reason only.
                cancelled[String(c.reason.prefix { $0 != ":" }), default: 0] += 1
            case .tokenChunk?:
                tokens += 1
            default: break
            }
        }
        if tokens > 0 { tokensRelayed.inc(by: tokens) }
        if committed > 0 { intents.inc(["committed", ""], by: committed) }
        for (code, n) in refused { intents.inc(["rejected", code], by: n) }
        if accepted > 0 { emits.inc(["accepted", ""], by: accepted) }
        for (code, n) in emitRefused { emits.inc(["rejected", code], by: n) }
        if observed > 0 { observations.inc(by: observed); observationBytes.inc(by: bytes) }
        for (reason, n) in cancelled { cancellations.inc([reason], by: n) }
        if !latencies.isEmpty { intentSeconds.observe(values: latencies) }
    }

    /// Frames taken in: a worker's Halted reports.
    func received(_ frames: [Frame]) {
        guard telemetry.recording else { return }
        var halted = 0.0
        for f in frames { if case .halted? = f.body { halted += 1 } }
        if halted > 0 { generationsHalted.inc(by: halted) }
    }

    /// Effects by kind and whole-view fallbacks, from what the core publishes.
    func published(_ outputs: [EngineOutput]) {
        guard telemetry.recording else { return }
        var kinds: [String: Double] = [:]
        for o in outputs {
            if case .effectCommitted(let e) = o { kinds[e.effect.kind, default: 0] += 1 }
        }
        for (k, n) in kinds { effects.inc([k], by: n) }
    }

    func delta(_ d: ObservationDelta, bytes: Int) {
        if d.patches.operations.count == 1, case .replace(let path, _) = d.patches.operations[0], path == .root {
            fallbacks.inc()
            fallbackBytes.inc(by: Double(bytes))
        }
    }

    func gauges(_ list: [StatusGauge]) {
        for g in list {
            queueDepth.set([g.name], Double(g.value)); queueLimit.set([g.name], Double(g.limit)); queueHighWater.set([g.name], Double(g.highWater))
        }
    }
}
