import Foundation
import GunnCore
import GunnIO
import GunnWire

/// The control socket of a process that has no other (the adapters): `run/<name>.sock`, which
/// answers Metrics and Status (the process's gauges) and refuses anything else with
/// UNKNOWN_MESSAGE. A second process of the same name finds the socket answering and takes
/// `run/<name>-<pid>.sock` instead, so attached copies are gathered too.
public final class ControlEndpoint: Sendable {
    public let path: String
    let server: UnixSocketServer

    private init(path: String, server: UnixSocketServer) { self.path = path; self.server = server }

    public static func start(home: String, name: String, loop: EventLoop, telemetry: Telemetry,
                             status: @escaping @Sendable () -> StatusResult = { StatusResult() }) async throws -> ControlEndpoint {
        var path = home + "/run/\(name).sock"
        if FileManager.default.fileExists(atPath: path) {
            let probe = ControlProbe(path: path, loop: loop, hello: Hello(protocolMajor: 1, protocolMinor: 0, role: "ctl", clientName: name),
                                     deadlineMs: 500)
            // Taken over only when nothing listens; a copy that answers, or is too busy to, keeps it.
            switch await probe.run() {
            case .absent: break
            case .answered, .notAnswering: path = home + "/run/\(name)-\(getpid()).sock"
            }
        }
        let server = try await UnixSocketServer(path: path, loop: loop) { conn in
            Task {
                while let frame = await conn.receive() {
                    if let answer = telemetry.answer(frame.body) {
                        conn.post([Frame(id: frame.id, answer)])
                    } else if case .status? = frame.body {
                        conn.post([Frame(id: frame.id, .statusResult(status()))])
                    } else if frame.body != nil {
                        let e = GunnError(.unknownMessage, "the \(name) control socket serves Metrics and Status only")
                        conn.post([Frame(id: frame.id, .error(WireErrorMessage(e)))])
                    }
                }
            }
        }
        return ControlEndpoint(path: path, server: server)
    }

    public func stop() async { await server.stop() }
}

/// One gathering at a time for an HTTP endpoint: scrapes that come while one is in flight share
/// it, and an answer younger than `maxAgeSeconds` is served again, so a flood of GET /metrics
/// costs one round of control requests per `maxAgeSeconds` at most.
public actor ScrapeCache {
    let home: String, loop: EventLoop, process: String, deadlineMs: Double, maxAgeSeconds: Double
    var last: (at: Double, result: MetricsGatherer.Result)?
    var inFlight: Task<MetricsGatherer.Result, Never>?

    public init(home: String, loop: EventLoop, process: String, deadlineMs: Double = 1000, maxAgeSeconds: Double = 1) {
        self.home = home; self.loop = loop; self.process = process; self.deadlineMs = deadlineMs; self.maxAgeSeconds = maxAgeSeconds
    }

    public func exposition() async -> String {
        let r = await gathered()
        return PrometheusText.render(r.snapshots + [MetricsGatherer.upSnapshot(r, process: process)])
    }

    /// The latest gathering (shared, at most `maxAgeSeconds` old).
    public func gathered() async -> MetricsGatherer.Result {
        let now = EventLoop.now()
        if let last, now - last.at < maxAgeSeconds { return last.result }
        if let inFlight { return await inFlight.value }
        let (home, loop, deadline) = (home, loop, deadlineMs)
        let task = Task { await MetricsGatherer.gather(home: home, loop: loop, deadlineMs: deadline) }
        inFlight = task
        let result = await task.value
        last = (EventLoop.now(), result)
        inFlight = nil
        return result
    }

    /// Every process's health as `{"status": "ok"|"degraded", "processes": {name: "ok"|"not_answering"}}`.
    public func health() async -> (ok: Bool, body: JSONValue) {
        let r = await gathered()
        var processes = JSONObject()
        for (k, v) in r.up { processes[String(k.dropLast(".sock".count))] = .string(v ? "ok" : "not_answering") }
        let ok = !r.up.isEmpty && r.up.values.allSatisfy { $0 }
        return (ok, ["status": .string(ok ? "ok" : "degraded"), "processes": .object(processes)])
    }
}

/// Asks every process under a home for its metrics at once, each within one deadline: every
/// `run/*.sock` is a gunn process's socket. What answers is rendered; what does not is reported
/// as `gunn_process_up{socket} 0`, so a wedged process shows in the scrape instead of stalling it.
public enum MetricsGatherer {
    public struct Result: Sendable {
        public var snapshots: [JSONValue]
        /// Socket file name → answered.
        public var up: [String: Bool]
        public init(snapshots: [JSONValue] = [], up: [String: Bool] = [:]) { self.snapshots = snapshots; self.up = up }
    }

    public static func gather(home: String, loop: EventLoop, deadlineMs: Double, skip: Set<String> = []) async -> Result {
        let dir = home + "/run"
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".sock") && !skip.contains($0) }.sorted()
        let hello = Hello(protocolMajor: 1, protocolMinor: 0, role: "ctl", clientName: "gunn-metrics")
        var result = Result(snapshots: [], up: [:])
        await withTaskGroup(of: (String, JSONValue?, Bool).self) { group in
            for name in names {
                let probe = ControlProbe(path: dir + "/" + name, loop: loop, hello: hello, deadlineMs: deadlineMs)
                group.addTask {
                    let outcome = await probe.run(request: .metrics(Empty()))
                    guard case .answered(.metricsResult(let p)?) = outcome, var v = try? JSONParser.parse(p.json) else {
                        // A second copy's socket left behind by a process that is gone: not a process any more.
                        if case .absent = outcome, let pid = Self.copyPID(name), kill(pid, 0) != 0 { return (name, nil, false) }
                        return (name, nil, true)
                    }
                    // A second copy (run/web-<pid>.sock) reports as web-<pid>: its series stay apart.
                    let stem = String(name.dropLast(".sock".count))
                    if let process = v["process"]?.stringValue, stem.hasPrefix(process + "-"), case .object(var o) = v {
                        o["process"] = .string(stem)
                        v = .object(o)
                    }
                    return (name, v, true)
                }
            }
            for await (name, snap, present) in group where present {
                result.up[name] = snap != nil
                if let snap { result.snapshots.append(snap) }
            }
        }
        result.snapshots.sort { ($0["process"]?.stringValue ?? "") < ($1["process"]?.stringValue ?? "") }
        return result
    }

    /// The pid in a second copy's socket name (`web-1234.sock`), if it is one.
    static func copyPID(_ name: String) -> pid_t? {
        let stem = name.dropLast(".sock".count)
        guard let dash = stem.lastIndex(of: "-") else { return nil }
        return pid_t(stem[stem.index(after: dash)...])
    }

    /// Every process's metrics in the Prometheus text format, `gunn_process_up` included.
    public static func exposition(home: String, loop: EventLoop, deadlineMs: Double, process: String) async -> String {
        let r = await gather(home: home, loop: loop, deadlineMs: deadlineMs)
        return PrometheusText.render(r.snapshots + [upSnapshot(r, process: process)])
    }

    /// The gatherer's own family: one series per socket, 1 if it answered in time.
    public static func upSnapshot(_ r: Result, process: String) -> JSONValue {
        let series: [JSONValue] = r.up.keys.sorted().map { ["labels": [.string($0)], "value": .number(r.up[$0]! ? 1 : 0)] }
        return ["process": .string(process), "families": [["name": "gunn_process_up", "type": "gauge", "labels": ["socket"],
                                                           "help": "1 if the process behind run/<socket> answered the metrics request in time",
                                                           "series": .array(series)]]]
    }
}
