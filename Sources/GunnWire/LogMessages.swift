// Log writer and supervisor messages of proto/gunn/v1/gunn.proto.

public struct LogEntry: WireMessage {
    public var globalSeq: UInt64 = 0, simTime: Double = 0, wallTime: Double = 0, effect: [UInt8] = []
    public var checksum = "", reqID = "", agentID = "", worldID = ""
    /// The W3C trace context of the intent this entry commits, on an append only (never stored,
    /// never hashed): the log writer's span joins that trace.
    public var traceparent = ""
    public init() {}
    public func encode(to w: inout ProtoWriter) {
        w.uint64(1, globalSeq); w.double(2, simTime); w.double(3, wallTime); w.bytesField(4, effect)
        w.string(5, checksum); w.string(6, reqID); w.string(7, agentID); w.string(8, worldID); w.string(9, traceparent)
    }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.uint64(wt) else { return false }; globalSeq = v
        case 2: guard let v = try r.double(wt) else { return false }; simTime = v
        case 3: guard let v = try r.double(wt) else { return false }; wallTime = v
        case 4: guard let v = try r.bytesField(wt) else { return false }; effect = v
        case 5: guard let v = try r.string(wt, field: n) else { return false }; checksum = v
        case 6: guard let v = try r.string(wt, field: n) else { return false }; reqID = v
        case 7: guard let v = try r.string(wt, field: n) else { return false }; agentID = v
        case 8: guard let v = try r.string(wt, field: n) else { return false }; worldID = v
        case 9: guard let v = try r.string(wt, field: n) else { return false }; traceparent = v
        default: return false
        }
        return true
    }
}

/// A list of log entries (AppendBatch; LogEntries adds `done`).
public struct LogEntries: WireMessage {
    public var entries: [LogEntry] = [], done = false
    public init() {}
    public init(entries: [LogEntry], done: Bool = false) { self.entries = entries; self.done = done }
    public func encode(to w: inout ProtoWriter) { w.repeatedMessage(1, entries); w.bool(2, done) }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.message(wt, LogEntry.self) else { return false }; entries.append(v)
        case 2: guard let v = try r.bool(wt) else { return false }; done = v
        default: return false
        }
        return true
    }
}

public struct AppendAck: WireMessage {
    public var lastSeq: UInt64 = 0, checksum = ""
    public init() {}
    public func encode(to w: inout ProtoWriter) { w.uint64(1, lastSeq); w.string(2, checksum) }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.uint64(wt) else { return false }; lastSeq = v
        case 2: guard let v = try r.string(wt, field: n) else { return false }; checksum = v
        default: return false
        }
        return true
    }
}

/// `{from, to, max_batch}` (ReadRange; VerifyRequest uses from and to).
public struct SeqRange: WireMessage {
    public var from: UInt64 = 0, to: UInt64 = 0, maxBatch: UInt32 = 0
    public init() {}
    public init(from: UInt64, to: UInt64, maxBatch: UInt32 = 0) { self.from = from; self.to = to; self.maxBatch = maxBatch }
    public func encode(to w: inout ProtoWriter) { w.uint64(1, from); w.uint64(2, to); w.uint32(3, maxBatch) }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.uint64(wt) else { return false }; from = v
        case 2: guard let v = try r.uint64(wt) else { return false }; to = v
        case 3: guard let v = try r.uint32(wt) else { return false }; maxBatch = v
        default: return false
        }
        return true
    }
}

public struct SequenceGapMessage: WireMessage {
    public var expected: UInt64 = 0, found: UInt64 = 0
    public init() {}
    public func encode(to w: inout ProtoWriter) { w.uint64(1, expected); w.uint64(2, found) }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.uint64(wt) else { return false }; expected = v
        case 2: guard let v = try r.uint64(wt) else { return false }; found = v
        default: return false
        }
        return true
    }
}

public struct VerifyResult: WireMessage {
    public var checked: UInt64 = 0, firstBadSeq: UInt64 = 0, gaps: [SequenceGapMessage] = [], tailTruncated = false, ok = false
    public init() {}
    public func encode(to w: inout ProtoWriter) { w.uint64(1, checked); w.uint64(2, firstBadSeq); w.repeatedMessage(3, gaps); w.bool(4, tailTruncated); w.bool(5, ok) }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.uint64(wt) else { return false }; checked = v
        case 2: guard let v = try r.uint64(wt) else { return false }; firstBadSeq = v
        case 3: guard let v = try r.message(wt, SequenceGapMessage.self) else { return false }; gaps.append(v)
        case 4: guard let v = try r.bool(wt) else { return false }; tailTruncated = v
        case 5: guard let v = try r.bool(wt) else { return false }; ok = v
        default: return false
        }
        return true
    }
}

/// A world snapshot (Snapshot; also SnapshotSave's request): the canonical JSON of the world
/// right after `global_seq`, its SHA-256 (`digest`) and the chain checksum of that entry.
public struct SnapshotMessage: WireMessage {
    public var globalSeq: UInt64 = 0, state: [UInt8] = [], digest = "", chainChecksum = ""
    public init() {}
    public init(globalSeq: UInt64, state: [UInt8], digest: String, chainChecksum: String = "") {
        self.globalSeq = globalSeq; self.state = state; self.digest = digest; self.chainChecksum = chainChecksum
    }
    public func encode(to w: inout ProtoWriter) { w.uint64(1, globalSeq); w.bytesField(2, state); w.string(3, digest); w.string(4, chainChecksum) }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.uint64(wt) else { return false }; globalSeq = v
        case 2: guard let v = try r.bytesField(wt) else { return false }; state = v
        case 3: guard let v = try r.string(wt, field: n) else { return false }; digest = v
        case 4: guard let v = try r.string(wt, field: n) else { return false }; chainChecksum = v
        default: return false
        }
        return true
    }
}

/// One request of the log writer's idempotency table: its committed effect (canonical JSON)
/// and when its TTL ends (the writer's wall clock, seconds).
public struct IdempotencyRecord: WireMessage {
    public var agentID = "", reqID = "", globalSeq: UInt64 = 0, expiresAt: Double = 0, effect: [UInt8] = []
    public init() {}
    public func encode(to w: inout ProtoWriter) {
        w.string(1, agentID); w.string(2, reqID); w.uint64(3, globalSeq); w.double(4, expiresAt); w.bytesField(5, effect)
    }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.string(wt, field: n) else { return false }; agentID = v
        case 2: guard let v = try r.string(wt, field: n) else { return false }; reqID = v
        case 3: guard let v = try r.uint64(wt) else { return false }; globalSeq = v
        case 4: guard let v = try r.double(wt) else { return false }; expiresAt = v
        case 5: guard let v = try r.bytesField(wt) else { return false }; effect = v
        default: return false
        }
        return true
    }
}

/// A batch of the idempotency table (oldest first); `done` on the last.
public struct IdempotencyRecords: WireMessage {
    public var records: [IdempotencyRecord] = [], done = false
    public init() {}
    public init(records: [IdempotencyRecord], done: Bool) { self.records = records; self.done = done }
    public func encode(to w: inout ProtoWriter) { w.repeatedMessage(1, records); w.bool(2, done) }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.message(wt, IdempotencyRecord.self) else { return false }; records.append(v)
        case 2: guard let v = try r.bool(wt) else { return false }; done = v
        default: return false
        }
        return true
    }
}

/// What a compaction did: entries up to the snapshot at `snapshot_seq` were dropped; the log
/// now starts at `first_seq`.
public struct CompactResult: WireMessage {
    public var snapshotSeq: UInt64 = 0, dropped: UInt64 = 0, firstSeq: UInt64 = 0
    public init() {}
    public func encode(to w: inout ProtoWriter) { w.uint64(1, snapshotSeq); w.uint64(2, dropped); w.uint64(3, firstSeq) }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.uint64(wt) else { return false }; snapshotSeq = v
        case 2: guard let v = try r.uint64(wt) else { return false }; dropped = v
        case 3: guard let v = try r.uint64(wt) else { return false }; firstSeq = v
        default: return false
        }
        return true
    }
}

public struct HeadResult: WireMessage {
    public var seq: UInt64 = 0, checksum = "", count: UInt64 = 0
    public init() {}
    public func encode(to w: inout ProtoWriter) { w.uint64(1, seq); w.string(2, checksum); w.uint64(3, count) }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.uint64(wt) else { return false }; seq = v
        case 2: guard let v = try r.string(wt, field: n) else { return false }; checksum = v
        case 3: guard let v = try r.uint64(wt) else { return false }; count = v
        default: return false
        }
        return true
    }
}

public struct ChildStatus: WireMessage {
    public var name = "", pid: Int32 = 0, state = "", restarts: UInt32 = 0, lastExitStatus: Int32 = 0
    public var uptimeMs: UInt64 = 0, lastExit = ""
    public init() {}
    public func encode(to w: inout ProtoWriter) {
        w.string(1, name); w.int32(2, pid); w.string(3, state); w.uint32(4, restarts); w.sint32(5, lastExitStatus); w.uint64(6, uptimeMs); w.string(7, lastExit)
    }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.string(wt, field: n) else { return false }; name = v
        case 2: guard let v = try r.int32(wt) else { return false }; pid = v
        case 3: guard let v = try r.string(wt, field: n) else { return false }; state = v
        case 4: guard let v = try r.uint32(wt) else { return false }; restarts = v
        case 5: guard let v = try r.sint32(wt) else { return false }; lastExitStatus = v
        case 6: guard let v = try r.uint64(wt) else { return false }; uptimeMs = v
        case 7: guard let v = try r.string(wt, field: n) else { return false }; lastExit = v
        default: return false
        }
        return true
    }
}

public struct BreakerStatus: WireMessage {
    public var name = "", state = "", consecutiveFailures: UInt32 = 0
    public init() {}
    public func encode(to w: inout ProtoWriter) { w.string(1, name); w.string(2, state); w.uint32(3, consecutiveFailures) }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.string(wt, field: n) else { return false }; name = v
        case 2: guard let v = try r.string(wt, field: n) else { return false }; state = v
        case 3: guard let v = try r.uint32(wt) else { return false }; consecutiveFailures = v
        default: return false
        }
        return true
    }
}

public struct AgentStatus: WireMessage {
    public var agentID = "", viewSeq: UInt64 = 0, queueDepth: UInt32 = 0, pendingObservations: UInt32 = 0, connected = false
    /// The global seq of the last observation delivered to the agent, its live generations, and its
    /// observation policy as canonical JSON (the registration's filtering fields).
    public var viewGlobalSeq: UInt64 = 0, activeGenerations: UInt32 = 0, policy = ""
    public init() {}
    public func encode(to w: inout ProtoWriter) {
        w.string(1, agentID); w.uint64(2, viewSeq); w.uint32(3, queueDepth); w.uint32(4, pendingObservations); w.bool(5, connected)
        w.uint64(6, viewGlobalSeq); w.uint32(7, activeGenerations); w.string(8, policy)
    }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.string(wt, field: n) else { return false }; agentID = v
        case 2: guard let v = try r.uint64(wt) else { return false }; viewSeq = v
        case 3: guard let v = try r.uint32(wt) else { return false }; queueDepth = v
        case 4: guard let v = try r.uint32(wt) else { return false }; pendingObservations = v
        case 5: guard let v = try r.bool(wt) else { return false }; connected = v
        case 6: guard let v = try r.uint64(wt) else { return false }; viewGlobalSeq = v
        case 7: guard let v = try r.uint32(wt) else { return false }; activeGenerations = v
        case 8: guard let v = try r.string(wt, field: n) else { return false }; policy = v
        default: return false
        }
        return true
    }
}

public struct StatusResult: WireMessage {
    public var children: [ChildStatus] = [], breakers: [BreakerStatus] = [], headSeq: UInt64 = 0, worldDigest = "", agents: [AgentStatus] = []
    public var gauges: [StatusGauge] = []
    /// The GUNN_FEATURES the answering process runs with, and (the supervisor) the profile applied.
    public var features: [String] = [], profile = ""
    public init() {}
    public func encode(to w: inout ProtoWriter) {
        w.repeatedMessage(1, children); w.repeatedMessage(2, breakers); w.uint64(3, headSeq); w.string(4, worldDigest); w.repeatedMessage(5, agents)
        w.repeatedMessage(6, gauges)
        w.repeatedString(7, features) // an empty element is a value: written too
        w.string(8, profile)
    }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.message(wt, ChildStatus.self) else { return false }; children.append(v)
        case 2: guard let v = try r.message(wt, BreakerStatus.self) else { return false }; breakers.append(v)
        case 3: guard let v = try r.uint64(wt) else { return false }; headSeq = v
        case 4: guard let v = try r.string(wt, field: n) else { return false }; worldDigest = v
        case 5: guard let v = try r.message(wt, AgentStatus.self) else { return false }; agents.append(v)
        case 6: guard let v = try r.message(wt, StatusGauge.self) else { return false }; gauges.append(v)
        case 7: guard let v = try r.string(wt, field: n) else { return false }; features.append(v)
        case 8: guard let v = try r.string(wt, field: n) else { return false }; profile = v
        default: return false
        }
        return true
    }
}

/// One bound of a process (StatusGauge): what it holds now, its limit, the most it held.
public struct StatusGauge: WireMessage {
    public var name = "", value: UInt64 = 0, limit: UInt64 = 0, highWater: UInt64 = 0
    public init() {}
    public init(name: String, value: UInt64, limit: UInt64, highWater: UInt64) {
        self.name = name; self.value = value; self.limit = limit; self.highWater = highWater
    }
    public func encode(to w: inout ProtoWriter) { w.string(1, name); w.uint64(2, value); w.uint64(3, limit); w.uint64(4, highWater) }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.string(wt, field: n) else { return false }; name = v
        case 2: guard let v = try r.uint64(wt) else { return false }; value = v
        case 3: guard let v = try r.uint64(wt) else { return false }; limit = v
        case 4: guard let v = try r.uint64(wt) else { return false }; highWater = v
        default: return false
        }
        return true
    }
}

/// `{name}` (RestartChild).
public struct NamedRequest: WireMessage {
    /// `action`: "restart" (empty means restart), "stop" or "start".
    public var name = "", action = ""
    public init() {}
    public init(name: String, action: String = "") { self.name = name; self.action = action }
    public func encode(to w: inout ProtoWriter) { w.string(1, name); w.string(2, action) }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.string(wt, field: n) else { return false }; name = v
        case 2: guard let v = try r.string(wt, field: n) else { return false }; action = v
        default: return false
        }
        return true
    }
}

public struct BreakerControl: WireMessage {
    /// `BreakerControl.Action`: unknown values are kept as numbers, as proto3 open enums require.
    public var name = "", action: Int32 = 0
    public static let forceOpen: Int32 = 1, forceClose: Int32 = 2, reset: Int32 = 3
    public init() {}
    public func encode(to w: inout ProtoWriter) { w.string(1, name); w.enumValue(2, action) }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.string(wt, field: n) else { return false }; name = v
        case 2: guard let v = try r.int32(wt) else { return false }; action = v
        default: return false
        }
        return true
    }
}

public struct ControlResult: WireMessage {
    public var ok = false, message = ""
    public init() {}
    public func encode(to w: inout ProtoWriter) { w.bool(1, ok); w.string(2, message) }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.bool(wt) else { return false }; ok = v
        case 2: guard let v = try r.string(wt, field: n) else { return false }; message = v
        default: return false
        }
        return true
    }
}
