/// Why bytes are not a valid message. Every case maps to MALFORMED_FRAME.
public enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
    case truncated(at: Int)
    case malformedVarint(at: Int)
    case invalidWireType(UInt8, at: Int)
    case invalidFieldNumber(at: Int)
    case lengthExceedsRemaining(length: UInt64, remaining: Int, at: Int)
    case lengthExceedsLimit(length: UInt64, limit: Int, at: Int)
    case tooDeep(limit: Int)
    case invalidUTF8(field: Int)
    case invalidPacked(field: Int)
    /// A field this message knows arrived with another wire type than its declared one.
    case wrongWireType(WireType, at: Int)

    public var description: String {
        switch self {
        case .truncated(let at): return "message truncated at byte \(at)"
        case .malformedVarint(let at): return "varint longer than 10 bytes or overflowing at byte \(at)"
        case let .invalidWireType(t, at): return "invalid wire type \(t) at byte \(at)"
        case .invalidFieldNumber(let at): return "field number 0 or above 2^29-1 at byte \(at)"
        case let .lengthExceedsRemaining(length, remaining, at): return "length \(length) at byte \(at) exceeds the \(remaining) bytes that remain"
        case let .lengthExceedsLimit(length, limit, at): return "length \(length) at byte \(at) exceeds the limit of \(limit)"
        case .tooDeep(let limit): return "messages nested deeper than \(limit)"
        case .invalidUTF8(let field): return "string field \(field) is not valid UTF-8"
        case .invalidPacked(let field): return "packed field \(field) does not divide into whole elements"
        case let .wrongWireType(t, at): return "a known field with the wrong wire type \(t) before byte \(at)"
        }
    }
}

/// Limits a decoder enforces on untrusted bytes.
public struct WireLimits: Sendable {
    public var maxNestingDepth: Int = 32
    /// Largest single length-delimited field.
    public var maxFieldBytes: Int = 4 << 20
    public init() {}
    public static let `default` = WireLimits()
}

/// Reads protobuf wire format from a byte array without trusting any length: every length is
/// checked against the bytes that remain and against the limits before it is used.
public struct ProtoReader: Sendable {
    let bytes: [UInt8]
    public private(set) var pos: Int
    let end: Int
    let depth: Int
    let limits: WireLimits

    public init(_ bytes: [UInt8], limits: WireLimits = .default) {
        self.bytes = bytes; self.pos = 0; self.end = bytes.count; self.depth = 0; self.limits = limits
    }

    init(bytes: [UInt8], pos: Int, end: Int, depth: Int, limits: WireLimits) {
        self.bytes = bytes; self.pos = pos; self.end = end; self.depth = depth; self.limits = limits
    }

    public var isAtEnd: Bool { pos >= end }

    /// The bytes of a range `readLengthDelimited` returned.
    public func bytes(in range: Range<Int>) -> [UInt8] { Array(bytes[range]) }

    public mutating func readVarint() throws(WireError) -> UInt64 {
        let start = pos
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard pos < end else { throw .truncated(at: pos) }
            let b = bytes[pos]
            pos += 1
            if shift == 63 && b > 1 { throw .malformedVarint(at: start) }
            result |= UInt64(b & 0x7f) << shift
            if b < 0x80 { return result }
            shift += 7
            if shift > 63 { throw .malformedVarint(at: start) }
        }
    }

    public mutating func readFixed32() throws(WireError) -> UInt32 {
        guard end - pos >= 4 else { throw .truncated(at: pos) }
        var v: UInt32 = 0
        for i in 0..<4 { v |= UInt32(bytes[pos + i]) << (8 * UInt32(i)) }
        pos += 4
        return v
    }

    public mutating func readFixed64() throws(WireError) -> UInt64 {
        guard end - pos >= 8 else { throw .truncated(at: pos) }
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(bytes[pos + i]) << (8 * UInt64(i)) }
        pos += 8
        return v
    }

    /// The range of a length-delimited payload, after its length was checked.
    public mutating func readLengthDelimited() throws(WireError) -> Range<Int> {
        let at = pos
        let length = try readVarint()
        guard length <= UInt64(limits.maxFieldBytes) else { throw .lengthExceedsLimit(length: length, limit: limits.maxFieldBytes, at: at) }
        guard length <= UInt64(end - pos) else { throw .lengthExceedsRemaining(length: length, remaining: end - pos, at: at) }
        let r = pos..<(pos + Int(length))
        pos += Int(length)
        return r
    }

    /// The next field's number and wire type, or nil at the end of the message.
    public mutating func nextField() throws(WireError) -> (number: Int, wire: WireType)? {
        guard pos < end else { return nil }
        let at = pos
        let key = try readVarint()
        let number = key >> 3
        guard number >= 1 && number <= 0x1FFF_FFFF else { throw .invalidFieldNumber(at: at) }
        guard let wire = WireType(rawValue: UInt8(key & 7)) else { throw .invalidWireType(UInt8(key & 7), at: at) }
        return (Int(number), wire)
    }

    /// Refuses a known field whose wire type is not its declared one.
    @inline(__always)
    mutating func expect(_ w: WireType, _ declared: WireType) throws(WireError) {
        if w != declared { throw .wrongWireType(w, at: pos) }
    }

    /// Skips a field this reader does not know (a newer peer's addition).
    public mutating func skip(_ wire: WireType) throws(WireError) {
        switch wire {
        case .varint: _ = try readVarint()
        case .fixed64: _ = try readFixed64()
        case .fixed32: _ = try readFixed32()
        case .lengthDelimited: _ = try readLengthDelimited()
        }
    }

    // Typed readers: a known field with another wire type than its declared one is malformed
    // (MALFORMED_FRAME, docs/errors.md); it is not skipped. (Repeated scalars accept both packed
    // and unpacked forms, as proto3 requires.) The optional result is kept for the callers' shape.
    public mutating func uint64(_ w: WireType) throws(WireError) -> UInt64? { try expect(w, .varint); return try readVarint() }
    public mutating func uint32(_ w: WireType) throws(WireError) -> UInt32? { try expect(w, .varint); return UInt32(truncatingIfNeeded: try readVarint()) }
    public mutating func int64(_ w: WireType) throws(WireError) -> Int64? { try expect(w, .varint); return Int64(bitPattern: try readVarint()) }
    public mutating func int32(_ w: WireType) throws(WireError) -> Int32? { try expect(w, .varint); return Int32(truncatingIfNeeded: Int64(bitPattern: try readVarint())) }
    public mutating func sint32(_ w: WireType) throws(WireError) -> Int32? {
        try expect(w, .varint)
        let v = UInt32(truncatingIfNeeded: try readVarint())
        return Int32(bitPattern: (v >> 1) ^ (0 &- (v & 1)))
    }
    public mutating func sint64(_ w: WireType) throws(WireError) -> Int64? {
        try expect(w, .varint)
        let v = try readVarint()
        return Int64(bitPattern: (v >> 1) ^ (0 &- (v & 1)))
    }
    public mutating func bool(_ w: WireType) throws(WireError) -> Bool? { try expect(w, .varint); return try readVarint() != 0 }
    public mutating func fixed32(_ w: WireType) throws(WireError) -> UInt32? { try expect(w, .fixed32); return try readFixed32() }
    public mutating func fixed64(_ w: WireType) throws(WireError) -> UInt64? { try expect(w, .fixed64); return try readFixed64() }
    public mutating func float(_ w: WireType) throws(WireError) -> Float? { try expect(w, .fixed32); return Float(bitPattern: try readFixed32()) }
    public mutating func double(_ w: WireType) throws(WireError) -> Double? { try expect(w, .fixed64); return Double(bitPattern: try readFixed64()) }

    public mutating func string(_ w: WireType, field: Int) throws(WireError) -> String? {
        try expect(w, .lengthDelimited)
        let r = try readLengthDelimited()
        let s: String? = bytes.withUnsafeBufferPointer { String(validating: UnsafeBufferPointer(rebasing: $0[r]), as: UTF8.self) }
        guard let s else { throw .invalidUTF8(field: field) }
        return s
    }

    public mutating func bytesField(_ w: WireType) throws(WireError) -> [UInt8]? {
        try expect(w, .lengthDelimited)
        return Array(bytes[try readLengthDelimited()])
    }

    public mutating func message<M: WireMessage>(_ w: WireType, _ type: M.Type) throws(WireError) -> M? {
        try expect(w, .lengthDelimited)
        guard depth + 1 < limits.maxNestingDepth else { throw .tooDeep(limit: limits.maxNestingDepth) }
        let r = try readLengthDelimited()
        var sub = ProtoReader(bytes: bytes, pos: r.lowerBound, end: r.upperBound, depth: depth + 1, limits: limits)
        return try M.decode(from: &sub)
    }

    /// Appends a repeated int64 in either packed or unpacked form (parsers must accept both).
    public mutating func repeatedInt64(_ w: WireType, into out: inout [Int64]) throws(WireError) -> Bool {
        switch w {
        case .varint: out.append(Int64(bitPattern: try readVarint())); return true
        case .lengthDelimited:
            let r = try readLengthDelimited()
            var sub = ProtoReader(bytes: bytes, pos: r.lowerBound, end: r.upperBound, depth: depth, limits: limits)
            while !sub.isAtEnd { out.append(Int64(bitPattern: try sub.readVarint())) }
            return true
        default: throw .wrongWireType(w, at: pos)
        }
    }

    public mutating func repeatedDouble(_ w: WireType, field: Int, into out: inout [Double]) throws(WireError) -> Bool {
        switch w {
        case .fixed64: out.append(Double(bitPattern: try readFixed64())); return true
        case .lengthDelimited:
            let r = try readLengthDelimited()
            guard r.count % 8 == 0 else { throw .invalidPacked(field: field) }
            var sub = ProtoReader(bytes: bytes, pos: r.lowerBound, end: r.upperBound, depth: depth, limits: limits)
            while !sub.isAtEnd { out.append(Double(bitPattern: try sub.readFixed64())) }
            return true
        default: throw .wrongWireType(w, at: pos)
        }
    }
}

/// A message of `proto/gunn/v1`: encodes itself and reads its fields; unknown fields are skipped.
public protocol WireMessage: Sendable, Equatable {
    init()
    func encode(to w: inout ProtoWriter)
    /// Reads one field; returns false for a field this message does not know (it is then skipped).
    mutating func decodeField(_ number: Int, _ wire: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool
}

extension WireMessage {
    public static func decode(from r: inout ProtoReader) throws(WireError) -> Self {
        var m = Self()
        while let (number, wire) = try r.nextField() {
            if try !m.decodeField(number, wire, &r) { try r.skip(wire) }
        }
        return m
    }

    public init(serialized bytes: [UInt8], limits: WireLimits = .default) throws(WireError) {
        var r = ProtoReader(bytes, limits: limits)
        self = try Self.decode(from: &r)
    }

    public func serialized() -> [UInt8] {
        var w = ProtoWriter()
        encode(to: &w)
        return w.bytes
    }
}
