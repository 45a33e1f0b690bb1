import Foundation
import GunnCore
import GunnIO
import GunnWire
import GunnTelemetry
import Synchronization

/// The world as a process: the shell around `OrchestratorCore`. It serves `orchestrator.sock`, is
/// a client of `eventlog.sock`, and performs the core's actions: frames out through the I/O loop,
/// appends through the log link, timers as tasks. On start it rebuilds the core from the log.
///
/// Concurrency: one actor owns the core; the I/O loop thread owns the sockets; a task per client
/// connection reads its frames in batches, without waiting for them to be answered, up to the
/// core's `maxInFlightPerConnection` (then it waits until answers bring the count down), and one
/// task carries each append. Replies leave in the order the frames came, because the core
/// answers a connection's frames in order.
public actor OrchestratorServer {
    public struct Settings: Sendable {
        public var home: String
        public var worldID = "world"
        public var worldSeed: UInt64 = 0
        public var engine = EngineConfig()
        /// Inputs per batch, batches with the log writer at once, and a connection's frames in
        /// flight, at most (see `OrchestratorCore.Settings`).
        public var maxBatchItems = OrchestratorCore.Settings().maxBatchItems
        public var maxBatchesInFlight = OrchestratorCore.Settings().maxBatchesInFlight
        public var maxInFlightPerConnection = OrchestratorCore.Settings().maxInFlightPerConnection
        /// How long an append may keep retrying while the log writer is away before requests are refused.
        public var appendDeadlineSeconds: Double = 5
        /// How long one request to the log writer waits for its reply.
        public var logRequestTimeoutSeconds: Double = 1
        /// A durable snapshot about every this many effects (see `OrchestratorCore.Settings`).
        public var durableSnapshotEvery = OrchestratorCore.Settings().durableSnapshotEvery
        /// The features (GUNN_FEATURES) the process runs with: `telemetry` records metrics.
        public var features = Features(Features.defaults)
        public init(home: String) {
            self.home = home
            engine.quantumMs = 0
        }
        public var socketPath: String { home + "/run/orchestrator.sock" }
        public var eventlogPath: String { home + "/run/eventlog.sock" }
        var core: OrchestratorCore.Settings {
            var s = OrchestratorCore.Settings()
            s.worldID = worldID; s.worldSeed = worldSeed; s.engine = engine
            s.maxBatchItems = maxBatchItems; s.maxBatchesInFlight = maxBatchesInFlight; s.maxInFlightPerConnection = maxInFlightPerConnection
            s.durableSnapshotEvery = durableSnapshotEvery
            return s
        }
    }

    public let settings: Settings
    let loop: EventLoop
    let log: LogWriterLink
    /// The core's appends, pipelined on the log link in order.
    let appender: Appender
    var core: OrchestratorCore?
    var server: UnixSocketServer?
    var connections: [ConnID: FramedConnection] = [:]
    var nextConn: UInt64 = 0
    /// A connection's reader waits here while the connection has its bound of frames in flight.
    var creditWaiters: [ConnID: CheckedContinuation<Void, Never>] = [:]
    /// The durable head, for Welcome (read on the I/O loop by the handshake).
    let durableHead = SharedHead()
    final class SharedHead: Sendable {
        private let seq = Atomic<UInt64>(0)
        func load() -> UInt64 { seq.load(ordering: .relaxed) }
        func store(_ v: UInt64) { seq.store(v, ordering: .relaxed) }
    }
    public private(set) var recoveredEntries = 0
    /// The durable snapshot recovery started from (0: the log's first entry), and the requests
    /// the writer's idempotency table gave.
    public private(set) var recoveredFromSnapshot: UInt64 = 0
    public private(set) var recoveredRequests = 0
    /// How long recovery took, and the part of it that read the request ids (monotonic ms).
    public private(set) var recoveryMillis = 0.0
    public private(set) var requestIDsMillis = 0.0
    /// Snapshot saves the writer refused or that were lost (each named in the log).
    public private(set) var snapshotFailures = 0
    var rssReadAt: Double = -1
    public nonisolated let metrics: OrchestratorMetrics
    /// When each SubmitIntent still unanswered was received (monotonic ns), by connection and
    /// frame id; bounded (past the bound an intent is simply not timed).
    var received: [OrchestratorMetrics.Request: UInt64] = [:]
    /// Each open connection's frames and bytes as last counted (its entry leaves with it).
    var linkCounted: [ConnID: (Int, Int, Int, Int)] = [:]
    /// Tracing (the `tracing` feature): each traced intent's span until it is answered, and the
    /// trace of each committed effect until its observations go out (both bounded).
    public nonisolated let tracer: Tracer
    var spans: [OrchestratorMetrics.Request: Span] = [:]
    /// The same spans' contexts by the intent's agent and req_id, for the entry that commits it.
    var intentTraces: [OrchestratorCore.WaiterKey: TraceContext] = [:]
    var seqTraces: [UInt64: TraceContext] = [:]
    /// The seqs in `seqTraces`, oldest first, as a ring of `maxTraced` (the oldest forgotten first).
    var seqTraceRing = [UInt64](repeating: 0, count: OrchestratorServer.maxTraced)
    var seqTraceNext = 0
    static let maxTraced = 10_000
    /// When each append went out and how many entries it held, by batch.
    var appendsOut: [UInt64: (start: UInt64, entries: Int)] = [:]

    public init(settings: Settings) throws {
        self.settings = settings
        loop = try EventLoop(name: "orchestrator-io")
        log = LogWriterLink(path: settings.eventlogPath, loop: loop, worldID: settings.worldID,
                            requestTimeoutSeconds: settings.logRequestTimeoutSeconds)
        appender = Appender(log: log, deadlineSeconds: settings.appendDeadlineSeconds)
        metrics = OrchestratorMetrics(Telemetry(process: "orchestrator", features: settings.features))
        tracer = metrics.telemetry.tracer(home: settings.home)
    }

    static func now() -> Double { Date().timeIntervalSince1970 }

    /// The exit status when the log writer says this process's state and the log diverged.
    public static let divergedExitCode: Int32 = 75

    /// Recovers from the log writer, then serves.
    public func start() async throws {
        appender.start { [weak self] in
            guard let self else { return }
            Task { await self.drainAppends() }
        }
        var core = try await recover()
        core.metrics = metrics
        self.core = core
        durableHead.store(core.durableHead)
        try FileManager.default.createDirectory(atPath: settings.home + "/run", withIntermediateDirectories: true)
        let coreSettings = settings.core
        let head = durableHead
        server = try await UnixSocketServer(path: settings.socketPath, loop: loop) { hello in
            OrchestratorCore.admit(hello, settings: coreSettings, head: head.load())
                .mapError { ConnectionError($0.code, $0.message) }
        } onConnection: { [weak self] conn in
            guard let self else { return }
            Task { await self.serve(conn) }
        }
    }

    /// Recovery: the newest durable snapshot that verifies (its digest, its world, and the chain
    /// of the entries after it from its checksum), the entries after it, and the request ids of
    /// the writer's idempotency table. A snapshot that does not verify is named in the log and
    /// the one before it tried, down to the log's first entry.
    func recover() async throws -> OrchestratorCore {
        let t0 = EventLoop.now()
        defer { recoveryMillis = (EventLoop.now() - t0) * 1000 }
        let requests = try await log.idempotencyRecords(limit: settings.engine.idempotencyMaxEntries, waitSeconds: 10).map {
            RecoveredRequest(agentID: AgentID($0.agentID), reqID: ReqID($0.reqID), canonicalEffect: $0.effect, expiresAt: $0.expiresAt)
        }
        recoveredRequests = requests.count
        requestIDsMillis = (EventLoop.now() - t0) * 1000
        var cursor = UInt64.max
        while true {
            // cursor 0: no snapshot is left to try, replay from the log's first entry.
            let snap = cursor == 0 ? nil : try await log.snapshot(atOrBefore: cursor)
            var base: (state: WorldState, checksum: String)? = nil
            if let snap {
                let verified: Result<WorldState, GunnError> = Result { () throws(GunnError) in try WireJSON.verifiedSnapshot(snap) }
                switch verified {
                case .success(let w): base = (w, snap.chainChecksum)
                case .failure(let e):
                    Self.warn("the durable snapshot at \(snap.globalSeq) does not verify (\(e)); trying an older one")
                    cursor = snap.globalSeq - 1
                    continue
                }
            }
            let entries = try await log.read(from: (snap?.globalSeq ?? 0) + 1).map { try WireJSON.eventLogEntry($0) }
            let built: Result<OrchestratorCore, GunnError> = Result { () throws(GunnError) in
                try OrchestratorCore(settings: settings.core, snapshot: base, entries: entries, requests: requests, now: Self.now())
            }
            switch built {
            case .success(let core):
                recoveredEntries = entries.count
                recoveredFromSnapshot = snap?.globalSeq ?? 0
                return core
            case .failure(let e):
                guard let snap else { throw e }
                Self.warn("recovery from the snapshot at \(snap.globalSeq) failed (\(e)); trying an older one")
                cursor = snap.globalSeq - 1
            }
        }
    }

    static func warn(_ line: String) { FileHandle.standardError.write(Data("gunn-orchestrator: warning: \(line)\n".utf8)) }

    /// Clean stop: no more clients, then the durable world stored as a snapshot (the writer's
    /// answer waited for, within the request timeout), so the next start replays nothing.
    public func stop() async {
        await server?.stop()
        guard let world = core?.stopSnapshot() else { return }
        let m = Self.snapshotMessage(world)
        guard Self.fits(m) else { return }
        do {
            try await log.saveSnapshot(m)
            core?.snapshotStored(world.lastGlobalSeq)
        } catch {
            Self.warn("the clean-stop snapshot at \(world.lastGlobalSeq) was not stored: \(error)")
        }
    }

    /// A snapshot must fit in one frame of the log link; a bigger world is named in the log with
    /// its code and gets no durable snapshot (recovery then replays from an older one).
    static func fits(_ m: SnapshotMessage) -> Bool {
        let limit = FrameCodec.defaultMaxFrameBytes - 4096
        guard m.state.count <= limit else {
            warn("PAYLOAD_TOO_LARGE (1007): the world at \(m.globalSeq) is \(m.state.count) bytes as JSON, over the \(limit) a snapshot frame holds; no durable snapshot stored")
            return false
        }
        return true
    }

    /// The wire form of a durable snapshot: the world's canonical JSON and its SHA-256.
    static func snapshotMessage(_ world: WorldState) -> SnapshotMessage {
        let bytes = CanonicalJSON.encode(world.json)
        return SnapshotMessage(globalSeq: world.lastGlobalSeq, state: bytes, digest: HashChain.checksum(previous: nil, canonicalEffect: bytes))
    }

    /// Encodes the snapshot off the actor (a big world takes milliseconds) and stores it on a
    /// connection of its own; the core counts it stored only once the writer said so.
    func storeSnapshot(_ world: WorldState) {
        let log = log
        let seq = world.lastGlobalSeq
        Task.detached { [weak self] in
            let m = Self.snapshotMessage(world)
            var stored = false
            if Self.fits(m) {
                do { try await log.saveSnapshot(m); stored = true } catch {
                    Self.warn("the durable snapshot at \(seq) was not stored: \(error)")
                }
            }
            await self?.snapshotDone(seq, stored: stored)
        }
    }

    func snapshotDone(_ seq: UInt64, stored: Bool) {
        if stored {
            core?.snapshotStored(seq)
            FileHandle.standardError.write(Data("gunn-orchestrator: durable snapshot at \(seq) stored\n".utf8))
        } else {
            snapshotFailures += 1
            core?.snapshotFailed(seq)
        }
    }

    /// The world right after `seq` from the log writer: its newest snapshot at or before `seq`
    /// and the entries up to `seq`, replayed off the actor. nil when the log cannot give it
    /// (compacted past it, or the writer away): the resume then sends the whole view.
    func fetchPast(_ seq: UInt64) async -> WorldState? {
        guard seq > 0 else { return nil }
        do {
            let snap = try await log.snapshot(atOrBefore: seq)
            // Bounded: at most this many entries are read and replayed for one resume (a view
            // older than the writer's snapshots reach gets the whole view instead).
            let most = UInt64(max(2 * settings.durableSnapshotEvery, 20_000))
            guard seq - (snap?.globalSeq ?? 0) <= most else { return nil }
            let base = try snap.map { try WireJSON.verifiedSnapshot($0) }
            let from = (snap?.globalSeq ?? 0) + 1
            var wire: [LogEntry] = []
            if from <= seq {
                wire = try await log.read(from: from, to: seq)
                guard wire.first?.globalSeq == from, wire.last?.globalSeq == seq else { return nil }
            }
            let checksum = snap?.chainChecksum
            return try await Task.detached {
                let entries = try wire.map { try WireJSON.eventLogEntry($0) }
                return try Replay.replay(entries[...], from: base ?? WorldState(), previousChecksum: checksum)
            }.value
        } catch {
            Self.warn("cannot rebuild the world at \(seq) from the log for a resume: \(error)")
            return nil
        }
    }

    /// Before frames reach the core: a registration resuming from a view older than the window
    /// gets that world rebuilt from the log writer first (this connection's frames wait; others go on).
    func preparePast(_ frames: [Frame]) async {
        for f in frames {
            guard case .registerAgent(let r)? = f.body, !r.resumeDigest.isEmpty, r.resumeGlobalSeq <= 1 << 53,
                  let core, core.needsPast(r.resumeGlobalSeq) else { continue }
            if let world = await fetchPast(r.resumeGlobalSeq) { self.core?.providePast(world) }
        }
    }

    public var headSeq: UInt64 { core?.engine.headSeq ?? 0 }
    public var resumedWithDelta: Int { core?.resumedWithDelta ?? 0 }

    // MARK: - Performing the core's actions

    func perform(_ actions: [CoreAction]) {
        var posts: [(FramedConnection, [Frame])] = []
        defer { FramedConnection.post(posts) }
        for a in actions {
            switch a {
            case .send(let id, var frames):
                metrics.sent(frames, received: &received, conn: id.raw)
                if tracer.enabled { traceSent(&frames, conn: id) }
                if let c = connections[id] { posts.append((c, frames)) }
            case .append(let batch, var entries):
                appendsOut[batch] = (DispatchTime.now().uptimeNanoseconds, entries.count)
                if tracer.enabled && !intentTraces.isEmpty { traceAppend(&entries) }
                appender.enqueue(batch, entries)
            case .retryAfter(let ms):
                Task { // on this actor: the retry runs on it after the sleep
                    try? await Task.sleep(nanoseconds: min(ms, 60_000) * 1_000_000)
                    self.retry()
                }
            case .wake(let t):
                let delay = max(0, t - Self.now())
                Task { // on this actor, as the retry
                    try? await Task.sleep(nanoseconds: UInt64(delay * 1e9))
                    self.timer()
                }
            case .snapshot(let world):
                storeSnapshot(world)
            case .log(let line):
                metrics.telemetry.log(line.hasPrefix("warning") ? .warn : .info, "core", ["message": .string(line)])
            case .answered(let id, _):
                if let c = creditWaiters[id], let core, core.inFlight(of: id) < core.settings.maxInFlightPerConnection {
                    creditWaiters[id] = nil
                    c.resume()
                }
            case .fatal(let e):
                // Nothing beyond the durable head was published: a restart recovers from the log.
                metrics.telemetry.log(.error, "fatal", ["message": .string("\(e); exiting \(Self.divergedExitCode) to recover from the log")])
                exit(Self.divergedExitCode)
            }
        }
    }

    /// Runs one event through the core with the link's breaker state current, then performs its actions.
    func run(_ event: (inout OrchestratorCore) -> [CoreAction]) {
        guard core != nil else { return }
        core!.linkBreakerState = log.link.breakerState.rawValue
        let t = EventLoop.now()
        if t - rssReadAt > 0.5 {
            rssReadAt = t
            core!.rssBytes = Sys.residentBytes()
            sampleGauges()
        }
        let actions = event(&core!)
        durableHead.store(core!.durableHead)
        perform(actions)
    }


    func appendDone(_ batch: UInt64, _ result: Result<UInt64, LogWriterLink.AppendFailure>) {
        let now = Self.now()
        switch result {
        case .success(let seq):
            if let out = appendsOut.removeValue(forKey: batch) {
                metrics.appendSeconds.observeSince([], out.start)
                metrics.appendEntries.inc(by: Double(out.entries))
            }
            // This batch's replies and deltas leave before the engine takes on the next batch.
            run { $0.appendAcknowledged(batch: batch, lastSeq: seq, now: now, startNext: false) }
            run { $0.startNext(now: now) }
        case .failure(let f):
            appendsOut[batch] = nil
            let taken = core?.failuresTaken ?? 0
            run { $0.appendFailed(batch: batch, error: f.error, mayBeStored: f.unanswered, now: now) }
            // The core took it and holds everything unacknowledged: the appender forgets what it
            // had (a failure the core passed over, of a batch it had merged, changes nothing).
            if (core?.failuresTaken ?? 0) > taken { appender.reset() }
        }
    }

    /// The appender's outcomes, in the order the appends went out (one hop for all that are ready).
    func drainAppends() {
        while let outcomes = appender.takeOutcomes() {
            for (batch, result) in outcomes { appendDone(batch, result) }
        }
    }

    func retry() { let now = Self.now(); run { $0.retryAppend(now: now) } }
    func timer() { let now = Self.now(); run { $0.timer(now: now) } }

    // MARK: - Serving a client

    func serve(_ conn: FramedConnection) async {
        nextConn += 1
        let id = ConnID(nextConn)
        connections[id] = conn
        let hello = conn.peerHello
        core?.opened(id, role: hello?.role ?? "", name: hello?.clientName ?? "", pid: conn.peerCredentials?.pid ?? 0,
                     capabilities: hello?.capabilities ?? [])
        let bound = core?.settings.maxInFlightPerConnection ?? 1
        while true {
            // At the bound, nothing more is read: the client's frames wait for credit on its side.
            if let core, core.inFlight(of: id) >= bound {
                await withCheckedContinuation { creditWaiters[id] = $0 }
            }
            let room = bound - (core?.inFlight(of: id) ?? 0)
            let frames = await conn.receive(upTo: max(1, room))
            if frames.isEmpty { break }
            var toCore: [Frame] = []
            toCore.reserveCapacity(frames.count)
            for frame in frames {
                if case .breakerControl(let bc)? = frame.body {
                    // Answered here at once, by id (it concerns the log link, not the world, and
                    // may pass replies still waiting for the log).
                    if !toCore.isEmpty { pass(toCore, from: id); toCore.removeAll() }
                    conn.post([Frame(id: frame.id, controlBreaker(bc))])
                } else if case .metrics? = frame.body {
                    // Answered here at once too: the gauges sampled now, the counters as they stand.
                    if !toCore.isEmpty { pass(toCore, from: id); toCore.removeAll() }
                    sampleGauges()
                    conn.post([Frame(id: frame.id, metrics.telemetry.answer(frame.body)!)])
                } else {
                    toCore.append(frame)
                }
            }
            if !toCore.isEmpty {
                await preparePast(toCore)
                pass(toCore, from: id)
            }
        }
        let now = Self.now()
        run { $0.closed(id, now: now) }
        if metrics.telemetry.recording { countLink(id, conn) }
        linkCounted[id] = nil
        connections[id] = nil
        if !received.isEmpty { received = received.filter { $0.key.conn != id.raw } }
        if !spans.isEmpty {
            spans = spans.filter { $0.key.conn != id.raw }
            if spans.isEmpty { intentTraces.removeAll() }
        }
    }

    func pass(_ frames: [Frame], from id: ConnID) {
        metrics.received(frames)
        if metrics.telemetry.recording, received.count < 100_000 {
            let t = DispatchTime.now().uptimeNanoseconds
            for f in frames where f.id != 0 { if case .submitIntent? = f.body { received[.init(conn: id.raw, id: f.id)] = t } }
        }
        if tracer.enabled, spans.count < Self.maxTraced {
            for f in frames where f.id != 0 {
                // The intent is read here too (only while tracing): its agent and req_id name the
                // log entry that will commit it.
                guard case .submitIntent(let p)? = f.body,
                      let span = tracer.start("orchestrator intent", parent: TraceContext.parse(f.traceparent), kind: .server, sampleNew: true),
                      span.recording, // not sampled: nothing to record here or after
                      let intent = try? JSONParser.parse(p.json),
                      let agent = intent["agent_id"]?.stringValue, let req = intent["req_id"]?.stringValue else { continue }
                spans[.init(conn: id.raw, id: f.id)] = span
                if intentTraces.count >= 2 * Self.maxTraced { intentTraces.removeAll() } // answers that never matched: forgotten
                intentTraces[.init(agent: AgentID(agent), req: ReqID(req))] = span.context
            }
        }
        let now = Self.now()
        run { $0.receive(frames, from: id, now: now) }
    }

    /// Each entry that commits a traced intent carries the intent's span context to the log
    /// writer; its seq remembers the trace for the observations it causes.
    func traceAppend(_ entries: inout [LogEntry]) {
        for i in entries.indices where !entries[i].reqID.isEmpty {
            let key = OrchestratorCore.WaiterKey(agent: AgentID(entries[i].agentID), req: ReqID(entries[i].reqID))
            guard let ctx = intentTraces[key] else { continue }
            entries[i].traceparent = ctx.header
            let slot = seqTraceNext % Self.maxTraced
            if seqTraceNext >= Self.maxTraced { seqTraces[seqTraceRing[slot]] = nil }
            seqTraceRing[slot] = entries[i].globalSeq
            seqTraceNext += 1
            seqTraces[entries[i].globalSeq] = ctx
        }
    }

    /// A traced intent's answer ends its span; an observation of a traced effect is a delivery
    /// span of that trace, and its frame carries the delivery's context to the observer.
    func traceSent(_ frames: inout [Frame], conn: ConnID) {
        for i in frames.indices {
            switch frames[i].body {
            case .intentResult(let r)?:
                guard let span = spans.removeValue(forKey: .init(conn: conn.raw, id: frames[i].id)) else { continue }
                intentTraces[.init(agent: AgentID(r.agentID), req: ReqID(r.reqID))] = nil
                var attrs: JSONObject = ["agent_id": .string(r.agentID), "req_id": .string(r.reqID), "outcome": .string(r.committed ? "committed" : "rejected")]
                if let e = r.error { attrs["code"] = .string(e.name) }
                tracer.end(span, attrs, error: r.error.map { "\($0.name): \($0.message)" })
            case .observation(let o)?:
                guard let ctx = seqTraces[o.globalSeq] else { continue }
                let d = tracer.start("orchestrator deliver", parent: ctx, kind: .producer)
                frames[i].traceparent = d?.context.header ?? ""
                tracer.end(d, ["agent_id": .string(o.agentID), "view_seq": .number(Double(o.viewSeq)), "global_seq": .number(Double(o.globalSeq))])
            default: break
            }
        }
    }

    /// The gauges (bounds, breaker, head, links), sampled at most twice a second.
    func sampleGauges() {
        guard let core, metrics.telemetry.recording else { return }
        metrics.gauges(core.gauges)
        metrics.breaker.set(["eventlog"], OrchestratorMetrics.breakerValue(core.linkBreakerState))
        metrics.headSeq.set([], Double(core.durableHead))
        metrics.connections.set([], Double(connections.count))
        for (id, c) in connections { countLink(id, c) }
    }

    /// Adds what a connection carried since it was last counted to the link counters.
    func countLink(_ id: ConnID, _ c: FramedConnection) {
        let st = c.stats
        let now = (st.framesIn, st.framesOut, st.bytesIn, st.bytesOut)
        let before = linkCounted[id] ?? (0, 0, 0, 0)
        linkCounted[id] = now
        let role = OrchestratorMetrics.roleLabel(c.peerHello?.role)
        metrics.linkFrames.inc([role, "in"], by: Double(now.0 - before.0)); metrics.linkFrames.inc([role, "out"], by: Double(now.1 - before.1))
        metrics.linkBytes.inc([role, "in"], by: Double(now.2 - before.2)); metrics.linkBytes.inc([role, "out"], by: Double(now.3 - before.3))
    }

    /// gunnctl breaker open|close|reset eventlog: manual control of the log link.
    func controlBreaker(_ bc: BreakerControl) -> Frame.Body {
        let actions: [Int32: BreakerAction] = [BreakerControl.forceOpen: .open, BreakerControl.forceClose: .close, BreakerControl.reset: .reset]
        guard bc.name == "eventlog", let action = actions[bc.action] else {
            let e = GunnError(.unknownMessage, "breaker \"\(bc.name)\" action \(bc.action): the orchestrator has one breaker, \"eventlog\", "
                              + "with actions open, close, reset")
            return .error(WireJSON.error(e))
        }
        var r = ControlResult()
        r.ok = true
        r.message = "breaker eventlog \(log.link.control(action).rawValue)"
        return .controlResult(r)
    }
}

