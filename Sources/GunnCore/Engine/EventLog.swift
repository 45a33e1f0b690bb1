/// The engine's own append-only log, bounded: a window of the newest entries over a base (the
/// world right after `base.globalSeq` and the chain checksum there), with a world snapshot every
/// `snapshotEvery` effects inside the window. When a snapshot is taken and more than
/// `snapshotsKept` are held, the oldest becomes the new base and the entries up to it are
/// dropped — never past `trimFloor` (the host's durable head: a rollback rebuilds from the base
/// and the entries up to it). The log writer process persists every entry durably; what falls
/// out of the window is read from it.
public struct InMemoryEventLog: Sendable {
    public let worldID: String
    /// The entries after `base`, oldest first.
    public private(set) var entries: [EventLogEntry] = []
    /// `(global_seq, state after it)`, every `snapshotEvery` effects, after `base`.
    public private(set) var snapshots: [(globalSeq: GlobalSeq, state: WorldState)] = []
    /// Where the window starts: the world right after `globalSeq` and the chain checksum of that
    /// entry (nil at seq 0, the empty world).
    public private(set) var base: (globalSeq: GlobalSeq, checksum: String?, state: WorldState) = (0, nil, WorldState())
    public let snapshotEvery: Int
    /// Snapshots held at most (the base not counted); 0 keeps every one (an unbounded log).
    public let snapshotsKept: Int
    /// Trimming never moves the base past this seq (the host sets it to its durable head).
    public var trimFloor: GlobalSeq = .max
    /// Entries dropped from the front so far.
    public private(set) var trimmed: UInt64 = 0

    public init(worldID: String, snapshotEvery: Int, snapshotsKept: Int = 0) {
        self.worldID = worldID
        self.snapshotEvery = snapshotEvery
        self.snapshotsKept = snapshotsKept
    }

    public var headSeq: GlobalSeq { entries.last?.globalSeq ?? base.globalSeq }
    public var headChecksum: String? { entries.last?.checksum ?? base.checksum }
    /// The oldest seq whose world this log can rebuild (the base).
    public var windowStart: GlobalSeq { base.globalSeq }

    /// Appends a committed effect; its `global_seq` must be head + 1.
    mutating func append(_ effect: Effect, wallTime: HostTime, agentID: AgentID?, reqID: ReqID?) -> EventLogEntry {
        precondition(effect.globalSeq == headSeq + 1, "global_seq \(effect.globalSeq) does not follow head \(headSeq)")
        let bytes = effect.canonicalBytes
        let checksum = HashChain.checksum(previous: headChecksum, canonicalEffect: bytes)
        let entry = EventLogEntry(globalSeq: effect.globalSeq, simTime: effect.simTime, wallTime: wallTime, effect: effect,
                                  worldID: worldID, agentID: agentID, reqID: reqID, checksum: checksum, canonicalEffect: bytes)
        entries.append(entry)
        return entry
    }

    /// Takes over a log committed elsewhere (recovery): the world after `base` (a durable
    /// snapshot, or the empty world at 0) and the entries after it.
    /// `snapshots` are the worlds at the multiples of `snapshotEvery` among them (oldest first).
    mutating func load(base: (globalSeq: GlobalSeq, checksum: String?, state: WorldState), _ existing: [EventLogEntry],
                       snapshots: [WorldState]) {
        precondition(entries.isEmpty && headSeq == 0)
        self.base = base
        entries = existing
        self.snapshots = snapshots.map { ($0.lastGlobalSeq, $0) }
        trim()
    }

    mutating func snapshotIfDue(_ state: WorldState) {
        guard snapshotEvery > 0, state.lastGlobalSeq > 0, state.lastGlobalSeq % UInt64(snapshotEvery) == 0 else { return }
        snapshots.append((state.lastGlobalSeq, state))
        trim()
    }

    /// Moves the base forward to the oldest snapshot while more than `snapshotsKept` are held
    /// (and the floor allows), dropping the entries it covers.
    mutating func trim() {
        guard snapshotsKept > 0 else { return }
        var drop = 0
        while snapshots.count - drop > snapshotsKept && snapshots[drop].globalSeq <= trimFloor { drop += 1 }
        guard drop > 0 else { return }
        let newBase = snapshots[drop - 1]
        let cut = Int(newBase.globalSeq - base.globalSeq)
        precondition(cut <= entries.count && entries[cut - 1].globalSeq == newBase.globalSeq)
        base = (newBase.globalSeq, entries[cut - 1].checksum, newBase.state)
        entries.removeFirst(cut)
        snapshots.removeFirst(drop)
        trimmed += UInt64(cut)
    }

    /// The entry with this seq, while the window holds it.
    public func entry(_ seq: GlobalSeq) -> EventLogEntry? {
        guard seq > base.globalSeq, seq <= headSeq else { return nil }
        return entries[Int(seq - base.globalSeq - 1)]
    }

    /// Entries with `global_seq > seq` that the window holds, in order.
    public func entries(since seq: GlobalSeq) -> ArraySlice<EventLogEntry> {
        guard let first = entries.first else { return [] }
        let start = seq < first.globalSeq ? 0 : Int(seq - first.globalSeq + 1)
        return start >= entries.count ? [] : entries[start...]
    }

    /// The world right after `seq`, from the nearest snapshot at or before it and the entries
    /// after that; nil when `seq` is before the window or past the head.
    public func world(at seq: GlobalSeq, reducers: ReducerRegistry) -> WorldState? {
        guard seq >= base.globalSeq, seq <= headSeq else { return nil }
        let from = snapshots.last(where: { $0.globalSeq <= seq }) ?? (base.globalSeq, base.state)
        if from.globalSeq == seq { return from.state }
        let previous = from.globalSeq == base.globalSeq ? base.checksum : entry(from.globalSeq)?.checksum
        let slice = entries(since: from.globalSeq).prefix(while: { $0.globalSeq <= seq })
        return try? Replay.replay(slice, from: from.state, previousChecksum: previous, reducers: reducers)
    }

    /// Checks the chain of the window from the base's checksum.
    public func validateIntegrity() -> IntegrityReport {
        IntegrityReport.check(entries[...], previousChecksum: base.checksum, expectedFirstSeq: base.globalSeq + 1)
    }
}

/// The result of walking a chain: the first entry whose checksum is wrong, and every gap.
public struct IntegrityReport: Hashable, Sendable {
    public var checked: Int
    public var firstBadSeq: GlobalSeq?
    /// `(expected, found)` where a seq was skipped.
    public var gaps: [SequenceGap]
    public var isValid: Bool { firstBadSeq == nil && gaps.isEmpty }

    public struct SequenceGap: Hashable, Sendable { public var expected: GlobalSeq; public var found: GlobalSeq }

    public static func check(_ entries: ArraySlice<EventLogEntry>, previousChecksum: String? = nil, expectedFirstSeq: GlobalSeq? = nil) -> IntegrityReport {
        var report = IntegrityReport(checked: 0, firstBadSeq: nil, gaps: [])
        var prev = previousChecksum
        var expected = expectedFirstSeq ?? entries.first?.globalSeq ?? 1
        for e in entries {
            if e.globalSeq != expected { report.gaps.append(SequenceGap(expected: expected, found: e.globalSeq)) }
            expected = e.globalSeq + 1
            let sum = HashChain.checksum(previous: prev, canonicalEffect: e.canonicalEffect)
            if report.firstBadSeq == nil && (sum != e.checksum || e.effect.globalSeq != e.globalSeq) { report.firstBadSeq = e.globalSeq }
            prev = e.checksum
            report.checked += 1
        }
        return report
    }
}

/// Rebuilds world state from logged effects alone: no model, no validator, no randomness.
public enum Replay {
    /// Applies `entries` in order to `start` (a fresh world or a snapshot). Refuses a broken chain
    /// (LOG_INTEGRITY_VIOLATION) or a gap (SEQUENCE_GAP) before applying anything.
    public static func replay(_ entries: ArraySlice<EventLogEntry>, from start: WorldState = WorldState(),
                              previousChecksum: String? = nil, reducers: ReducerRegistry = ReducerRegistry()) throws(GunnError) -> WorldState {
        let report = IntegrityReport.check(entries, previousChecksum: previousChecksum, expectedFirstSeq: start.lastGlobalSeq + 1)
        if let gap = report.gaps.first {
            throw GunnError(.sequenceGap, "expected global_seq \(gap.expected), found \(gap.found)")
        }
        if let bad = report.firstBadSeq {
            throw GunnError(.logIntegrityViolation, "checksum of global_seq \(bad) does not continue the chain")
        }
        var state = start
        for e in entries {
            do { try reducers.apply(e.effect, to: &state) } catch {
                throw GunnError(.worldStateCorrupted, "replay of global_seq \(e.globalSeq) failed: \(error)")
            }
        }
        return state
    }

    /// Applies one entry that continues `world` (the next seq, a checksum continuing
    /// `previousChecksum`) for a live follower of the log, and returns the ids of the entities it
    /// changed. The same refusals as `replay`; the world is unchanged when the entry is refused.
    public static func follow(_ entry: EventLogEntry, world: inout WorldState, previousChecksum: String?,
                              reducers: ReducerRegistry = ReducerRegistry()) throws(GunnError) -> [String] {
        let report = IntegrityReport.check([entry][...], previousChecksum: previousChecksum, expectedFirstSeq: world.lastGlobalSeq + 1)
        if let gap = report.gaps.first { throw GunnError(.sequenceGap, "expected global_seq \(gap.expected), found \(gap.found)") }
        if report.firstBadSeq != nil { throw GunnError(.logIntegrityViolation, "checksum of global_seq \(entry.globalSeq) does not continue the chain") }
        _ = world.takeChanges()
        // In place (a copy would cost the whole world per entry): a reducer that refuses changes
        // nothing, which the engine's own commits rely on too.
        do { try reducers.apply(entry.effect, to: &world) } catch {
            _ = world.takeChanges()
            throw GunnError(.worldStateCorrupted, "global_seq \(entry.globalSeq) does not apply: \(error)")
        }
        return world.takeChanges().entityIDs
    }
}
