/// The five wire types of proto3 (groups, 3 and 4, are refused).
public enum WireType: UInt8, Sendable {
    case varint = 0
    case fixed64 = 1
    case lengthDelimited = 2
    case fixed32 = 5
}

/// Appends protobuf wire format. Field writers follow proto3's implicit presence: a scalar equal
/// to its default is not written; repeated numeric fields are packed.
public struct ProtoWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init(capacity: Int = 64) { bytes.reserveCapacity(capacity) }

    @inline(__always)
    public mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    @inline(__always)
    public mutating func tag(_ field: Int, _ wire: WireType) {
        varint(UInt64(field) << 3 | UInt64(wire.rawValue))
    }

    public mutating func fixed32Raw(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func fixed64Raw(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }

    public static func zigzag32(_ v: Int32) -> UInt32 { UInt32(bitPattern: (v << 1) ^ (v >> 31)) }
    public static func zigzag64(_ v: Int64) -> UInt64 { UInt64(bitPattern: (v << 1) ^ (v >> 63)) }

    // Scalars (skipped when default).
    public mutating func uint64(_ f: Int, _ v: UInt64) { if v != 0 { tag(f, .varint); varint(v) } }
    public mutating func uint32(_ f: Int, _ v: UInt32) { if v != 0 { tag(f, .varint); varint(UInt64(v)) } }
    /// int32 negatives are sign-extended to 10 bytes, as the encoding requires.
    public mutating func int32(_ f: Int, _ v: Int32) { if v != 0 { tag(f, .varint); varint(UInt64(bitPattern: Int64(v))) } }
    public mutating func int64(_ f: Int, _ v: Int64) { if v != 0 { tag(f, .varint); varint(UInt64(bitPattern: v)) } }
    public mutating func sint32(_ f: Int, _ v: Int32) { if v != 0 { tag(f, .varint); varint(UInt64(Self.zigzag32(v))) } }
    public mutating func sint64(_ f: Int, _ v: Int64) { if v != 0 { tag(f, .varint); varint(Self.zigzag64(v)) } }
    public mutating func bool(_ f: Int, _ v: Bool) { if v { tag(f, .varint); varint(1) } }
    public mutating func fixed32(_ f: Int, _ v: UInt32) { if v != 0 { tag(f, .fixed32); fixed32Raw(v) } }
    public mutating func fixed64(_ f: Int, _ v: UInt64) { if v != 0 { tag(f, .fixed64); fixed64Raw(v) } }
    public mutating func sfixed32(_ f: Int, _ v: Int32) { if v != 0 { tag(f, .fixed32); fixed32Raw(UInt32(bitPattern: v)) } }
    public mutating func sfixed64(_ f: Int, _ v: Int64) { if v != 0 { tag(f, .fixed64); fixed64Raw(UInt64(bitPattern: v)) } }
    public mutating func float(_ f: Int, _ v: Float) { if v.bitPattern != 0 { tag(f, .fixed32); fixed32Raw(v.bitPattern) } }
    public mutating func double(_ f: Int, _ v: Double) { if v.bitPattern != 0 { tag(f, .fixed64); fixed64Raw(v.bitPattern) } }
    public mutating func enumValue(_ f: Int, _ v: Int32) { int32(f, v) }

    public mutating func string(_ f: Int, _ v: String) {
        guard !v.isEmpty else { return }
        tag(f, .lengthDelimited)
        varint(UInt64(v.utf8.count))
        bytes.append(contentsOf: v.utf8)
    }

    public mutating func bytesField(_ f: Int, _ v: [UInt8]) {
        guard !v.isEmpty else { return }
        tag(f, .lengthDelimited)
        varint(UInt64(v.count))
        bytes.append(contentsOf: v)
    }

    /// A nested message, written whenever present (even when empty).
    public mutating func message<M: WireMessage>(_ f: Int, _ m: M?) {
        guard let m else { return }
        var inner = ProtoWriter()
        m.encode(to: &inner)
        tag(f, .lengthDelimited)
        varint(UInt64(inner.bytes.count))
        bytes.append(contentsOf: inner.bytes)
    }

    /// A oneof member: written even when it holds the default value, since its presence is the point.
    public mutating func oneofString(_ f: Int, _ v: String) {
        tag(f, .lengthDelimited); varint(UInt64(v.utf8.count)); bytes.append(contentsOf: v.utf8)
    }

    public mutating func oneofUInt64(_ f: Int, _ v: UInt64) { tag(f, .varint); varint(v) }

    // Repeated.
    public mutating func repeatedString(_ f: Int, _ vs: [String]) {
        for v in vs { tag(f, .lengthDelimited); varint(UInt64(v.utf8.count)); bytes.append(contentsOf: v.utf8) }
    }

    public mutating func repeatedMessage<M: WireMessage>(_ f: Int, _ ms: [M]) {
        for m in ms { message(f, m) }
    }

    public mutating func packedInt64(_ f: Int, _ vs: [Int64]) {
        guard !vs.isEmpty else { return }
        var inner = ProtoWriter()
        for v in vs { inner.varint(UInt64(bitPattern: v)) }
        tag(f, .lengthDelimited); varint(UInt64(inner.bytes.count)); bytes.append(contentsOf: inner.bytes)
    }

    public mutating func packedDouble(_ f: Int, _ vs: [Double]) {
        guard !vs.isEmpty else { return }
        tag(f, .lengthDelimited); varint(UInt64(vs.count * 8))
        for v in vs { fixed64Raw(v.bitPattern) }
    }

    /// Raw bytes (an unknown field kept for tests, or a pre-encoded body).
    public mutating func raw(_ b: [UInt8]) { bytes.append(contentsOf: b) }
}
