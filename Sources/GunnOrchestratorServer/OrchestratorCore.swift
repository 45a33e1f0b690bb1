import GunnCore
import GunnWire

/// A client connection as the core knows it: a number the host maps to its socket.
public struct ConnID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let raw: UInt64
    public init(_ raw: UInt64) { self.raw = raw }
    public static func < (a: ConnID, b: ConnID) -> Bool { a.raw < b.raw }
    public var description: String { "conn\(raw)" }
}

/// What the host must carry out for the core.
public enum CoreAction: Sendable, Equatable {
    /// Frames for one connection, in order (dropped when the connection is gone).
    case send(ConnID, [Frame])
    /// Append these entries to the log writer as batch `batch`, then call `appendAcknowledged`
    /// or `appendFailed` with the same id. Several batches may be out at once: the host sends
    /// them in order on one ordered link and reports their outcomes in order.
    case append(batch: UInt64, entries: [LogEntry])
    /// The log writer is away or refused: call `retryAppend` after this many milliseconds.
    case retryAfter(ms: UInt64)
    /// Call `timer(now:)` at this host time.
    case wake(at: HostTime)
    /// Store this world (right after its `lastGlobalSeq`, which is durable) as a durable
    /// snapshot with the log writer: recovery starts from the newest one.
    case snapshot(WorldState)
    /// A line for the orchestrator's own log (warnings, backpressure, late refusals), with its code.
    case log(String)
    /// This many of the connection's frames were answered (in the order they came): the host may
    /// read as many more (see `Settings.maxInFlightPerConnection` and `inFlight(of:)`).
    case answered(ConnID, Int)
    /// The log writer says this state and the log diverged (LOG_INTEGRITY_VIOLATION, SEQUENCE_GAP,
    /// WORLD_MISMATCH): the host must stop at once and recover from the log (nothing it holds
    /// beyond the durable head was ever published).
    case fatal(GunnError)
}

/// The orchestrator without sockets, clocks or threads: frames in, actions out. It owns the
/// engine and the commit pipeline, and keeps commit before publish for every output *and every
/// read*: a batch's effects are in the engine from the moment it is processed, so nothing that
/// reads the engine — a reply, a view, status, head, a resume, a relayed token — leaves before
/// the log writer acknowledged the batch. While the writer is away or refusing, requests are
/// refused with its code (retry_after included) and the records that must not be lost (halt
/// reports, a lost worker's cancellations, timers) are held and appended once it is back.
///
/// The host (`OrchestratorServer`, or the host simulation in the tests) performs the actions and
/// reports the log writer's answers; the core never waits.
public struct OrchestratorCore: Sendable {
    public struct Settings: Sendable {
        public var worldID = "world"
        public var worldSeed: UInt64 = 0
        public var engine = EngineConfig()
        /// Inputs in one batch at most.
        public var maxBatchItems = 512
        /// Batches with the log writer at once at most. With two, the engine forms the next batch
        /// while the writer commits the one before: each batch's replies, deltas and reads are
        /// computed when it is formed (from exactly the state it leaves) and held until it is
        /// durable, so nothing unacknowledged is published; one batch at a time when 1.
        public var maxBatchesInFlight = 2
        /// A batch is formed behind others only once this many inputs wait (a tiny batch behind a
        /// big one costs the writer a commit for little); with none out, any input starts one.
        public var minItemsBehind = 64
        /// Log entry bytes in one batch at most (well under the writer's frame limit); a batch
        /// closes after the input that crosses it.
        public var maxBatchBytes = 1 << 20
        /// Requests waiting for a batch at most; beyond, QUEUE_FULL.
        public var maxQueuedItems = 65_536
        /// Waiters for intent outcomes at most (each a connection and frame id).
        public var maxWaiters = 65_536
        /// Frames of one connection taken in and not yet answered at most: the host stops reading
        /// a connection at this bound, so a client that floods meets backpressure on its own
        /// socket (its sends wait for credit) while its pipelined frames fill batches.
        public var maxInFlightPerConnection = 1024
        /// Retry interval while the log writer is away.
        public var retryAfterMs: UInt64 = 200
        /// A durable snapshot is stored with the log writer about every this many effects (at the
        /// newest in-memory snapshot the durable head has passed); 0 never. Recovery replays only
        /// the entries after the newest one.
        public var durableSnapshotEvery = 10_000
        /// Worlds from before the log window that the host rebuilt from the log writer for a
        /// resume (`providePast`), kept at most.
        public var maxPastWorlds = 4
        /// Roles a Hello may name.
        public var roles: Set<String> = ["agent", "adapter", "ctl", "bench", "supervisor"]
        public init() { engine.quantumMs = 0 }
    }

    public let settings: Settings
    public internal(set) var engine: Engine
    /// The last global_seq the log writer acknowledged.
    public internal(set) var durableHead: GlobalSeq
    /// Registrations answered with a delta from the client's own view rather than a whole view.
    public internal(set) var resumedWithDelta = 0
    /// Of those, the resumes from a view before the log window (rebuilt from the log writer).
    public internal(set) var resumedFromLog = 0
    /// The seq of the last durable snapshot the writer stored (or recovery started from), and
    /// the one being stored now (none asked for meanwhile).
    public internal(set) var lastSnapshotSeq: GlobalSeq = 0
    var snapshotPending: GlobalSeq?
    /// Worlds from before the window, by seq, for resumes (oldest first; bounded).
    var pastWorlds: [(seq: GlobalSeq, world: WorldState)] = []
    /// The process's resident set, set by the host, shown in status (0: unknown).
    public var rssBytes: UInt64 = 0
    /// Batches the writer refused, after which the engine returned to the durable head.
    public internal(set) var rollbacks = 0
    /// Append failures the core acted on (not passed over as late or merged).
    public internal(set) var failuresTaken = 0
    /// Where published effects and deltas are counted (set by the host; none in unit tests).
    public var metrics: OrchestratorMetrics?
    /// The log link's breaker state, set by the host, shown in status.
    public var linkBreakerState = "closed"
    /// Frames taken in and not answered, per connection, and the most any connection had.
    var inFlight: [ConnID: Int] = [:]
    public internal(set) var inFlightHighWater = 0
    /// Frames of `conn` taken in and not yet answered.
    public func inFlight(of conn: ConnID) -> Int { inFlight[conn] ?? 0 }
    var queuedHighWater = 0, waiterHighWater = 0, batchHighWater = 0

    /// The bounds as status shows them: what each holds now, its limit, the most it held.
    public var gauges: [StatusGauge] {
        [StatusGauge(name: "in_flight_per_connection", value: UInt64(inFlight.values.max() ?? 0),
                     limit: UInt64(settings.maxInFlightPerConnection), highWater: UInt64(inFlightHighWater)),
         StatusGauge(name: "queued_items", value: UInt64(queuedCount), limit: UInt64(settings.maxQueuedItems), highWater: UInt64(queuedHighWater)),
         StatusGauge(name: "intent_waiters", value: UInt64(waiterCount), limit: UInt64(settings.maxWaiters), highWater: UInt64(waiterHighWater)),
         StatusGauge(name: "batch_items", value: UInt64(batch?.items.count ?? 0), limit: UInt64(settings.maxBatchItems), highWater: UInt64(batchHighWater))]
            + engine.memoryGauges.map { StatusGauge(name: $0.name, value: $0.value, limit: $0.limit, highWater: $0.highWater) }
            + [StatusGauge(name: "resumed_from_log", value: UInt64(resumedFromLog), limit: 0, highWater: UInt64(resumedFromLog)),
               StatusGauge(name: "last_durable_snapshot_seq", value: lastSnapshotSeq, limit: 0, highWater: lastSnapshotSeq),
               StatusGauge(name: "rss_bytes", value: rssBytes, limit: 0, highWater: rssBytes)]
    }

    /// The world right after `seq`, rebuilt by the host from the log writer (a resume from
    /// before the window): the next registration resuming from `seq` uses it.
    public mutating func providePast(_ world: WorldState) {
        pastWorlds.removeAll { $0.seq == world.lastGlobalSeq }
        pastWorlds.append((world.lastGlobalSeq, world))
        if pastWorlds.count > settings.maxPastWorlds { pastWorlds.removeFirst(pastWorlds.count - settings.maxPastWorlds) }
    }

    /// Whether a resume from `seq` needs the world rebuilt from the log writer (before the
    /// window, and not provided yet).
    public func needsPast(_ seq: GlobalSeq) -> Bool {
        seq < engine.windowStart && !pastWorlds.contains { $0.seq == seq }
    }

    /// The durable world to store at a clean stop (nil when nothing is durable or it is stored).
    public func stopSnapshot() -> WorldState? {
        guard durableHead > lastSnapshotSeq, let w = engine.world(at: durableHead) else { return nil }
        return w
    }

    struct Session: Sendable { var role: String; var name: String; var pid: Int32 }
    var sessions: [ConnID: Session] = [:]
    /// Connections that asked to hear all partial speech (bounded by `maxSpectators`).
    var spectators: Set<ConnID> = []
    /// Agent → the connection that registered it: the only one that may act for it, and where its
    /// observations and cancellations go.
    var owners: [AgentID: ConnID] = [:]
    var waiters: [WaiterKey: [(ConnID, UInt64)]] = [:]
    var waiterCount = 0
    /// Token chunks relayed per live generation, for a worker that leaves without a halt report.
    var relayed: [GenerationKey: Int] = [:]
    /// Registrations answered (durable), with the connection that made them: what a rollback
    /// restores, and what status shows while the writer fails.
    var answeredRegistrations: [AgentID: (registration: AgentRegistration, conn: ConnID?)] = [:]

    struct WaiterKey: Hashable, Sendable { let agent: AgentID; let req: ReqID }
    struct GenerationKey: Hashable, Sendable { let agent: AgentID; let req: String }

    // MARK: - The pipeline

    enum Work: Sendable {
        case register(AgentRegistration, RegisterAgent)
        case submit(Intent)
        case emit(EffectDraft)
        case begin(GenerationRequest)
        case progress(GenerationProgress)
        case halted(Halted)
        case relay(TokenChunk)
        case view(AgentID)
        case status
        case head
        /// The connection went away: its agents' generations are cancelled (worker_lost).
        case closed
        case flush
        /// A frame refused before it reached the engine (bad payload, unknown body).
        case refused(GunnError, body: Int)
    }

    struct Item: Sendable {
        var conn: ConnID?
        var frameID: UInt64
        var work: Work
        /// Refused at processing (e.g. FORBIDDEN): answered at completion, no engine input.
        var refusal: GunnError?
        var outputs: [EngineOutput] = []

        /// Inputs that are records of what happened, never requests: they are applied while the
        /// log writer is away and held with the unacknowledged batch.
        var mustKeep: Bool {
            switch work {
            case .halted, .closed, .flush: return true
            default: return false
            }
        }

        /// A client's frame (not the host's close or timer).
        var isFrame: Bool {
            switch work {
            case .closed, .flush: return false
            default: return true
            }
        }
    }

    struct Batch: Sendable {
        var id: UInt64
        /// The entries not yet acknowledged, oldest first (none for a batch of reads).
        var entries: [LogEntry]
        var items: [Item]
        /// An attempt ended without an answer (timeout, lost connection): the writer may hold
        /// some of these entries, so a later refusal cannot mean "nothing written".
        var mayBeStored = false
        /// What answering the items produced when the batch was formed (replies, deltas, reads,
        /// `answered`): performed once the batch is durable, dropped by a rollback.
        var held: [CoreAction] = []
        /// Intent outcomes among `held`, by connection and frame id: a rollback answers each with
        /// the writer's code instead.
        var heldOutcomes: [(conn: ConnID, frameID: UInt64, agent: AgentID, req: ReqID)] = []
        /// Registrations answered in `held`: they count as answered once the batch is durable.
        var heldRegistrations: [(agent: AgentID, registration: AgentRegistration, conn: ConnID?)] = []
    }

    var queued: [Item] = []
    var queueHead = 0
    /// The batches with the log writer, oldest first (in flight; after a failure one, held for a
    /// retry, holding everything unacknowledged).
    var batches: [Batch] = []
    /// The oldest batch with the log writer (the held one after a failure).
    var batch: Batch? { batches.first }
    /// Set while a batch's answers are being computed ahead of its durability (`hold`).
    var holding: Batch?
    /// Why the log writer cannot take appends now; nil when it can.
    public internal(set) var failure: GunnError?
    var nextBatchID: UInt64 = 0
    var actions: [CoreAction] = []
    var now: HostTime = 0
    /// Set while `receive` queues several frames: the batch is formed after the last.
    var holdBatches = false

    /// A core over the log the writer holds (oldest first): the engine is restored from it.
    public init(settings: Settings, recovered entries: [EventLogEntry], now: HostTime) throws(GunnError) {
        self.settings = settings
        engine = Engine(config: settings.engine, worldID: settings.worldID, worldSeed: settings.worldSeed)
        try engine.restore(from: entries, at: now)
        durableHead = engine.headSeq
        engine.setTrimFloor(durableHead)
        self.now = now
    }

    /// A core over a durable snapshot (the world right after its seq, and the chain checksum
    /// there), the entries after it, and the writer's idempotency table.
    public init(settings: Settings, snapshot: (state: WorldState, checksum: String)?, entries: [EventLogEntry],
                requests: [RecoveredRequest], now: HostTime) throws(GunnError) {
        self.settings = settings
        engine = Engine(config: settings.engine, worldID: settings.worldID, worldSeed: settings.worldSeed)
        try engine.restore(snapshot: snapshot, entries: entries, requests: requests, at: now)
        durableHead = engine.headSeq
        engine.setTrimFloor(durableHead)
        lastSnapshotSeq = snapshot?.state.lastGlobalSeq ?? 0
        self.now = now
    }

    /// Items waiting for a batch.
    public var queuedCount: Int { queued.count - queueHead }

    // MARK: - Events from the host

    /// A Hello: the Welcome, or the refusal (another world, an unknown role).
    public static func admit(_ hello: Hello, settings: Settings, head: GlobalSeq) -> Result<Welcome, GunnError> {
        if !hello.worldID.isEmpty && hello.worldID != settings.worldID {
            return .failure(GunnError(.worldMismatch, "this orchestrator serves world \"\(settings.worldID)\", not \"\(hello.worldID)\""))
        }
        guard settings.roles.contains(hello.role) else {
            let roles = settings.roles.sorted().joined(separator: ", ")
            return .failure(GunnError(.unknownRole, "role \"\(hello.role)\" is not served here (roles: \(roles))"))
        }
        var w = Welcome()
        w.role = "orchestrator"
        w.worldID = settings.worldID
        w.sessionID = "\(settings.worldID)-\(hello.clientName)"
        w.latestGlobalSeq = head
        return .success(w)
    }

    public mutating func opened(_ conn: ConnID, role: String, name: String, pid: Int32, capabilities: [String] = []) {
        sessions[conn] = Session(role: role, name: name, pid: pid)
        // A spectator (the web adapter's dashboard) hears every agent's partial speech.
        if capabilities.contains(Self.spectateSpeech), spectators.count < Self.maxSpectators { spectators.insert(conn) }
    }

    /// The Hello capability of a connection that is relayed every token chunk, whoever sees the speaker.
    public static let spectateSpeech = "spectate_speech"
    /// Spectating connections at once: past it, a further one is an ordinary connection.
    static let maxSpectators = 16

    /// The connection closed: queued behind its last frames, so its halt reports come first.
    public mutating func closed(_ conn: ConnID, now: HostTime) -> [CoreAction] {
        begin(now)
        enqueue(Item(conn: conn, frameID: 0, work: .closed))
        return finish()
    }

    /// The host's timer (a `wake` came due).
    public mutating func timer(now: HostTime) -> [CoreAction] {
        begin(now)
        enqueue(Item(conn: nil, frameID: 0, work: .flush))
        return finish()
    }

    /// One frame from a client.
    public mutating func receive(_ frame: Frame, from conn: ConnID, now: HostTime) -> [CoreAction] {
        receive([frame], from: conn, now: now)
    }

    /// Frames from one client, in order: all are queued before a batch is formed, so pipelined
    /// frames share a batch.
    public mutating func receive(_ frames: [Frame], from conn: ConnID, now: HostTime) -> [CoreAction] {
        begin(now)
        holdBatches = true
        for frame in frames {
            var item = Item(conn: conn, frameID: frame.id, work: Self.work(for: frame, maxPayloadBytes: settings.engine.limits.maxPayloadBytes))
            if case .refused(let e, _) = item.work { item.refusal = e }
            let n = (inFlight[conn] ?? 0) + 1
            inFlight[conn] = n
            inFlightHighWater = max(inFlightHighWater, n)
            enqueue(item)
        }
        holdBatches = false
        if failure == nil { startBatches() }
        return finish()
    }

    /// The log writer acknowledged batch `batch` up to `lastSeq`. With `startNext` false the next
    /// batch waits for `startNext(now:)`, so a host can send this batch's replies and deltas
    /// before the engine works on the next one (they would otherwise wait for it).
    public mutating func appendAcknowledged(batch id: UInt64, lastSeq: GlobalSeq, now: HostTime, startNext: Bool = true) -> [CoreAction] {
        begin(now)
        // A late or repeated ack (already handled, or for a batch merged after a failure) is passed over.
        guard let k = batches.firstIndex(where: { $0.id == id }) else { return finish() }
        let last = batches.last(where: { !$0.entries.isEmpty })?.entries.last?.globalSeq ?? durableHead
        guard lastSeq >= durableHead, lastSeq <= last, lastSeq >= batches[k].entries.first.map({ $0.globalSeq - 1 }) ?? durableHead else {
            actions.append(.fatal(GunnError(.sequenceGap, "the log writer acknowledged \(lastSeq) for batch \(id); durable head \(durableHead), batches up to \(last)")))
            return finish()
        }
        durableHead = max(durableHead, lastSeq)
        engine.setTrimFloor(durableHead)
        snapshotIfDue()
        failure = nil
        // Everything up to lastSeq is durable (the log is contiguous), in this batch and before it.
        for i in batches.indices {
            if let cut = batches[i].entries.firstIndex(where: { $0.globalSeq > lastSeq }) { batches[i].entries.removeFirst(cut) } else { batches[i].entries.removeAll() }
        }
        if !batches[k].entries.isEmpty {
            // Records joined the held batch while this append was in flight: they go next. (With
            // batches behind it, the writer acknowledged less than it was sent.)
            guard batches.count == 1 else {
                actions.append(.fatal(GunnError(.sequenceGap, "the log writer acknowledged batch \(id) only up to \(lastSeq)")))
                return finish()
            }
            nextBatchID += 1
            batches[0].id = nextBatchID
            // Part of this batch is durable and its inputs unanswered: a refusal of the rest can
            // no longer roll the batch back (exit 75 and recover from the log instead).
            batches[0].mayBeStored = true
            actions.append(.append(batch: nextBatchID, entries: batches[0].entries))
            return finish()
        }
        releaseDurable()
        if startNext { startBatches() }
        return finish()
    }

    /// Performs what the oldest batches held, in order, while they are durable (a batch of reads
    /// is durable once every batch before it is).
    mutating func releaseDurable() {
        while let b = batches.first, b.entries.isEmpty {
            batches.removeFirst()
            for r in b.heldRegistrations { answeredRegistrations[r.agent] = (r.registration, r.conn) }
            // Pushed observations say when they were published: now, not when they were computed.
            let at = UInt64(max(0, now) * 1e6)
            for action in b.held {
                guard case .send(let conn, var frames) = action else { actions.append(action); continue }
                for k in frames.indices {
                    if case .observation(var ob)? = frames[k].body { ob.committedAtMicros = at; frames[k].body = .observation(ob) }
                }
                actions.append(.send(conn, frames))
            }
            answered(b.items)
        }
    }

    /// Forms the next batch from what waits (after `appendAcknowledged(…, startNext: false)`).
    public mutating func startNext(now: HostTime) -> [CoreAction] {
        begin(now)
        if failure == nil { startBatches() }
        return finish()
    }

    /// The append of batch `batch` failed: the writer is away (`ADAPTER_UNAVAILABLE`) or refused
    /// (its own code, e.g. LOG_STORAGE_FAILURE). The batch stays held; requests are refused with
    /// `error` until an append succeeds.
    /// `mayBeStored`: an attempt went out and was not answered, so the writer may hold part of it.
    public mutating func appendFailed(batch id: UInt64, error: GunnError, mayBeStored: Bool, now: HostTime) -> [CoreAction] {
        begin(now)
        guard batches.contains(where: { $0.id == id }) else { return finish() }
        failuresTaken += 1
        if [.logIntegrityViolation, .sequenceGap, .worldMismatch].contains(error.code) {
            actions.append(.fatal(error))
            return finish()
        }
        // Everything unacknowledged becomes one held batch (the later batches were sent on the
        // same ordered link and fail with it, or follow a batch that is not durable).
        if batches.count > 1 {
            var merged = batches[0]
            for b in batches.dropFirst() {
                merged.entries += b.entries; merged.items += b.items; merged.held += b.held
                merged.heldOutcomes += b.heldOutcomes; merged.heldRegistrations += b.heldRegistrations
                merged.mayBeStored = merged.mayBeStored || b.mayBeStored
            }
            batches = [merged]
        }
        let retry = error.retryAfterMs ?? settings.retryAfterMs
        failure = GunnError(error.code, "the log writer cannot take appends: \(error.message)", retryAfterMs: retry)
        actions.append(.log("\(error.code.name) (\(error.code.code)): append of \(batches[0].entries.count) entries failed: \(error.message)"))
        if mayBeStored { batches[0].mayBeStored = true }
        if error.code == .adapterUnavailable {
            // Away: the batch is held and re-sent.
        } else if batches[0].mayBeStored {
            // Refused now, but an earlier attempt may have been taken: only the log can say what
            // is durable, so the host restarts and recovers from it (nothing unacknowledged was published).
            actions.append(.fatal(GunnError(error.code, "the log writer refused a batch it may already hold in part: \(error.message)")))
            return finish()
        } else {
            // Refused, nothing written (a full disk): waiting cannot make this batch durable, so
            // the engine returns to the durable head and the batch's requests get the writer's code.
            rollBack(failure!)
        }
        // What waits behind the held batch: requests are refused, records join the batch.
        let waiting = Array(queued[queueHead...])
        queued.removeAll()
        queueHead = 0
        for item in waiting { admitWhileFailing(item) }
        actions.append(.retryAfter(ms: retry))
        return finish()
    }

    /// Sends the held batch again (after `retryAfter`).
    public mutating func retryAppend(now: HostTime) -> [CoreAction] {
        begin(now)
        if batch == nil && failure != nil {
            // After a refusal: the next batch probes the writer again.
            failure = nil
            startBatches()
            return finish()
        }
        guard !batches.isEmpty, failure != nil else { return finish() }
        nextBatchID += 1
        batches[0].id = nextBatchID
        actions.append(.append(batch: nextBatchID, entries: batches[0].entries))
        return finish()
    }

    // MARK: - Internals

    /// A durable snapshot every `durableSnapshotEvery` effects: the newest in-memory snapshot
    /// the durable head has passed.
    mutating func snapshotIfDue() {
        guard settings.durableSnapshotEvery > 0, snapshotPending == nil, durableHead >= lastSnapshotSeq + UInt64(settings.durableSnapshotEvery) else { return }
        // The newest in-memory snapshot the durable head has passed (the base counts too).
        let base = engine.log.base
        guard let s = engine.log.snapshots.last(where: { $0.globalSeq <= durableHead }) ?? (base.globalSeq > 0 ? (base.globalSeq, base.state) : nil),
              s.globalSeq >= lastSnapshotSeq + UInt64(settings.durableSnapshotEvery) else { return }
        snapshotPending = s.globalSeq
        actions.append(.snapshot(s.state))
    }

    /// The writer stored the snapshot at `seq`.
    public mutating func snapshotStored(_ seq: GlobalSeq) {
        lastSnapshotSeq = max(lastSnapshotSeq, seq)
        if snapshotPending == seq { snapshotPending = nil }
    }

    /// The snapshot at `seq` was not stored: the next acknowledgement asks again.
    public mutating func snapshotFailed(_ seq: GlobalSeq) {
        if snapshotPending == seq { snapshotPending = nil }
    }

    mutating func begin(_ now: HostTime) {
        actions.removeAll(keepingCapacity: true)
        self.now = max(self.now, now)
    }

    mutating func finish() -> [CoreAction] {
        defer { actions.removeAll(keepingCapacity: true) }
        return actions
    }

    mutating func enqueue(_ item: Item) {
        if failure != nil { return admitWhileFailing(item) }
        if !item.mustKeep && queuedCount >= settings.maxQueuedItems {
            return complete([refuse(item, GunnError(.queueFull, "\(settings.maxQueuedItems) requests already wait for the log writer",
                                                    retryAfterMs: settings.retryAfterMs))])
        }
        queued.append(item)
        queuedHighWater = max(queuedHighWater, queuedCount)
        if !holdBatches { startBatches() }
    }

    /// While the writer fails: a record is applied and held with the batch (or waits for the next
    /// one after a refusal); a request is refused.
    mutating func admitWhileFailing(_ item: Item) {
        if item.mustKeep && batch == nil { return queued.append(item) }
        guard item.mustKeep, batch != nil else {
            // Status still answers (from what is durable), so an operator can see the failure.
            if case .status = item.work { return answerStatusWhileFailing(item) }
            return complete([refuse(item, failure!)])
        }
        var it = item
        process(&it)
        let entries = Self.entries(of: it.outputs)
        batches[0].entries += entries
        batches[0].items.append(it)
        // Its answers are computed now, from the state it leaves, and held with the batch.
        hold(into: 0, [it])
    }

    /// Answers `items` now, from the engine's state, into batch `index`'s held actions instead of
    /// the host's: they are performed when that batch is durable.
    mutating func hold(into index: Int, _ items: [Item]) {
        let mark = actions.count
        holding = Batch(id: batches[index].id, entries: [], items: [])
        answerAndPublish(items)
        let b = holding!
        holding = nil
        // What reaches a client waits; the host's own timers and log lines do not.
        let produced = actions[mark...]
        batches[index].held += produced.filter { if case .send = $0 { return true } else { return false } }
        batches[index].heldOutcomes += b.heldOutcomes
        batches[index].heldRegistrations += b.heldRegistrations
        let kept = produced.filter { if case .send = $0 { return false } else { return true } }
        actions.removeSubrange(mark...)
        actions += kept
    }

    func refuse(_ item: Item, _ error: GunnError) -> Item {
        var it = item
        it.refusal = error
        return it
    }

    /// Forms batches from the queue until `maxBatchesInFlight` are with the writer or the queue is
    /// empty. A batch formed while none is out is answered as soon as it is durable; one formed
    /// behind another has its answers computed now and held (see `Batch.held`).
    mutating func startBatches() {
        while failure == nil && batches.count < max(1, settings.maxBatchesInFlight) && queuedCount > 0
                && (batches.isEmpty || queuedCount >= settings.minItemsBehind) {
            let n = min(settings.maxBatchItems, queuedCount)
            var items: [Item] = []
            var entries: [LogEntry] = []
            var bytes = 0
            while items.count < n && bytes < settings.maxBatchBytes {
                var item = queued[queueHead]
                queueHead += 1
                process(&item)
                let produced = Self.entries(of: item.outputs)
                bytes += produced.reduce(0) { $0 + $1.effect.count + 256 }
                entries += produced
                items.append(item)
            }
            if queueHead == queued.count { queued.removeAll(keepingCapacity: true); queueHead = 0 }
            else if queueHead > 4096 { queued.removeFirst(queueHead); queueHead = 0 }
            if entries.isEmpty && batches.isEmpty {
                complete(items) // reads and refusals only, and everything before them is durable
                continue
            }
            nextBatchID += 1
            batchHighWater = max(batchHighWater, items.count)
            batches.append(Batch(id: nextBatchID, entries: entries, items: items))
            hold(into: batches.count - 1, items)
            if !entries.isEmpty { actions.append(.append(batch: nextBatchID, entries: entries)) }
        }
    }

    static func entries(of outputs: [EngineOutput]) -> [LogEntry] {
        var out: [LogEntry] = []
        for o in outputs { if case .effectCommitted(let e) = o { out.append(WireJSON.logEntry(e)) } }
        return out
    }

    /// The writer refused the held batch and wrote nothing: the engine is rebuilt from its own log
    /// up to the durable head; agents whose registration was answered come back with their
    /// policies (their entities are in the durable world) and a whole view that continues their
    /// view_seq; the batch's requests are answered with the writer's code. Records in the batch
    /// (halt reports, a lost worker's cancellations) cannot be logged on a full disk: each is
    /// named in the orchestrator's log.
    mutating func rollBack(_ error: GunnError) {
        guard batches.count == 1, let b = batches.first else { return }
        batches = []
        rollbacks += 1
        // The window never trims past the durable head: its base and the entries up to the head
        // are the durable state; request ids answered in durable batches stay answered.
        let kept = Array(engine.log.entries.prefix { $0.globalSeq <= durableHead })
        let base = engine.log.base
        var fresh = Engine(config: settings.engine, worldID: settings.worldID, worldSeed: settings.worldSeed)
        do {
            try fresh.restore(snapshot: base.globalSeq == 0 ? nil : (base.state, base.checksum ?? ""), entries: kept, requests: [], at: now)
        } catch {
            preconditionFailure("the engine's own durable entries do not restore: \(error)")
        }
        var rolledBack: [(AgentID, ReqID)] = []
        for item in b.items { if case .submit(let intent) = item.work { rolledBack.append((intent.agentID, intent.reqID)) } }
        // Only what the rolled-back batches decided is forgotten: a retry in them of a request
        // committed in a durable batch keeps that commit.
        fresh.adoptIdempotency(of: engine, forgetting: rolledBack, durableHead: durableHead)
        fresh.setTrimFloor(durableHead)
        // Live generations die with the rolled-back state: their workers are told to stop now
        // (their cancellations cannot be logged on a refusing writer; each is named in the log).
        var frames: [(ConnID, Frame)] = []
        for agent in engine.registeredAgents {
            for req in engine.activeGenerations(of: agent).map(\.reqID) + engine.cancelledAwaitingHalt(of: agent) {
                actions.append(.log("\(error.code.name) (\(error.code.code)): generation \(req) of \(agent) ended unlogged by the rollback"))
                guard let conn = owners[agent] else { continue }
                var c = Cancel()
                c.agentID = agent.rawValue; c.reqID = req.rawValue; c.reason = "log_refused"; c.code = UInt32(error.code.code)
                c.issuedAtMicros = UInt64(max(0, now) * 1e6)
                frames.append((conn, Frame(.cancel(c))))
            }
        }
        relayed.removeAll()
        // The agents whose registration was answered come back as answered, with a whole view
        // that continues their view_seq.
        var restoredOwners: [AgentID: ConnID] = [:]
        for (agent, durable) in answeredRegistrations.sorted(by: { $0.key < $1.key }) {
            var r = durable.registration
            r.spawn = nil // its entity is in the durable world, or it never was
            _ = fresh.handle(.registerAgent(r), at: now)
            guard let conn = durable.conn, sessions[conn] != nil, owners[agent] == conn else { continue }
            restoredOwners[agent] = conn
            guard let view = fresh.resync(agent, heldViewSeq: engine.viewSeq(of: agent) ?? 0) else { continue }
            var v = ViewSnapshot()
            v.agentID = agent.rawValue; v.viewSeq = view.viewSeq; v.view = CanonicalJSON.encode(view.document); v.contextDigest = view.contextDigest
            v.globalSeq = fresh.world.lastGlobalSeq
            frames.append((conn, Frame(.view(v))))
        }
        engine = fresh
        owners = restoredOwners
        // Every request of the batch gets the writer's code; records end without a reply.
        var done: [Item] = []
        var answerOwn: [Bool] = [] // refused before the rollback (e.g. FORBIDDEN): answered with that
        for var item in b.items {
            if item.mustKeep && !item.outputs.isEmpty {
                actions.append(.log("\(error.code.name) (\(error.code.code)): a record was not logged (\(item.work)): \(error.message)"))
            }
            answerOwn.append(item.refusal != nil)
            item.outputs = []
            if !item.mustKeep { item.refusal = item.refusal ?? error }
            done.append(item)
        }
        // Answered in the order the frames came: an intent whose outcome was computed when its
        // batch was formed (held, now dropped) gets the code where it stands; then the outcomes
        // computed for intents of earlier batches, then the intents still waiting for one.
        func refusal(_ conn: ConnID, _ frameID: UInt64, _ agent: AgentID, _ req: ReqID) -> Frame {
            var r = IntentResult()
            r.agentID = agent.rawValue; r.reqID = req.rawValue; r.error = WireJSON.error(error)
            return Frame(id: frameID, .intentResult(r))
        }
        struct Held: Hashable { let conn: ConnID; let frameID: UInt64 }
        // Counted, not a set: a client may reuse a frame id, and each frame gets its answer.
        var heldLeft: [Held: Int] = [:]
        for o in b.heldOutcomes { heldLeft[Held(conn: o.conn, frameID: o.frameID), default: 0] += 1 }
        func take(_ h: Held) -> Bool {
            guard let n = heldLeft[h], n > 0 else { return false }
            heldLeft[h] = n - 1
            return true
        }
        for (item, own) in zip(done, answerOwn) where item.refusal != nil {
            if case .submit(let intent) = item.work, !own {
                // Not refused on its own: its outcome was held (answered here) or is still awaited.
                if let conn = item.conn, take(Held(conn: conn, frameID: item.frameID)) {
                    send(conn, [refusal(conn, item.frameID, intent.agentID, intent.reqID)])
                }
                continue
            }
            answer(item)
        }
        for o in b.heldOutcomes where take(Held(conn: o.conn, frameID: o.frameID)) {
            send(o.conn, [refusal(o.conn, o.frameID, o.agent, o.req)])
        }
        // Intents waiting for an outcome (their queue is gone with the state) get the code too.
        for (key, ws) in waiters.sorted(by: { ($0.key.agent, $0.key.req) < ($1.key.agent, $1.key.req) }) {
            for (conn, id) in ws { send(conn, [refusal(conn, id, key.agent, key.req)]) }
        }
        waiters.removeAll()
        waiterCount = 0
        answered(done)
        for (conn, frame) in frames { send(conn, [frame]) }
        assert(engine.headSeq == durableHead)
    }

    /// Answers the items of a durable batch in order, then publishes what their inputs caused.
    mutating func complete(_ items: [Item]) {
        answerAndPublish(items)
        answered(items)
    }

    mutating func answerAndPublish(_ items: [Item]) {
        var all: [EngineOutput] = []
        for item in items {
            answer(item)
            all += item.outputs
        }
        publish(all)
    }

    /// Counts the answered frames per connection (in the order the connections first appear),
    /// lowers their in-flight counts and tells the host.
    mutating func answered(_ items: [Item]) {
        var order: [ConnID] = []
        var counts: [ConnID: Int] = [:]
        for item in items {
            guard let c = item.conn, item.isFrame else { continue }
            if counts[c] == nil { order.append(c) }
            counts[c, default: 0] += 1
        }
        for c in order {
            let n = counts[c]!
            let left = (inFlight[c] ?? 0) - n
            assert(left >= 0, "\(c) answered more frames than it sent")
            inFlight[c] = left > 0 ? left : nil
            actions.append(.answered(c, n))
        }
    }
}
