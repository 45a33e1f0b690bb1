// libFuzzer harness for the frame decoder, compiled with GunnWire's sources (and GunnCore's error
// table) as one module by `ops/fuzz wire`. Any input may be refused with a coded error; what must
// never happen is a crash, a hang, unbounded memory, or a decoded frame that does not survive
// re-encoding.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWire(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    // The first byte chooses how the stream is cut into reads, so chunking is fuzzed too.
    let chunk = max(1, Int(bytes.first ?? 1) % 17)
    var decoder = FrameDecoder(maxFrameBytes: 1 << 16)
    var i = 0
    var limits = WireLimits()
    limits.maxNestingDepth = 16
    outer: while i < bytes.count {
        decoder.append(Array(bytes[i..<min(bytes.count, i + chunk)]))
        i += chunk
        while true {
            let frame: Frame?
            do { frame = try decoder.next(limits: limits) } catch {
                _ = error.errorCode
                _ = error.description
                break outer
            }
            guard let frame else { break }
            let again: Frame
            do { again = try Frame(serialized: frame.serialized(), limits: limits) } catch {
                fatalError("a decoded frame does not decode after re-encoding: \(error)")
            }
            precondition(again == frame, "re-encoding changed the frame")
            precondition(decoder.bufferedBytes <= bytes.count, "buffer grew beyond the input")
        }
    }
    // Also every message type straight from the bytes (as a body would be read).
    _ = try? Hello(serialized: bytes, limits: limits)
    _ = try? LogEntries(serialized: bytes, limits: limits)
    _ = try? StatusResult(serialized: bytes, limits: limits)
    return 0
}
