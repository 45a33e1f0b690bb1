import CSQLite
import GunnCore
import GunnCrypto

/// One entry as stored and as it travels in `AppendBatch`.
public struct StoredEntry: Sendable, Equatable {
    public var globalSeq: UInt64
    public var simTime: Double
    public var wallTime: Double
    public var reqID: String?
    public var agentID: String?
    public var worldID: String
    /// Canonical JSON of the effect (RFC 8785); the chain is computed over these bytes.
    public var effect: [UInt8]
    public var checksum: String

    public init(globalSeq: UInt64, simTime: Double, wallTime: Double, reqID: String?, agentID: String?, worldID: String, effect: [UInt8], checksum: String) {
        self.globalSeq = globalSeq; self.simTime = simTime; self.wallTime = wallTime; self.reqID = reqID
        self.agentID = agentID; self.worldID = worldID; self.effect = effect; self.checksum = checksum
    }
}

/// How hard a commit tries to reach the disk.
public enum Durability: String, Sendable {
    /// WAL + synchronous=FULL: an acknowledged batch survives a power loss.
    case full
    /// WAL + synchronous=NORMAL: survives a crash of any process, may lose the last commits on power loss.
    case normal
}

public struct EventLogStoreOptions: Sendable {
    public var durability: Durability = .full
    /// A head anchor every this many entries (and at clean shutdown).
    public var anchorEvery = 1000
    public var maxEffectBytes = 1 << 20
    public var journalSizeLimitBytes = 64 << 20
    public var idempotencyTTLSeconds: Double = 600
    /// Durable snapshots kept (the newest; plus the one a compacted log starts from).
    public var snapshotsKept = 8
    /// A cap on the database size in pages (SQLite `max_page_count`); nil leaves SQLite's default.
    /// Reaching it behaves like a full disk.
    public var maxPageCount: Int?
    public init() {}
}

/// What `verify` found.
public struct VerifyReport: Sendable, Equatable {
    public enum Problem: Sendable, Equatable {
        case checksumMismatch(seq: UInt64)
        case gap(expected: UInt64, found: UInt64)
        case truncatedTail(lastSeq: UInt64, anchorSeq: UInt64)
    }
    public var checked = 0
    public var problems: [Problem] = []
    public var firstBadSeq: UInt64? {
        for p in problems { if case .checksumMismatch(let s) = p { return s } }
        return nil
    }
    public var ok: Bool { problems.isEmpty }
}

/// The durable, hash-chained log in one SQLite file: header, entries, idempotency, snapshots and
/// head anchors. Appends are checked (no gap, the chain recomputed, canonical payloads) and
/// committed a batch per transaction; nothing is written for a refused batch.
public final class EventLogStore {
    public let path: String
    public let worldID: String
    public let options: EventLogStoreOptions
    let db: SQLiteDatabase
    public private(set) var headSeq: UInt64 = 0
    public private(set) var headChecksum: String?
    public private(set) var count: UInt64 = 0
    public private(set) var degraded: GunnError?
    private var sinceAnchor = 0
    private var appendsSinceCleanup = 0
    private let insertEntry: Statement
    private let insertIdem: Statement
    private let selectChecksum: Statement

    public init(path: String, worldID: String, worldSeed: UInt64, options: EventLogStoreOptions = EventLogStoreOptions(), now: Double) throws {
        self.path = path
        self.worldID = worldID
        self.options = options
        db = try SQLiteDatabase(path: path)
        try db.execute("PRAGMA journal_mode=WAL")
        try db.execute("PRAGMA synchronous=\(options.durability == .full ? "FULL" : "NORMAL")")
        try db.execute("PRAGMA journal_size_limit=\(options.journalSizeLimitBytes)")
        if let pages = options.maxPageCount { try db.execute("PRAGMA max_page_count=\(pages)") }
        try db.execute("""
            CREATE TABLE IF NOT EXISTS header (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS entries (
              global_seq INTEGER PRIMARY KEY, sim_time REAL NOT NULL, wall_time REAL NOT NULL, kind TEXT NOT NULL,
              req_id TEXT, agent_id TEXT, source_metadata TEXT NOT NULL, effect BLOB NOT NULL, checksum TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS idempotency (
              world_id TEXT NOT NULL, agent_id TEXT NOT NULL, req_id TEXT NOT NULL, global_seq INTEGER NOT NULL, expires_at REAL NOT NULL,
              PRIMARY KEY (world_id, agent_id, req_id));
            CREATE INDEX IF NOT EXISTS idempotency_expiry ON idempotency (expires_at);
            CREATE TABLE IF NOT EXISTS snapshots (global_seq INTEGER PRIMARY KEY, state BLOB NOT NULL, digest TEXT NOT NULL, chain_checksum TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS anchors (seq INTEGER PRIMARY KEY, checksum TEXT NOT NULL, count INTEGER NOT NULL, written_at REAL NOT NULL, clean INTEGER NOT NULL);
            """)
        insertEntry = try db.prepare("INSERT INTO entries (global_seq, sim_time, wall_time, kind, req_id, agent_id, source_metadata, effect, checksum) VALUES (?,?,?,?,?,?,?,?,?)")
        insertIdem = try db.prepare("INSERT OR REPLACE INTO idempotency (world_id, agent_id, req_id, global_seq, expires_at) VALUES (?,?,?,?,?)")
        selectChecksum = try db.prepare("SELECT checksum, effect FROM entries WHERE global_seq = ?")
        // Header: created once; a file of another world is refused.
        let h = try db.prepare("SELECT value FROM header WHERE key = 'world_id'")
        if try h.step(), let existing = h.string(0) {
            guard existing == worldID else { throw GunnError(.worldStateCorrupted, "\(path) belongs to world \(existing), not \(worldID)") }
        } else {
            try db.transaction {
                for (k, v) in [("world_id", worldID), ("world_seed", String(worldSeed)), ("schema_version", SchemaVersion.current.description), ("created_at", String(now))] {
                    let s = try db.prepare("INSERT INTO header (key, value) VALUES (?, ?)")
                    s.bind(1, k); s.bind(2, v)
                    try s.step()
                }
            }
        }
        // Files from before compaction kept effects: the idempotency table gains the column that
        // holds a compacted request's effect.
        let cols = try db.prepare("SELECT count(*) FROM pragma_table_info('idempotency') WHERE name = 'effect'")
        try cols.step()
        if cols.int64(0) == 0 { try db.execute("ALTER TABLE idempotency ADD COLUMN effect BLOB") }
        try loadHead()
    }

    /// The oldest entry held (1, or the seq after the snapshot a compaction kept); head + 1 when empty.
    public private(set) var firstSeq: UInt64 = 1

    private func loadHead() throws(SQLiteError) {
        let s = try db.prepare("SELECT global_seq, checksum FROM entries ORDER BY global_seq DESC LIMIT 1")
        if try s.step() { headSeq = UInt64(s.int64(0)); headChecksum = s.string(1) } else { headSeq = 0; headChecksum = nil }
        let c = try db.prepare("SELECT count(*), min(global_seq) FROM entries")
        try c.step()
        count = UInt64(c.int64(0))
        if count > 0 { firstSeq = UInt64(c.int64(1)) } else {
            // Empty: compacted up to a snapshot (the log continues after it), or new.
            let b = try db.prepare("SELECT max(global_seq), chain_checksum FROM snapshots")
            if try b.step(), b.int64(0) > 0, headSeq == 0 {
                headSeq = UInt64(b.int64(0)); headChecksum = b.string(1)
            }
            firstSeq = headSeq + 1
        }
    }

    static let effectKeys: Set<String> = ["global_seq", "kind"]

    /// A canonical number's value when it is a non-negative integer (as a global_seq must be).
    static func integer(_ bytes: ArraySlice<UInt8>) -> UInt64? {
        if let n = CanonicalCheck.integer(bytes) { return n }
        guard case .number(let d)? = try? JSONParser.parse(Array(bytes)), let i = JSONValue.number(d).int64Value, i >= 0 else { return nil }
        return UInt64(i)
    }

    /// Checks a batch completely, then commits it in one transaction. Entries at or below the head
    /// that match what is stored are acknowledged again; anything else refused with its code.
    @discardableResult
    public func append(_ batch: [StoredEntry], at now: Double) throws(GunnError) -> (lastSeq: UInt64, checksum: String?) {
        if let degraded { throw degraded }
        var fresh: [(StoredEntry, kind: String)] = []
        var prev = headChecksum
        var expected = headSeq + 1
        for e in batch {
            // The log holds one world: an entry of another would be a record that world lacks.
            guard e.worldID == worldID else {
                throw GunnError(.worldMismatch,
                                "global_seq \(e.globalSeq) belongs to world \"\(e.worldID)\", this log to \"\(worldID)\"; nothing was written")
            }
            if e.globalSeq < expected && fresh.isEmpty {
                // A resend: it must be exactly what is stored, content and checksum.
                let stored = try storedEntry(e.globalSeq)
                guard let stored, stored.checksum == e.checksum, stored.effect == e.effect else {
                    throw GunnError(.logIntegrityViolation, "global_seq \(e.globalSeq) is already stored with another checksum; nothing was written")
                }
                continue
            }
            guard e.globalSeq == expected else {
                throw GunnError(.sequenceGap, "global_seq \(e.globalSeq) does not follow \(expected - 1); nothing was written", retryAfterMs: nil)
            }
            guard e.effect.count <= options.maxEffectBytes else {
                throw GunnError(.payloadTooLarge, "effect of global_seq \(e.globalSeq) is \(e.effect.count) bytes, over \(options.maxEffectBytes); nothing was written")
            }
            // Canonical (RFC 8785) checked in one pass over the bytes, without parsing them into a
            // value and encoding it again (which cost more than the insert).
            guard let members = CanonicalCheck.check(e.effect, keys: Self.effectKeys) else {
                let why: String
                do { _ = try JSONParser.parse(e.effect); why = "is not canonical JSON (RFC 8785)" } catch { why = "\(error)" }
                throw GunnError(.invalidJSON, "effect of global_seq \(e.globalSeq) \(why); nothing was written")
            }
            guard let seqRange = members["global_seq"], let kindRange = members["kind"],
                  Self.integer(e.effect[seqRange]) == e.globalSeq, let kind = CanonicalCheck.string(e.effect[kindRange]) else {
                throw GunnError(.invalidIntent, "effect of global_seq \(e.globalSeq) lacks a matching global_seq or a kind; nothing was written")
            }
            let sum = HashChain.checksum(previous: prev, canonicalEffect: e.effect)
            guard sum == e.checksum else {
                throw GunnError(.logIntegrityViolation, "checksum of global_seq \(e.globalSeq) does not continue the chain (expected \(sum)); nothing was written")
            }
            prev = sum
            expected += 1
            fresh.append((e, kind))
        }
        guard !fresh.isEmpty else { return (headSeq, headChecksum) }
        // Every entry is of this world (checked above): one spelling of its metadata.
        let sourceMetadata = CanonicalJSON.encodeString(["world_id": .string(worldID)])
        do {
            try db.transaction {
                for (e, kind) in fresh {
                    insertEntry.reset()
                    insertEntry.bind(1, Int64(e.globalSeq)); insertEntry.bind(2, e.simTime); insertEntry.bind(3, e.wallTime)
                    insertEntry.bind(4, kind); insertEntry.bind(5, e.reqID); insertEntry.bind(6, e.agentID)
                    insertEntry.bind(7, sourceMetadata)
                    insertEntry.bind(8, e.effect); insertEntry.bind(9, e.checksum)
                    try insertEntry.step()
                    if let req = e.reqID, let agent = e.agentID {
                        insertIdem.reset()
                        insertIdem.bind(1, e.worldID); insertIdem.bind(2, agent); insertIdem.bind(3, req)
                        insertIdem.bind(4, Int64(e.globalSeq)); insertIdem.bind(5, now + options.idempotencyTTLSeconds)
                        try insertIdem.step()
                    }
                }
                sinceAnchor += fresh.count
                if sinceAnchor >= options.anchorEvery {
                    try writeAnchorRow(seq: fresh.last!.0.globalSeq, checksum: fresh.last!.0.checksum, count: count + UInt64(fresh.count), now: now, clean: false)
                    sinceAnchor = 0
                }
            }
        } catch let e as SQLiteError {
            if e.isStorageFailure {
                degraded = GunnError(.logStorageFailure, "the log store cannot write (\(e)); appends are refused until it is repaired")
                throw degraded!
            }
            throw GunnError(.internalError, "append failed: \(e)")
        } catch {
            throw GunnError(.internalError, "append failed: \(error)")
        }
        headSeq = fresh.last!.0.globalSeq
        headChecksum = fresh.last!.0.checksum
        count += UInt64(fresh.count)
        appendsSinceCleanup += fresh.count
        if appendsSinceCleanup >= 10_000 { appendsSinceCleanup = 0; try? cleanIdempotency(at: now) }
        return (headSeq, headChecksum)
    }

    private func storedEntry(_ seq: UInt64) throws(GunnError) -> (checksum: String, effect: [UInt8])? {
        selectChecksum.reset()
        selectChecksum.bind(1, Int64(seq))
        do {
            guard try selectChecksum.step() else { return nil }
            return (selectChecksum.string(0) ?? "", selectChecksum.blob(1))
        } catch { throw GunnError(.internalError, "\(error)") }
    }

    private func writeAnchorRow(seq: UInt64, checksum: String, count: UInt64, now: Double, clean: Bool) throws(SQLiteError) {
        let s = try db.prepare("INSERT OR REPLACE INTO anchors (seq, checksum, count, written_at, clean) VALUES (?,?,?,?,?)")
        s.bind(1, Int64(seq)); s.bind(2, checksum); s.bind(3, Int64(count)); s.bind(4, now); s.bind(5, Int64(clean ? 1 : 0))
        try s.step()
    }

    /// Writes a head anchor now (at clean shutdown, `clean: true`) and checkpoints the WAL.
    public func anchor(at now: Double, clean: Bool) throws {
        if let c = headChecksum { try writeAnchorRow(seq: headSeq, checksum: c, count: count, now: now, clean: clean) }
        if clean { try db.execute("PRAGMA wal_checkpoint(TRUNCATE)") }
    }

    /// The newest anchor: (seq, checksum, count).
    public func lastAnchor() throws -> (seq: UInt64, checksum: String, count: UInt64)? {
        let s = try db.prepare("SELECT seq, checksum, count FROM anchors ORDER BY seq DESC LIMIT 1")
        guard try s.step() else { return nil }
        return (UInt64(s.int64(0)), s.string(1) ?? "", UInt64(s.int64(2)))
    }

    public func cleanIdempotency(at now: Double) throws {
        let s = try db.prepare("DELETE FROM idempotency WHERE expires_at < ?")
        s.bind(1, now)
        try s.step()
    }

    /// The stored global_seq of a request, while its TTL lasts.
    public func idempotentSeq(agentID: String, reqID: String, at now: Double) throws -> UInt64? {
        let s = try db.prepare("SELECT global_seq FROM idempotency WHERE world_id = ? AND agent_id = ? AND req_id = ? AND expires_at >= ?")
        s.bind(1, worldID); s.bind(2, agentID); s.bind(3, reqID); s.bind(4, now)
        return try s.step() ? UInt64(s.int64(0)) : nil
    }

    /// Entries with `from <= global_seq <= to`, at most `limit`.
    public func read(from: UInt64, to: UInt64 = .max, limit: Int = 512) throws -> [StoredEntry] {
        let s = try db.prepare("SELECT global_seq, sim_time, wall_time, req_id, agent_id, effect, checksum FROM entries WHERE global_seq >= ? AND global_seq <= ? ORDER BY global_seq LIMIT ?")
        s.bind(1, Int64(min(from, UInt64(Int64.max)))); s.bind(2, Int64(min(to, UInt64(Int64.max)))); s.bind(3, Int64(limit))
        var out: [StoredEntry] = []
        while try s.step() {
            out.append(StoredEntry(globalSeq: UInt64(s.int64(0)), simTime: s.double(1), wallTime: s.double(2), reqID: s.string(3),
                                   agentID: s.string(4), worldID: worldID, effect: s.blob(5), checksum: s.string(6) ?? ""))
        }
        return out
    }

    /// Walks the chain over `from...to`: each checksum recomputed from its predecessor, every gap,
    /// and a tail shorter than the last anchor.
    public func verify(from: UInt64 = 1, to: UInt64 = .max) throws -> VerifyReport {
        var report = VerifyReport()
        var prev: String?
        // A compacted log starts after the snapshot it was compacted to: the chain continues from
        // that snapshot's chain checksum (docs/hash-chain.md).
        let from = max(from, firstSeq)
        var expected = from
        if from > 1 {
            prev = try read(from: from - 1, to: from - 1, limit: 1).first?.checksum
            if prev == nil { prev = try snapshotBase(at: from - 1) }
            // No base to check it from (only when there is an entry to check).
            if prev == nil && from <= headSeq { report.problems.append(.checksumMismatch(seq: from)) }
        }
        let s = try db.prepare("SELECT global_seq, effect, checksum FROM entries WHERE global_seq >= ? AND global_seq <= ? ORDER BY global_seq")
        s.bind(1, Int64(from)); s.bind(2, Int64(min(to, UInt64(Int64.max))))
        var last: UInt64 = expected - 1
        while try s.step() {
            let seq = UInt64(s.int64(0))
            let effect = s.blob(1)
            let stored = s.string(2) ?? ""
            report.checked += 1
            if seq != expected {
                report.problems.append(.gap(expected: expected, found: seq))
                prev = stored // the chain cannot be checked across a gap; continue from here
            } else {
                let sum = HashChain.checksum(previous: prev, canonicalEffect: effect)
                if sum != stored { report.problems.append(.checksumMismatch(seq: seq)) }
                prev = stored
            }
            expected = seq + 1
            last = seq
        }
        if to == .max, let a = try lastAnchor(), a.seq > last {
            report.problems.append(.truncatedTail(lastSeq: last, anchorSeq: a.seq))
        }
        return report
    }

    // MARK: - Snapshots and compaction

    /// Stores a snapshot of the world right after `globalSeq`: `state` is its canonical JSON and
    /// `digest` its SHA-256 (checked), and the entry's chain checksum is recorded with it (so the
    /// log can later be compacted to it and still be verified). Only the newest `snapshotsKept`
    /// are kept, and the one a compacted log starts from.
    public func saveSnapshot(globalSeq: UInt64, state: [UInt8], digest: String) throws(GunnError) {
        guard SHA256.hash(state).hex == digest else {
            throw GunnError(.worldStateCorrupted, "the snapshot at global_seq \(globalSeq) does not match its digest \(digest.prefix(16))…; nothing was stored")
        }
        do {
            guard let chain = try read(from: globalSeq, to: globalSeq, limit: 1).first?.checksum else {
                throw GunnError(.sequenceGap, "no entry \(globalSeq) to snapshot at (the log holds \(firstSeq)…\(headSeq)); nothing was stored")
            }
            try db.transaction {
                let s = try db.prepare("INSERT OR REPLACE INTO snapshots (global_seq, state, digest, chain_checksum) VALUES (?,?,?,?)")
                s.bind(1, Int64(globalSeq)); s.bind(2, state); s.bind(3, digest); s.bind(4, chain)
                try s.step()
                // The newest snapshotsKept stay, and the base of a compacted log (at firstSeq - 1).
                let prune = try db.prepare("""
                    DELETE FROM snapshots WHERE global_seq <> ? AND global_seq NOT IN
                      (SELECT global_seq FROM snapshots ORDER BY global_seq DESC LIMIT ?)
                    """)
                prune.bind(1, Int64(firstSeq) - 1); prune.bind(2, Int64(max(1, options.snapshotsKept)))
                try prune.step()
            }
        } catch let e as GunnError { throw e } catch { throw GunnError(.internalError, "saving the snapshot at \(globalSeq) failed: \(error)") }
    }

    public struct Snapshot: Sendable, Equatable {
        public var globalSeq: UInt64, state: [UInt8], digest: String, chainChecksum: String
    }

    /// The newest snapshot at or before `seq`.
    public func latestSnapshot(atOrBefore seq: UInt64 = .max) throws -> Snapshot? {
        let s = try db.prepare("SELECT global_seq, state, digest, chain_checksum FROM snapshots WHERE global_seq <= ? ORDER BY global_seq DESC LIMIT 1")
        s.bind(1, Int64(min(seq, UInt64(Int64.max))))
        guard try s.step() else { return nil }
        return Snapshot(globalSeq: UInt64(s.int64(0)), state: s.blob(1), digest: s.string(2) ?? "", chainChecksum: s.string(3) ?? "")
    }

    private func snapshotBase(at seq: UInt64) throws -> String? {
        let s = try db.prepare("SELECT chain_checksum FROM snapshots WHERE global_seq = ?")
        s.bind(1, Int64(seq))
        return try s.step() ? s.string(0) : nil
    }

    /// Drops the entries up to the newest snapshot before `before` (only when asked): the log then
    /// starts after that snapshot, whose chain checksum is kept, so verification and replay from
    /// it stay possible. Requests of the idempotency table whose entries go keep their effect.
    /// SNAPSHOT_REQUIRED when no snapshot at or after the log's first entry is before `before`.
    @discardableResult
    public func compact(before: UInt64) throws(GunnError) -> (snapshotSeq: UInt64, dropped: UInt64) {
        do {
            guard let snap = try latestSnapshot(atOrBefore: before &- 1), before > 0, snap.globalSeq >= firstSeq else {
                let newest = try latestSnapshot()
                throw GunnError(.snapshotRequired, "no durable snapshot between the log's first entry \(firstSeq) and \(before) covers a compaction before \(before)"
                                + (newest.map { "; the newest is at \($0.globalSeq)" } ?? "; there is none yet") + "; nothing was dropped")
            }
            let countBefore = count
            try db.transaction {
                let keep = try db.prepare("""
                    UPDATE idempotency SET effect = (SELECT effect FROM entries WHERE entries.global_seq = idempotency.global_seq)
                    WHERE effect IS NULL AND global_seq <= ?
                    """)
                keep.bind(1, Int64(snap.globalSeq))
                try keep.step()
                let s = try db.prepare("DELETE FROM entries WHERE global_seq <= ?")
                s.bind(1, Int64(snap.globalSeq))
                try s.step()
                let old = try db.prepare("DELETE FROM snapshots WHERE global_seq < ?")
                old.bind(1, Int64(snap.globalSeq))
                try old.step()
            }
            try loadHead()
            return (snap.globalSeq, countBefore - count)
        } catch let e as GunnError { throw e } catch { throw GunnError(.internalError, "compaction failed: \(error)") }
    }

    /// The newest `limit` requests whose TTL has not ended at `now` (by expiry, which follows the
    /// commit order: the expiry index is walked backwards, `limit` rows read, no sort; the table
    /// holds this log's world only), oldest first, each with its committed effect.
    public func idempotencyRecords(at now: Double, limit: Int) throws -> [(agentID: String, reqID: String, globalSeq: UInt64, expiresAt: Double, effect: [UInt8])] {
        let s = try db.prepare("""
            SELECT i.agent_id, i.req_id, i.global_seq, i.expires_at, COALESCE(i.effect, e.effect) FROM idempotency i INDEXED BY idempotency_expiry
            LEFT JOIN entries e ON e.global_seq = i.global_seq
            WHERE i.expires_at >= ? ORDER BY i.expires_at DESC LIMIT ?
            """)
        s.bind(1, now); s.bind(2, Int64(limit))
        var out: [(agentID: String, reqID: String, globalSeq: UInt64, expiresAt: Double, effect: [UInt8])] = []
        while try s.step() {
            let effect = s.blob(4)
            guard !effect.isEmpty else { continue }
            out.append((s.string(0) ?? "", s.string(1) ?? "", UInt64(s.int64(2)), s.double(3), effect))
        }
        return out.sorted { $0.globalSeq < $1.globalSeq }
    }

    /// A passive checkpoint; returns false when readers starved it (the WAL could not be reset).
    @discardableResult
    public func checkpoint() throws -> Bool {
        var logFrames: Int32 = 0, checkpointed: Int32 = 0
        let rc = sqlite3_wal_checkpoint_v2(db.handle, nil, SQLITE_CHECKPOINT_PASSIVE, &logFrames, &checkpointed)
        guard rc == SQLITE_OK else { throw db.error(rc) }
        return checkpointed >= logFrames
    }
}
