import Foundation
import Synchronization
import GunnAuth
import GunnClient
import GunnCore
import GunnIO
import GunnOrchestratorServer
import GunnTelemetry
import GunnWire

/// The live dashboard's server side (docs/dashboard.md): a replica of the world that follows the
/// log writer's subscription entry by entry (so what the page shows is exactly the log's world at
/// the seq it names), the recent log tail, speech bubbles (partial tokens heard as a spectator of
/// the orchestrator, Speak and GenerationCancelled from the log), the agents' status and every
/// process's health. Pages connect over one WebSocket and get changes batched at most ten times a
/// second, whatever the commit rate.
public final class Dashboard: Sendable {
    let home: String
    let loop: EventLoop
    let client: GunnClient
    /// Every process's metrics (shared with /metrics, so the dashboard adds no scrape of its own).
    let gather: @Sendable () async -> MetricsGatherer.Result
    private let state = Mutex(State())
    /// Replays (the world at a seq) running now: at most `maxReplays`, each reading the log.
    private let replays = Atomic<Int>(0)
    static let maxReplays = 2

    /// Pages connected at once (past it, 503 TOO_MANY_CONNECTIONS), and what one batch carries.
    static let maxPages = 32
    static let tailKept = 200
    static let tailPerBatch = 100
    static let bubblesKept = 64
    static let maxBubbleText = 4096
    static let maxEntityBytes = 2048
    static let maxCountedAgents = 100_000
    /// Seconds between batches (10 per second at most) and between health and agent polls.
    static let batchSeconds = 0.1
    static let pollSeconds = 1.0

    struct Page {
        let send: @Sendable (String) -> Bool
        /// nil: the whole world (an admin token); otherwise the agents whose eyes it may borrow.
        let allowed: Set<String>?
        var selected: String?
        var lastEyes: String?
        /// The seq of the picture it got first: later batches carry only what came after.
        var since: UInt64 = 0
    }

    struct Bubble {
        var agent: String, req: String
        var text = ""
        var state = "speaking"
        var reason = ""
        var staleSeq: UInt64 = 0
        var seq: UInt64 = 0
        var tokens = 0
        var order: UInt64 = 0

        var json: JSONValue {
            var o: JSONObject = ["agent_id": .string(agent), "req_id": .string(req), "text": .string(text), "state": .string(state),
                                 "tokens": .number(Double(tokens)), "order": .number(Double(order))]
            if seq > 0 { o["seq"] = .number(Double(seq)) }
            if !reason.isEmpty { o["reason"] = .string(reason) }
            if staleSeq > 0 { o["stale_seq"] = .number(Double(staleSeq)) }
            return .object(o)
        }
    }

    struct State {
        var world = WorldState()
        var previousChecksum: String?
        /// Set when the log cannot be followed (a broken chain, a kind without a reducer here):
        /// the world stays at the last entry applied, the tail goes on.
        var followError: String?
        var changed: Set<String> = []
        var tail: [JSONValue] = []
        var fresh: [JSONValue] = []
        var skipped = 0
        var bubbles: [String: Bubble] = [:]
        var changedBubbles: Set<String> = []
        var bubbleOrder: UInt64 = 0
        var pages: [UInt64: Page] = [:]
        var nextPage: UInt64 = 0
        /// From the orchestrator's status: each agent's policy and queues.
        var agents: [AgentStatus] = []
        var policies: [String: ObservationPolicy] = [:]
        var tokens: [String: Int] = [:]
        var cancellations: [String: Int] = [:]
        var health: JSONValue = .null
        var agentsMessage: String?
        var entriesFollowed = 0
    }

    public init(home: String, loop: EventLoop, client: GunnClient, gather: @escaping @Sendable () async -> MetricsGatherer.Result) {
        self.home = home; self.loop = loop; self.client = client; self.gather = gather
    }

    /// Starts following the log, batching, and polling status and health; runs for the process's life.
    public func start() {
        Task { await self.follow() }
        Task {
            while true {
                try? await Task.sleep(nanoseconds: UInt64(Self.batchSeconds * 1e9))
                self.flush()
            }
        }
        Task {
            while true {
                await self.poll()
                try? await Task.sleep(nanoseconds: UInt64(Self.pollSeconds * 1e9))
            }
        }
    }

    public var pages: Int { state.withLock { $0.pages.count } }
    public var entriesFollowed: Int { state.withLock { $0.entriesFollowed } }

    // MARK: - following the log

    func connectLog() async throws -> FramedConnection {
        var options = ConnectionOptions()
        options.handshakeTimeoutMs = 2000
        let hello = Hello(protocolMajor: 1, protocolMinor: 0, role: "ctl", clientName: "gunn-dashboard")
        return try await FramedConnection.connect(path: home + "/run/eventlog.sock", loop: loop, hello: hello, options: options)
    }

    /// One request on its own connection, its reply (nil when the log writer is away or refuses).
    func request(_ body: Frame.Body) async -> Frame.Body? {
        guard let conn = try? await connectLog() else { return nil }
        defer { conn.close() }
        guard (try? await conn.send(body, id: 1)) != nil else { return nil }
        while let f = await conn.receive() { if f.id == 1 { return f.body } }
        return nil
    }

    /// Follows the log writer's subscription for ever, reconnecting after it restarts, and
    /// resuming after the last entry applied (nothing is applied twice or skipped).
    func follow() async {
        var backoff = Backoff(baseSeconds: 0.1, capSeconds: 2)
        while true {
            if let conn = try? await connectLog() {
                // A compacted log starts after a snapshot: a replica with nothing yet starts from it.
                if state.withLock({ $0.world.lastGlobalSeq == 0 }), case .headResult(let h)? = await request(.head(Empty())), h.count < h.seq,
                   case .snapshot(let snap)? = await request(.snapshotRequest(Nonce(h.seq - h.count))), snap.globalSeq > 0,
                   let json = try? JSONParser.parse(snap.state), let w = try? WorldState(json: json) {
                    state.withLock { s in
                        s.world = w
                        s.previousChecksum = snap.chainChecksum
                        s.changed.formUnion(w.entities.keys)
                    }
                }
                let next = state.withLock { $0.world.lastGlobalSeq + 1 }
                if (try? await conn.send(.subscribe(Nonce(next)), id: 1)) != nil {
                    backoff = Backoff(baseSeconds: 0.1, capSeconds: 2)
                    while let f = await conn.receive() {
                        guard case .entries(let batch)? = f.body else { continue }
                        for e in batch.entries { take(e) }
                    }
                }
                conn.close()
            }
            try? await Task.sleep(nanoseconds: UInt64(backoff.next() * 1e9))
        }
    }

    /// One entry of the subscription: applied to the replica, added to the tail, and read for speech.
    func take(_ wire: LogEntry) {
        guard let entry = try? WireJSON.eventLogEntry(wire) else { return }
        state.withLock { s in
            guard entry.globalSeq == s.world.lastGlobalSeq + 1 || s.followError != nil else { return }
            if s.followError == nil {
                do throws(GunnError) {
                    let ids = try Replay.follow(entry, world: &s.world, previousChecksum: s.previousChecksum)
                    s.previousChecksum = entry.checksum
                    s.changed.formUnion(ids)
                } catch {
                    s.followError = "\(error.code.name) at \(entry.globalSeq): \(error.message)"
                }
            }
            s.entriesFollowed += 1
            let summary = Self.summary(entry)
            s.tail.append(summary)
            if s.tail.count > Self.tailKept { s.tail.removeFirst(s.tail.count - Self.tailKept) }
            if s.fresh.count < Self.tailPerBatch { s.fresh.append(summary) } else { s.skipped += 1 }
            Self.readSpeech(entry, &s)
        }
    }

    static func summary(_ e: EventLogEntry) -> JSONValue {
        var payload = CanonicalJSON.encodeString(e.effect.payload)
        if payload.utf8.count > 160 { payload = String(payload.utf8.prefix(157)).map { $0 + "…" } ?? "" }
        return ["seq": .number(Double(e.globalSeq)), "kind": .string(e.effect.kind), "agent_id": .string(e.agentID?.rawValue ?? ""),
                "req_id": .string(e.reqID?.rawValue ?? ""), "checksum": .string(String(e.checksum.prefix(12))), "payload": .string(payload),
                "sim_time": .number(e.simTime)]
    }

    static func readSpeech(_ e: EventLogEntry, _ s: inout State) {
        switch e.effect.kind {
        case "Speak":
            guard let agent = e.effect.payload["agent_id"]?.stringValue, let text = e.effect.payload["text"]?.stringValue else { return }
            let key = bubbleKey(agent, e.reqID?.rawValue ?? "seq-\(e.globalSeq)", &s)
            s.bubbles[key]!.text = String(text.prefix(maxBubbleText))
            s.bubbles[key]!.state = "said"
            s.bubbles[key]!.seq = e.globalSeq
        case "GenerationCancelled":
            guard let agent = e.effect.payload["agent_id"]?.stringValue, let req = e.effect.payload["req_id"]?.stringValue else { return }
            let reason = e.effect.payload["reason"]?.stringValue ?? ""
            let key = bubbleKey(agent, req, &s)
            s.bubbles[key]!.state = "cancelled"
            s.bubbles[key]!.reason = reason
            s.bubbles[key]!.seq = e.globalSeq
            if reason.hasPrefix("stale_due_to:"), let n = UInt64(reason.dropFirst("stale_due_to:".count)) { s.bubbles[key]!.staleSeq = n }
            if s.cancellations.count < maxCountedAgents || s.cancellations[agent] != nil { s.cancellations[agent, default: 0] += 1 }
        default:
            return
        }
    }

    /// The bubble of one utterance, made when first heard; the oldest go past `bubblesKept`.
    static func bubbleKey(_ agent: String, _ req: String, _ s: inout State) -> String {
        let key = agent + "/" + req
        if s.bubbles[key] == nil {
            s.bubbleOrder += 1
            s.bubbles[key] = Bubble(agent: agent, req: req, order: s.bubbleOrder)
            // Past the bound the oldest goes, a cancelled one last: interruptions are what people look for.
            if s.bubbles.count > bubblesKept,
               let oldest = s.bubbles.min(by: { ($0.value.state == "cancelled" ? 1 : 0, $0.value.order) < ($1.value.state == "cancelled" ? 1 : 0, $1.value.order) })?.key {
                s.bubbles[oldest] = nil
                s.changedBubbles.remove(oldest)
            }
        }
        s.changedBubbles.insert(key)
        return key
    }

    /// A partial token of `speaker`'s live generation (relayed by the orchestrator to this
    /// spectator, or posted to this adapter by one of its own agents).
    public func token(speaker: String, reqID: String, index: UInt32, text: String) {
        state.withLock { s in
            let key = Self.bubbleKey(speaker, reqID, &s)
            guard s.bubbles[key]!.state == "speaking" else { return }
            if s.bubbles[key]!.text.utf8.count < Self.maxBubbleText { s.bubbles[key]!.text += text }
            s.bubbles[key]!.tokens += 1
            if s.tokens.count < Self.maxCountedAgents || s.tokens[speaker] != nil { s.tokens[speaker, default: 0] += 1 }
        }
    }

    // MARK: - pages

    /// A page's stream opens: the whole picture first, then batches. `allowed` nil is the whole
    /// world; otherwise only the eyes of those agents are sent (no world, no log).
    func attach(allowed: Set<String>?, send: @escaping @Sendable (String) -> Bool) -> UInt64? {
        state.withLock { s -> UInt64? in
            guard s.pages.count < Self.maxPages else { return nil }
            s.nextPage += 1
            let id = s.nextPage
            s.pages[id] = Page(send: send, allowed: allowed, since: s.world.lastGlobalSeq)
            var hello: JSONObject = ["type": "hello", "scope": .string(allowed == nil ? "world" : "agents"),
                                     "seq": .number(Double(s.world.lastGlobalSeq))]
            if let allowed {
                hello["agents"] = .array(allowed.sorted().map { .string($0) })
            } else {
                var ents = JSONObject()
                for (id, e) in s.world.entities { ents[id] = Self.entityJSON(e) }
                hello["entities"] = .object(ents)
                hello["tail"] = .array(s.tail)
                hello["speech"] = .array(s.bubbles.values.sorted { $0.order < $1.order }.map(\.json))
                if let err = s.followError { hello["follow_error"] = .string(err) }
            }
            _ = send(CanonicalJSON.encodeString(.object(hello)))
            if let m = s.agentsMessage { _ = send(m) }
            if s.health != .null { _ = send(CanonicalJSON.encodeString(s.health)) }
            return id
        }
    }

    func detach(_ id: UInt64) { state.withLock { _ = $0.pages.removeValue(forKey: id) } }

    /// The page chose whose eyes to look through (nil: the whole world again).
    func select(_ id: UInt64, _ agent: String?) -> GunnError? {
        state.withLock { s -> GunnError? in
            guard let page = s.pages[id] else { return nil }
            if let agent, let allowed = page.allowed, !allowed.contains(agent) {
                return GunnError(.forbidden, "this token may not look through the eyes of \(agent)")
            }
            s.pages[id]!.selected = agent
            s.pages[id]!.lastEyes = nil
            if let agent { Self.sendEyes(id, agent, &s) }
            return nil
        }
    }

    /// The selected agent's view of the replica, when it changed since the page last got it.
    static func sendEyes(_ id: UInt64, _ agent: String, _ s: inout State) {
        guard let page = s.pages[id] else { return }
        let status = s.agents.first { $0.agentID == agent }
        guard let policy = s.policies[agent] else {
            let m = StreamHub.encode(["type": "eyes", "agent_id": .string(agent), "seq": .number(Double(s.world.lastGlobalSeq)), "known": false])
            if page.lastEyes != m { s.pages[id]!.lastEyes = m; _ = page.send(m) }
            return
        }
        let view = policy.filter(s.world, for: AgentID(agent))
        var o: JSONObject = ["type": "eyes", "agent_id": .string(agent), "known": true, "seq": .number(Double(s.world.lastGlobalSeq)),
                             "view": view.document, "context_digest": .string(view.contextDigest), "policy": WireJSON.policyJSON(policy)]
        if let status {
            o["view_seq"] = .number(Double(status.viewSeq)); o["view_global_seq"] = .number(Double(status.viewGlobalSeq))
            o["queue_depth"] = .number(Double(status.queueDepth)); o["pending_observations"] = .number(Double(status.pendingObservations))
        }
        // Resent only when the view itself changed (the seq moves on every commit).
        let key = view.contextDigest + "/\(status?.viewSeq ?? 0)/\(status?.queueDepth ?? 0)/\(status?.pendingObservations ?? 0)"
        guard page.lastEyes != key else { return }
        s.pages[id]!.lastEyes = key
        _ = page.send(CanonicalJSON.encodeString(.object(o)))
    }

    static func entityJSON(_ e: JSONObject) -> JSONValue {
        let v = JSONValue.object(e)
        guard CanonicalJSON.encode(v).count > maxEntityBytes else { return v }
        var small = JSONObject()
        for k in ["kind", "pos"] { if let x = e[k] { small[k] = x } }
        small["truncated"] = true
        return .object(small)
    }

    /// One batch to every page: what changed since the last (entities, new entries, speech), and
    /// each selected agent's eyes when they changed.
    func flush() {
        state.withLock { s in
            guard !s.pages.isEmpty else {
                s.changed.removeAll(); s.fresh.removeAll(); s.skipped = 0; s.changedBubbles.removeAll()
                return
            }
            if !s.changed.isEmpty || !s.fresh.isEmpty || !s.changedBubbles.isEmpty {
                var ents = JSONObject()
                for id in s.changed { ents[id] = s.world.entities[id].map(Self.entityJSON) ?? .null }
                var batch: JSONObject = ["type": "batch", "seq": .number(Double(s.world.lastGlobalSeq)), "entities": .object(ents),
                                         "tail": .array(s.fresh), "skipped": .number(Double(s.skipped)),
                                         "speech": .array(s.changedBubbles.compactMap { s.bubbles[$0]?.json })]
                if let err = s.followError { batch["follow_error"] = .string(err) }
                let text = CanonicalJSON.encodeString(.object(batch))
                let firstFresh = s.fresh.first?["seq"]?.numberValue.map { UInt64($0) } ?? UInt64.max
                for (id, p) in s.pages where p.allowed == nil {
                    // A page that attached inside this batch already has its start in its first picture.
                    if p.since >= firstFresh && p.since < UInt64.max {
                        var own = batch
                        own["tail"] = .array(s.fresh.filter { ($0["seq"]?.numberValue ?? 0) > Double(p.since) })
                        _ = p.send(CanonicalJSON.encodeString(.object(own)))
                    } else {
                        _ = p.send(text)
                    }
                    s.pages[id]!.since = 0
                }
                s.changed.removeAll(); s.fresh.removeAll(); s.skipped = 0; s.changedBubbles.removeAll()
            }
            for (id, p) in s.pages { if let a = p.selected { Self.sendEyes(id, a, &s) } }
        }
    }

    // MARK: - status and health

    /// Once a second: the orchestrator's agents (queues, policies) and every process's health.
    func poll() async {
        let status = try? await client.status()
        let supervisor = await ControlProbe(path: home + "/run/supervisor.sock", loop: loop,
                                            hello: Hello(protocolMajor: 1, protocolMinor: 0, role: "ctl", clientName: "gunn-dashboard"),
                                            deadlineMs: 1000).run(request: .status(Empty()))
        let gathered = await gather()
        state.withLock { s in
            if let status {
                s.agents = status.agents
                var policies: [String: ObservationPolicy] = [:]
                for a in status.agents where !a.policy.isEmpty {
                    guard let json = try? JSONParser.parse(a.policy), case .object(var o) = json else { continue }
                    o["agent_id"] = .string(a.agentID)
                    if let r = try? WireJSON.registration(.object(o)) { policies[a.agentID] = r.observation }
                }
                s.policies = policies
                s.agentsMessage = StreamHub.encode(["type": "agents", "head": .number(Double(status.headSeq)),
                                                    "agents": .array(status.agents.map { a in
                    ["agent_id": .string(a.agentID), "view_seq": .number(Double(a.viewSeq)), "view_global_seq": .number(Double(a.viewGlobalSeq)),
                     "queue_depth": .number(Double(a.queueDepth)), "pending_observations": .number(Double(a.pendingObservations)),
                     "active_generations": .number(Double(a.activeGenerations)), "connected": .bool(a.connected),
                     "tokens": .number(Double(s.tokens[a.agentID] ?? 0)), "cancellations": .number(Double(s.cancellations[a.agentID] ?? 0))]
                })])
            }
            var children: [JSONValue] = []
            if case .answered(.statusResult(let st)?) = supervisor {
                children = st.children.map { c in
                    ["name": .string(c.name), "state": .string(c.state), "restarts": .number(Double(c.restarts)), "pid": .number(Double(c.pid)),
                     "last_exit": .string(c.lastExit), "uptime_ms": .number(Double(c.uptimeMs))]
                }
            }
            var processes = JSONObject()
            for snap in gathered.snapshots {
                guard let name = snap["process"]?.stringValue else { continue }
                processes[name] = Self.keyMetrics(snap)
            }
            var up = JSONObject()
            for (k, v) in gathered.up { up[String(k.dropLast(".sock".count))] = .bool(v) }
            var breakers: [JSONValue] = []
            for b in status?.breakers ?? [] { breakers.append(["link": .string("orchestrator→" + b.name), "state": .string(b.state)]) }
            s.health = ["type": "health", "supervised": .bool(!children.isEmpty), "children": .array(children), "processes": .object(processes),
                        "up": .object(up), "breakers": .array(breakers), "orchestrator": .bool(status != nil),
                        "head": .number(Double(status?.headSeq ?? 0)), "replica_seq": .number(Double(s.world.lastGlobalSeq))]
            let health = CanonicalJSON.encodeString(s.health)
            for p in s.pages.values {
                if p.allowed == nil, let m = s.agentsMessage { _ = p.send(m) }
                _ = p.send(health)
            }
        }
    }

    /// A process's metrics reduced to one number a family: counters and gauges summed over their
    /// series, histograms as their p99 (seconds) over every series merged; a gauge of 2 to 16
    /// series also has each series apart, as `name{label values}`.
    static func keyMetrics(_ snap: JSONValue) -> JSONValue {
        var out = JSONObject()
        for f in snap["families"]?.arrayValue ?? [] {
            guard let name = f["name"]?.stringValue, let series = f["series"]?.arrayValue else { continue }
            if f["type"]?.stringValue == "histogram" {
                var counts: [Double] = []
                var bounds: [Double] = []
                for s in series {
                    bounds = s["buckets"]?.arrayValue?.compactMap(\.numberValue) ?? bounds
                    let c = s["counts"]?.arrayValue?.compactMap(\.numberValue) ?? []
                    if counts.count < c.count { counts += Array(repeating: 0, count: c.count - counts.count) }
                    for (i, v) in c.enumerated() { counts[i] += v }
                }
                guard let total = counts.last, total > 0 else { out[name + ":p99"] = .number(0); continue }
                let want = total * 0.99
                let i = counts.firstIndex { $0 >= want } ?? (counts.count - 1)
                out[name + ":p99"] = .number(i < bounds.count ? bounds[i] : (bounds.last ?? 0))
            } else {
                out[name] = .number(series.reduce(0) { $0 + ($1["value"]?.numberValue ?? 0) })
                // A gauge's series apart too (a few at most): `gunn_queue_depth{queued_items}`.
                if f["type"]?.stringValue == "gauge", series.count > 1, series.count <= 16 {
                    for s in series {
                        let labels = (s["labels"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ",")
                        out[name + "{" + labels + "}"] = .number(s["value"]?.numberValue ?? 0)
                    }
                }
            }
        }
        return .object(out)
    }

    // MARK: - the world at a seq

    /// The world right after `seq`, rebuilt from the log writer (its newest durable snapshot before
    /// it, then the entries after): what the log says, independent of the live replica.
    func world(at seq: UInt64) async throws(GunnError) -> WorldState {
        guard replays.add(1, ordering: .relaxed).newValue <= Self.maxReplays else {
            replays.subtract(1, ordering: .relaxed)
            throw GunnError(.quotaExceeded, "\(Self.maxReplays) replays are running already", retryAfterMs: 500)
        }
        defer { replays.subtract(1, ordering: .relaxed) }
        guard case .headResult(let h)? = await request(.head(Empty())) else { throw GunnError(.adapterUnavailable, "the log writer does not answer", retryAfterMs: 500) }
        guard seq >= 1, seq <= h.seq else { throw GunnError(.invalidField, "seq \(seq) is not in the log (1…\(h.seq))") }
        var world = WorldState()
        var prev: String?
        if case .snapshot(let snap)? = await request(.snapshotRequest(Nonce(seq))), snap.globalSeq > 0, snap.globalSeq <= seq,
           HashChain.checksum(previous: nil, canonicalEffect: snap.state) == snap.digest,
           let json = try? JSONParser.parse(snap.state), let w = try? WorldState(json: json) {
            world = w; prev = snap.chainChecksum
        }
        guard world.lastGlobalSeq < seq else { return world }
        let conn: FramedConnection
        do { conn = try await connectLog() } catch { throw GunnError(.adapterUnavailable, "the log writer does not answer", retryAfterMs: 500) }
        defer { conn.close() }
        do { try await conn.send(.readRange(SeqRange(from: world.lastGlobalSeq + 1, to: seq, maxBatch: 512)), id: 1) } catch {
            throw GunnError(.adapterUnavailable, "the log writer closed the connection", retryAfterMs: 500)
        }
        while let f = await conn.receive() {
            if case .error(let e)? = f.body { throw WireJSON.gunnError(e) }
            guard case .entries(let b)? = f.body else { continue }
            let entries = try b.entries.map { e throws(GunnError) in try WireJSON.eventLogEntry(e) }
            if world.lastGlobalSeq == 0, let first = entries.first, first.globalSeq > 1 {
                throw GunnError(.snapshotRequired, "the log starts at \(first.globalSeq) and no durable snapshot covers seq \(seq)")
            }
            world = try Replay.replay(entries[...], from: world, previousChecksum: prev)
            if let last = entries.last { prev = last.checksum }
            if b.done || world.lastGlobalSeq >= seq { break }
        }
        guard world.lastGlobalSeq == seq else { throw GunnError(.adapterUnavailable, "the log writer stopped at \(world.lastGlobalSeq) before \(seq)", retryAfterMs: 500) }
        return world
    }
}
