import Foundation
import Synchronization

/// What the benchmarks that run real processes share.
enum BenchSupport {
    /// A binary built next to gunn-bench.
    static func binary(_ name: String) -> URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(name)
    }

    /// GUNN_FEATURES and GUNN_TRACE_SAMPLE for the processes launched from now on (the telemetry
    /// bench sets them per run; nil: the bench's own environment).
    static let overrides = Mutex<(features: String?, traceSample: String?)>((nil, nil))

    /// Starts a gunn process and waits for its "ready" line. Its stdin is a pipe the caller may
    /// close to stop it (gunn-wire-peer exits then).
    static func launch(_ name: String, _ args: [String]) throws -> (process: Process, stdin: Pipe) {
        let p = Process()
        p.executableURL = binary(name)
        p.arguments = args
        let (features, traceSample) = overrides.withLock { $0 }
        if let features {
            var env = ProcessInfo.processInfo.environment
            env["GUNN_FEATURES"] = features
            if let traceSample { env["GUNN_TRACE_SAMPLE"] = traceSample }
            p.environment = env
        }
        let out = Pipe(), input = Pipe()
        p.standardOutput = out
        p.standardInput = input
        p.standardError = FileHandle(forWritingAtPath: ProcessInfo.processInfo.environment["GUNN_BENCH_STDERR"] ?? "/dev/null")
        try p.run()
        _ = out.fileHandleForReading.availableData // "ready"
        return (p, input)
    }

    /// CPU time a process used so far (every thread, from /proc/PID/task/*/schedstat, in ns
    /// resolution), in seconds; 0 when the process is gone.
    static func cpuSeconds(pid: Int32) -> Double {
        let dir = "/proc/\(pid)/task"
        guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return 0 }
        var ns = 0.0
        for t in tasks {
            guard let s = try? String(contentsOfFile: "\(dir)/\(t)/schedstat", encoding: .utf8),
                  let first = s.split(separator: " ").first, let v = Double(first) else { continue }
            ns += v
        }
        return ns / 1e9
    }

    /// The p-th percentile of durations in seconds, in microseconds.
    static func percentileMicros(_ a: [Double], _ p: Int) -> Double { a.isEmpty ? 0 : a.sorted()[min(a.count - 1, a.count * p / 100)] * 1e6 }
}
