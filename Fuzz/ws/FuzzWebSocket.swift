// libFuzzer harness for WebSocketSession (GunnHTTP's RFC 6455 frame reader, unmasking and UTF-8
// validation), compiled with it and GunnCore's error table as one module by `ops/fuzz ws`. Any
// input may fail the session with a close code; what must never happen is a crash, a hang, a text
// message that is not UTF-8, a message past the limit, or an outcome that depends on the cuts.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWebSocket(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    let chunk = max(1, Int(bytes.first ?? 1) % 7)
    let whole = run(bytes, chunk: bytes.count + 1)
    let cut = run(bytes, chunk: chunk)
    precondition(whole == cut, "chunking changed the result: \(whole) vs \(cut)")
    return 0
}

func run(_ bytes: [UInt8], chunk: Int) -> [String] {
    var options = WebSocketOptions()
    options.maxMessageBytes = 2048
    var s = WebSocketSession(options: options)
    var out: [String] = []
    var i = 0
    while i < bytes.count {
        var piece = Array(bytes[i..<min(bytes.count, i + chunk)])
        i += chunk
        piece.withUnsafeMutableBytes { b in
            s.receive(b) { e in
                switch e {
                case .message(let op, let m):
                    precondition(m.count <= 2048, "a message past the limit")
                    if op == .text { precondition(String(validating: m, as: UTF8.self) != nil, "a text message that is not UTF-8") }
                    out.append("m\(op.rawValue) \(m)")
                case .send(let f): out.append("s \(f)")
                case .ping(let p): out.append("ping \(p)")
                case .pong(let p): out.append("pong \(p)")
                case .closed(let code, _, let clean):
                    precondition(clean || [1002, 1007, 1009].contains(code), "closed with \(code)")
                    out.append("closed \(code) \(clean)")
                }
            }
        }
    }
    return out
}
