// libFuzzer harness for HTTPResponseReader (the LLM backends' HTTP/1.1 response framing),
// compiled with it and GunnCore's error table as one module by `ops/fuzz http`. Any input may be
// refused with LLM_SERVICE_ERROR; what must never happen is a crash, a hang, or an outcome that
// depends on how the response was cut into reads.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTP(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    let chunk = max(1, Int(bytes.first ?? 1) % 11)
    let whole = read(bytes, chunk: bytes.count + 1)
    let cut = read(bytes, chunk: chunk)
    precondition(whole == cut, "chunking changed the result: \(whole) vs \(cut)")
    return 0
}

/// The body, or "error" (a body delivered before a failure depends on where the reads were cut).
func read(_ bytes: [UInt8], chunk: Int) -> String {
    var reader = HTTPResponseReader(stallSeconds: 1, source: HTTPResponseReader.source(bytes, chunk: chunk))
    var body: [UInt8] = []
    do {
        try reader.readResponse(from: "fuzz") { body += $0 }
    } catch let e as GunnError {
        precondition(e.code == .llmServiceError, "unexpected code \(e.code.name)")
        return "error"
    } catch {
        preconditionFailure("not a GunnError: \(error)")
    }
    return "\(body)"
}
