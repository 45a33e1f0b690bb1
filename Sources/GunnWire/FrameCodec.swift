#if canImport(GunnCore)
import GunnCore
#endif

/// Why a stream of frames cannot continue. The connection that produced it is closed after the
/// peer is told (`errorCode`); other connections are unaffected.
public enum FrameError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A length prefix of 0.
    case emptyFrame
    /// A length prefix above the link's limit; refused before anything is allocated.
    case tooLarge(length: UInt32, limit: Int)
    /// The frame's bytes are not a valid `Frame`.
    case malformed(WireError)

    public var errorCode: ErrorCode {
        switch self {
        case .tooLarge: return .frameTooLarge
        case .emptyFrame, .malformed: return .malformedFrame
        }
    }

    public var description: String {
        switch self {
        case .emptyFrame: return "frame length 0"
        case let .tooLarge(length, limit): return "frame length \(length) exceeds max_frame_bytes \(limit)"
        case .malformed(let e): return "malformed frame: \(e)"
        }
    }
}

/// Length-prefixed framing: a 4-byte big-endian length N, then N bytes of one `Frame`.
public enum FrameCodec {
    public static let defaultMaxFrameBytes = 4 << 20
    public static let headerBytes = 4

    /// The frame's bytes with their length prefix.
    public static func encode(_ frame: Frame) -> [UInt8] {
        var w = ProtoWriter(capacity: 64)
        w.raw([0, 0, 0, 0])
        frame.encode(to: &w)
        var bytes = w.bytes
        let n = UInt32(bytes.count - headerBytes)
        bytes[0] = UInt8(n >> 24); bytes[1] = UInt8(truncatingIfNeeded: n >> 16)
        bytes[2] = UInt8(truncatingIfNeeded: n >> 8); bytes[3] = UInt8(truncatingIfNeeded: n)
        return bytes
    }
}

/// Reassembles frames from a byte stream that arrives in arbitrary pieces. Memory is bounded by
/// `maxFrameBytes` plus one read: a length prefix is checked before its frame is buffered.
public struct FrameDecoder: Sendable {
    public let maxFrameBytes: Int
    private var buffer: [UInt8] = []
    private var start = 0
    public private(set) var failed: FrameError?

    public init(maxFrameBytes: Int = FrameCodec.defaultMaxFrameBytes) {
        self.maxFrameBytes = maxFrameBytes
    }

    /// Bytes received and not yet consumed as frames.
    public var bufferedBytes: Int { buffer.count - start }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        if start > 0 && start == buffer.count { buffer.removeAll(keepingCapacity: true); start = 0 }
        buffer.append(contentsOf: bytes)
    }

    public mutating func append(_ bytes: [UInt8]) { bytes.withUnsafeBytes { append($0) } }

    /// The next complete frame, nil if more bytes are needed. After an error the decoder stays
    /// failed: the stream cannot be resynchronised.
    public mutating func next(limits: WireLimits = .default) throws(FrameError) -> Frame? {
        if let failed { throw failed }
        guard buffer.count - start >= FrameCodec.headerBytes else { return nil }
        let n = UInt32(buffer[start]) << 24 | UInt32(buffer[start + 1]) << 16 | UInt32(buffer[start + 2]) << 8 | UInt32(buffer[start + 3])
        if n == 0 { failed = .emptyFrame; throw .emptyFrame }
        if Int(n) > maxFrameBytes { failed = .tooLarge(length: n, limit: maxFrameBytes); throw .tooLarge(length: n, limit: maxFrameBytes) }
        guard buffer.count - start - FrameCodec.headerBytes >= Int(n) else { return nil }
        let bodyStart = start + FrameCodec.headerBytes
        let body = Array(buffer[bodyStart..<(bodyStart + Int(n))])
        start = bodyStart + Int(n)
        if start == buffer.count { buffer.removeAll(keepingCapacity: true); start = 0 } else if start > 1 << 16 && start * 2 > buffer.count {
            buffer.removeFirst(start); start = 0
        }
        do {
            return try Frame(serialized: body, limits: limits)
        } catch {
            failed = .malformed(error)
            throw .malformed(error)
        }
    }
}
