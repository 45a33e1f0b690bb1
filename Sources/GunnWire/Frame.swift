/// One frame of the gunn protocol (`gunn.v1.Frame`): request id, trace context, the sender's
/// epoch, and one body. A body this build does not know decodes as `body == nil` (the receiver
/// answers UNKNOWN_MESSAGE); its bytes are skipped like any unknown field.
public struct Frame: WireMessage {
    public var id: UInt64 = 0
    public var traceparent = ""
    public var epoch: UInt64 = 0
    public var body: Body?

    public enum Body: Sendable, Equatable {
        case hello(Hello)
        case welcome(Welcome)
        case error(WireErrorMessage)
        case ping(Nonce)
        case pong(Nonce)
        case credit(Credit)
        case submitIntent(JSONPayload)
        case intentResult(IntentResult)
        case emit(JSONPayload)
        case emitResult(EmitResult)
        case effect(EffectCommitted)
        case observation(Observation)
        case view(ViewSnapshot)
        case beginGeneration(BeginGeneration)
        case cancelToken(CancelTokenMessage)
        case cancel(Cancel)
        case halted(Halted)
        case progress(GenerationProgress)
        case tokenChunk(TokenChunk)
        case registerAgent(RegisterAgent)
        case append(LogEntries)
        case appendAck(AppendAck)
        case readRange(SeqRange)
        case entries(LogEntries)
        case subscribe(Nonce)
        case verify(SeqRange)
        case verifyResult(VerifyResult)
        case snapshotRequest(Nonce)
        case snapshot(SnapshotMessage)
        case head(Empty)
        case headResult(HeadResult)
        case snapshotSave(SnapshotMessage)
        case idempotencyRequest(Nonce)
        case idempotencyRecords(IdempotencyRecords)
        case compact(Nonce)
        case compactResult(CompactResult)
        case status(Empty)
        case statusResult(StatusResult)
        case restart(NamedRequest)
        case breakerControl(BreakerControl)
        case controlResult(ControlResult)
        /// Asks a process for its metrics; answered with `metricsResult`, a `Metrics.snapshot()` as JSON.
        case metrics(Empty)
        case metricsResult(JSONPayload)
    }

    public init() {}
    public init(id: UInt64 = 0, epoch: UInt64 = 0, traceparent: String = "", _ body: Body) {
        self.id = id; self.epoch = epoch; self.traceparent = traceparent; self.body = body
    }

    /// The body's field number in `Frame` (stable, for logs and metrics).
    public var bodyFieldNumber: Int? {
        guard let body else { return nil }
        switch body {
        case .hello: return 10
        case .welcome: return 11
        case .error: return 12
        case .ping: return 13
        case .pong: return 14
        case .credit: return 15
        case .submitIntent: return 20
        case .intentResult: return 21
        case .emit: return 22
        case .emitResult: return 23
        case .effect: return 24
        case .observation: return 25
        case .view: return 26
        case .beginGeneration: return 27
        case .cancelToken: return 28
        case .cancel: return 29
        case .halted: return 30
        case .progress: return 31
        case .tokenChunk: return 32
        case .registerAgent: return 33
        case .append: return 40
        case .appendAck: return 41
        case .readRange: return 42
        case .entries: return 43
        case .subscribe: return 44
        case .verify: return 45
        case .verifyResult: return 46
        case .snapshotRequest: return 47
        case .snapshot: return 48
        case .head: return 49
        case .headResult: return 50
        case .snapshotSave: return 51
        case .idempotencyRequest: return 52
        case .idempotencyRecords: return 53
        case .compact: return 54
        case .compactResult: return 55
        case .status: return 60
        case .statusResult: return 61
        case .restart: return 62
        case .breakerControl: return 63
        case .controlResult: return 64
        case .metrics: return 65
        case .metricsResult: return 66
        }
    }

    public func encode(to w: inout ProtoWriter) {
        w.uint64(1, id)
        w.string(2, traceparent)
        w.uint64(3, epoch)
        guard let body else { return }
        switch body {
        case .hello(let m): w.message(10, m)
        case .welcome(let m): w.message(11, m)
        case .error(let m): w.message(12, m)
        case .ping(let m): w.message(13, m)
        case .pong(let m): w.message(14, m)
        case .credit(let m): w.message(15, m)
        case .submitIntent(let m): w.message(20, m)
        case .intentResult(let m): w.message(21, m)
        case .emit(let m): w.message(22, m)
        case .emitResult(let m): w.message(23, m)
        case .effect(let m): w.message(24, m)
        case .observation(let m): w.message(25, m)
        case .view(let m): w.message(26, m)
        case .beginGeneration(let m): w.message(27, m)
        case .cancelToken(let m): w.message(28, m)
        case .cancel(let m): w.message(29, m)
        case .halted(let m): w.message(30, m)
        case .progress(let m): w.message(31, m)
        case .tokenChunk(let m): w.message(32, m)
        case .registerAgent(let m): w.message(33, m)
        case .append(let m): w.message(40, m)
        case .appendAck(let m): w.message(41, m)
        case .readRange(let m): w.message(42, m)
        case .entries(let m): w.message(43, m)
        case .subscribe(let m): w.message(44, m)
        case .verify(let m): w.message(45, m)
        case .verifyResult(let m): w.message(46, m)
        case .snapshotRequest(let m): w.message(47, m)
        case .snapshot(let m): w.message(48, m)
        case .head(let m): w.message(49, m)
        case .headResult(let m): w.message(50, m)
        case .snapshotSave(let m): w.message(51, m)
        case .idempotencyRequest(let m): w.message(52, m)
        case .idempotencyRecords(let m): w.message(53, m)
        case .compact(let m): w.message(54, m)
        case .compactResult(let m): w.message(55, m)
        case .status(let m): w.message(60, m)
        case .statusResult(let m): w.message(61, m)
        case .restart(let m): w.message(62, m)
        case .breakerControl(let m): w.message(63, m)
        case .controlResult(let m): w.message(64, m)
        case .metrics(let m): w.message(65, m)
        case .metricsResult(let m): w.message(66, m)
        }
    }

    public mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.uint64(wt) else { return false }; id = v
        case 2: guard let v = try r.string(wt, field: n) else { return false }; traceparent = v
        case 3: guard let v = try r.uint64(wt) else { return false }; epoch = v
        case 10: guard let m = try r.message(wt, Hello.self) else { return false }; body = .hello(m)
        case 11: guard let m = try r.message(wt, Welcome.self) else { return false }; body = .welcome(m)
        case 12: guard let m = try r.message(wt, WireErrorMessage.self) else { return false }; body = .error(m)
        case 13: guard let m = try r.message(wt, Nonce.self) else { return false }; body = .ping(m)
        case 14: guard let m = try r.message(wt, Nonce.self) else { return false }; body = .pong(m)
        case 15: guard let m = try r.message(wt, Credit.self) else { return false }; body = .credit(m)
        case 20: guard let m = try r.message(wt, JSONPayload.self) else { return false }; body = .submitIntent(m)
        case 21: guard let m = try r.message(wt, IntentResult.self) else { return false }; body = .intentResult(m)
        case 22: guard let m = try r.message(wt, JSONPayload.self) else { return false }; body = .emit(m)
        case 23: guard let m = try r.message(wt, EmitResult.self) else { return false }; body = .emitResult(m)
        case 24: guard let m = try r.message(wt, EffectCommitted.self) else { return false }; body = .effect(m)
        case 25: guard let m = try r.message(wt, Observation.self) else { return false }; body = .observation(m)
        case 26: guard let m = try r.message(wt, ViewSnapshot.self) else { return false }; body = .view(m)
        case 27: guard let m = try r.message(wt, BeginGeneration.self) else { return false }; body = .beginGeneration(m)
        case 28: guard let m = try r.message(wt, CancelTokenMessage.self) else { return false }; body = .cancelToken(m)
        case 29: guard let m = try r.message(wt, Cancel.self) else { return false }; body = .cancel(m)
        case 30: guard let m = try r.message(wt, Halted.self) else { return false }; body = .halted(m)
        case 31: guard let m = try r.message(wt, GenerationProgress.self) else { return false }; body = .progress(m)
        case 32: guard let m = try r.message(wt, TokenChunk.self) else { return false }; body = .tokenChunk(m)
        case 33: guard let m = try r.message(wt, RegisterAgent.self) else { return false }; body = .registerAgent(m)
        case 40: guard let m = try r.message(wt, LogEntries.self) else { return false }; body = .append(m)
        case 41: guard let m = try r.message(wt, AppendAck.self) else { return false }; body = .appendAck(m)
        case 42: guard let m = try r.message(wt, SeqRange.self) else { return false }; body = .readRange(m)
        case 43: guard let m = try r.message(wt, LogEntries.self) else { return false }; body = .entries(m)
        case 44: guard let m = try r.message(wt, Nonce.self) else { return false }; body = .subscribe(m)
        case 45: guard let m = try r.message(wt, SeqRange.self) else { return false }; body = .verify(m)
        case 46: guard let m = try r.message(wt, VerifyResult.self) else { return false }; body = .verifyResult(m)
        case 47: guard let m = try r.message(wt, Nonce.self) else { return false }; body = .snapshotRequest(m)
        case 48: guard let m = try r.message(wt, SnapshotMessage.self) else { return false }; body = .snapshot(m)
        case 49: guard let m = try r.message(wt, Empty.self) else { return false }; body = .head(m)
        case 50: guard let m = try r.message(wt, HeadResult.self) else { return false }; body = .headResult(m)
        case 51: guard let m = try r.message(wt, SnapshotMessage.self) else { return false }; body = .snapshotSave(m)
        case 52: guard let m = try r.message(wt, Nonce.self) else { return false }; body = .idempotencyRequest(m)
        case 53: guard let m = try r.message(wt, IdempotencyRecords.self) else { return false }; body = .idempotencyRecords(m)
        case 54: guard let m = try r.message(wt, Nonce.self) else { return false }; body = .compact(m)
        case 55: guard let m = try r.message(wt, CompactResult.self) else { return false }; body = .compactResult(m)
        case 60: guard let m = try r.message(wt, Empty.self) else { return false }; body = .status(m)
        case 61: guard let m = try r.message(wt, StatusResult.self) else { return false }; body = .statusResult(m)
        case 62: guard let m = try r.message(wt, NamedRequest.self) else { return false }; body = .restart(m)
        case 63: guard let m = try r.message(wt, BreakerControl.self) else { return false }; body = .breakerControl(m)
        case 64: guard let m = try r.message(wt, ControlResult.self) else { return false }; body = .controlResult(m)
        case 65: guard let m = try r.message(wt, Empty.self) else { return false }; body = .metrics(m)
        case 66: guard let m = try r.message(wt, JSONPayload.self) else { return false }; body = .metricsResult(m)
        default: return false
        }
        return true
    }
}
