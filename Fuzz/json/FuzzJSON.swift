// libFuzzer harness for GunnCore's JSON layer, compiled together with the JSON sources as one
// module by `ops/fuzz json` (swiftc -sanitize=fuzzer,address). Any input may be refused with an
// error; what must never happen is a crash, a hang, or a broken invariant:
//   - canonical output re-parses to an equal value and is a fixed point;
//   - CanonicalCheck accepts exactly the inputs that are their own canonical form;
//   - a patch from diff applies back to the other document;
//   - a patch document read from the input either fails or applies atomically.

private let limits = JSONParseOptions(maxDepth: 64, maxInputBytes: 64 << 10)
private let base: JSONValue = ["a": [1, 2, ["b": "c"]], "d": ["e": nil, "f": true], "g": "h"]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSON(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    let value: JSONValue
    do {
        value = try JSONParser.parse(bytes, options: limits)
    } catch {
        precondition(error.offset >= 0 && error.offset <= bytes.count, "error offset outside the input")
        _ = error.description
        precondition(!CanonicalCheck.isCanonical(bytes, options: limits), "CanonicalCheck accepts what the parser refuses")
        return 0
    }
    let canonical = CanonicalJSON.encode(value)
    // The one-pass check agrees with parse-and-encode, on the input and on its canonical form.
    precondition(CanonicalCheck.isCanonical(bytes, options: limits) == (canonical == bytes), "CanonicalCheck disagrees with the round trip")
    precondition(CanonicalCheck.isCanonical(canonical, options: JSONParseOptions(maxDepth: 64, maxInputBytes: 1 << 22)), "canonical output not recognised")
    let reparsed: JSONValue
    do { reparsed = try JSONParser.parse(canonical, options: JSONParseOptions(maxDepth: 64, maxInputBytes: 1 << 22)) } catch {
        fatalError("canonical output does not parse: \(error)")
    }
    precondition(reparsed == value, "canonical round trip changed the value")
    precondition(CanonicalJSON.encode(reparsed) == canonical, "canonical form is not a fixed point")

    for maxOps in [1, 8, 1000] {
        let forward = JSONDiff.diff(base, value, maxOps: maxOps)
        guard let applied = try? forward.apply(to: base) else { fatalError("diff patch failed to apply") }
        precondition(CanonicalJSON.encode(applied) == canonical, "apply(diff(base, v)) != v")
        let backward = JSONDiff.diff(value, base, maxOps: maxOps)
        guard let back = try? backward.apply(to: value) else { fatalError("reverse diff patch failed to apply") }
        precondition(back == base, "apply(diff(v, base)) != base")
    }

    if let patch = try? JSONPatch(json: value) {
        let before = CanonicalJSON.encode(base)
        _ = try? patch.apply(to: base)
        precondition(CanonicalJSON.encode(base) == before, "a patch changed the caller's document")
    }
    return 0
}
