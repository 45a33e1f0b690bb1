// libFuzzer harness for HTTPRequestParser (GunnHTTP's incremental HTTP/1.1 request parser),
// compiled with it and GunnCore's error table as one module by `ops/fuzz http-server`. Any input
// may be refused with a coded status; what must never happen is a crash, a hang, a body past the
// limit, or an outcome that depends on how the input was cut into reads.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTPServer(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    let chunk = max(1, Int(bytes.first ?? 1) % 13)
    let whole = parseAll(bytes, chunk: bytes.count + 1)
    let cut = parseAll(bytes, chunk: chunk)
    precondition(whole == cut, "chunking changed the result: \(whole) vs \(cut)")
    return 0
}

var fuzzLimits: HTTPLimits = {
    var l = HTTPLimits()
    l.maxRequestLineBytes = 256
    l.maxHeaderBytes = 512
    l.maxHeaderCount = 8
    l.maxBodyBytes = 1024
    l.maxChunkLineBytes = 64
    return l
}()

func parseAll(_ bytes: [UInt8], chunk: Int) -> [String] {
    var p = HTTPRequestParser(limits: fuzzLimits)
    var out: [String] = []
    var body: [UInt8] = []
    var head: HTTPRequestHead?
    var i = 0
    while i < bytes.count {
        var piece = Array(bytes[i..<min(bytes.count, i + chunk)])
        i += chunk
        while !piece.isEmpty {
            do {
                let n = try piece.withUnsafeBytes { (b) throws(HTTPParseError) -> Int in
                    try p.parse(b) { e in
                        switch e {
                        case .head(let h): head = h; body = []
                        case .body(let b):
                            body += b
                            precondition(body.count <= fuzzLimits.maxBodyBytes, "a body past the limit")
                        case .end(let t):
                            let h = head!
                            if case .length(let n) = h.framing { precondition(body.count == n, "a body of the wrong length") }
                            out.append("\(h.method) \(h.target) \(h.path) \(h.minorVersion) \(h.headers.count) \(h.keepAlive) \(body) \(t.count)")
                        }
                    }
                }
                precondition(n > 0 || piece.isEmpty, "no progress")
                piece.removeFirst(n)
            } catch {
                let e = error as! HTTPParseError
                precondition([400, 413, 414, 417, 431, 501, 505].contains(e.status), "unexpected status \(e.status)")
                out.append("error \(e.status) \(e.code.code)")
                return out
            }
        }
    }
    return out
}
