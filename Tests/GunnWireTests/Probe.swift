@testable import GunnWire

/// `gunn.v1.Probe` of proto/gunn/v1/probe.proto: every proto3 field type, for the interop tests.
struct Probe: WireMessage {
    struct Inner: WireMessage {
        var name = "", delta: Int64 = 0
        func encode(to w: inout ProtoWriter) { w.string(1, name); w.sint64(2, delta) }
        mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
            switch n {
            case 1: guard let v = try r.string(wt, field: n) else { return false }; name = v
            case 2: guard let v = try r.sint64(wt) else { return false }; delta = v
            default: return false
            }
            return true
        }
    }
    enum Choice: Equatable { case text(String), number(UInt64) }

    var i32: Int32 = 0, i64: Int64 = 0, u32: UInt32 = 0, u64: UInt64 = 0, s32: Int32 = 0, s64: Int64 = 0
    var f32: UInt32 = 0, f64: UInt64 = 0, sf32: Int32 = 0, sf64: Int64 = 0, flag = false
    var text = "", blob: [UInt8] = [], real32: Float = 0, real64: Double = 0, color: Int32 = 0
    var inner: Inner?, packedI64: [Int64] = [], packedF64: [Double] = [], names: [String] = [], inners: [Inner] = []
    var choice: Choice?

    func encode(to w: inout ProtoWriter) {
        w.int32(1, i32); w.int64(2, i64); w.uint32(3, u32); w.uint64(4, u64); w.sint32(5, s32); w.sint64(6, s64)
        w.fixed32(7, f32); w.fixed64(8, f64); w.sfixed32(9, sf32); w.sfixed64(10, sf64); w.bool(11, flag)
        w.string(12, text); w.bytesField(13, blob); w.float(14, real32); w.double(15, real64); w.enumValue(16, color)
        w.message(17, inner); w.packedInt64(18, packedI64); w.packedDouble(19, packedF64); w.repeatedString(20, names)
        w.repeatedMessage(21, inners)
        switch choice {
        case .text(let t)?: w.oneofString(22, t)
        case .number(let n)?: w.oneofUInt64(23, n)
        case nil: break
        }
    }

    mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
        switch n {
        case 1: guard let v = try r.int32(wt) else { return false }; i32 = v
        case 2: guard let v = try r.int64(wt) else { return false }; i64 = v
        case 3: guard let v = try r.uint32(wt) else { return false }; u32 = v
        case 4: guard let v = try r.uint64(wt) else { return false }; u64 = v
        case 5: guard let v = try r.sint32(wt) else { return false }; s32 = v
        case 6: guard let v = try r.sint64(wt) else { return false }; s64 = v
        case 7: guard let v = try r.fixed32(wt) else { return false }; f32 = v
        case 8: guard let v = try r.fixed64(wt) else { return false }; f64 = v
        case 9: guard let v = try r.fixed32(wt) else { return false }; sf32 = Int32(bitPattern: v)
        case 10: guard let v = try r.fixed64(wt) else { return false }; sf64 = Int64(bitPattern: v)
        case 11: guard let v = try r.bool(wt) else { return false }; flag = v
        case 12: guard let v = try r.string(wt, field: n) else { return false }; text = v
        case 13: guard let v = try r.bytesField(wt) else { return false }; blob = v
        case 14: guard let v = try r.float(wt) else { return false }; real32 = v
        case 15: guard let v = try r.double(wt) else { return false }; real64 = v
        case 16: guard let v = try r.int32(wt) else { return false }; color = v
        case 17: guard let v = try r.message(wt, Inner.self) else { return false }; inner = v
        case 18: return try r.repeatedInt64(wt, into: &packedI64)
        case 19: return try r.repeatedDouble(wt, field: n, into: &packedF64)
        case 20: guard let v = try r.string(wt, field: n) else { return false }; names.append(v)
        case 21: guard let v = try r.message(wt, Inner.self) else { return false }; inners.append(v)
        case 22: guard let v = try r.string(wt, field: n) else { return false }; choice = .text(v)
        case 23: guard let v = try r.uint64(wt) else { return false }; choice = .number(v)
        default: return false
        }
        return true
    }

    /// The values both sides build (Tests/Interop/probe_interop.py has the same).
    static var expected: Probe {
        var p = Probe()
        p.i32 = -5; p.i64 = -1_234_567_890_123; p.u32 = 4_000_000_000; p.u64 = .max; p.s32 = -42; p.s64 = -9_000_000_000_000_000
        p.f32 = 0xDEAD_BEEF; p.f64 = 0x0123_4567_89AB_CDEF; p.sf32 = -7; p.sf64 = -8; p.flag = true
        p.text = "héllo ✓"; p.blob = [0, 1, 2, 255]; p.real32 = 1.5; p.real64 = -2.25e-300; p.color = 2
        p.inner = Inner(name: "in", delta: -3); p.packedI64 = [1, -1, 300]; p.packedF64 = [0.5, -1e10]; p.names = ["a", "b"]
        p.inners = [Inner(name: "x", delta: 1), Inner(name: "y", delta: 0)]; p.choice = .number(7)
        return p
    }
}
