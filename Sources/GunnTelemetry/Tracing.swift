import Dispatch
import Foundation
import GunnCore
import Synchronization

/// A W3C trace context (`traceparent: 00-<trace id>-<parent id>-<flags>`, W3C Trace Context §3.2):
/// what `Frame.traceparent` and an HTTP request's `traceparent` header carry.
public struct TraceContext: Sendable, Equatable {
    public var traceID: [UInt8]
    public var spanID: [UInt8]
    public var sampled: Bool

    public init(traceID: [UInt8], spanID: [UInt8], sampled: Bool = true) {
        self.traceID = traceID; self.spanID = spanID; self.sampled = sampled
    }

    /// Reads a `traceparent` value; nil for anything malformed (the header is then ignored, as
    /// the spec says: a new trace starts). Version 00 must be exactly 55 characters; a later
    /// version may carry more after the flags, which is ignored. Lowercase hex only; the all-zero
    /// trace and span ids are invalid, and so is version ff.
    public static func parse(_ header: String) -> TraceContext? {
        let b = Array(header.utf8)
        guard b.count >= 55, b[2] == 45, b[35] == 45, b[52] == 45 else { return nil }
        guard let version = hex(b[0..<2]), version.count == 1, version[0] != 0xff else { return nil }
        if version[0] == 0 { guard b.count == 55 else { return nil } } else if b.count > 55 { guard b[55] == 45 else { return nil } }
        guard let trace = hex(b[3..<35]), let span = hex(b[36..<52]), let flags = hex(b[53..<55]) else { return nil }
        guard trace.contains(where: { $0 != 0 }), span.contains(where: { $0 != 0 }) else { return nil }
        return TraceContext(traceID: trace, spanID: span, sampled: flags[0] & 1 == 1)
    }

    public var header: String { "00-\(Self.hexString(traceID))-\(Self.hexString(spanID))-\(sampled ? "01" : "00")" }

    /// A new span in the same trace.
    public func child() -> TraceContext { TraceContext(traceID: traceID, spanID: Self.randomBytes(8), sampled: sampled) }

    /// The first span of a new trace.
    public static func root() -> TraceContext { TraceContext(traceID: randomBytes(16), spanID: randomBytes(8)) }

    /// Ids from a SplitMix64 seeded once from the system's generator: ids must be unique, not
    /// secret, and a system call per id would cost more than the span.
    static let ids = Mutex(SplitMix64(seed: UInt64.random(in: 1...UInt64.max)))

    static func randomBytes(_ n: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: n)
        repeat {
            ids.withLock { g in
                var i = 0
                while i < n {
                    var v = g.next()
                    for _ in 0..<8 where i < n { out[i] = UInt8(truncatingIfNeeded: v); v >>= 8; i += 1 }
                }
            }
        } while !out.contains { $0 != 0 }
        return out
    }

    static func hex(_ s: ArraySlice<UInt8>) -> [UInt8]? {
        guard s.count % 2 == 0 else { return nil }
        func v(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: return c - 48
            case 97...102: return c - 87
            default: return nil
            }
        }
        var out: [UInt8] = []
        var i = s.startIndex
        while i < s.endIndex {
            guard let hi = v(s[i]), let lo = v(s[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    public static func hexString(_ b: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(b.count * 2)
        for x in b { out.append(digits[Int(x >> 4)]); out.append(digits[Int(x & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }
}

/// One span being timed: its context, its parent, when it began (wall time for the record, a
/// monotonic reading for its duration).
public struct Span: Sendable {
    public enum Kind: Int, Sendable { case internalSpan = 1, server = 2, client = 3, producer = 4, consumer = 5 }
    public let context: TraceContext
    public let parentSpanID: [UInt8]?
    public let name: String
    public let kind: Kind
    let startWallNs: UInt64
    let startMonoNs: UInt64
    /// False for a span that is not sampled: it records nothing, but its context (flags `00`) is
    /// passed on, so the processes after this one do not start a trace of their own.
    public var recording: Bool { context.sampled }
}

/// Exports spans as OTLP/JSON, one `TracesData` object per line, to `<home>/logs/traces.<process>.jsonl`
/// (each process its own file, so no two processes write one file). On only with the `tracing`
/// feature; off, `start` returns nil and nothing is timed or written. An ended span's line joins
/// a buffer that a serial queue writes out every `flushSeconds` in one write, off the caller's
/// path; past `maxBufferedBytes` waiting, new spans are dropped and counted. The file is rotated
/// at `maxFileBytes` (one old file, `.1`).
public final class Tracer: Sendable {
    public let process: String
    public let enabled: Bool
    let path: String
    let queue = DispatchQueue(label: "gunn-tracer")
    let buffer = Mutex<(bytes: [UInt8], spans: Int)>(([], 0))
    let droppedSpans = Atomic<Int>(0)
    let exportedSpans = Atomic<Int>(0)
    static let maxBufferedBytes = 8 << 20
    static let maxFileBytes = 64 << 20
    static let flushSeconds = 0.02
    /// The line up to the span, and after it: the resource and scope are the same for every span.
    private let prefix: [UInt8], suffix: [UInt8]

    public init(process: String, home: String, enabled: Bool, sampleRatio: Double = Tracer.environmentSampleRatio) {
        self.process = process; self.enabled = enabled; self.sampleRatio = sampleRatio
        path = home + "/logs/traces.\(process).jsonl"
        let resource: JSONValue = ["attributes": [["key": "service.name", "value": ["stringValue": .string("gunn-" + process)]],
                                                  ["key": "service.namespace", "value": ["stringValue": "gunn"]],
                                                  ["key": "process.pid", "value": ["intValue": .string(String(getpid()))]]]]
        prefix = Array(("{\"resourceSpans\":[{\"resource\":" + CanonicalJSON.encodeString(resource)
                        + ",\"scopeSpans\":[{\"scope\":{\"name\":\"gunn\",\"version\":\"1\"},\"spans\":[").utf8)
        suffix = Array("]}]}]}\n".utf8)
        if enabled { try? FileManager.default.createDirectory(atPath: home + "/logs", withIntermediateDirectories: true) }
    }

    public var dropped: Int { droppedSpans.load(ordering: .relaxed) }
    public var exported: Int { exportedSpans.load(ordering: .relaxed) }

    /// The share of new traces started (GUNN_TRACE_SAMPLE, 0 < r ≤ 1, default 1: every intent
    /// that arrives without a trace of its own starts one). A sampled parent is always followed.
    public let sampleRatio: Double
    let sampleCounter = Atomic<UInt64>(0)

    /// GUNN_TRACE_SAMPLE from the environment (an unreadable or out-of-range value means 1).
    public static let environmentSampleRatio: Double = {
        guard let t = ProcessInfo.processInfo.environment["GUNN_TRACE_SAMPLE"], let r = Double(t), r > 0, r <= 1 else { return 1 }
        return r
    }()

    /// Starts a span: a child of `parent` (a new trace when there is none), or nil when tracing
    /// is off. A parent that is not sampled gives a span that records nothing and passes the
    /// decision on. With `sampleNew`, a span without a parent starts a recorded trace for its
    /// share of `sampleRatio` (deterministically: the n-th when ⌊n·r⌋ moves), else an unsampled one.
    public func start(_ name: String, parent: TraceContext?, kind: Span.Kind = .internalSpan, sampleNew: Bool = false) -> Span? {
        guard enabled else { return nil }
        var ctx = parent?.child() ?? TraceContext.root()
        if parent == nil, sampleNew, sampleRatio < 1 {
            let n = Double(sampleCounter.add(1, ordering: .relaxed).newValue)
            ctx.sampled = (n * sampleRatio).rounded(.down) != ((n - 1) * sampleRatio).rounded(.down)
        }
        return Span(context: ctx, parentSpanID: parent?.spanID, name: name, kind: kind,
                    startWallNs: UInt64(Date().timeIntervalSince1970 * 1e9), startMonoNs: DispatchTime.now().uptimeNanoseconds)
    }

    /// Ends a span now and exports it with `attributes` (strings, integers, booleans, doubles)
    /// and, when `error` is given, an error status with that message.
    public func end(_ span: Span?, _ attributes: JSONObject = [:], error: String? = nil) {
        guard let span, span.recording else { return }
        let endNs = span.startWallNs &+ (DispatchTime.now().uptimeNanoseconds &- span.startMonoNs)
        let line = encode(span, endNs: endNs, attributes, error: error)
        let first = buffer.withLock { b -> Bool? in
            guard b.bytes.count + line.count <= Self.maxBufferedBytes else { return nil }
            let first = b.bytes.isEmpty
            b.bytes += line
            b.spans += 1
            return first
        }
        guard let first else { droppedSpans.add(1, ordering: .relaxed); return }
        if first { queue.asyncAfter(deadline: .now() + Self.flushSeconds) { [self] in writeBuffered() } }
    }

    /// Waits until every span ended so far is in the file (for tests and a clean stop).
    public func flush() { queue.sync { writeBuffered() } }

    private func writeBuffered() {
        let (bytes, n) = buffer.withLock { b in defer { b = ([], 0) }; return (b.bytes, b.spans) }
        guard !bytes.isEmpty else { return }
        write(bytes)
        exportedSpans.add(n, ordering: .relaxed)
    }

    /// One span as one TracesData line (the OTLP/JSON mapping: hex ids, int64 times as strings,
    /// enums as integers).
    func encode(_ s: Span, endNs: UInt64, _ attributes: JSONObject, error: String?) -> [UInt8] {
        var o = prefix
        o.reserveCapacity(prefix.count + 400)
        func add(_ t: String) { o.append(contentsOf: t.utf8) }
        add("{\"traceId\":\"\(TraceContext.hexString(s.context.traceID))\",\"spanId\":\"\(TraceContext.hexString(s.context.spanID))\"")
        if let p = s.parentSpanID { add(",\"parentSpanId\":\"\(TraceContext.hexString(p))\"") }
        add(",\"name\":"); o += CanonicalJSON.encode(.string(s.name))
        add(",\"kind\":\(s.kind.rawValue),\"startTimeUnixNano\":\"\(s.startWallNs)\",\"endTimeUnixNano\":\"\(endNs)\",\"attributes\":[")
        var firstAttribute = true
        for (k, v) in attributes {
            if !firstAttribute { o.append(44) }
            firstAttribute = false
            add("{\"key\":"); o += CanonicalJSON.encode(.string(k)); add(",\"value\":"); o += CanonicalJSON.encode(Self.anyValue(v)); add("}")
        }
        add("],\"status\":")
        if let error { add("{\"code\":2,\"message\":"); o += CanonicalJSON.encode(.string(error)); add("}") } else { add("{\"code\":1}") }
        add("}")
        o += suffix
        return o
    }

    /// OTLP's AnyValue: integers as decimal strings (int64 in proto3 JSON).
    static func anyValue(_ v: JSONValue) -> JSONValue {
        switch v {
        case .bool(let b): return ["boolValue": .bool(b)]
        case .number(let n) where n == n.rounded() && abs(n) < 9e15: return ["intValue": .string(String(Int64(n)))]
        case .number(let n): return ["doubleValue": .number(n)]
        case .string(let s): return ["stringValue": .string(s)]
        default: return ["stringValue": .string(CanonicalJSON.encodeString(v))]
        }
    }

    /// Called on `queue` only.
    private func write(_ line: [UInt8]) {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        defer { close(fd) }
        if lseek(fd, 0, SEEK_END) > Self.maxFileBytes {
            // Rotated once; if the rename fails, the file is emptied instead (never a loop).
            if rename(path, path + ".1") != 0 { _ = ftruncate(fd, 0) } else { return write(line) }
        }
        line.withUnsafeBytes { p in
            var off = 0
            while off < p.count {
                let w = Foundation.write(fd, p.baseAddress! + off, p.count - off)
                if w < 0 && errno == EINTR { continue }
                if w <= 0 { return }
                off += w
            }
        }
    }
}
