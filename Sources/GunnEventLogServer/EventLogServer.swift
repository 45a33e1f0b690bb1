import Dispatch
import Foundation
import GunnCore
import GunnIO
import GunnStore
import GunnWire
import GunnTelemetry
import Synchronization

/// The log writer's logic: serves `eventlog.sock`, checks and commits appends through the store
/// (acknowledging only after the commit), answers reads, head, verify, snapshots, and follows new
/// commits for subscribers.
///
/// Concurrency: frames are served by one task per connection (async, never blocking); the store
/// does blocking I/O (fsync), so it lives on its own serial queue, reached only by hopping there
/// asynchronously (`onStore`), never on the I/O loop or the cooperative pool; the subscriber table
/// is a Mutex, so the append path never waits on a queue.
///
/// `@unchecked Sendable` is safe: `store` (a SQLite connection, not Sendable) and
/// `appendGeneration` are touched only on `queue`, and every other member is immutable or a Mutex.
public final class EventLogServer: @unchecked Sendable {
    public struct Settings: Sendable {
        public var home: String
        public var worldID = "world"
        public var worldSeed: UInt64 = 0
        public var store = EventLogStoreOptions()
        public var maxReadBatch = 512
        /// Checkpoints the WAL once no append came for this long.
        public var idleCheckpointSeconds = 0.5
        /// The features (GUNN_FEATURES) the process runs with: `telemetry` records metrics.
        public var features = Features(Features.defaults)
        public init(home: String) { self.home = home }
        public var socketPath: String { home + "/run/eventlog.sock" }
        public var databasePath: String { home + "/data/events.sqlite" }
    }

    public let settings: Settings
    let store: EventLogStore
    let queue = DispatchQueue(label: "gunn-eventlog-store")
    let loop: EventLoop
    private let server = Mutex<UnixSocketServer?>(nil)
    /// Followers of new commits, each fed by its own pump (at most one at a time per subscriber),
    /// so a subscriber that stops reading delays no append and no other subscriber.
    private struct Subscriber {
        var conn: FramedConnection
        var id: UInt64
        var next: UInt64
        var pumping = false
        /// New commits arrived while the pump was sending: it goes round once more.
        var dirty = false
    }
    private let subscribers = Mutex<[ObjectIdentifier: Subscriber]>([:])
    private var appendGeneration = 0
    private let starved = Atomic<Int>(0)
    /// WAL checkpoints that readers starved so far.
    public var starvedCheckpoints: Int { starved.load(ordering: .relaxed) }
    /// What start-up verification found.
    public let startupReport: VerifyReport
    public let telemetry: Telemetry
    /// Spans of the traced entries appended (the `tracing` feature).
    public let tracer: Tracer
    let appends, appendSeconds, appendedEntries, appendedBytes, effectSize, readEntries, subscribersGauge, droppedSubscribers, headGauge: Recorder

    public init(settings: Settings) throws {
        self.settings = settings
        let fm = FileManager.default
        try fm.createDirectory(atPath: settings.home + "/data", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: settings.home + "/run", withIntermediateDirectories: true)
        store = try EventLogStore(path: settings.databasePath, worldID: settings.worldID, worldSeed: settings.worldSeed,
                                  options: settings.store, now: Date().timeIntervalSince1970)
        // Everything after the last anchor is verified before any append is accepted.
        let from = (try store.lastAnchor()?.seq).map { $0 > 0 ? $0 : 1 } ?? 1
        startupReport = try store.verify(from: from)
        loop = try EventLoop(name: "eventlog-io")
        let t = Telemetry(process: "eventlog", features: settings.features)
        telemetry = t
        tracer = t.tracer(home: settings.home)
        appends = t.counter("gunn_eventlog_appends_total", help: "Append batches, by outcome and error code name", labels: ["outcome", "code"])
        appendSeconds = t.histogram("gunn_eventlog_commit_seconds", help: "An append batch received to its durable commit in SQLite (seconds)")
        appendedEntries = t.counter("gunn_eventlog_entries_total", help: "Entries committed")
        appendedBytes = t.counter("gunn_eventlog_effect_bytes_total", help: "Bytes of effects committed")
        effectSize = t.histogram("gunn_eventlog_effect_size_bytes", help: "The size of each committed effect (its canonical JSON, bytes)",
                                 buckets: [64, 128, 256, 512, 1024, 2048, 4096, 16384, 65536, 262144, 1048576])
        readEntries = t.counter("gunn_eventlog_read_entries_total", help: "Entries sent to readers (ranges and subscriptions)")
        subscribersGauge = t.gauge("gunn_eventlog_subscribers", help: "Subscribers following new commits")
        droppedSubscribers = t.counter("gunn_eventlog_subscribers_dropped_total", help: "Subscribers dropped because they stopped reading")
        headGauge = t.gauge("gunn_eventlog_head_seq", help: "The global_seq of the last committed entry")
        t.metrics.counter("gunn_eventlog_checkpoints_starved_total", help: "WAL checkpoints that readers starved") { [unowned self] in
            [([], Double(starvedCheckpoints))]
        }
    }

    /// The head, read on the store's queue.
    public func head() async -> (seq: UInt64, checksum: String?) {
        (try? await onStore { s in (s.headSeq, s.headChecksum) }.get()) ?? (0, nil)
    }

    /// The head for Welcome (the handshake runs on the I/O loop and cannot wait for the store).
    private let welcomeHead = Atomic<UInt64>(0)
    /// The newest orchestrator's start (µs on the monotonic clock): only it may append.
    private let orchestratorSession = Atomic<UInt64>(0)

    public func start() async throws {
        welcomeHead.store(await head().seq, ordering: .relaxed)
        let s = try await UnixSocketServer(path: settings.socketPath, loop: loop) { [settings, self] hello in
            // An empty world_id is a client that does not know the world yet (gunnctl); another
            // one is a peer of another world, whose records must never reach this log.
            if !hello.worldID.isEmpty && hello.worldID != settings.worldID {
                return .failure(ConnectionError(.worldMismatch, "this log writer serves world \"\(settings.worldID)\", not \"\(hello.worldID)\""))
            }
            var w = Welcome()
            w.role = "eventlog"
            w.worldID = settings.worldID
            w.sessionID = "eventlog-\(hello.clientName)"
            w.latestGlobalSeq = welcomeHead.load(ordering: .relaxed)
            return .success(w)
        } onConnection: { [self] conn in
            Task { await serve(conn) }
        }
        server.withLock { $0 = s }
    }

    /// Clean stop: no more connections, a clean head anchor and a WAL checkpoint.
    public func stop() async {
        await server.withLock({ $0 })?.stop()
        _ = await onStore { try $0.anchor(at: Date().timeIntervalSince1970, clean: true) }
    }

    private func onStore<R: Sendable>(_ body: @escaping @Sendable (EventLogStore) throws -> R) async -> Result<R, GunnError> {
        await withCheckedContinuation { c in
            queue.async { [self] in
                do { c.resume(returning: .success(try body(self.store))) } catch let e as GunnError {
                    c.resume(returning: .failure(e))
                } catch {
                    c.resume(returning: .failure(GunnError(.internalError, "\(error)")))
                }
            }
        }
    }

    static func wireEntry(_ e: StoredEntry) -> LogEntry {
        var l = LogEntry()
        l.globalSeq = e.globalSeq; l.simTime = e.simTime; l.wallTime = e.wallTime; l.effect = e.effect
        l.checksum = e.checksum; l.reqID = e.reqID ?? ""; l.agentID = e.agentID ?? ""; l.worldID = e.worldID
        return l
    }

    func error(_ e: GunnError) -> Frame.Body {
        .error(WireErrorMessage(code: UInt32(e.code.code), name: e.code.name, message: e.message, retryAfterMs: e.retryAfterMs ?? 0))
    }

    func serve(_ conn: FramedConnection) async {
        let worldID = settings.worldID
        // One orchestrator writes at a time: each names its start on the machine's monotonic
        // clock ("orchestrator#<µs>"), and the first request of a newer one fences every older
        // one (before that request reaches the store's queue), so a dead predecessor's append
        // still in flight can never land after the new one's recovery read. Connections of the
        // same process share its number; the number only moves forward.
        let isOrchestrator = conn.peerHello?.role == "orchestrator"
        let session = isOrchestrator ? (conn.peerHello?.clientName.split(separator: "#").last.flatMap { UInt64($0) } ?? 1) : 0
        var spoke = false
        while let frame = await conn.receive() {
            if isOrchestrator && !spoke {
                spoke = true
                var seen = orchestratorSession.load(ordering: .relaxed)
                while seen < session {
                    let (exchanged, original) = orchestratorSession.compareExchange(expected: seen, desired: session, ordering: .relaxed)
                    if exchanged { break }
                    seen = original
                }
            }
            guard let body = frame.body else { continue }
            switch body {
            case .metrics:
                subscribersGauge.set([], Double(subscribers.withLock { $0.count }))
                try? await conn.send(telemetry.answer(body)!, id: frame.id)
            case .append(let batch):
                let started = DispatchTime.now().uptimeNanoseconds
                let spans = tracer.enabled ? batch.entries.compactMap { e -> (Span, UInt64)? in
                    guard !e.traceparent.isEmpty, let s = tracer.start("eventlog append", parent: TraceContext.parse(e.traceparent), kind: .server) else { return nil }
                    return (s, e.globalSeq)
                } : []
                let entries = batch.entries.map {
                    StoredEntry(globalSeq: $0.globalSeq, simTime: $0.simTime, wallTime: $0.wallTime, reqID: $0.reqID.isEmpty ? nil : $0.reqID,
                                agentID: $0.agentID.isEmpty ? nil : $0.agentID, worldID: $0.worldID.isEmpty ? worldID : $0.worldID,
                                effect: $0.effect, checksum: $0.checksum)
                }
                let result = await onStore { [self, session, isOrchestrator] store in
                    // Checked on the store's queue: ordered against the newer orchestrator's reads.
                    if isOrchestrator && orchestratorSession.load(ordering: .relaxed) > session {
                        throw GunnError(.logIntegrityViolation, "a newer orchestrator connection holds the log; this one is fenced and nothing was written")
                    }
                    return try store.append(entries, at: Date().timeIntervalSince1970)
                }
                switch result {
                case .success(let ack):
                    for (s, seq) in spans { tracer.end(s, ["global_seq": .number(Double(seq)), "batch_entries": .number(Double(entries.count))]) }
                    appends.inc(["committed", ""])
                    appendSeconds.observeSince([], started)
                    appendedEntries.inc(by: Double(entries.count))
                    appendedBytes.inc(by: Double(entries.reduce(0) { $0 + $1.effect.count }))
                    effectSize.observe(values: entries.lazy.map { Double($0.effect.count) })
                    headGauge.set([], Double(ack.lastSeq))
                    welcomeHead.store(ack.lastSeq, ordering: .relaxed)
                    scheduleIdleCheckpoint()
                    var a = AppendAck()
                    a.lastSeq = ack.lastSeq
                    a.checksum = ack.checksum ?? ""
                    try? await conn.send(.appendAck(a), id: frame.id)
                    publish()
                case .failure(let e):
                    for (s, seq) in spans { tracer.end(s, ["global_seq": .number(Double(seq))], error: "\(e.code.name): \(e.message)") }
                    appends.inc(["rejected", e.code.name])
                    if e.code == .logStorageFailure {
                        telemetry.log(.error, "degraded", ["code": .number(Double(e.code.code)), "message": .string(e.message)])
                    }
                    try? await conn.send(error(e), id: frame.id)
                }
            case .readRange(let r):
                if let refusal = await beforeFirst(max(1, r.from)) { try? await conn.send(error(refusal), id: frame.id); continue }
                await stream(conn, id: frame.id, from: max(1, r.from), to: r.to == 0 ? .max : r.to, batch: r.maxBatch == 0 ? settings.maxReadBatch : min(Int(r.maxBatch), settings.maxReadBatch))
            case .head:
                let h = await onStore { s in (s.headSeq, s.headChecksum ?? "", s.count) }
                if case .success(let (seq, sum, count)) = h {
                    var hr = HeadResult()
                    hr.seq = seq; hr.checksum = sum; hr.count = count
                    try? await conn.send(.headResult(hr), id: frame.id)
                }
            case .verify(let r):
                let report = await onStore { try $0.verify(from: max(1, r.from), to: r.to == 0 ? .max : r.to) }
                switch report {
                case .success(let rep):
                    var v = VerifyResult()
                    v.checked = UInt64(rep.checked)
                    v.firstBadSeq = rep.firstBadSeq ?? 0
                    v.ok = rep.ok
                    for p in rep.problems {
                        switch p {
                        case let .gap(expected, found):
                            var g = SequenceGapMessage(); g.expected = expected; g.found = found
                            v.gaps.append(g)
                        case .truncatedTail: v.tailTruncated = true
                        case .checksumMismatch: break
                        }
                    }
                    try? await conn.send(.verifyResult(v), id: frame.id)
                case .failure(let e): try? await conn.send(error(e), id: frame.id)
                }
            case .subscribe(let n):
                let from = max(1, n.value)
                if let refusal = await beforeFirst(from) { try? await conn.send(error(refusal), id: frame.id); continue }
                guard let next = await stream(conn, id: frame.id, from: from, to: .max, batch: settings.maxReadBatch, done: false) else {
                    conn.close()
                    continue
                }
                subscribers.withLock { $0[ObjectIdentifier(conn)] = Subscriber(conn: conn, id: frame.id, next: next) }
                publish() // what was committed while the backlog was being sent
            case .snapshotRequest(let n):
                let snap = await onStore { try $0.latestSnapshot(atOrBefore: n.value == 0 ? .max : n.value) }
                var s = SnapshotMessage()
                if case .success(let found?) = snap {
                    s = SnapshotMessage(globalSeq: found.globalSeq, state: found.state, digest: found.digest, chainChecksum: found.chainChecksum)
                }
                try? await conn.send(.snapshot(s), id: frame.id)
            case .snapshotSave(let m):
                // A write like an append: only the newest orchestrator's connection may store one.
                let result = await onStore { [self, session, isOrchestrator] store in
                    guard isOrchestrator, orchestratorSession.load(ordering: .relaxed) <= session else {
                        throw GunnError(.forbidden, "only the orchestrator that holds the log stores snapshots; nothing was stored")
                    }
                    try store.saveSnapshot(globalSeq: m.globalSeq, state: m.state, digest: m.digest)
                }
                switch result {
                case .success:
                    var r = ControlResult()
                    r.ok = true
                    r.message = "snapshot at \(m.globalSeq) stored"
                    try? await conn.send(.controlResult(r), id: frame.id)
                case .failure(let e): try? await conn.send(error(e), id: frame.id)
                }
            case .idempotencyRequest(let n):
                let limit = Int(min(n.value, 10_000_000))
                let rows = await onStore { try $0.idempotencyRecords(at: Date().timeIntervalSince1970, limit: limit) }
                switch rows {
                case .success(let all):
                    // In batches well under the frame limit.
                    var i = 0
                    repeat {
                        var batch: [IdempotencyRecord] = []
                        var bytes = 0
                        while i < all.count && bytes < 1 << 20 {
                            let r = all[i]
                            var rec = IdempotencyRecord()
                            rec.agentID = r.agentID; rec.reqID = r.reqID; rec.globalSeq = r.globalSeq; rec.expiresAt = r.expiresAt; rec.effect = r.effect
                            bytes += r.effect.count + r.agentID.utf8.count + r.reqID.utf8.count + 32
                            batch.append(rec)
                            i += 1
                        }
                        do { try await conn.send(.idempotencyRecords(IdempotencyRecords(records: batch, done: i >= all.count)), id: frame.id) } catch { break }
                    } while i < all.count
                case .failure(let e): try? await conn.send(error(e), id: frame.id)
                }
            case .compact(let n):
                // An operator's act (gunnctl, the supervisor), never a client's.
                guard ["ctl", "supervisor"].contains(conn.peerHello?.role ?? "") else {
                    try? await conn.send(error(GunnError(.forbidden, "compaction is for operators (role ctl or supervisor), not role \"\(conn.peerHello?.role ?? "")\"; nothing was dropped")), id: frame.id)
                    continue
                }
                let result = await onStore { try $0.compact(before: n.value) }
                switch result {
                case .success(let done):
                    let first = await onStore { $0.firstSeq }
                    var r = CompactResult()
                    r.snapshotSeq = done.snapshotSeq; r.dropped = done.dropped
                    if case .success(let f) = first { r.firstSeq = f }
                    telemetry.log(.info, "compacted", ["dropped": .number(Double(done.dropped)), "snapshot_seq": .number(Double(done.snapshotSeq))])
                    try? await conn.send(.compactResult(r), id: frame.id)
                case .failure(let e): try? await conn.send(error(e), id: frame.id)
                }
            default:
                try? await conn.send(error(GunnError(.unknownMessage, "the log writer does not serve frame body \(frame.bodyFieldNumber ?? 0)")), id: frame.id)
            }
        }
        subscribers.withLock { $0[ObjectIdentifier(conn)] = nil }
    }

    /// A read from before a compacted log's first entry: SNAPSHOT_REQUIRED (what it asks for is
    /// gone; the snapshot the log starts from stands for it).
    func beforeFirst(_ from: UInt64) async -> GunnError? {
        guard case .success(let first) = await onStore({ $0.firstSeq }), from < first else { return nil }
        return GunnError(.snapshotRequired, "entries before \(first) were compacted into the snapshot at \(first - 1); read from \(first) or later")
    }

    /// WAL hygiene: when appends pause, a passive checkpoint; a checkpoint that readers starved is
    /// reported (the WAL cannot shrink while they hold it).
    func scheduleIdleCheckpoint() {
        queue.async { [self] in
            appendGeneration += 1
            let generation = appendGeneration
            queue.asyncAfter(deadline: .now() + settings.idleCheckpointSeconds) { [self] in
                guard generation == appendGeneration else { return }
                if (try? store.checkpoint()) == false {
                    let n = starved.add(1, ordering: .relaxed).newValue
                    telemetry.log(.warn, "checkpoint_starved", ["count": .number(Double(n))])
                }
            }
        }
    }

    /// Sends `from...to` in bounded batches; returns the next seq to send, or nil when the peer
    /// could not take a batch (closed, or not reading past the slow-consumer deadline): what it
    /// has received is then a prefix without gaps, and it must not be sent anything more.
    @discardableResult
    func stream(_ conn: FramedConnection, id: UInt64, from: UInt64, to: UInt64, batch: Int, done: Bool = true) async -> UInt64? {
        var next = from
        while next <= to {
            let start = next
            let rows = await onStore { try $0.read(from: start, to: to, limit: batch) }
            guard case .success(let entries) = rows else { break }
            let last = entries.count < batch
            if !entries.isEmpty || (last && done) {
                do { try await conn.send(.entries(LogEntries(entries: entries.map(Self.wireEntry), done: last && done)), id: id) } catch { return nil }
                readEntries.inc(by: Double(entries.count))
            }
            if let l = entries.last { next = l.globalSeq + 1 }
            if last { break }
        }
        return next
    }

    /// New commits to every subscriber, without waiting for any: each subscriber's pump runs on
    /// its own, and a pump already running goes round once more.
    func publish() {
        let start = subscribers.withLock { table -> [ObjectIdentifier] in
            var idle: [ObjectIdentifier] = []
            for key in table.keys {
                if table[key]!.pumping { table[key]!.dirty = true } else { table[key]!.pumping = true; idle.append(key) }
            }
            return idle
        }
        for key in start { Task { await pump(key) } }
    }

    /// Feeds one subscriber until it has everything committed; a subscriber that cannot keep up
    /// (its sends fail under the slow-consumer policy) is dropped and its connection closed — it
    /// holds a gap-free prefix and may subscribe again from its next seq.
    private func pump(_ key: ObjectIdentifier) async {
        while true {
            guard let sub = subscribers.withLock({ $0[key] }) else { return }
            let next = await stream(sub.conn, id: sub.id, from: sub.next, to: .max, batch: settings.maxReadBatch, done: false)
            let again = subscribers.withLock { table -> Bool in
                guard table[key] != nil else { return false }
                guard let next else { table[key] = nil; return false }
                table[key]!.next = next
                if table[key]!.dirty { table[key]!.dirty = false; return true }
                table[key]!.pumping = false
                return false
            }
            if next == nil {
                droppedSubscribers.inc()
                telemetry.log(.warn, "subscriber_dropped", ["global_seq": .number(Double(sub.next)), "message": "a subscriber stopped reading"])
                sub.conn.close()
                return
            }
            if !again { return }
        }
    }
}
