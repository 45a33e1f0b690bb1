import Foundation
import XCTest
import GunnCore
@testable import GunnUnity

/// The engine bridge's two codecs: one schema table against proto/gunn/v1/engine.proto, each frame
/// through both codecs and back, both against Python protobuf (protoc's generated code and
/// json_format), and every kind of bad input refused with its code.
final class EngineCodecTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// One frame of every body, with every field set.
    static let frames: [JSONValue] = [
        ["id": 1, "hello": ["engine_name": "godot", "engine_version": "3.2.3", "protocol_major": 1, "protocol_minor": 2,
                            "capabilities": ["free", "resume"], "token": "gunn1.a.b", "last_command_seq": 12,
                            "results": [["command_seq": 12, "status": "done", "reason": "there", "pos": [1.5, -2]]]]],
        ["welcome": ["protocol_major": 1, "capabilities": ["free"], "world_id": "w1", "session_id": "godot-1",
                     "time_mode": "lockstep", "heartbeat_ms": 1000, "global_seq": 9_007_199_254_740_992, "adapter_version": "x", "sync_deadline_ms": 5000]],
        ["error": ["code": 1003, "name": "VERSION_MISMATCH", "message": "two and one", "retry_after_ms": 250, "ref": 7]],
        ["heartbeat": ["nonce": 3, "reply": true]],
        ["id": 5, "tick": ["tick": 42, "sim_time": 0.7000000000000001,
                           "bodies": [["id": "A", "pos": [1, 2, 3], "fields": ["shape": "circle", "é": "ü"], "commands": ["jump", ""]], ["id": "B"]],
                           "contacts": [["a": "A", "b": "B", "at": [0.5, 0.25], "impulse": 1e-9]]]],
        ["tick_ack": ["tick": 42, "global_seq": 100]],
        ["bodies": ["bodies": [["id": "C", "pos": [-1e300, 1e-300]]]]],
        ["body_remove": ["ids": ["A", "B"]]],
        ["command": ["command_seq": 99, "body_id": "A", "kind": "move", "to": [3, 0, 0], "data_json": "{\"h\":2}", "global_seq": 101]],
        ["command_result": ["command_seq": 99, "status": "blocked", "reason": "wall", "pos": [2.9, 0]]],
        ["contact": ["a": "A", "b": "wall", "impulse": 3]],
        ["sync": ["commands": [["command_seq": 5, "body_id": "A", "kind": "move", "to": [1, 1]]], "global_seq": 9, "bodies": ["A", "B"]]],
        ["sync_done": ["bodies": 2]],
        ["heartbeat": [:]],
    ]

    func testEveryFrameSurvivesBothCodecs() throws {
        for f in Self.frames {
            XCTAssertEqual(try EngineCodec.decodeBinary(EngineCodec.encodeBinary(f)), f, CanonicalJSON.encodeString(f))
            XCTAssertEqual(try EngineCodec.decodeJSON(Array(EngineCodec.encodeJSON(f).utf8)), f, EngineCodec.encodeJSON(f))
        }
        // The JSON mapping's spelling: lowerCamelCase, uint64 as strings, defaults left out.
        XCTAssertEqual(EngineCodec.encodeJSON(["tick_ack": ["tick": 42, "global_seq": 0]]), #"{"tickAck":{"tick":"42"}}"#)
        // An empty map is a default too (the fuzzer's find: it did not survive the binary form).
        XCTAssertEqual(try EngineCodec.decodeJSON(Array(#"{"bodies":{"bodies":[{"id":"A","fields":{}}]}}"#.utf8)), ["bodies": ["bodies": [["id": "A"]]]])
        // Original names, numbers for uint64 and nulls are read too.
        XCTAssertEqual(try EngineCodec.decodeJSON(Array(#"{"tick_ack":{"tick":42,"globalSeq":"7"},"id":null}"#.utf8)),
                       ["tick_ack": ["tick": 42, "global_seq": 7]])
    }

    /// The schema table says what engine.proto says: every message, field name, number and type.
    func testTheSchemaTableIsTheProtoFile() throws {
        let proto = try String(contentsOf: Self.root.appendingPathComponent("proto/gunn/v1/engine.proto"), encoding: .utf8)
        var parsed: [String: [String]] = [:]
        var current: String?
        for raw in proto.split(separator: "\n") {
            let line = raw.split(separator: "/", maxSplits: 1).first.map(String.init)?.trimmingCharacters(in: .whitespaces) ?? ""
            if line.hasPrefix("message ") {
                current = String(line.dropFirst(8).split(separator: " ").first ?? "")
                parsed[current!] = []
                if line.hasSuffix("}") {
                    // One-line message: `message X { repeated string ids = 1; }`
                    let inner = line.split(separator: "{")[1].split(separator: "}")[0].trimmingCharacters(in: .whitespaces)
                    parsed[current!]!.append(Self.fieldSignature(inner))
                    current = nil
                }
                continue
            }
            if line == "}" || line.hasPrefix("oneof") { if line == "}" && current != nil && !line.isEmpty { } ; continue }
            if let m = current, line.contains("="), line.hasSuffix(";") { parsed[m]!.append(Self.fieldSignature(line)) }
        }
        var table: [String: [String]] = [:]
        for (name, fields) in EngineSchema.messages {
            table[name] = fields.map { f in
                let type: String
                switch f.type {
                case .uint64: type = "uint64"
                case .uint32: type = "uint32"
                case .double: type = "double"
                case .string: type = "string"
                case .bool: type = "bool"
                case .message(let m): type = m
                case .stringMap: type = "map<string,string>"
                }
                return "\(f.repeated ? "repeated " : "")\(type) \(f.name) = \(f.number)"
            }
        }
        XCTAssertEqual(Set(parsed.keys), Set(table.keys))
        for (name, fields) in table { XCTAssertEqual(Set(parsed[name] ?? []), Set(fields), name) }
    }

    static func fieldSignature(_ line: String) -> String {
        let t = line.replacingOccurrences(of: "map<string, string>", with: "map<string,string>").replacingOccurrences(of: ";", with: "")
        return t.split(separator: " ").joined(separator: " ")
    }

    /// Python protobuf reads what both codecs write and writes what both read.
    func testPythonProtobufReadsAndWritesTheSameFrames() throws {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-engine-interop-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let gen = try run("/usr/bin/protoc", ["--python_out=\(work.path)", "-I", "proto", "proto/gunn/v1/engine.proto"], env: [:])
        XCTAssertEqual(gen.status, 0, gen.output)
        var framed: [UInt8] = []
        for f in Self.frames {
            let b = EngineCodec.encodeBinary(f)
            framed += withUnsafeBytes(of: UInt32(b.count).bigEndian, Array.init) + b
        }
        let bin = work.appendingPathComponent("frames.bin")
        try Data(framed).write(to: bin)
        let script = Self.root.appendingPathComponent("Tests/Interop/engine_interop.py").path
        let toJSON = try run("/usr/bin/python3", [script, "bin2json", bin.path], env: ["PYTHONPATH": work.path])
        XCTAssertEqual(toJSON.status, 0, toJSON.output)
        let lines = toJSON.output.split(separator: "\n")
        XCTAssertEqual(lines.count, Self.frames.count, toJSON.output)
        for (line, f) in zip(lines, Self.frames) {
            XCTAssertEqual(try EngineCodec.decodeJSON(Array(line.utf8)), f, "protobuf's JSON of our binary: \(line)")
        }
        let jsonFile = work.appendingPathComponent("frames.jsonl")
        try Self.frames.map(EngineCodec.encodeJSON).joined(separator: "\n").write(to: jsonFile, atomically: true, encoding: .utf8)
        let toBin = try run("/usr/bin/python3", [script, "json2bin", jsonFile.path], env: ["PYTHONPATH": work.path], binary: true)
        XCTAssertEqual(toBin.status, 0, toBin.output)
        var i = 0, k = 0
        let bytes = toBin.bytes
        while i + 4 <= bytes.count {
            let n = Int(bytes[i]) << 24 | Int(bytes[i + 1]) << 16 | Int(bytes[i + 2]) << 8 | Int(bytes[i + 3])
            let frame = Array(bytes[(i + 4)..<(i + 4 + n)])
            XCTAssertEqual(try EngineCodec.decodeBinary(frame), Self.frames[k], "protobuf's binary of our JSON, frame \(k)")
            i += 4 + n
            k += 1
        }
        XCTAssertEqual(k, Self.frames.count)
    }

    func testBadFramesAreRefusedWithTheirCodes() {
        func code(_ body: () throws -> JSONValue) -> ErrorCode? {
            do { _ = try body(); return nil } catch let e as GunnError { return e.code } catch { return .internalError }
        }
        func json(_ s: String) -> ErrorCode? { code { try EngineCodec.decodeJSON(Array(s.utf8)) } }
        func bin(_ b: [UInt8]) -> ErrorCode? { code { try EngineCodec.decodeBinary(b) } }
        XCTAssertEqual(json("{\"tick\":"), .invalidJSON)
        XCTAssertEqual(json("[1,2]"), .invalidField)
        XCTAssertEqual(json(#"{"tick":{"tick":1,"colour":"red"}}"#), .invalidField, "unknown field")
        XCTAssertEqual(json(#"{"tick":{"tick":-1}}"#), .invalidField, "negative uint64")
        XCTAssertEqual(json(#"{"tick":{"tick":1.5}}"#), .invalidField, "fractional uint64")
        XCTAssertEqual(json(#"{"tick":{"tick":"12x"}}"#), .invalidField)
        XCTAssertEqual(json(#"{"tick":{"simTime":"fast"}}"#), .invalidField)
        XCTAssertEqual(json(#"{"tick":{"bodies":{"id":"A"}}}"#), .invalidField, "a message where an array belongs")
        XCTAssertEqual(json(#"{"tick":{"bodies":[{"fields":{"a":1}}]}}"#), .invalidField, "a map of strings only")
        XCTAssertEqual(json(#"{"tick":{"tick":1,"tick":2}}"#), .invalidJSON, "duplicate keys")
        XCTAssertEqual(json(#"{"tick":{"tick":1},"heartbeat":{}}"#), .unknownMessage, "two bodies")
        XCTAssertEqual(json(#"{"id":"3"}"#), .unknownMessage, "no body")
        XCTAssertEqual(json(#"{"tickAck":{"tick":1},"tick_ack":{"tick":2}}"#), .invalidField, "one field given twice")
        XCTAssertEqual(json("{\"x\":\"" + String(repeating: "a", count: EngineCodec.maxFrameBytes) + "\"}"), .payloadTooLarge)
        XCTAssertEqual(bin([0xFF, 0xFF, 0xFF]), .malformedFrame, "a truncated varint")
        XCTAssertEqual(bin([0xA2, 0x01, 0x05, 0x08]), .malformedFrame, "a length past the end")
        XCTAssertEqual(bin([0x08, 0x01]), .unknownMessage, "an id and no body")
        XCTAssertEqual(bin([0xA2, 0x01, 0x02, 0x08, 0x01] + [0xAA, 0x01, 0x00]), .unknownMessage, "two bodies")
        // tick.tick = 2^60 (beyond 2^53, where JSON numbers stop being exact)
        XCTAssertEqual(bin([0xA2, 0x01, 0x0A, 0x08] + [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]), .invalidField)
        // tick.sim_time = NaN
        XCTAssertEqual(bin([0xA2, 0x01, 0x09, 0x11] + withUnsafeBytes(of: Double.nan.bitPattern.littleEndian, Array.init)), .invalidField)
        XCTAssertEqual(bin([0xA2, 0x01, 0x02, 0x10, 0x01]), .malformedFrame, "a varint where a double belongs")
        // 65,536 empty bodies in one frame decode (gathered once, not copied per element); one more is refused.
        let empty: [UInt8] = [0x1A, 0x00]  // Tick.bodies, an empty Body
        let many = Array([[UInt8]](repeating: empty, count: EngineCodec.maxRepeated).joined())
        func tick(_ inner: [UInt8]) -> [UInt8] {
            var len: [UInt8] = [], n = inner.count
            repeat { len.append(UInt8(n & 0x7F) | (n > 0x7F ? 0x80 : 0)); n >>= 7 } while n > 0
            return [0xA2, 0x01] + len + inner
        }
        XCTAssertEqual(try EngineCodec.decodeBinary(tick(many))["tick"]?["bodies"]?.arrayValue?.count, EngineCodec.maxRepeated)
        XCTAssertEqual(bin(tick(many + empty)), .invalidField)
        // Unknown fields in binary are skipped (protobuf's rule; a newer minor may add them).
        XCTAssertNil(bin([0xA2, 0x01, 0x05, 0x08, 0x01, 0xF8, 0x05] + [0x01]))
    }

    struct Ran { var status: Int32; var output: String; var bytes: [UInt8] }

    func run(_ path: String, _ args: [String], env: [String: String], binary: Bool = false) throws -> Ran {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        p.currentDirectoryURL = Self.root
        var e = ProcessInfo.processInfo.environment
        for (k, v) in env { e[k] = v }
        p.environment = e
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = binary ? err : out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errData = binary ? err.fileHandleForReading.readDataToEndOfFile() : Data()
        p.waitUntilExit()
        return Ran(status: p.terminationStatus, output: String(decoding: binary ? errData : data, as: UTF8.self), bytes: [UInt8](data))
    }
}
