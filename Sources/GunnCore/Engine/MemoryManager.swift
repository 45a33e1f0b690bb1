/// The bounds on what the engine holds in memory. Each has a name, a default and a gauge in
/// status; a long run stays flat once every one is reached.
public struct MemoryLimits: Hashable, Sendable {
    /// World snapshots held in memory inside the log window (besides its base). With
    /// `EngineConfig.snapshotEvery` they set the resume window: about `snapshotEvery × snapshots`
    /// entries are held, older ones are read from the log writer. 0 keeps every entry (tests).
    public var snapshots = 4
    /// Estimated bytes of the views held as delivered to agents (the base every delta is
    /// computed against, one per agent). Over it the least recently delivered are evicted; the
    /// next delivery to an evicted agent is a whole view.
    public var viewCacheBytes = 128 << 20
    /// The view cache is measured every this many effects.
    public var viewCacheCheckEvery = 1024

    public init(snapshots: Int = 4, viewCacheBytes: Int = 128 << 20, viewCacheCheckEvery: Int = 1024) {
        precondition(snapshots >= 0 && viewCacheBytes >= 0 && viewCacheCheckEvery > 0)
        self.snapshots = snapshots; self.viewCacheBytes = viewCacheBytes; self.viewCacheCheckEvery = viewCacheCheckEvery
    }
}

/// One bound as status shows it: what it holds now, its limit (0: none), the most it held.
public struct MemoryGauge: Hashable, Sendable {
    public var name: String
    public var value: UInt64
    public var limit: UInt64
    public var highWater: UInt64
    public init(name: String, value: UInt64, limit: UInt64, highWater: UInt64) {
        self.name = name; self.value = value; self.limit = limit; self.highWater = highWater
    }
}

/// The engine's memory accounting and eviction policy: the view cache measured every
/// `viewCacheCheckEvery` effects and evicted least recently delivered first down to its limit;
/// what was evicted and what it cost afterwards (whole views instead of deltas) counted.
/// Deterministic: driven by effect counts, never by a clock.
public struct MemoryManager: Sendable {
    public let limits: MemoryLimits
    /// The view cache's estimated bytes at the last measurement, and the most measured.
    public internal(set) var viewCacheBytes = 0
    public internal(set) var viewCacheHighWater = 0
    /// Agents' delivered views evicted, and whole views delivered because of it.
    public internal(set) var viewsEvicted = 0
    public internal(set) var wholeViewsAfterEviction = 0
    var effectsSinceCheck = 0
    /// A logical clock of deliveries: each agent's last one orders the eviction.
    var useClock: UInt64 = 0

    public init(limits: MemoryLimits) { self.limits = limits }

    /// Counts an effect; true when the view cache is due to be measured.
    mutating func effectCommitted() -> Bool {
        effectsSinceCheck += 1
        guard effectsSinceCheck >= limits.viewCacheCheckEvery else { return false }
        effectsSinceCheck = 0
        return true
    }

    mutating func nextUse() -> UInt64 { useClock += 1; return useClock }

    /// Which cached views to evict: given each cached view's (agent index, bytes, last use), the
    /// least recently used until the total is within the limit. Records the measurement.
    mutating func evictions(_ cached: [(agent: Int, bytes: Int, lastUse: UInt64)]) -> [Int] {
        var total = cached.reduce(0) { $0 + $1.bytes }
        viewCacheHighWater = max(viewCacheHighWater, total)
        var out: [Int] = []
        if total > limits.viewCacheBytes {
            for c in cached.sorted(by: { ($0.lastUse, $0.agent) < ($1.lastUse, $1.agent) }) {
                guard total > limits.viewCacheBytes else { break }
                out.append(c.agent)
                total -= c.bytes
            }
        }
        viewCacheBytes = total
        viewsEvicted += out.count
        return out
    }
}

extension JSONValue {
    /// A cheap estimate of the bytes this value holds in memory (tree nodes, keys and strings),
    /// for accounting only.
    public var estimatedBytes: Int {
        switch self {
        case .null, .bool, .number: return 16
        case .string(let s): return 32 + s.utf8.count
        case .array(let a): return 32 + a.reduce(0) { $0 + $1.estimatedBytes }
        case .object(let o): return 48 + o.reduce(0) { $0 + 32 + $1.key.utf8.count + $1.value.estimatedBytes }
        }
    }
}
