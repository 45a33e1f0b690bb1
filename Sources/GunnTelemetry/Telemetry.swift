import Foundation
import GunnCore
import GunnIO
import GunnWire

/// `GUNN_FEATURES`: a comma list of optional behaviours, parsed strictly (an unknown name is
/// CONFIG_INVALID naming the known ones).
///
/// - `telemetry` (on unless a list is given without it): counters, gauges and histograms are
///   recorded; off, every recording is skipped and `/metrics` shows the process gauges only.
/// - `tracing` (off by default): spans of every intent (W3C trace context carried in
///   `Frame.traceparent` and the HTTP `traceparent` header) exported as OTLP/JSON lines.
public struct Features: Sendable, Equatable {
    public static let known = ["telemetry", "tracing"]
    public static let defaults: Set<String> = ["telemetry"]
    public let enabled: Set<String>

    public init(_ enabled: Set<String>) { self.enabled = enabled }

    /// The list as GUNN_FEATURES spells it (`none` for no feature).
    public var list: String { enabled.isEmpty ? "none" : enabled.sorted().joined(separator: ",") }

    public func has(_ name: String) -> Bool { enabled.contains(name) }

    /// An empty or absent list means the defaults; `none`, no feature at all.
    public static func parse(_ text: String?) throws(GunnError) -> Features {
        guard let text, !text.trimmingCharacters(in: .whitespaces).isEmpty else { return Features(defaults) }
        if text.trimmingCharacters(in: .whitespaces).lowercased() == "none" { return Features([]) }
        var out: Set<String> = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let name = part.trimmingCharacters(in: .whitespaces).lowercased()
            guard known.contains(name) else {
                throw GunnError(.configInvalid, "GUNN_FEATURES: unknown feature \"\(name)\" (known: \(known.joined(separator: ", ")); or none)")
            }
            out.insert(name)
        }
        return Features(out)
    }

    /// `GUNN_FEATURES` from the environment; a bad list ends the process with exit 78 (EX_CONFIG),
    /// as every other bad setting does.
    public static func fromEnvironmentOrExit(_ program: String) -> Features {
        do { return try parse(ProcessInfo.processInfo.environment["GUNN_FEATURES"]) } catch {
            Telemetry.write(LogLine.failure(process: program, event: "config_invalid", error))
            exit(78)
        }
    }
}

/// One process's telemetry: its name, its features, its metrics and its log lines.
public final class Telemetry: Sendable {
    public let process: String
    public let features: Features
    public let metrics: Metrics
    let startedNs = DispatchTime.now().uptimeNanoseconds

    public init(process: String, features: Features) {
        self.process = process; self.features = features
        metrics = Metrics(process: process)
        metrics.gauge("gunn_process_resident_memory_bytes", help: "Resident set size of the process") { [([], Double(Sys.residentBytes()))] }
        metrics.gauge("gunn_process_uptime_seconds", help: "Seconds since the process started (monotonic)") { [startedNs] in
            [([], Double(DispatchTime.now().uptimeNanoseconds - startedNs) / 1e9)]
        }
        metrics.gauge("gunn_feature_enabled", help: "1 for each GUNN_FEATURES flag that is on, 0 for each that is off",
                      labels: ["feature"]) { [features] in Features.known.map { ([$0], features.has($0) ? 1 : 0) } }
        metrics.gauge("gunn_process_pid", help: "The process id") { [([], Double(getpid()))] }
    }

    /// The process's span exporter (on with the `tracing` feature), writing under `home`/logs.
    public func tracer(home: String) -> Tracer {
        let t = Tracer(process: process, home: home, enabled: features.has("tracing"))
        metrics.counter("gunn_trace_spans_total", help: "Spans exported, and spans dropped because the export buffer was full", labels: ["outcome"]) {
            [(["exported"], Double(t.exported)), (["dropped"], Double(t.dropped))]
        }
        return t
    }

    /// Whether counters and histograms are recorded (the `telemetry` feature).
    public var recording: Bool { features.has("telemetry") }

    /// A family that records only while `telemetry` is on (process gauges always report).
    public func counter(_ name: String, help: String, labels: [String] = []) -> Recorder {
        Recorder(handle: metrics.counter(name, help: help, labels: labels), on: recording)
    }
    public func gauge(_ name: String, help: String, labels: [String] = []) -> Recorder {
        Recorder(handle: metrics.gauge(name, help: help, labels: labels), on: recording)
    }
    public func histogram(_ name: String, help: String, labels: [String] = [], buckets: [Double] = Metrics.latencyBuckets) -> Recorder {
        Recorder(handle: metrics.histogram(name, help: help, labels: labels, buckets: buckets), on: recording)
    }
    public func gauge(_ name: String, help: String, labels: [String] = [], collect: @escaping @Sendable () -> [([String], Double)]) {
        let empty: @Sendable () -> [([String], Double)] = { [] }
        metrics.gauge(name, help: help, labels: labels, collect: recording ? collect : empty)
    }

    /// The answer to a Metrics request, or nil for any other body.
    public func answer(_ body: Frame.Body?) -> Frame.Body? {
        guard case .metrics? = body else { return nil }
        return .metricsResult(JSONPayload(Array(CanonicalJSON.encodeString(metrics.snapshot()).utf8)))
    }

    /// The least level written: GUNN_LOG_LEVEL (the supervisor passes its config's), else info.
    /// An unknown value here means info (the supervisor refuses one before any child starts).
    public static let minimumLevel = LogLine.Level(rawValue: ProcessInfo.processInfo.environment["GUNN_LOG_LEVEL"] ?? "info") ?? .info

    /// Writes one structured line to stderr (into the supervisor's `logs/<name>.log`), when
    /// `level` is at least the minimum.
    public func log(_ level: LogLine.Level, _ event: String, _ fields: JSONObject = [:]) {
        guard level >= Self.minimumLevel else { return }
        Self.write(LogLine(level, process: process, event: event, fields))
    }

    public static func write(_ line: LogLine) {
        FileHandle.standardError.write(Data((line.render(wallTime: Date().timeIntervalSince1970) + "\n").utf8))
    }
}

/// A metric family that records only when telemetry is on: one branch when it is off.
public struct Recorder: Sendable {
    let handle: Metrics.Handle
    let on: Bool
    public func inc(_ labels: [String] = [], by v: Double = 1) { if on { handle.inc(labels, by: v) } }
    public func set(_ labels: [String] = [], _ v: Double) { if on { handle.set(labels, v) } }
    public func observe(_ labels: [String] = [], _ v: Double) { if on { handle.observe(labels, v) } }
    public func observe<S: Sequence>(_ labels: [String] = [], values: S) where S.Element == Double { if on { handle.observe(labels, values: values) } }
    /// Observes the seconds since `startNs` (a `DispatchTime` uptime reading).
    public func observeSince(_ labels: [String] = [], _ startNs: UInt64) {
        if on { handle.observe(labels, Double(DispatchTime.now().uptimeNanoseconds &- startNs) / 1e9) }
    }
}
