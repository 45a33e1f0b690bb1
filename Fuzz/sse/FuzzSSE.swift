// libFuzzer harness for the LLM stream parsers (SSE events, NDJSON lines, token decoding),
// compiled with GunnLLM's parsers and GunnCore's JSON layer as one module by `ops/fuzz sse`.
// Any input may be refused with LLM_SERVICE_ERROR; what must never happen is a crash, a hang, or
// a result that depends on how the stream was cut into reads.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSSE(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    let chunk = max(1, Int(bytes.first ?? 1) % 13)
    for format in [TokenStreamDecoder.Format.openAISSE, .ollamaNDJSON] {
        let whole = run(format, bytes, chunk: bytes.count + 1)
        let cut = run(format, bytes, chunk: chunk)
        precondition(whole == cut, "\(format): chunking changed the result: \(whole) vs \(cut)")
    }
    var sseWhole = SSEParser(maxLineBytes: 512)
    var sseCut = SSEParser(maxLineBytes: 512)
    let a = try? sseWhole.feed(bytes)
    var b: [SSEParser.Event]? = []
    var i = 0
    while i < bytes.count, b != nil {
        let j = min(bytes.count, i + chunk)
        if let more = try? sseCut.feed(bytes[i..<j]) { b! += more } else { b = nil }
        i = j
    }
    precondition(a == b, "SSE events depend on chunking")
    return 0
}

/// Tokens and the end, or "error" (tokens returned before a failure depend on where the reads were
/// cut: a read that completes a token and then hits the error throws them away with it).
func run(_ format: TokenStreamDecoder.Format, _ bytes: [UInt8], chunk: Int) -> String {
    var d = TokenStreamDecoder(format: format)
    var out: [StreamChunk] = []
    var i = 0
    do {
        while i < bytes.count {
            let j = min(bytes.count, i + chunk)
            out += try d.feed(bytes[i..<j])
            i = j
        }
        out += try d.finish()
    } catch {
        precondition(error.code == .llmServiceError, "unexpected code \(error.code.name)")
        return "error"
    }
    return "\(out)"
}
