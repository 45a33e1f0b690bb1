import Glibc
import GunnCore
import GunnWire

/// The protocol version this build speaks.
public enum ProtocolVersion {
    public static let major: UInt32 = 1
    public static let minor: UInt32 = 0
}

/// What a sender does when its outbound queue is full (the peer stopped reading, so no credit
/// comes back): wait up to `waitMs` for room, then refuse the frame (`shed`, QUEUE_FULL to the
/// caller) or close the connection (`disconnect`). Memory never grows past the queue bound.
public enum SlowConsumerPolicy: Sendable, Equatable {
    case shed(waitMs: Double)
    case disconnect(waitMs: Double)
}

/// Settings of one framed connection. Every bound has a default.
public struct ConnectionOptions: Sendable {
    public var maxFrameBytes = FrameCodec.defaultMaxFrameBytes
    public var heartbeatMs: Double = 1000
    /// A peer silent for this many heartbeat intervals is gone.
    public var missedHeartbeats = 3
    public var handshakeTimeoutMs: Double = 5000
    /// Data frames the peer may send before we grant more (our receive window).
    public var receiveWindow = 256
    /// Data frames queued for sending (waiting for credit or for the socket) at most.
    public var maxOutboundFrames = 1024
    public var slowConsumer: SlowConsumerPolicy = .shed(waitMs: 1000)
    public var capabilities: [String] = []
    /// This side's incarnation, carried on every frame.
    public var epoch: UInt64 = 1
    /// Server side: peers (by SO_PEERCRED uid) allowed to connect; nil allows any.
    public var allowedUIDs: Set<uid_t>? = [getuid()]
    public init() {}
}

/// Why a connection operation failed, with the code from docs/errors.md.
public struct ConnectionError: Error, Sendable, Equatable, CustomStringConvertible {
    public let code: ErrorCode
    public let message: String
    public init(_ code: ErrorCode, _ message: String) { self.code = code; self.message = message }
    public var description: String { "\(code.name): \(message)" }
}

extension Frame.Body {
    /// Control frames travel outside flow control; everything else consumes one credit.
    var isData: Bool {
        switch self {
        case .ping, .pong, .credit, .error, .hello, .welcome: return false
        default: return true
        }
    }
}
