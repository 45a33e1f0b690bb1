import XCTest
@testable import GunnWire
import GunnCore

final class ProtoCodecTests: XCTestCase {
    func testVarintEdgeCases() throws {
        for v: UInt64 in [0, 1, 127, 128, 300, 16383, 16384, UInt64(UInt32.max), UInt64.max - 1, .max] {
            var w = ProtoWriter()
            w.varint(v)
            var r = ProtoReader(w.bytes)
            XCTAssertEqual(try r.readVarint(), v)
            XCTAssertTrue(r.isAtEnd)
        }
        var w = ProtoWriter()
        w.int32(1, -1)
        XCTAssertEqual(w.bytes.count, 11, "negative int32 is sign-extended to 10 bytes")
        XCTAssertEqual(ProtoWriter.zigzag32(-1), 1)
        XCTAssertEqual(ProtoWriter.zigzag64(Int64.min), UInt64.max)
    }

    func testRoundTripOfEveryFieldTypeAndDefaultsAreOmitted() throws {
        XCTAssertEqual(try Probe(serialized: Probe.expected.serialized()), Probe.expected)
        XCTAssertEqual(Probe().serialized(), [], "proto3 writes nothing for defaults")
        var p = Probe()
        p.choice = .text("")
        XCTAssertEqual(try Probe(serialized: p.serialized()).choice, .text(""), "a oneof member is present even when empty")
    }

    func testUnpackedRepeatedIsAcceptedToo() throws {
        var w = ProtoWriter()
        for v: Int64 in [5, -6] { w.tag(18, .varint); w.varint(UInt64(bitPattern: v)) }
        XCTAssertEqual(try Probe(serialized: w.bytes).packedI64, [5, -6])
    }

    func testMalformedInputsAreCodedErrorsNeverCrashes() {
        func fails(_ bytes: [UInt8], _ expected: WireError, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try Probe(serialized: bytes), file: file, line: line) { XCTAssertEqual($0 as? WireError, expected, file: file, line: line) }
        }
        fails([0x08], .truncated(at: 1))
        fails([0x08, 0x80], .truncated(at: 2))
        fails([0x08] + [UInt8](repeating: 0xFF, count: 10) + [0x01], .malformedVarint(at: 1))
        fails([0x0B], .invalidWireType(3, at: 0))
        fails([0x00, 0x01], .invalidFieldNumber(at: 0))
        fails([0x62, 0x05, 0x61], .lengthExceedsRemaining(length: 5, remaining: 1, at: 1))
        fails([0x62, 0x02, 0xC3, 0x28], .invalidUTF8(field: 12))
        fails([0x9A, 0x01, 0x03, 1, 2, 3], .invalidPacked(field: 19))
        fails([0x3D, 0x01, 0x02], .truncated(at: 1))
        var limits = WireLimits()
        limits.maxFieldBytes = 2
        XCTAssertThrowsError(try Probe(serialized: [0x62, 0x03, 0x61, 0x62, 0x63], limits: limits)) {
            XCTAssertEqual($0 as? WireError, .lengthExceedsLimit(length: 3, limit: 2, at: 1))
        }
    }

    /// A recursive test message: `message Nest { Nest child = 1; }`.
    struct Nest: WireMessage {
        final class Box: Sendable, Equatable {
            let value: Nest
            init(_ v: Nest) { value = v }
            static func == (a: Box, b: Box) -> Bool { a.value == b.value }
        }
        var child: Box?
        func encode(to w: inout ProtoWriter) { w.message(1, child?.value) }
        mutating func decodeField(_ n: Int, _ wt: WireType, _ r: inout ProtoReader) throws(WireError) -> Bool {
            guard n == 1, let v = try r.message(wt, Nest.self) else { return false }
            child = Box(v)
            return true
        }
        static func nested(_ depth: Int) -> [UInt8] {
            var bytes: [UInt8] = []
            for _ in 0..<depth { bytes = [0x0A] + ProtoWriter.lengthPrefix(bytes) }
            return bytes
        }
    }

    func testNestingDepthIsLimited() {
        XCTAssertNoThrow(try Nest(serialized: Nest.nested(20)))
        XCTAssertThrowsError(try Nest(serialized: Nest.nested(40))) { XCTAssertEqual($0 as? WireError, .tooDeep(limit: 32)) }
        XCTAssertThrowsError(try Nest(serialized: Nest.nested(100_000))) { XCTAssertEqual($0 as? WireError, .tooDeep(limit: 32)) }
    }

    func testUnknownFieldsOfEveryWireTypeAreSkipped() throws {
        var w = ProtoWriter()
        Hello(protocolMajor: 1, protocolMinor: 0, role: "ctl").encode(to: &w)
        w.tag(100, .varint); w.varint(1)
        w.tag(101, .fixed64); w.fixed64Raw(2)
        w.tag(102, .lengthDelimited); w.varint(2); w.raw([1, 2])
        w.tag(103, .fixed32); w.fixed32Raw(3)
        XCTAssertEqual(try Hello(serialized: w.bytes), Hello(protocolMajor: 1, protocolMinor: 0, role: "ctl"))
    }

    /// A known field with another wire type than its declared one is malformed, not skipped
    /// (docs/errors.md: MALFORMED_FRAME); repeated scalars still take packed and unpacked forms.
    func testAKnownFieldWithTheWrongWireTypeIsRefused() throws {
        for (field, wire) in [(3, WireType.varint), (1, .lengthDelimited), (1, .fixed64), (3, .fixed32)] {
            var w = ProtoWriter()
            Hello(protocolMajor: 1, protocolMinor: 0, role: "ctl").encode(to: &w)
            w.tag(field, wire)
            switch wire {
            case .varint: w.varint(5)
            case .fixed64: w.fixed64Raw(5)
            case .fixed32: w.fixed32Raw(5)
            case .lengthDelimited: w.varint(1); w.raw([65])
            }
            XCTAssertThrowsError(try Hello(serialized: w.bytes), "field \(field) as \(wire)") { error in
                guard case .wrongWireType(wire, _)? = error as? WireError else { return XCTFail("\(error)") }
            }
        }
    }
}

extension ProtoWriter {
    static func lengthPrefix(_ b: [UInt8]) -> [UInt8] {
        var w = ProtoWriter()
        w.varint(UInt64(b.count))
        return w.bytes + b
    }
}
