// The fuzz build (ops/fuzz engine) compiles this file with GunnCore's JSON layer and GunnWire's
// reader and writer as one module.
#if canImport(GunnCore)
import GunnCore
#endif
#if canImport(GunnWire)
import GunnWire
#endif

/// The messages of proto/gunn/v1/engine.proto as one schema table, read by both codecs: the
/// protobuf binary form (`gunn.engine.v1+proto`) and the proto3 JSON mapping (`gunn.engine.v1+json`).
/// A decoded frame is a `JSONValue` object with the .proto's snake_case names (uint64 as numbers,
/// maps as objects), the form the bridge works on; fields at their default are absent.
public enum EngineSchema {
    public indirect enum FieldType: Equatable, Sendable {
        case uint64, uint32, double, string, bool
        case message(String)
        /// `map<string, string>`.
        case stringMap
    }

    public struct Field: Sendable {
        public let number: Int
        public let name: String
        public let type: FieldType
        public let repeated: Bool
        /// The lowerCamelCase name of the JSON mapping.
        public let jsonName: String
        init(_ number: Int, _ name: String, _ type: FieldType, repeated: Bool = false) {
            self.number = number; self.name = name; self.type = type; self.repeated = repeated
            var out = "", upper = false
            for c in name { if c == "_" { upper = true } else { out.append(upper ? Character(c.uppercased()) : c); upper = false } }
            jsonName = out
        }
    }

    public static let frameBodies: [String] = ["hello", "welcome", "error", "heartbeat", "tick", "tick_ack", "bodies", "body_remove",
                                               "command", "command_result", "contact", "sync", "sync_done"]

    public static let messages: [String: [Field]] = [
        "EngineFrame": [Field(1, "id", .uint64), Field(10, "hello", .message("EngineHello")), Field(11, "welcome", .message("EngineWelcome")),
                        Field(12, "error", .message("EngineError")), Field(13, "heartbeat", .message("Heartbeat")),
                        Field(20, "tick", .message("Tick")), Field(21, "tick_ack", .message("TickAck")), Field(22, "bodies", .message("BodyBatch")),
                        Field(23, "body_remove", .message("BodyRemove")), Field(24, "command", .message("Command")),
                        Field(25, "command_result", .message("CommandResult")), Field(26, "contact", .message("Contact")),
                        Field(27, "sync", .message("WorldSync")), Field(28, "sync_done", .message("SyncDone"))],
        "EngineHello": [Field(1, "engine_name", .string), Field(2, "engine_version", .string), Field(3, "protocol_major", .uint32),
                        Field(4, "protocol_minor", .uint32), Field(5, "capabilities", .string, repeated: true), Field(6, "token", .string),
                        Field(7, "last_command_seq", .uint64), Field(8, "results", .message("CommandResult"), repeated: true)],
        "EngineWelcome": [Field(1, "protocol_major", .uint32), Field(2, "protocol_minor", .uint32), Field(3, "capabilities", .string, repeated: true),
                          Field(4, "world_id", .string), Field(5, "session_id", .string), Field(6, "time_mode", .string),
                          Field(7, "heartbeat_ms", .uint32), Field(8, "global_seq", .uint64), Field(9, "adapter_version", .string),
                          Field(10, "sync_deadline_ms", .uint32)],
        "EngineError": [Field(1, "code", .uint32), Field(2, "name", .string), Field(3, "message", .string), Field(4, "retry_after_ms", .uint64),
                        Field(5, "ref", .uint64)],
        "Heartbeat": [Field(1, "nonce", .uint64), Field(2, "reply", .bool)],
        "Body": [Field(1, "id", .string), Field(2, "pos", .double, repeated: true), Field(3, "fields", .stringMap),
                 Field(4, "commands", .string, repeated: true)],
        "Contact": [Field(1, "a", .string), Field(2, "b", .string), Field(3, "at", .double, repeated: true), Field(4, "impulse", .double)],
        "Tick": [Field(1, "tick", .uint64), Field(2, "sim_time", .double), Field(3, "bodies", .message("Body"), repeated: true),
                 Field(4, "contacts", .message("Contact"), repeated: true)],
        "TickAck": [Field(1, "tick", .uint64), Field(2, "global_seq", .uint64)],
        "BodyBatch": [Field(1, "bodies", .message("Body"), repeated: true)],
        "BodyRemove": [Field(1, "ids", .string, repeated: true)],
        "Command": [Field(1, "command_seq", .uint64), Field(2, "body_id", .string), Field(3, "kind", .string), Field(4, "to", .double, repeated: true),
                    Field(5, "data_json", .string), Field(6, "global_seq", .uint64)],
        "CommandResult": [Field(1, "command_seq", .uint64), Field(2, "status", .string), Field(3, "reason", .string),
                          Field(4, "pos", .double, repeated: true)],
        "WorldSync": [Field(1, "commands", .message("Command"), repeated: true), Field(2, "global_seq", .uint64),
                      Field(3, "bodies", .string, repeated: true)],
        "SyncDone": [Field(1, "bodies", .uint32)],
    ]

    static let byNumber: [String: [Int: Field]] = messages.mapValues { Dictionary(uniqueKeysWithValues: $0.map { ($0.number, $0) }) }
    static let byName: [String: [String: Field]] = messages.mapValues { fields in
        var d: [String: Field] = [:]
        for f in fields { d[f.name] = f; d[f.jsonName] = f }
        return d
    }
}

/// Encodes and decodes EngineFrames in either form. Every refusal is a GunnError naming what was
/// wrong: MALFORMED_FRAME for bad protobuf bytes, INVALID_JSON for bad JSON text, INVALID_FIELD for
/// a field that is unknown (JSON), of the wrong type or out of range, UNKNOWN_MESSAGE for a frame
/// without exactly one body, PAYLOAD_TOO_LARGE past the size bound.
public enum EngineCodec {
    /// A frame's bytes at most (binary or JSON).
    public static let maxFrameBytes = 1 << 20
    /// Elements of one repeated field at most.
    public static let maxRepeated = 65_536
    static let maxDepth = 8

    // MARK: Binary

    public static func decodeBinary(_ bytes: [UInt8]) throws(GunnError) -> JSONValue {
        guard bytes.count <= maxFrameBytes else { throw GunnError(.payloadTooLarge, "an engine frame of \(bytes.count) bytes exceeds \(maxFrameBytes)") }
        var r = ProtoReader(bytes)
        let frame: JSONValue
        do { frame = try decodeMessage("EngineFrame", &r, depth: 0) } catch let e as GunnError { throw e } catch {
            throw GunnError(.malformedFrame, "engine frame: \(error)")
        }
        try checkBody(frame)
        return frame
    }

    static func decodeMessage(_ type: String, _ r: inout ProtoReader, depth: Int) throws -> JSONValue {
        guard depth < maxDepth else { throw GunnError(.malformedFrame, "engine frame nested too deep") }
        let fields = EngineSchema.byNumber[type]!
        var out = JSONObject()
        // Repeated fields and maps are gathered here and stored once (appending to the copy in
        // `out` would copy the whole array for every element).
        var lists: [String: [JSONValue]] = [:]
        var maps: [String: JSONObject] = [:]
        while let (number, wire) = try r.nextField() {
            guard let f = fields[number] else { try r.skip(wire); continue }
            func put(_ v: JSONValue) throws {
                if f.repeated {
                    guard lists[f.name, default: []].count < EngineCodec.maxRepeated else {
                        throw GunnError(.invalidField, "\(type).\(f.name) has more than \(EngineCodec.maxRepeated) elements")
                    }
                    lists[f.name, default: []].append(v)
                } else if !EngineCodec.isDefault(v, f) {
                    // proto3: a singular scalar at its default is the same as an absent one.
                    out[f.name] = v
                }
            }
            switch f.type {
            case .uint64:
                guard let v = try r.uint64(wire) else { throw GunnError(.malformedFrame, "\(type).\(f.name): wrong wire type") }
                guard v <= 1 << 53 else { throw GunnError(.invalidField, "\(type).\(f.name) = \(v) is beyond 2^53") }
                try put(.number(Double(v)))
            case .uint32:
                guard let v = try r.uint32(wire) else { throw GunnError(.malformedFrame, "\(type).\(f.name): wrong wire type") }
                try put(.number(Double(v)))
            case .bool:
                guard let v = try r.bool(wire) else { throw GunnError(.malformedFrame, "\(type).\(f.name): wrong wire type") }
                try put(.bool(v))
            case .double:
                if f.repeated {
                    var ds: [Double] = []
                    guard try r.repeatedDouble(wire, field: number, into: &ds) else { throw GunnError(.malformedFrame, "\(type).\(f.name): wrong wire type") }
                    for d in ds { try put(try finite(d, type, f)) }
                } else {
                    guard let v = try r.double(wire) else { throw GunnError(.malformedFrame, "\(type).\(f.name): wrong wire type") }
                    try put(try finite(v, type, f))
                }
            case .string:
                guard let v = try r.string(wire, field: number) else { throw GunnError(.malformedFrame, "\(type).\(f.name): wrong wire type") }
                try put(.string(v))
            case .message(let inner):
                guard wire == .lengthDelimited else { throw GunnError(.malformedFrame, "\(type).\(f.name): wrong wire type") }
                let range = try r.readLengthDelimited()
                var sub = ProtoReader(r.bytes(in: range))
                try put(try decodeMessage(inner, &sub, depth: depth + 1))
            case .stringMap:
                guard wire == .lengthDelimited else { throw GunnError(.malformedFrame, "\(type).\(f.name): wrong wire type") }
                let range = try r.readLengthDelimited()
                var sub = ProtoReader(r.bytes(in: range))
                var key = "", value = ""
                while let (n, w) = try sub.nextField() {
                    if n == 1, let k = try sub.string(w, field: n) { key = k } else if n == 2, let v = try sub.string(w, field: n) { value = v } else { try sub.skip(w) }
                }
                guard maps[f.name, default: JSONObject()].count < maxRepeated else { throw GunnError(.invalidField, "\(type).\(f.name) has too many entries") }
                maps[f.name, default: JSONObject()][key] = .string(value)
            }
        }
        for (name, list) in lists { out[name] = .array(list) }
        for (name, map) in maps { out[name] = .object(map) }
        return .object(out)
    }

    /// A singular scalar's default (0, "", false); messages are never default (presence counts).
    static func isDefault(_ v: JSONValue, _ f: EngineSchema.Field) -> Bool {
        switch f.type {
        case .uint64, .uint32, .double: return v.numberValue == 0
        case .string: return v.stringValue == ""
        case .bool: return v == .bool(false)
        case .message, .stringMap: return false
        }
    }

    static func finite(_ d: Double, _ type: String, _ f: EngineSchema.Field) throws(GunnError) -> JSONValue {
        guard d.isFinite else { throw GunnError(.invalidField, "\(type).\(f.name) must be finite") }
        return .number(d)
    }

    public static func encodeBinary(_ frame: JSONValue) -> [UInt8] {
        var w = ProtoWriter(capacity: 128)
        encodeMessage("EngineFrame", frame, &w)
        return w.bytes
    }

    static func encodeMessage(_ type: String, _ value: JSONValue, _ w: inout ProtoWriter) {
        guard case .object(let o) = value else { return }
        for f in EngineSchema.messages[type]! {
            guard let v = o[f.name] else { continue }
            let items: [JSONValue]
            if f.repeated, case .array(let a) = v { items = a } else { items = [v] }
            switch f.type {
            case .uint64: for i in items { w.uint64(f.number, UInt64(max(0, i.numberValue ?? 0))) }
            case .uint32: for i in items { w.uint32(f.number, UInt32(max(0, min(Double(UInt32.max), i.numberValue ?? 0)))) }
            case .bool: for i in items { w.bool(f.number, i == .bool(true)) }
            case .double:
                if f.repeated {
                    // Packed, as proto3 writes repeated scalars.
                    var inner = ProtoWriter()
                    for i in items { inner.fixed64Raw((i.numberValue ?? 0).bitPattern) }
                    if !items.isEmpty { w.tag(f.number, .lengthDelimited); w.varint(UInt64(inner.bytes.count)); w.raw(inner.bytes) }
                } else {
                    for i in items { w.double(f.number, i.numberValue ?? 0) }
                }
            case .string:
                for i in items {
                    // Repeated strings keep their empty members; a singular empty string is the default.
                    if f.repeated { w.tag(f.number, .lengthDelimited); let s = i.stringValue ?? ""; w.varint(UInt64(s.utf8.count)); w.raw(Array(s.utf8)) }
                    else { w.string(f.number, i.stringValue ?? "") }
                }
            case .message(let inner):
                for i in items {
                    var sub = ProtoWriter()
                    encodeMessage(inner, i, &sub)
                    w.tag(f.number, .lengthDelimited); w.varint(UInt64(sub.bytes.count)); w.raw(sub.bytes)
                }
            case .stringMap:
                guard case .object(let m) = v else { continue }
                for k in m.sortedKeys {
                    var sub = ProtoWriter()
                    sub.string(1, k); sub.string(2, m[k]?.stringValue ?? "")
                    w.tag(f.number, .lengthDelimited); w.varint(UInt64(sub.bytes.count)); w.raw(sub.bytes)
                }
            }
        }
    }

    // MARK: JSON (the proto3 JSON mapping)

    public static func decodeJSON(_ bytes: [UInt8]) throws(GunnError) -> JSONValue {
        guard bytes.count <= maxFrameBytes else { throw GunnError(.payloadTooLarge, "an engine frame of \(bytes.count) bytes exceeds \(maxFrameBytes)") }
        let parsed: JSONValue
        do { parsed = try JSONParser.parse(bytes) } catch { throw GunnError(.invalidJSON, "engine frame: \(error)") }
        let frame = try fromJSON("EngineFrame", parsed, path: "", depth: 0)
        try checkBody(frame)
        return frame
    }

    static func fromJSON(_ type: String, _ value: JSONValue, path: String, depth: Int) throws(GunnError) -> JSONValue {
        guard depth < maxDepth else { throw GunnError(.invalidField, "engine frame nested too deep at \(path.isEmpty ? type : path)") }
        guard case .object(let o) = value else { throw GunnError(.invalidField, "\(path.isEmpty ? type : path) must be a JSON object (\(type))") }
        let fields = EngineSchema.byName[type]!
        var out = JSONObject()
        for (key, v) in o {
            let at = path.isEmpty ? key : path + "." + key
            guard let f = fields[key] else { throw GunnError(.invalidField, "unknown field \(at) in \(type)") }
            guard out[f.name] == nil else { throw GunnError(.invalidField, "\(at) is given twice (as \(f.name) and \(f.jsonName))") }
            if v == .null { continue }  // null is the default value
            if f.type == .stringMap {
                guard case .object(let m) = v, m.count <= maxRepeated, m.allSatisfy({ $0.value.stringValue != nil }) else {
                    throw GunnError(.invalidField, "\(at) must be an object of strings")
                }
                // proto3: an empty map is the same as an absent one.
                if !m.isEmpty { out[f.name] = v }
            } else if f.repeated {
                guard case .array(let a) = v, a.count <= maxRepeated else { throw GunnError(.invalidField, "\(at) must be an array of at most \(maxRepeated)") }
                var items: [JSONValue] = []
                for (i, item) in a.enumerated() { items.append(try scalar(f, item, at: "\(at)[\(i)]", depth: depth)) }
                if !items.isEmpty { out[f.name] = .array(items) }
            } else {
                let value = try scalar(f, v, at: at, depth: depth)
                if !isDefault(value, f) { out[f.name] = value }
            }
        }
        return .object(out)
    }

    static func scalar(_ f: EngineSchema.Field, _ v: JSONValue, at: String, depth: Int) throws(GunnError) -> JSONValue {
        switch f.type {
        case .uint64, .uint32:
            let limit: Double = f.type == .uint32 ? Double(UInt32.max) : 9_007_199_254_740_992
            var d: Double?
            if case .number(let n) = v { d = n } else if case .string(let s) = v, !s.isEmpty, s.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), s.utf8.count <= 16 { d = Double(s) }
            guard let d, d >= 0, d == d.rounded(), d <= limit else { throw GunnError(.invalidField, "\(at) must be an integer in 0…\(Int(limit))") }
            return .number(d)
        case .double:
            guard case .number(let d) = v, d.isFinite else { throw GunnError(.invalidField, "\(at) must be a finite number") }
            return .number(d)
        case .bool:
            guard case .bool = v else { throw GunnError(.invalidField, "\(at) must be true or false") }
            return v
        case .string:
            guard case .string = v else { throw GunnError(.invalidField, "\(at) must be a string") }
            return v
        case .message(let inner):
            return try fromJSON(inner, v, path: at, depth: depth + 1)
        case .stringMap:
            return v
        }
    }

    /// The proto3 JSON mapping of a frame: lowerCamelCase names, uint64 as strings, defaults left out.
    public static func encodeJSON(_ frame: JSONValue) -> String {
        CanonicalJSON.encodeString(toJSON("EngineFrame", frame))
    }

    static func toJSON(_ type: String, _ value: JSONValue) -> JSONValue {
        guard case .object(let o) = value else { return .object(JSONObject()) }
        var out = JSONObject()
        for f in EngineSchema.messages[type]! {
            guard let v = o[f.name] else { continue }
            func one(_ x: JSONValue) -> JSONValue? {
                switch f.type {
                case .uint64: let n = x.numberValue ?? 0; return n == 0 && !f.repeated ? nil : .string(String(UInt64(max(0, n))))
                case .uint32: let n = x.numberValue ?? 0; return n == 0 && !f.repeated ? nil : .number(n)
                case .double: return x.numberValue == 0 && !f.repeated ? nil : x
                case .bool: return x == .bool(true) || f.repeated ? x : nil
                case .string: return x.stringValue == "" && !f.repeated ? nil : x
                case .message(let inner): return toJSON(inner, x)
                case .stringMap: if case .object(let m) = x, m.isEmpty { return nil }; return x
                }
            }
            if f.repeated, case .array(let a) = v {
                if !a.isEmpty { out[f.jsonName] = .array(a.compactMap(one)) }
            } else if let x = one(v) {
                out[f.jsonName] = x
            }
        }
        return .object(out)
    }

    /// Exactly one body.
    static func checkBody(_ frame: JSONValue) throws(GunnError) {
        let present = EngineSchema.frameBodies.filter { frame[$0] != nil }
        guard present.count == 1 else {
            throw GunnError(.unknownMessage, present.isEmpty ? "an engine frame without a body (one of \(EngineSchema.frameBodies.joined(separator: ", ")))"
                                                             : "an engine frame with \(present.count) bodies (\(present.joined(separator: ", "))); one is allowed")
        }
    }

    /// The body's name and value.
    public static func body(_ frame: JSONValue) -> (String, JSONValue) {
        for name in EngineSchema.frameBodies { if let v = frame[name] { return (name, v) } }
        return ("", .null)
    }
}
