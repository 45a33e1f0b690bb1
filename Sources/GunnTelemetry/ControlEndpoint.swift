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
            if case .answered = await probe.run() { path = home + "/run/\(name)-\(getpid()).sock" }
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

/// Asks every process under a home for its metrics at once, each within one deadline: every
/// `run/*.sock` is a gunn process's socket. What answers is rendered; what does not is reported
/// as `gunn_process_up{socket} 0`, so a wedged process shows in the scrape instead of stalling it.
public enum MetricsGatherer {
    public struct Result: Sendable {
        public var snapshots: [JSONValue]
        /// Socket file name → answered.
        public var up: [String: Bool]
    }

    public static func gather(home: String, loop: EventLoop, deadlineMs: Double, skip: Set<String> = []) async -> Result {
        let dir = home + "/run"
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".sock") && !skip.contains($0) }.sorted()
        let hello = Hello(protocolMajor: 1, protocolMinor: 0, role: "ctl", clientName: "gunn-metrics")
        var result = Result(snapshots: [], up: [:])
        await withTaskGroup(of: (String, JSONValue?).self) { group in
            for name in names {
                let probe = ControlProbe(path: dir + "/" + name, loop: loop, hello: hello, deadlineMs: deadlineMs)
                group.addTask {
                    guard case .answered(.metricsResult(let p)?) = await probe.run(request: .metrics(Empty())),
                          let v = try? JSONParser.parse(p.json) else { return (name, nil) }
                    return (name, v)
                }
            }
            for await (name, snap) in group {
                result.up[name] = snap != nil
                if let snap { result.snapshots.append(snap) }
            }
        }
        result.snapshots.sort { ($0["process"]?.stringValue ?? "") < ($1["process"]?.stringValue ?? "") }
        return result
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
