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
    /// or `appendFailed` with the same id.
    case append(batch: UInt64, entries: [LogEntry])
    /// The log writer is away or refused: call `retryAppend` after this many milliseconds.
    case retryAfter(ms: UInt64)
    /// Call `timer(now:)` at this host time.
    case wake(at: HostTime)
    /// A line for the orchestrator's own log (warnings, backpressure, late refusals), with its code.
    case log(String)
    /// Every frame this connection sent so far has been answered (its next frame may be read).
    case done(ConnID)
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
        /// Requests waiting for a batch at most; beyond, QUEUE_FULL.
        public var maxQueuedItems = 65_536
        /// Waiters for intent outcomes at most (each a connection and frame id).
        public var maxWaiters = 65_536
        /// Retry interval while the log writer is away.
        public var retryAfterMs: UInt64 = 200
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
    /// Batches the writer refused, after which the engine returned to the durable head.
    public internal(set) var rollbacks = 0
    /// The log link's breaker state, set by the host, shown in status.
    public var linkBreakerState = "closed"

    struct Session: Sendable { var role: String; var name: String; var pid: Int32 }
    var sessions: [ConnID: Session] = [:]
    /// Agent → the connection that registered it: the only one that may act for it, and where its
    /// observations and cancellations go.
    var owners: [AgentID: ConnID] = [:]
    var waiters: [WaiterKey: [(ConnID, UInt64)]] = [:]
    var waiterCount = 0
    /// Token chunks relayed per live generation, for a worker that leaves without a halt report.
    var relayed: [GenerationKey: Int] = [:]
    /// Agents whose registration was answered (durable): the ones a rollback registers again.
    var answeredAgents: Set<AgentID> = []

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
    }

    struct Batch: Sendable {
        var id: UInt64
        var entries: [LogEntry]
        var items: [Item]
        /// An attempt ended without an answer (timeout, lost connection): the writer may hold
        /// some of these entries, so a later refusal cannot mean "nothing written".
        var mayBeStored = false
    }

    var queued: [Item] = []
    var queueHead = 0
    /// The batch with the log writer (in flight, or waiting for a retry after a failure).
    var batch: Batch?
    /// Why the log writer cannot take appends now; nil when it can.
    public internal(set) var failure: GunnError?
    var nextBatchID: UInt64 = 0
    var actions: [CoreAction] = []
    var now: HostTime = 0

    /// A core over the log the writer holds (oldest first): the engine is restored from it.
    public init(settings: Settings, recovered entries: [EventLogEntry], now: HostTime) throws(GunnError) {
        self.settings = settings
        engine = Engine(config: settings.engine, worldID: settings.worldID, worldSeed: settings.worldSeed)
        try engine.restore(from: entries, at: now)
        durableHead = engine.headSeq
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
            return .failure(GunnError(.unknownRole, "role \"\(hello.role)\" is not served here (roles: \(settings.roles.sorted().joined(separator: ", ")))"))
        }
        var w = Welcome()
        w.role = "orchestrator"
        w.worldID = settings.worldID
        w.sessionID = "\(settings.worldID)-\(hello.clientName)"
        w.latestGlobalSeq = head
        return .success(w)
    }

    public mutating func opened(_ conn: ConnID, role: String, name: String, pid: Int32) {
        sessions[conn] = Session(role: role, name: name, pid: pid)
    }

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
        begin(now)
        var item = Item(conn: conn, frameID: frame.id, work: Self.work(for: frame))
        if case .refused(let e, _) = item.work { item.refusal = e }
        enqueue(item)
        return finish()
    }

    /// The log writer acknowledged batch `batch` up to `lastSeq`.
    public mutating func appendAcknowledged(batch id: UInt64, lastSeq: GlobalSeq, now: HostTime) -> [CoreAction] {
        begin(now)
        guard var b = batch, b.id == id else { return finish() } // a late or repeated ack: already handled
        precondition(lastSeq >= durableHead, "the log writer acknowledged \(lastSeq) below the durable head \(durableHead)")
        durableHead = max(durableHead, lastSeq)
        failure = nil
        b.entries.removeAll { $0.globalSeq <= lastSeq }
        if !b.entries.isEmpty {
            // Records joined the batch while this append was in flight: they go next.
            nextBatchID += 1
            b.id = nextBatchID
            batch = b
            actions.append(.append(batch: b.id, entries: b.entries))
            return finish()
        }
        batch = nil
        complete(b.items)
        startBatches()
        return finish()
    }

    /// The append of batch `batch` failed: the writer is away (`ADAPTER_UNAVAILABLE`) or refused
    /// (its own code, e.g. LOG_STORAGE_FAILURE). The batch stays held; requests are refused with
    /// `error` until an append succeeds.
    public mutating func appendFailed(batch id: UInt64, error: GunnError, now: HostTime) -> [CoreAction] {
        begin(now)
        guard batch?.id == id else { return finish() }
        if [.logIntegrityViolation, .sequenceGap, .worldMismatch].contains(error.code) {
            actions.append(.fatal(error))
            return finish()
        }
        let retry = error.retryAfterMs ?? settings.retryAfterMs
        failure = GunnError(error.code, "the log writer cannot take appends: \(error.message)", retryAfterMs: retry)
        actions.append(.log("\(error.code.name) (\(error.code.code)): append of \(batch!.entries.count) entries failed: \(error.message)"))
        if error.code == .adapterUnavailable {
            batch!.mayBeStored = true
        } else if batch!.mayBeStored {
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
        guard var b = batch, failure != nil else { return finish() }
        nextBatchID += 1
        b.id = nextBatchID
        batch = b
        actions.append(.append(batch: b.id, entries: b.entries))
        return finish()
    }

    // MARK: - Internals

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
        if batch == nil { startBatches() }
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
        batch!.entries += entries
        batch!.items.append(it)
    }

    func refuse(_ item: Item, _ error: GunnError) -> Item {
        var it = item
        it.refusal = error
        return it
    }

    /// Forms batches from the queue until one goes to the log writer or the queue is empty.
    mutating func startBatches() {
        while batch == nil && queuedCount > 0 {
            let n = min(settings.maxBatchItems, queuedCount)
            var items = Array(queued[queueHead..<(queueHead + n)])
            queueHead += n
            if queueHead == queued.count { queued.removeAll(keepingCapacity: true); queueHead = 0 }
            else if queueHead > 4096 { queued.removeFirst(queueHead); queueHead = 0 }
            var entries: [LogEntry] = []
            for i in items.indices {
                process(&items[i])
                entries += Self.entries(of: items[i].outputs)
            }
            if entries.isEmpty {
                complete(items)
                continue
            }
            nextBatchID += 1
            batch = Batch(id: nextBatchID, entries: entries, items: items)
            actions.append(.append(batch: nextBatchID, entries: entries))
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
        guard let b = batch else { return }
        batch = nil
        rollbacks += 1
        let kept = Array(engine.log.entries.prefix { $0.globalSeq <= durableHead })
        var fresh = Engine(config: settings.engine, worldID: settings.worldID, worldSeed: settings.worldSeed)
        do { try fresh.restore(from: kept, at: now) } catch {
            preconditionFailure("the engine's own durable entries do not restore: \(error)")
        }
        var views: [(ConnID, Frame)] = []
        for agent in engine.registeredAgents where answeredAgents.contains(agent) {
            guard var r = engine.registration(of: agent) else { continue }
            r.spawn = nil
            _ = fresh.handle(.registerAgent(r), at: now)
            guard let conn = owners[agent], let view = fresh.resync(agent, heldViewSeq: engine.viewSeq(of: agent) ?? 0) else { continue }
            var v = ViewSnapshot()
            v.agentID = agent.rawValue; v.viewSeq = view.viewSeq; v.view = CanonicalJSON.encode(view.document); v.contextDigest = view.contextDigest
            v.globalSeq = fresh.world.lastGlobalSeq
            views.append((conn, Frame(.view(v))))
        }
        engine = fresh
        for agent in owners.keys.sorted() where engine.registration(of: agent) == nil { owners[agent] = nil }
        var refused: [Item] = []
        for var item in b.items {
            if item.mustKeep {
                if !item.outputs.isEmpty { actions.append(.log("\(error.code.name) (\(error.code.code)): a record was not logged (\(item.work)): \(error.message)")) }
                continue
            }
            if case .submit(let intent) = item.work, let ws = waiters.removeValue(forKey: WaiterKey(agent: intent.agentID, req: intent.reqID)) {
                waiterCount -= ws.count
            }
            item.outputs = []
            item.refusal = item.refusal ?? error
            refused.append(item)
        }
        complete(refused)
        for (conn, frame) in views { send(conn, [frame]) }
        assert(engine.headSeq == durableHead)
    }

    /// Answers the items of a durable batch in order, then publishes what their inputs caused.
    mutating func complete(_ items: [Item]) {
        var all: [EngineOutput] = []
        var conns: [ConnID] = []
        for item in items {
            answer(item)
            all += item.outputs
            if let c = item.conn, !conns.contains(c) { conns.append(c) }
        }
        publish(all)
        for c in conns { actions.append(.done(c)) }
    }
}
