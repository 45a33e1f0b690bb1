#if canImport(GunnCore)
import GunnCore
#endif

/// Validates UTF-8 incrementally (RFC 3629): the state carries across calls, so a text message cut
/// into frames and reads anywhere is judged the same, and an invalid sequence is found at its
/// first wrong byte. Rejects overlong forms, surrogates (U+D800–DFFF), code points past U+10FFFF,
/// stray continuation bytes, and (at `isComplete`) a sequence cut off at the end.
public struct UTF8Validator: Sendable, Equatable {
    // 0: between characters; 1–3: that many continuation bytes (80–BF) still wanted;
    // 4: after E0 (A0–BF, then 1); 5: after ED (80–9F, then 1); 6: after F0 (90–BF, then 2);
    // 7: after F4 (80–8F, then 2).
    private var state: UInt8 = 0
    public init() {}

    public var isComplete: Bool { state == 0 }

    /// False at the first byte that cannot continue valid UTF-8 (the validator is then stuck false).
    public mutating func feed(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        let n = bytes.count
        guard let base = bytes.baseAddress else { return state != 0xFF }
        if state == 0xFF { return false }
        while i < n {
            if state == 0 {
                // ASCII runs, eight bytes at a time.
                while i + 8 <= n {
                    let w = base.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                    if w & 0x8080_8080_8080_8080 != 0 { break }
                    i += 8
                }
                if i >= n { break }
            }
            let b = bytes[i]
            i += 1
            switch state {
            case 0:
                switch b {
                case 0x00...0x7F: continue
                case 0xC2...0xDF: state = 1
                case 0xE0: state = 4
                case 0xE1...0xEC, 0xEE, 0xEF: state = 2
                case 0xED: state = 5
                case 0xF0: state = 6
                case 0xF1...0xF3: state = 3
                case 0xF4: state = 7
                default: state = 0xFF; return false
                }
            case 1, 2, 3:
                guard b & 0xC0 == 0x80 else { state = 0xFF; return false }
                state -= 1
            case 4:
                guard b >= 0xA0 && b <= 0xBF else { state = 0xFF; return false }
                state = 1
            case 5:
                guard b >= 0x80 && b <= 0x9F else { state = 0xFF; return false }
                state = 1
            case 6:
                guard b >= 0x90 && b <= 0xBF else { state = 0xFF; return false }
                state = 2
            case 7:
                guard b >= 0x80 && b <= 0x8F else { state = 0xFF; return false }
                state = 2
            default:
                return false
            }
        }
        return true
    }

    public static func isValid(_ bytes: [UInt8]) -> Bool {
        var v = UTF8Validator()
        return bytes.withUnsafeBytes { v.feed($0) } && v.isComplete
    }
}

/// RFC 6455 opcodes.
public enum WebSocketOpcode: UInt8, Sendable {
    case continuation = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10
    var isControl: Bool { rawValue >= 8 }
}

/// Close status codes used by gunn (RFC 6455 §7.4.1).
public enum WebSocketCloseCode {
    public static let normal: UInt16 = 1000
    public static let goingAway: UInt16 = 1001
    public static let protocolError: UInt16 = 1002
    public static let invalidData: UInt16 = 1007
    public static let policyViolation: UInt16 = 1008
    public static let messageTooBig: UInt16 = 1009
    public static let internalError: UInt16 = 1011

    /// Codes a peer may send in a close frame: 1000–1003, 1007–1014 and the registered and private
    /// ranges 3000–4999. (1004–1006 and 1015 are reserved and never sent on the wire.)
    public static func isValidReceived(_ code: UInt16) -> Bool {
        switch code {
        case 1000...1003, 1007...1014, 3000...4999: return true
        default: return false
        }
    }
}

/// Writes server frames (never masked, RFC 6455 §5.1) with the shortest length encoding.
public enum WebSocketFrameEncoder {
    public static func appendHeader(opcode: WebSocketOpcode, fin: Bool = true, length: Int, into out: inout [UInt8]) {
        out.append((fin ? 0x80 : 0) | opcode.rawValue)
        if length < 126 {
            out.append(UInt8(length))
        } else if length <= 0xFFFF {
            out.append(126)
            out.append(UInt8(length >> 8))
            out.append(UInt8(length & 0xFF))
        } else {
            out.append(127)
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8((UInt64(length) >> UInt64(shift)) & 0xFF)) }
        }
    }

    public static func frame(opcode: WebSocketOpcode, payload: [UInt8], fin: Bool = true) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(payload.count + 10)
        appendHeader(opcode: opcode, fin: fin, length: payload.count, into: &out)
        out += payload
        return out
    }

    /// A close frame: empty when `code` is nil, else the code and a reason cut to fit 125 bytes
    /// at a character boundary.
    public static func close(code: UInt16?, reason: String = "") -> [UInt8] {
        guard let code else { return frame(opcode: .close, payload: []) }
        var payload: [UInt8] = [UInt8(code >> 8), UInt8(code & 0xFF)]
        var r = Array(reason.utf8)
        while r.count > 123 || !UTF8Validator.isValid(r) { r.removeLast() }
        payload += r
        return frame(opcode: .close, payload: payload)
    }
}

/// Options of a WebSocket session.
public struct WebSocketOptions: Sendable {
    /// A message (all its fragments) larger than this is closed with 1009.
    public var maxMessageBytes = 16 << 20
    /// Client frames must be masked (RFC 6455 §5.1); a server never turns this off.
    public var requireMask = true
    public init() {}
}

/// What the session asks its connection to do.
public enum WebSocketSessionEvent {
    /// A complete message. Text has been validated as UTF-8.
    case message(WebSocketOpcode, [UInt8])
    /// Bytes to send (a pong, a close reply, a failure's close frame).
    case send([UInt8])
    /// A ping's payload (after its pong was sent), or a pong's: for liveness.
    case ping([UInt8]), pong([UInt8])
    /// The WebSocket is over: the close handshake finished (`clean`) or the connection failed with
    /// `code`; close TCP after the queued bytes are out.
    case closed(code: UInt16, reason: String, clean: Bool)
}

/// The receiving side of one RFC 6455 connection as a pure state machine: bytes in (any cut),
/// messages and frames to send out. Frame headers are read across any number of reads, payloads
/// are unmasked in place and streamed into the message (never re-buffered per read), text is
/// validated as it arrives, and each protocol rule broken fails the connection with its close
/// code: 1002 (protocol), 1007 (bad UTF-8), 1009 (too big).
public struct WebSocketSession {
    public let options: WebSocketOptions

    private var header: [UInt8] = []
    private var inFrame = false
    private var fin = false
    private var opcode: WebSocketOpcode = .continuation
    private var remaining: UInt64 = 0
    private var mask: (UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0)
    private var maskOffset = 0

    private var messageOpcode: WebSocketOpcode?
    private var message: [UInt8] = []
    private var utf8 = UTF8Validator()
    private var control: [UInt8] = []
    /// A close was sent by us (we wait for the peer's) or the session ended.
    public private(set) var closeSent = false
    public private(set) var finished = false

    public init(options: WebSocketOptions = WebSocketOptions()) {
        self.options = options
        header.reserveCapacity(14)
    }

    /// Marks that the application sent a close frame; the session then waits for the peer's.
    public mutating func noteCloseSent() { closeSent = true }

    /// Consumes `bytes` (unmasking them in place). After the session ends the rest is ignored.
    public mutating func receive(_ bytes: UnsafeMutableRawBufferPointer, _ emit: (WebSocketSessionEvent) -> Void) {
        var i = 0
        let n = bytes.count
        while i < n && !finished {
            if !inFrame {
                header.append(bytes[i])
                i += 1
                switch headerComplete() {
                case nil: break
                case .failure(let code, let reason)?: fail(code, reason, emit)
                case .started?: if remaining == 0 { endFrame(emit) }
                }
                continue
            }
            let take = Int(min(remaining, UInt64(n - i)))
            if take > 0 {
                let slice = UnsafeMutableRawBufferPointer(rebasing: bytes[i..<(i + take)])
                unmask(slice)
                if !payload(UnsafeRawBufferPointer(slice), emit) { return }
                i += take
                remaining -= UInt64(take)
            }
            if remaining == 0 { endFrame(emit) }
        }
    }

    enum HeaderOutcome { case started, failure(UInt16, String) }

    /// Parses the header once all its bytes are in; nil while more are needed.
    private mutating func headerComplete() -> HeaderOutcome? {
        guard header.count >= 2 else { return nil }
        let b0 = header[0], b1 = header[1]
        // Check the first two bytes as soon as they are here: fail fast, before the length.
        if header.count == 2 {
            if b0 & 0x70 != 0 { return .failure(WebSocketCloseCode.protocolError, "reserved bits set without a negotiated extension") }
            guard let op = WebSocketOpcode(rawValue: b0 & 0x0F) else {
                return .failure(WebSocketCloseCode.protocolError, "reserved opcode \(b0 & 0x0F)")
            }
            if op.isControl {
                if b0 & 0x80 == 0 { return .failure(WebSocketCloseCode.protocolError, "a fragmented control frame") }
                if b1 & 0x7F > 125 { return .failure(WebSocketCloseCode.protocolError, "a control frame longer than 125 bytes") }
            } else if op == .continuation {
                if messageOpcode == nil { return .failure(WebSocketCloseCode.protocolError, "a continuation frame with no message to continue") }
            } else if messageOpcode != nil {
                return .failure(WebSocketCloseCode.protocolError, "a new data frame inside a fragmented message")
            }
            if options.requireMask && b1 & 0x80 == 0 { return .failure(WebSocketCloseCode.protocolError, "an unmasked client frame") }
        }
        let masked = b1 & 0x80 != 0
        let len7 = b1 & 0x7F
        let lengthBytes = len7 == 126 ? 2 : len7 == 127 ? 8 : 0
        let need = 2 + lengthBytes + (masked ? 4 : 0)
        guard header.count >= 2 + lengthBytes else { return nil }
        var length = UInt64(len7)
        if lengthBytes > 0 {
            length = 0
            for k in 0..<lengthBytes { length = length << 8 | UInt64(header[2 + k]) }
        }
        let op = WebSocketOpcode(rawValue: b0 & 0x0F)!
        if header.count == 2 + lengthBytes {
            // The length is known: judge it before the mask arrives.
            if lengthBytes == 8 && length >> 63 != 0 { return .failure(WebSocketCloseCode.protocolError, "a 64-bit length with its most significant bit set") }
            if !op.isControl && UInt64(message.count) + length > UInt64(options.maxMessageBytes) {
                return .failure(WebSocketCloseCode.messageTooBig, "a message larger than \(options.maxMessageBytes) bytes")
            }
        }
        guard header.count >= need else { return nil }
        if masked {
            let m = 2 + lengthBytes
            mask = (header[m], header[m + 1], header[m + 2], header[m + 3])
        } else {
            mask = (0, 0, 0, 0)
        }
        maskOffset = 0
        fin = b0 & 0x80 != 0
        opcode = op
        remaining = length
        inFrame = true
        header.removeAll(keepingCapacity: true)
        if op.isControl {
            control.removeAll(keepingCapacity: true)
        } else if op != .continuation {
            messageOpcode = op
            // A declared length reserves at most 64 KiB: the rest grows as bytes really arrive.
            message.reserveCapacity(Int(min(length, UInt64(min(options.maxMessageBytes, 64 << 10)))))
        }
        return .started
    }

    private mutating func unmask(_ b: UnsafeMutableRawBufferPointer) {
        guard mask != (0, 0, 0, 0), let base = b.baseAddress else { return }
        let m = [mask.0, mask.1, mask.2, mask.3]
        var i = 0
        let n = b.count
        // Bytes up to a mask boundary, then eight at a time with the mask rotated into place.
        while i < n && (maskOffset + i) & 3 != 0 {
            b[i] ^= m[(maskOffset + i) & 3]
            i += 1
        }
        if n - i >= 8 {
            let w32 = UInt32(m[0]) | UInt32(m[1]) << 8 | UInt32(m[2]) << 16 | UInt32(m[3]) << 24
            let w = UInt64(w32) | UInt64(w32) << 32
            while i + 8 <= n {
                let v = base.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                base.storeBytes(of: v ^ w, toByteOffset: i, as: UInt64.self)
                i += 8
            }
        }
        while i < n {
            b[i] ^= m[(maskOffset + i) & 3]
            i += 1
        }
        maskOffset = (maskOffset + n) & 3
    }

    /// Takes a piece of the current frame's payload; false when the session failed.
    private mutating func payload(_ p: UnsafeRawBufferPointer, _ emit: (WebSocketSessionEvent) -> Void) -> Bool {
        if opcode.isControl {
            control.append(contentsOf: p)
            return true
        }
        if messageOpcode == .text && !utf8.feed(p) {
            fail(WebSocketCloseCode.invalidData, "a text message that is not valid UTF-8", emit)
            return false
        }
        message.append(contentsOf: p)
        return true
    }

    private mutating func endFrame(_ emit: (WebSocketSessionEvent) -> Void) {
        inFrame = false
        switch opcode {
        case .ping:
            if !closeSent { emit(.send(WebSocketFrameEncoder.frame(opcode: .pong, payload: control))) }
            emit(.ping(control))
        case .pong:
            emit(.pong(control))
        case .close:
            receivedClose(emit)
        default:
            guard fin else { return }
            if messageOpcode == .text && !utf8.isComplete {
                fail(WebSocketCloseCode.invalidData, "a text message that ends inside a UTF-8 sequence", emit)
                return
            }
            let op = messageOpcode ?? .binary
            let m = message
            message = []
            messageOpcode = nil
            utf8 = UTF8Validator()
            if !closeSent { emit(.message(op, m)) }
        }
    }

    private mutating func receivedClose(_ emit: (WebSocketSessionEvent) -> Void) {
        var code: UInt16? = nil
        var reason = ""
        if control.count == 1 {
            fail(WebSocketCloseCode.protocolError, "a close frame with a 1-byte payload", emit)
            return
        }
        if control.count >= 2 {
            let c = UInt16(control[0]) << 8 | UInt16(control[1])
            guard WebSocketCloseCode.isValidReceived(c) else {
                fail(WebSocketCloseCode.protocolError, "close code \(c) may not be sent", emit)
                return
            }
            let r = Array(control[2...])
            guard UTF8Validator.isValid(r) else {
                fail(WebSocketCloseCode.invalidData, "a close reason that is not valid UTF-8", emit)
                return
            }
            code = c
            reason = String(decoding: r, as: UTF8.self)
        }
        if !closeSent {
            // Echo the peer's code (RFC 6455 §5.5.1); an empty close is answered 1000.
            emit(.send(WebSocketFrameEncoder.close(code: code ?? WebSocketCloseCode.normal)))
            closeSent = true
        }
        finished = true
        emit(.closed(code: code ?? 1005, reason: reason, clean: true))
    }

    private mutating func fail(_ code: UInt16, _ reason: String, _ emit: (WebSocketSessionEvent) -> Void) {
        if !closeSent { emit(.send(WebSocketFrameEncoder.close(code: code, reason: reason))) }
        closeSent = true
        finished = true
        emit(.closed(code: code, reason: reason, clean: false))
    }
}
