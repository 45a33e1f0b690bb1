// libFuzzer harness for the engine bridge's frame codecs (proto/gunn/v1/engine.proto), compiled
// with EngineCodec, the protobuf reader and writer and GunnCore's JSON layer as one module by
// `ops/fuzz engine`. The first byte picks the codec. Any input may be refused with a coded error;
// what must never happen is a crash, a hang, or a decoded frame that the other codec and its own
// re-encoding do not give back unchanged.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzEngine(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    guard let first = bytes.first else { return 0 }
    let body = Array(bytes.dropFirst())
    let frame: JSONValue
    do {
        frame = first & 1 == 0 ? try EngineCodec.decodeBinary(body) : try EngineCodec.decodeJSON(body)
    } catch {
        _ = error.code.name
        return 0
    }
    // What was read is written and read back the same, in both forms.
    do {
        let viaBinary = try EngineCodec.decodeBinary(EngineCodec.encodeBinary(frame))
        precondition(viaBinary == frame, "binary re-encoding changed the frame")
        let viaJSON = try EngineCodec.decodeJSON(Array(EngineCodec.encodeJSON(frame).utf8))
        precondition(viaJSON == frame, "JSON re-encoding changed the frame")
    } catch {
        // Our own invariant (what we wrote we must read), never the input: the crash is the finding.
        fatalError("a decoded frame does not decode after re-encoding: \(error)")
    }
    return 0
}
