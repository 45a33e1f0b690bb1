// Hand-written codecs for the messages of proto/gunn/v1/gunn.proto. Each field is written with its
// number from the .proto; a field that this build does not know is skipped on reading.

public struct Hello: WireMessage {
    public var protocolMajor: UInt32 = 0, protocolMinor: UInt32 = 0
    public var role = "", worldID = "", token = "", clientName = ""
    public var capabilities: [String] = []
    public init() {}
    public init(protocolMajor: UInt32, protocolMinor: UInt32, role: String, worldID: String = "", token: String = "", clientName: String = "", capabilities: [String] = []) {
        self.protocolMajor = protocolMajor; self.protocolMinor = protocolMinor; self.role = role; self.worldID = worldID
        self.token = token; self.clientName = clientName; self.capabilities = capabilities
    }
    public func encode(to w: inout ProtoWriter) {
        w.uint32(1, protocolMajor); w.uint32(2, protocolMinor); w.string(3, role); w.string(4, worldID)
        w.string(5, token); w.string(6, clientName); w.repeatedString(7, capabilities)
    }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.uint32(wt) else { return false }; protocolMajor = v
        case 2: guard let v = try r.uint32(wt) else { return false }; protocolMinor = v
        case 3: guard let v = try r.string(wt, field: n) else { return false }; role = v
        case 4: guard let v = try r.string(wt, field: n) else { return false }; worldID = v
        case 5: guard let v = try r.string(wt, field: n) else { return false }; token = v
        case 6: guard let v = try r.string(wt, field: n) else { return false }; clientName = v
        case 7: guard let v = try r.string(wt, field: n) else { return false }; capabilities.append(v)
        default: return false
        }
        return true
    }
}

public struct Welcome: WireMessage {
    public var protocolMajor: UInt32 = 0, protocolMinor: UInt32 = 0
    public var role = "", worldID = "", sessionID = ""
    public var latestGlobalSeq: UInt64 = 0
    public var capabilities: [String] = []
    public var heartbeatMs: UInt32 = 0, maxFrameBytes: UInt32 = 0, initialCredit: UInt32 = 0
    public init() {}
    public func encode(to w: inout ProtoWriter) {
        w.uint32(1, protocolMajor); w.uint32(2, protocolMinor); w.string(3, role); w.string(4, worldID); w.string(5, sessionID)
        w.uint64(6, latestGlobalSeq); w.repeatedString(7, capabilities); w.uint32(8, heartbeatMs); w.uint32(9, maxFrameBytes); w.uint32(10, initialCredit)
    }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.uint32(wt) else { return false }; protocolMajor = v
        case 2: guard let v = try r.uint32(wt) else { return false }; protocolMinor = v
        case 3: guard let v = try r.string(wt, field: n) else { return false }; role = v
        case 4: guard let v = try r.string(wt, field: n) else { return false }; worldID = v
        case 5: guard let v = try r.string(wt, field: n) else { return false }; sessionID = v
        case 6: guard let v = try r.uint64(wt) else { return false }; latestGlobalSeq = v
        case 7: guard let v = try r.string(wt, field: n) else { return false }; capabilities.append(v)
        case 8: guard let v = try r.uint32(wt) else { return false }; heartbeatMs = v
        case 9: guard let v = try r.uint32(wt) else { return false }; maxFrameBytes = v
        case 10: guard let v = try r.uint32(wt) else { return false }; initialCredit = v
        default: return false
        }
        return true
    }
}

public struct WireErrorMessage: WireMessage {
    public var code: UInt32 = 0, name = "", message = "", retryAfterMs: UInt64 = 0
    public init() {}
    public init(code: UInt32, name: String, message: String, retryAfterMs: UInt64 = 0) {
        self.code = code; self.name = name; self.message = message; self.retryAfterMs = retryAfterMs
    }
    public func encode(to w: inout ProtoWriter) { w.uint32(1, code); w.string(2, name); w.string(3, message); w.uint64(4, retryAfterMs) }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.uint32(wt) else { return false }; code = v
        case 2: guard let v = try r.string(wt, field: n) else { return false }; name = v
        case 3: guard let v = try r.string(wt, field: n) else { return false }; message = v
        case 4: guard let v = try r.uint64(wt) else { return false }; retryAfterMs = v
        default: return false
        }
        return true
    }
}

/// A message with one uint64 field 1 (Ping, Pong, Subscribe, SnapshotRequest).
public struct Nonce: WireMessage {
    public var value: UInt64 = 0
    public init() {}
    public init(_ value: UInt64) { self.value = value }
    public func encode(to w: inout ProtoWriter) { w.uint64(1, value) }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        guard n == 1, let v = try r.uint64(wt) else { return false }
        value = v
        return true
    }
}

/// A message with one bytes field 1 (SubmitIntent, Emit).
public struct JSONPayload: WireMessage {
    public var json: [UInt8] = []
    public init() {}
    public init(_ json: [UInt8]) { self.json = json }
    public func encode(to w: inout ProtoWriter) { w.bytesField(1, json) }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        guard n == 1, let v = try r.bytesField(wt) else { return false }
        json = v
        return true
    }
}

/// A message with no fields (HeadRequest, StatusRequest).
public struct Empty: WireMessage {
    public init() {}
    public func encode(to w: inout ProtoWriter) {}
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool { false }
}

public struct Credit: WireMessage {
    public var frames: UInt32 = 0
    public init() {}
    public init(frames: UInt32) { self.frames = frames }
    public func encode(to w: inout ProtoWriter) { w.uint32(1, frames) }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        guard n == 1, let v = try r.uint32(wt) else { return false }
        frames = v
        return true
    }
}

public struct RegisterAgent: WireMessage {
    public var agentID = "", registration: [UInt8] = []
    /// A client that already holds a view: the global_seq it reflects and its digest (resume).
    public var resumeGlobalSeq: UInt64 = 0, resumeDigest = "", resumeViewSeq: UInt64 = 0
    public init() {}
    public func encode(to w: inout ProtoWriter) {
        w.string(1, agentID); w.bytesField(2, registration); w.uint64(3, resumeGlobalSeq); w.string(4, resumeDigest); w.uint64(5, resumeViewSeq)
    }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.string(wt, field: n) else { return false }; agentID = v
        case 2: guard let v = try r.bytesField(wt) else { return false }; registration = v
        case 3: guard let v = try r.uint64(wt) else { return false }; resumeGlobalSeq = v
        case 4: guard let v = try r.string(wt, field: n) else { return false }; resumeDigest = v
        case 5: guard let v = try r.uint64(wt) else { return false }; resumeViewSeq = v
        default: return false
        }
        return true
    }
}

public struct IntentResult: WireMessage {
    public var agentID = "", reqID = "", committed = false, effect: [UInt8] = [], error: WireErrorMessage?
    public init() {}
    public func encode(to w: inout ProtoWriter) { w.string(1, agentID); w.string(2, reqID); w.bool(3, committed); w.bytesField(4, effect); w.message(5, error) }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.string(wt, field: n) else { return false }; agentID = v
        case 2: guard let v = try r.string(wt, field: n) else { return false }; reqID = v
        case 3: guard let v = try r.bool(wt) else { return false }; committed = v
        case 4: guard let v = try r.bytesField(wt) else { return false }; effect = v
        case 5: guard let v = try r.message(wt, WireErrorMessage.self) else { return false }; error = v
        default: return false
        }
        return true
    }
}

public struct EmitResult: WireMessage {
    public var draftID = "", accepted = false, error: WireErrorMessage?
    public init() {}
    public func encode(to w: inout ProtoWriter) { w.string(1, draftID); w.bool(2, accepted); w.message(3, error) }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.string(wt, field: n) else { return false }; draftID = v
        case 2: guard let v = try r.bool(wt) else { return false }; accepted = v
        case 3: guard let v = try r.message(wt, WireErrorMessage.self) else { return false }; error = v
        default: return false
        }
        return true
    }
}

public struct EffectCommitted: WireMessage {
    public var globalSeq: UInt64 = 0, effect: [UInt8] = [], checksum = ""
    public init() {}
    public func encode(to w: inout ProtoWriter) { w.uint64(1, globalSeq); w.bytesField(2, effect); w.string(3, checksum) }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.uint64(wt) else { return false }; globalSeq = v
        case 2: guard let v = try r.bytesField(wt) else { return false }; effect = v
        case 3: guard let v = try r.string(wt, field: n) else { return false }; checksum = v
        default: return false
        }
        return true
    }
}

public struct Observation: WireMessage {
    public var agentID = "", viewSeq: UInt64 = 0, patches: [UInt8] = [], contextDigest = "", schemaVersion = ""
    public var globalSeq: UInt64 = 0
    /// When the orchestrator published it, right after the log writer acknowledged the effect
    /// (Unix microseconds, the orchestrator's clock): for measuring delivery, not for ordering.
    public var committedAtMicros: UInt64 = 0
    public init() {}
    public func encode(to w: inout ProtoWriter) {
        w.string(1, agentID); w.uint64(2, viewSeq); w.bytesField(3, patches); w.string(4, contextDigest); w.string(5, schemaVersion); w.uint64(6, globalSeq)
        w.uint64(7, committedAtMicros)
    }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.string(wt, field: n) else { return false }; agentID = v
        case 2: guard let v = try r.uint64(wt) else { return false }; viewSeq = v
        case 3: guard let v = try r.bytesField(wt) else { return false }; patches = v
        case 4: guard let v = try r.string(wt, field: n) else { return false }; contextDigest = v
        case 5: guard let v = try r.string(wt, field: n) else { return false }; schemaVersion = v
        case 6: guard let v = try r.uint64(wt) else { return false }; globalSeq = v
        case 7: guard let v = try r.uint64(wt) else { return false }; committedAtMicros = v
        default: return false
        }
        return true
    }
}

public struct ViewSnapshot: WireMessage {
    public var agentID = "", viewSeq: UInt64 = 0, view: [UInt8] = [], contextDigest = "", globalSeq: UInt64 = 0
    public init() {}
    public func encode(to w: inout ProtoWriter) { w.string(1, agentID); w.uint64(2, viewSeq); w.bytesField(3, view); w.string(4, contextDigest); w.uint64(5, globalSeq) }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.string(wt, field: n) else { return false }; agentID = v
        case 2: guard let v = try r.uint64(wt) else { return false }; viewSeq = v
        case 3: guard let v = try r.bytesField(wt) else { return false }; view = v
        case 4: guard let v = try r.string(wt, field: n) else { return false }; contextDigest = v
        case 5: guard let v = try r.uint64(wt) else { return false }; globalSeq = v
        default: return false
        }
        return true
    }
}

public struct BeginGeneration: WireMessage {
    public var agentID = "", reqID = "", deadlineMs: UInt32 = 0, tokenBudget: UInt32 = 0, focus: [String] = []
    public init() {}
    public func encode(to w: inout ProtoWriter) { w.string(1, agentID); w.string(2, reqID); w.uint32(3, deadlineMs); w.uint32(4, tokenBudget); w.repeatedString(5, focus) }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.string(wt, field: n) else { return false }; agentID = v
        case 2: guard let v = try r.string(wt, field: n) else { return false }; reqID = v
        case 3: guard let v = try r.uint32(wt) else { return false }; deadlineMs = v
        case 4: guard let v = try r.uint32(wt) else { return false }; tokenBudget = v
        case 5: guard let v = try r.string(wt, field: n) else { return false }; focus.append(v)
        default: return false
        }
        return true
    }
}

public struct CancelTokenMessage: WireMessage {
    public var agentID = "", reqID = "", contextSeq: UInt64 = 0, contextDigest = ""
    public init() {}
    public func encode(to w: inout ProtoWriter) { w.string(1, agentID); w.string(2, reqID); w.uint64(3, contextSeq); w.string(4, contextDigest) }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.string(wt, field: n) else { return false }; agentID = v
        case 2: guard let v = try r.string(wt, field: n) else { return false }; reqID = v
        case 3: guard let v = try r.uint64(wt) else { return false }; contextSeq = v
        case 4: guard let v = try r.string(wt, field: n) else { return false }; contextDigest = v
        default: return false
        }
        return true
    }
}

public struct Cancel: WireMessage {
    public var agentID = "", reqID = "", reason = "", code: UInt32 = 0, issuedAtMicros: UInt64 = 0
    public init() {}
    public func encode(to w: inout ProtoWriter) { w.string(1, agentID); w.string(2, reqID); w.string(3, reason); w.uint32(4, code); w.uint64(5, issuedAtMicros) }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.string(wt, field: n) else { return false }; agentID = v
        case 2: guard let v = try r.string(wt, field: n) else { return false }; reqID = v
        case 3: guard let v = try r.string(wt, field: n) else { return false }; reason = v
        case 4: guard let v = try r.uint32(wt) else { return false }; code = v
        case 5: guard let v = try r.uint64(wt) else { return false }; issuedAtMicros = v
        default: return false
        }
        return true
    }
}

public struct Halted: WireMessage {
    public var reqID = "", tokensEmitted: UInt32 = 0, haltLatencyUs: UInt64 = 0, agentID = "", cancelled = false
    public init() {}
    public func encode(to w: inout ProtoWriter) { w.string(1, reqID); w.uint32(2, tokensEmitted); w.uint64(3, haltLatencyUs); w.string(4, agentID); w.bool(5, cancelled) }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.string(wt, field: n) else { return false }; reqID = v
        case 2: guard let v = try r.uint32(wt) else { return false }; tokensEmitted = v
        case 3: guard let v = try r.uint64(wt) else { return false }; haltLatencyUs = v
        case 4: guard let v = try r.string(wt, field: n) else { return false }; agentID = v
        case 5: guard let v = try r.bool(wt) else { return false }; cancelled = v
        default: return false
        }
        return true
    }
}

public struct GenerationProgress: WireMessage {
    public var agentID = "", reqID = "", tokensEmitted: UInt32 = 0
    public init() {}
    public func encode(to w: inout ProtoWriter) { w.string(1, agentID); w.string(2, reqID); w.uint32(3, tokensEmitted) }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.string(wt, field: n) else { return false }; agentID = v
        case 2: guard let v = try r.string(wt, field: n) else { return false }; reqID = v
        case 3: guard let v = try r.uint32(wt) else { return false }; tokensEmitted = v
        default: return false
        }
        return true
    }
}

public struct TokenChunk: WireMessage {
    public var agentID = "", reqID = "", index: UInt32 = 0, text = ""
    public init() {}
    public func encode(to w: inout ProtoWriter) { w.string(1, agentID); w.string(2, reqID); w.uint32(3, index); w.string(4, text) }
    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.string(wt, field: n) else { return false }; agentID = v
        case 2: guard let v = try r.string(wt, field: n) else { return false }; reqID = v
        case 3: guard let v = try r.uint32(wt) else { return false }; index = v
        case 4: guard let v = try r.string(wt, field: n) else { return false }; text = v
        default: return false
        }
        return true
    }
}
