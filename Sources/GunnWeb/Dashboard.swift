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
    /// Replays (the world at a seq) running at once, each reading the log.
    private let replays = Admission(limit: Dashboard.maxReplays)
    static let maxReplays = 2
    /// One status ask at a time (it may outlive its one-second wait).
    private let statusAsked = Admission(limit: 1)

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
        /// The world seq and status poll the last eyes were computed at (nothing new: not again).
        var eyesAt: (UInt64, UInt64)?
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
        /// When its last token came (monotonic seconds): a generation that goes quiet ends.
        var lastHeard = EventLoop.now()

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
        /// The replica starts again from nothing (then from the log writer's newest snapshot): the
        /// world it had goes, every page is sent its entities again.
        mutating func restartFromSnapshot() {
            changed.formUnion(world.entities.keys)
            world = WorldState()
            previousChecksum = nil
            tailSeq = 0
            followError = nil
        }

        var world = WorldState()
        var previousChecksum: String?
        /// Set when the log cannot be followed (a broken chain, a kind without a reducer here):
        /// the world stays at the last entry applied, the tail goes on.
        var followError: String?
        /// The log writer refused the subscription (the reason), until entries flow again.
        var linkError: String?
        /// The last entry taken into the tail (the world's last while it follows): where a
        /// resubscription starts, so nothing is listed or counted twice.
        var tailSeq: UInt64 = 0
        var polls: UInt64 = 0
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
        var policies: [String: (text: String, policy: ObservationPolicy)] = [:]
        var tokens: [String: Int] = [:]
        var cancellations: [String: Int] = [:]
        var health: JSONValue = .null
        var head: UInt64 = 0
        var entriesFollowed = 0
    }

    /// A bubble still "speaking" with no token for this long has ended without a line.
    let quietSeconds: Double

    public init(home: String, loop: EventLoop, client: GunnClient, quietSeconds: Double = 30,
                gather: @escaping @Sendable () async -> MetricsGatherer.Result) {
        self.home = home; self.loop = loop; self.client = client; self.quietSeconds = quietSeconds; self.gather = gather
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
            // Status and health are for pages: asked only while one is open.
            while true {
                if self.pages > 0 { await self.poll() }
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

    /// One request on its own connection, its reply within 2 s (nil when the log writer is away,
    /// refuses or does not answer in time).
    func request(_ body: Frame.Body) async -> Frame.Body? {
        let probe = ControlProbe(path: home + "/run/eventlog.sock", loop: loop,
                                 hello: Hello(protocolMajor: 1, protocolMinor: 0, role: "ctl", clientName: "gunn-dashboard"), deadlineMs: 2000)
        guard case .answered(let reply) = await probe.run(request: body) else { return nil }
        return reply
    }

    /// Follows the log writer's subscription for ever, reconnecting after it restarts, and
    /// resuming after the last entry taken (nothing is listed twice or skipped). A refusal of the
    /// subscription is shown to pages (`link_error`) and retried with backoff.
    func follow() async {
        var backoff = Backoff(baseSeconds: 0.1, capSeconds: 2)
        while true {
            if let conn = try? await connectLog() {
                // A compacted log starts after a snapshot: a replica with nothing yet starts from it.
                if state.withLock({ $0.tailSeq == 0 }), case .headResult(let h)? = await request(.head(Empty())), h.count < h.seq,
                   case .snapshot(let snap)? = await request(.snapshotRequest(Nonce(h.seq - h.count))),
                   let w = try? WireJSON.verifiedSnapshot(snap) {
                    state.withLock { s in
                        guard s.tailSeq == 0 else { return }
                        s.world = w
                        s.previousChecksum = snap.chainChecksum
                        s.tailSeq = w.lastGlobalSeq
                        s.changed.formUnion(w.entities.keys)
                    }
                }
                let next = state.withLock { $0.tailSeq < UInt64.max ? $0.tailSeq + 1 : $0.tailSeq }
                if (try? await conn.send(.subscribe(Nonce(next)), id: 1)) != nil {
                    state.withLock { $0.linkError = nil }
                    while let f = await conn.receive() {
                        if case .error(let e)? = f.body {
                            state.withLock { s in
                                s.linkError = "\(e.name): \(e.message)"
                                // Compacted past the replica: start again from the newest snapshot
                                // (the tail keeps what it listed; the compacted entries are gone).
                                if e.code == UInt32(ErrorCode.snapshotRequired.code) { s.restartFromSnapshot() }
                            }
                            break
                        }
                        guard case .entries(let batch)? = f.body else { continue }
                        backoff = Backoff(baseSeconds: 0.1, capSeconds: 2)
                        for e in batch.entries { take(e) }
                    }
                }
                conn.close()
            }
            try? await Task.sleep(nanoseconds: UInt64(backoff.next() * 1e9))
        }
    }

    /// One entry of the subscription: applied to the replica, added to the tail, and read for
    /// speech. One already taken is ignored; a gap, an entry that cannot be read or one the
    /// replica refuses stops the world there (`follow_error`), and the tail goes on.
    func take(_ wire: LogEntry) {
        let decoded = Result { () throws(GunnError) in try WireJSON.eventLogEntry(wire) }
        state.withLock { s in
            guard wire.globalSeq > s.tailSeq else { return }
            defer { s.tailSeq = wire.globalSeq; s.entriesFollowed += 1 }
            if s.followError == nil && wire.globalSeq != s.tailSeq + 1 {
                s.followError = "\(ErrorCode.sequenceGap.name) at \(wire.globalSeq): expected global_seq \(s.tailSeq + 1)"
            }
            let entry: EventLogEntry
            switch decoded {
            case .success(let e): entry = e
            case .failure(let error):
                if s.followError == nil { s.followError = "\(error.code.name) at \(wire.globalSeq): \(error.message)" }
                return
            }
            if s.followError == nil {
                do throws(GunnError) {
                    let ids = try Replay.follow(entry, world: &s.world, previousChecksum: s.previousChecksum)
                    s.previousChecksum = entry.checksum
                    s.changed.formUnion(ids)
                } catch {
                    s.followError = "\(error.code.name) at \(entry.globalSeq): \(error.message)"
                }
            }
            let summary = Self.summary(entry)
            s.tail.append(summary)
            if s.tail.count > Self.tailKept { s.tail.removeFirst(s.tail.count - Self.tailKept) }
            if s.fresh.count < Self.tailPerBatch { s.fresh.append(summary) } else { s.skipped += 1 }
            Self.readSpeech(entry, &s)
        }
    }

    /// `text` cut to at most `maxBytes` of UTF-8, on a character boundary.
    static func capped(_ text: String, _ maxBytes: Int) -> String {
        guard text.utf8.count > maxBytes else { return text }
        var out = ""
        for ch in text {
            if out.utf8.count + ch.utf8.count > maxBytes { break }
            out.append(ch)
        }
        return out
    }

    static func summary(_ e: EventLogEntry) -> JSONValue {
        var payload = CanonicalJSON.encodeString(e.effect.payload)
        if payload.utf8.count > 160 { payload = capped(payload, 157) + "…" }
        return ["seq": .number(Double(e.globalSeq)), "kind": .string(e.effect.kind), "agent_id": .string(e.agentID?.rawValue ?? ""),
                "req_id": .string(e.reqID?.rawValue ?? ""), "checksum": .string(String(e.checksum.prefix(12))), "payload": .string(payload),
                "sim_time": .number(e.simTime)]
    }

    static func readSpeech(_ e: EventLogEntry, _ s: inout State) {
        switch e.effect.kind {
        case "Speak":
            guard let agent = e.effect.payload["agent_id"]?.stringValue, let text = e.effect.payload["text"]?.stringValue else { return }
            let key = bubbleKey(agent, e.reqID?.rawValue ?? "seq-\(e.globalSeq)", &s)
            guard var b = s.bubbles[key] else { return }
            b.text = capped(text, maxBubbleText); b.state = "said"; b.seq = e.globalSeq
            s.bubbles[key] = b
        case "GenerationCancelled":
            guard let agent = e.effect.payload["agent_id"]?.stringValue, let req = e.effect.payload["req_id"]?.stringValue else { return }
            let reason = e.effect.payload["reason"]?.stringValue ?? ""
            let key = bubbleKey(agent, req, &s)
            guard var b = s.bubbles[key] else { return }
            b.state = "cancelled"; b.reason = capped(reason, 256); b.seq = e.globalSeq
            if reason.hasPrefix("stale_due_to:"), let n = UInt64(reason.dropFirst("stale_due_to:".count)) { b.staleSeq = n }
            s.bubbles[key] = b
            if s.cancellations.count < maxCountedAgents || s.cancellations[agent] != nil { s.cancellations[agent, default: 0] += 1 }
        default:
            return
        }
    }

    /// The bubble of one utterance, made when first heard. At the bound, room is made first: the
    /// oldest bubble goes, a cancelled one only when every bubble is (interruptions are what people
    /// look for).
    static func bubbleKey(_ agent: String, _ req: String, _ s: inout State) -> String {
        let key = agent + "/" + req
        if s.bubbles[key] == nil {
            if s.bubbles.count >= bubblesKept {
                let oldest = s.bubbles.filter { $0.value.state != "cancelled" }.min { $0.value.order < $1.value.order }?.key
                    ?? s.bubbles.min { $0.value.order < $1.value.order }?.key
                if let oldest { s.bubbles[oldest] = nil; s.changedBubbles.remove(oldest) }
            }
            s.bubbleOrder += 1
            s.bubbles[key] = Bubble(agent: agent, req: req, order: s.bubbleOrder)
        }
        s.changedBubbles.insert(key)
        return key
    }

    /// A partial token of `speaker`'s live generation (relayed by the orchestrator to this
    /// spectator, or posted to this adapter by one of its own agents).
    public func token(speaker: String, reqID: String, index: UInt32, text: String) {
        state.withLock { s in
            let key = Self.bubbleKey(speaker, reqID, &s)
            // A generation that went quiet and speaks again is speaking again.
            guard var b = s.bubbles[key], b.state == "speaking" || b.state == "ended" else { return }
            b.state = "speaking"
            if b.text.utf8.count < Self.maxBubbleText { b.text = Self.capped(b.text + text, Self.maxBubbleText) }
            b.tokens += 1
            b.lastHeard = EventLoop.now()
            s.bubbles[key] = b
            if s.tokens.count < Self.maxCountedAgents || s.tokens[speaker] != nil { s.tokens[speaker, default: 0] += 1 }
        }
    }

    // MARK: - pages

    /// A page's stream opens: the whole picture first, then batches. `allowed` nil is the whole
    /// world; otherwise only the eyes of those agents are sent (no world, no log). Called on the
    /// socket's event loop (its onOpen), so what other threads send afterwards (they hop to the
    /// loop) goes out after this picture; nothing is sent while the lock is held, since a write
    /// that fails on the loop closes the socket and its close handler takes the lock.
    func attach(allowed: Set<String>?, send: @escaping @Sendable (String) -> Bool) -> UInt64? {
        let picked = state.withLock { s -> (UInt64, [String], Bool)? in
            guard s.pages.count < Self.maxPages else { return nil }
            let first = s.pages.isEmpty
            s.nextPage += 1
            let id = s.nextPage
            s.pages[id] = Page(send: send, allowed: allowed, since: s.tailSeq)
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
                if let err = s.linkError { hello["link_error"] = .string(err) }
            }
            var out = [CanonicalJSON.encodeString(.object(hello))]
            if let m = Self.agentsMessage(s, allowed) { out.append(m) }
            if s.health != .null { out.append(CanonicalJSON.encodeString(s.health)) }
            return (id, out, first)
        }
        guard let (id, messages, first) = picked else { return nil }
        for m in messages where !send(m) { detach(id); return id }
        // The first page after none: status and health now (none was asked without pages).
        if first { Task { await self.poll() } }
        return id
    }

    func detach(_ id: UInt64) { state.withLock { _ = $0.pages.removeValue(forKey: id) } }

    /// The page chose whose eyes to look through (nil: the whole world again). Called on the
    /// socket's loop (its onMessage): the eyes are sent after the lock is released.
    func select(_ id: UInt64, _ agent: String?) -> GunnError? {
        let outcome = state.withLock { s -> Result<(Page, String?), GunnError>? in
            guard let page = s.pages[id] else { return nil }
            if let agent, let allowed = page.allowed, !allowed.contains(agent) {
                return .failure(GunnError(.forbidden, "this token may not look through the eyes of \(agent)"))
            }
            s.pages[id]!.selected = agent
            s.pages[id]!.lastEyes = nil
            s.pages[id]!.eyesAt = nil
            return .success((page, agent.flatMap { Self.eyes(id, $0, &s) }))
        }
        switch outcome {
        case .failure(let e)?: return e
        case .success((let page, let m?))?: if !page.send(m) { detach(id) }
        default: break
        }
        return nil
    }

    /// The selected agent's view of the replica, when it changed since the page last got it (nil:
    /// nothing new). Its entities are the world's through the agent's policy, computed with the
    /// orchestrator's own filter; the queues beside it are the orchestrator's last status.
    static func eyes(_ id: UInt64, _ agent: String, _ s: inout State) -> String? {
        guard let page = s.pages[id] else { return nil }
        if let at = page.eyesAt, at == (s.world.lastGlobalSeq, s.polls) { return nil }
        s.pages[id]!.eyesAt = (s.world.lastGlobalSeq, s.polls)
        let status = s.agents.first { $0.agentID == agent }
        guard let policy = s.policies[agent]?.policy else {
            let m = StreamHub.encode(["type": "eyes", "agent_id": .string(agent), "seq": .number(Double(s.world.lastGlobalSeq)), "known": false])
            guard page.lastEyes != "unknown" else { return nil }
            s.pages[id]!.lastEyes = "unknown"
            return m
        }
        let view = policy.filter(s.world, for: AgentID(agent))
        // Resent only when the view or its queues changed (the seq moves on every commit).
        let key = view.contextDigest + "/\(status?.viewSeq ?? 0)/\(status?.queueDepth ?? 0)/\(status?.pendingObservations ?? 0)"
        guard page.lastEyes != key else { return nil }
        s.pages[id]!.lastEyes = key
        var ents = JSONObject()
        for (eid, e) in view.entities { ents[eid] = e.objectValue.map(entityJSON) ?? e }
        var o: JSONObject = ["type": "eyes", "agent_id": .string(agent), "known": true, "seq": .number(Double(s.world.lastGlobalSeq)),
                             "view": ["entities": .object(ents), "relationships": .object(view.relationships)],
                             "context_digest": .string(view.contextDigest), "policy": WireJSON.policyJSON(policy)]
        if let status {
            o["view_seq"] = .number(Double(status.viewSeq)); o["view_global_seq"] = .number(Double(status.viewGlobalSeq))
            o["queue_depth"] = .number(Double(status.queueDepth)); o["pending_observations"] = .number(Double(status.pendingObservations))
        }
        return CanonicalJSON.encodeString(.object(o))
    }

    /// The agents message a page may have: every agent for the whole world, its own otherwise.
    static func agentsMessage(_ s: State, _ allowed: Set<String>?) -> String? {
        guard s.polls > 0 else { return nil }
        let agents = allowed.map { a in s.agents.filter { a.contains($0.agentID) } } ?? s.agents
        return StreamHub.encode(["type": "agents", "head": .number(Double(allowed == nil ? s.head : 0)), "agents": .array(agents.map { a in
            ["agent_id": .string(a.agentID), "view_seq": .number(Double(a.viewSeq)), "view_global_seq": .number(Double(a.viewGlobalSeq)),
             "queue_depth": .number(Double(a.queueDepth)), "pending_observations": .number(Double(a.pendingObservations)),
             "active_generations": .number(Double(a.activeGenerations)), "connected": .bool(a.connected),
             "tokens": .number(Double(s.tokens[a.agentID] ?? 0)), "cancellations": .number(Double(s.cancellations[a.agentID] ?? 0))]
        })])
    }

    /// Sends each message to its page, then drops the pages that are gone (a send refused).
    func deliver(_ out: [(UInt64, @Sendable (String) -> Bool, String)]) {
        var gone: Set<UInt64> = []
        for (id, send, m) in out where !gone.contains(id) { if !send(m) { gone.insert(id) } }
        if !gone.isEmpty { state.withLock { s in for id in gone { s.pages[id] = nil } } }
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
    /// each selected agent's eyes when they changed. Sent once the lock is released.
    func flush() {
        let now = EventLoop.now()
        let out = state.withLock { s -> [(UInt64, @Sendable (String) -> Bool, String)] in
            // A generation gone quiet without a line or a cancellation has ended.
            for (k, b) in s.bubbles where b.state == "speaking" && now - b.lastHeard > quietSeconds {
                s.bubbles[k]!.state = "ended"
                s.changedBubbles.insert(k)
            }
            guard !s.pages.isEmpty else {
                s.changed.removeAll(); s.fresh.removeAll(); s.skipped = 0; s.changedBubbles.removeAll()
                return []
            }
            var out: [(UInt64, @Sendable (String) -> Bool, String)] = []
            if !s.changed.isEmpty || !s.fresh.isEmpty || !s.changedBubbles.isEmpty {
                var ents = JSONObject()
                for id in s.changed { ents[id] = s.world.entities[id].map(Self.entityJSON) ?? .null }
                var batch: JSONObject = ["type": "batch", "seq": .number(Double(s.world.lastGlobalSeq)), "entities": .object(ents),
                                         "tail": .array(s.fresh), "skipped": .number(Double(s.skipped)),
                                         "speech": .array(s.changedBubbles.compactMap { s.bubbles[$0]?.json })]
                if let err = s.followError { batch["follow_error"] = .string(err) }
                if let err = s.linkError { batch["link_error"] = .string(err) }
                let text = CanonicalJSON.encodeString(.object(batch))
                let firstFresh = s.fresh.first?["seq"]?.numberValue.map { UInt64($0) } ?? UInt64.max
                for (id, p) in s.pages where p.allowed == nil {
                    // A page that attached inside this batch already has its start in its first picture.
                    if p.since >= firstFresh && p.since < UInt64.max {
                        var own = batch
                        own["tail"] = .array(s.fresh.filter { ($0["seq"]?.numberValue ?? 0) > Double(p.since) })
                        out.append((id, p.send, CanonicalJSON.encodeString(.object(own))))
                    } else {
                        out.append((id, p.send, text))
                    }
                    s.pages[id]!.since = 0
                }
                s.changed.removeAll(); s.fresh.removeAll(); s.skipped = 0; s.changedBubbles.removeAll()
            }
            for (id, p) in s.pages {
                if let a = p.selected, let m = Self.eyes(id, a, &s) { out.append((id, p.send, m)) }
            }
            return out
        }
        deliver(out)
    }

    // MARK: - status and health

    /// Once a second: the orchestrator's agents (queues, policies) and every process's health,
    /// each asked within a second, so a process that does not answer shows as such at once.
    func poll() async {
        let client = client
        let asking = statusAsked
        // One status ask at a time: one the orchestrator never answers is not asked again beside.
        let ask = asking.enter()
        async let asked = ask ? Deadline.within(1) { defer { asking.leave() }; return try? await client.status() } : nil
        async let supervisor = ControlProbe(path: home + "/run/supervisor.sock", loop: loop,
                                            hello: Hello(protocolMajor: 1, protocolMinor: 0, role: "ctl", clientName: "gunn-dashboard"),
                                            deadlineMs: 1000).run(request: .status(Empty()))
        async let gathering = gather()
        let (status, sup, gathered) = await (asked, supervisor, gathering)
        let out = state.withLock { s -> [(UInt64, @Sendable (String) -> Bool, String)] in
            s.polls += 1
            if let status {
                s.agents = status.agents
                s.head = status.headSeq
                // A policy is read again only when its text changed (they rarely do).
                var policies: [String: (text: String, policy: ObservationPolicy)] = [:]
                for a in status.agents where !a.policy.isEmpty {
                    if let known = s.policies[a.agentID], known.text == a.policy { policies[a.agentID] = known; continue }
                    guard let json = try? JSONParser.parse(a.policy), case .object(var o) = json else { continue }
                    o["agent_id"] = .string(a.agentID)
                    if let r = try? WireJSON.registration(.object(o)) { policies[a.agentID] = (a.policy, r.observation) }
                }
                s.policies = policies
            }
            var children: [JSONValue] = []
            if case .answered(.statusResult(let st)?) = sup {
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
            let all = Self.agentsMessage(s, nil)
            var out: [(UInt64, @Sendable (String) -> Bool, String)] = []
            for (id, p) in s.pages {
                if let m = p.allowed == nil ? all : Self.agentsMessage(s, p.allowed) { out.append((id, p.send, m)) }
                out.append((id, p.send, health))
            }
            return out
        }
        deliver(out)
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
        guard replays.enter() else { throw GunnError(.quotaExceeded, "\(Self.maxReplays) replays are running already", retryAfterMs: 500) }
        defer { replays.leave() }
        guard case .headResult(let h)? = await request(.head(Empty())) else { throw GunnError(.adapterUnavailable, "the log writer does not answer", retryAfterMs: 500) }
        guard seq >= 1, seq <= h.seq else { throw GunnError(.invalidField, "seq \(seq) is not in the log (1…\(h.seq))") }
        var world = WorldState()
        var prev: String?
        if case .snapshot(let snap)? = await request(.snapshotRequest(Nonce(seq))), snap.globalSeq <= seq,
           let w = try? WireJSON.verifiedSnapshot(snap) {
            world = w; prev = snap.chainChecksum
        }
        guard world.lastGlobalSeq < seq else { return world }
        let conn: FramedConnection
        do { conn = try await connectLog() } catch { throw GunnError(.adapterUnavailable, "the log writer does not answer", retryAfterMs: 500) }
        defer { conn.close() }
        do { try await conn.send(.readRange(SeqRange(from: world.lastGlobalSeq + 1, to: seq, maxBatch: 512)), id: 1) } catch {
            throw GunnError(.adapterUnavailable, "the log writer closed the connection", retryAfterMs: 500)
        }
        // Each batch within 5 s: a log writer that stops answering ends the replay, not its slot.
        while let f = await Deadline.within(5, { await conn.receive() }) {
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
