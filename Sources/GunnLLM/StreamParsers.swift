#if canImport(GunnCore)
import GunnCore
#endif

// Streaming response formats of LLM servers, parsed incrementally from whatever chunks the socket
// delivers: Server-Sent Events (OpenAI-compatible chat completions) and newline-delimited JSON
// (Ollama). Every malformed input is an LLM_SERVICE_ERROR naming what was wrong; nothing traps.

/// An incremental Server-Sent Events parser (the WHATWG event-stream rules): lines end in CRLF, LF
/// or CR (also when split across chunks); `:` lines are comments (keep-alives); `data` fields
/// accumulate with newlines between them; an empty line dispatches the event; a leading BOM is
/// skipped. An event still open when the stream ends is dropped, as the rules say.
public struct SSEParser: Sendable {
    public struct Event: Hashable, Sendable {
        public var type: String
        public var data: String
        public var id: String?
    }

    public let maxLineBytes: Int
    private var line: [UInt8] = []
    private var lastWasCR = false
    /// Bytes of a BOM matched at the start of the stream; -1 once past it.
    private var bomSeen = 0
    private var data: [UInt8] = []
    private var hasData = false
    private var type = ""
    private var id: String?

    public init(maxLineBytes: Int = 1 << 20) { self.maxLineBytes = maxLineBytes }

    /// Feeds the next bytes; returns the events they complete.
    public mutating func feed<C: Collection>(_ bytes: C) throws(GunnError) -> [Event] where C.Element == UInt8 {
        var out: [Event] = []
        for b in bytes {
            if bomSeen >= 0 {
                // A UTF-8 BOM at the very start is skipped; bytes held while it might be one are replayed.
                if b == Self.bom[bomSeen] {
                    bomSeen += 1
                    if bomSeen == Self.bom.count { bomSeen = -1 }
                    continue
                }
                let held = Self.bom.prefix(bomSeen)
                bomSeen = -1
                for h in held { try consume(h, &out) }
            }
            try consume(b, &out)
        }
        return out
    }

    private static let bom: [UInt8] = [0xEF, 0xBB, 0xBF]

    private mutating func consume(_ b: UInt8, _ out: inout [Event]) throws(GunnError) {
        if b == 0x0A && lastWasCR { lastWasCR = false; return }
        lastWasCR = b == 0x0D
        if b == 0x0A || b == 0x0D {
            if let e = try endLine() { out.append(e) }
            return
        }
        guard line.count < maxLineBytes else {
            throw GunnError(.llmServiceError, "malformed event stream: a line longer than \(maxLineBytes) bytes")
        }
        line.append(b)
    }

    private mutating func endLine() throws(GunnError) -> Event? {
        defer { line.removeAll(keepingCapacity: true) }
        if line.isEmpty {
            defer { data.removeAll(keepingCapacity: true); hasData = false; type = "" }
            guard hasData else { return nil }
            if data.last == 0x0A { data.removeLast() }
            return Event(type: type.isEmpty ? "message" : type, data: try Self.text(data), id: id)
        }
        if line[0] == UInt8(ascii: ":") { return nil }
        let colon = line.firstIndex(of: UInt8(ascii: ":"))
        let name = try Self.text(line[..<(colon ?? line.endIndex)])
        var value = colon.map { line[($0 + 1)...] } ?? []
        if value.first == UInt8(ascii: " ") { value = value.dropFirst() }
        switch name {
        case "data":
            data.append(contentsOf: value)
            data.append(0x0A)
            hasData = true
        case "event": type = try Self.text(value)
        case "id": if !value.contains(0) { id = try Self.text(value) }
        default: break // "retry" and unknown fields are ignored
        }
        return nil
    }

    static func text<C: Collection>(_ bytes: C) throws(GunnError) -> String where C.Element == UInt8 {
        guard let s = String(validating: bytes, as: UTF8.self) else {
            throw GunnError(.llmServiceError, "malformed event stream: invalid UTF-8")
        }
        return s
    }
}

/// Newline-delimited JSON split into lines as chunks arrive (empty lines skipped).
public struct NDJSONLines: Sendable {
    public let maxLineBytes: Int
    private var line: [UInt8] = []

    public init(maxLineBytes: Int = 1 << 20) { self.maxLineBytes = maxLineBytes }

    public mutating func feed<C: Collection>(_ bytes: C) throws(GunnError) -> [[UInt8]] where C.Element == UInt8 {
        var out: [[UInt8]] = []
        for b in bytes {
            if b == 0x0A {
                if line.last == 0x0D { line.removeLast() }
                if !line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { out.append(line) }
                line.removeAll(keepingCapacity: true)
                continue
            }
            guard line.count < maxLineBytes else {
                throw GunnError(.llmServiceError, "malformed NDJSON stream: a line longer than \(maxLineBytes) bytes")
            }
            line.append(b)
        }
        return out
    }

    /// What is left when the stream ends: a last line without its newline.
    public mutating func finish() -> [UInt8]? {
        defer { line.removeAll() }
        return line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) ? nil : line
    }
}

/// What a streaming backend yields: text as it comes, then the end.
public enum StreamChunk: Hashable, Sendable {
    case token(String)
    case done(reason: String?)
}

/// The two wire formats, from bytes to tokens; `finish()` is an error unless the stream said it
/// was done (a stream cut short is not a complete answer).
public struct TokenStreamDecoder: Sendable {
    public enum Format: String, Sendable { case openAISSE = "openai", ollamaNDJSON = "ollama" }
    public let format: Format
    private var sse = SSEParser()
    private var lines = NDJSONLines()
    public private(set) var isDone = false
    private var finishReason: String?

    public init(format: Format) { self.format = format }

    public mutating func feed<C: Collection>(_ bytes: C) throws(GunnError) -> [StreamChunk] where C.Element == UInt8 {
        var out: [StreamChunk] = []
        switch format {
        case .openAISSE:
            for e in try sse.feed(bytes) where !isDone { out += try openAI(e.data) }
        case .ollamaNDJSON:
            for l in try lines.feed(bytes) where !isDone { out += try ollama(l) }
        }
        return out
    }

    /// The stream ended (the connection closed or the body is complete).
    public mutating func finish() throws(GunnError) -> [StreamChunk] {
        var out: [StreamChunk] = []
        if format == .ollamaNDJSON, !isDone, let last = lines.finish() { out += try ollama(last) }
        guard isDone else {
            throw GunnError(.llmServiceError, format == .openAISSE ? "the event stream ended without data: [DONE]" : "the NDJSON stream ended without \"done\": true")
        }
        return out
    }

    private mutating func openAI(_ data: String) throws(GunnError) -> [StreamChunk] {
        if data == "[DONE]" {
            isDone = true
            return [.done(reason: finishReason)]
        }
        let json: JSONValue
        do { json = try JSONParser.parse(Array(data.utf8)) } catch {
            throw GunnError(.llmServiceError, "malformed event data (not JSON): \(data.prefix(120))")
        }
        if let err = json["error"] {
            let message = err["message"]?.stringValue ?? err.stringValue ?? CanonicalJSON.encodeString(err)
            throw GunnError(.llmServiceError, "the server reported an error mid-stream: \(message)")
        }
        guard case .array(let choices)? = json["choices"] else {
            throw GunnError(.llmServiceError, "malformed chunk: no \"choices\" array")
        }
        var out: [StreamChunk] = []
        if let first = choices.first {
            if case .string(let text)? = first["delta"]?["content"], !text.isEmpty { out.append(.token(text)) }
            else if case .string(let text)? = first["text"], !text.isEmpty { out.append(.token(text)) } // completions API
            if case .string(let reason)? = first["finish_reason"] { finishReason = reason }
        }
        return out
    }

    private mutating func ollama(_ line: [UInt8]) throws(GunnError) -> [StreamChunk] {
        let json: JSONValue
        do { json = try JSONParser.parse(line) } catch {
            throw GunnError(.llmServiceError, "malformed NDJSON line (not JSON): \(String(decoding: line.prefix(120), as: UTF8.self))")
        }
        if let err = json["error"] {
            throw GunnError(.llmServiceError, "the server reported an error: \(err.stringValue ?? CanonicalJSON.encodeString(err))")
        }
        guard case .object = json else { throw GunnError(.llmServiceError, "malformed NDJSON line: not an object") }
        var out: [StreamChunk] = []
        if case .string(let text)? = json["response"], !text.isEmpty { out.append(.token(text)) }
        if case .string(let text)? = json["message"]?["content"], !text.isEmpty { out.append(.token(text)) }
        if json["done"] == .bool(true) {
            isDone = true
            out.append(.done(reason: json["done_reason"]?.stringValue))
        }
        return out
    }
}
