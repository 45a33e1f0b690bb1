/// The engine's own append-only log: the hash chain, reads by sequence, integrity validation and
/// periodic world snapshots. The log writer process persists the same entries durably.
public struct InMemoryEventLog: Sendable {
    public let worldID: String
    public private(set) var entries: [EventLogEntry] = []
    /// `(global_seq, state after it)`, every `snapshotEvery` effects.
    public private(set) var snapshots: [(globalSeq: GlobalSeq, state: WorldState)] = []
    public let snapshotEvery: Int

    public init(worldID: String, snapshotEvery: Int) {
        self.worldID = worldID
        self.snapshotEvery = snapshotEvery
    }

    public var headSeq: GlobalSeq { entries.last?.globalSeq ?? 0 }
    public var headChecksum: String? { entries.last?.checksum }

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

    /// Takes over entries already committed elsewhere (recovery).
    mutating func load(_ existing: [EventLogEntry]) {
        precondition(entries.isEmpty)
        entries = existing
    }

    mutating func snapshotIfDue(_ state: WorldState) {
        guard snapshotEvery > 0, state.lastGlobalSeq > 0, state.lastGlobalSeq % UInt64(snapshotEvery) == 0 else { return }
        snapshots.append((state.lastGlobalSeq, state))
    }

    /// Entries with `global_seq > seq`, in order.
    public func entries(since seq: GlobalSeq) -> ArraySlice<EventLogEntry> {
        guard let first = entries.first else { return [] }
        let start = seq < first.globalSeq ? 0 : Int(seq - first.globalSeq + 1)
        return start >= entries.count ? [] : entries[start...]
    }

    public func validateIntegrity() -> IntegrityReport { IntegrityReport.check(entries[...]) }
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
            let bytes = e.effect.canonicalBytes
            let sum = HashChain.checksum(previous: prev, canonicalEffect: bytes)
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
}
