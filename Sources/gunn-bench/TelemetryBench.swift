import Foundation
import GunnIO

/// `gunn-bench telemetry`: what telemetry and tracing cost. The same system run (10 agents, 64
/// intents in flight each, full durability) and the same delivery run (10 observers, 50 events/s)
/// with GUNN_FEATURES `none`, `telemetry` and `telemetry,tracing`, interleaved over `--rounds`
/// rounds in one invocation; each setting's best intents/s and its median delivery p99, and the
/// ratios to `none` (aims: telemetry ≥ 0.95, tracing ≥ 0.85 of the throughput).
enum TelemetryBench {
    struct Row: Codable { var features: String; var intentsPerSecond: [Double]; var deliveryP99Micros: [Double] }
    struct Figures: Codable { var rows: [Row]; var telemetryRatio: Double; var tracingRatio: Double; var sampledTracingRatio: Double }

    static func run(arguments: [String]) async throws -> Figures {
        func option(_ name: String, _ fallback: Int) -> Int {
            arguments.firstIndex(of: name).flatMap { $0 + 1 < arguments.count ? Int(arguments[$0 + 1]) : nil } ?? fallback
        }
        let rounds = option("--rounds", 3), intents = option("--intents", 60_000)
        let loop = try EventLoop(name: "bench-telemetry")
        defer { loop.shutdown() }
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-bench-telemetry-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: base) }
        // Tracing at its default (every intent traced) and with GUNN_TRACE_SAMPLE=0.1.
        let settings = ["none", "telemetry", "telemetry,tracing", "telemetry,tracing@0.1"]
        var rows = settings.map { Row(features: $0, intentsPerSecond: [], deliveryP99Micros: []) }
        print("telemetry: the same runs with GUNN_FEATURES none, telemetry, telemetry+tracing, interleaved (\(rounds) rounds)")
        defer { BenchSupport.overrides.withLock { $0 = (nil, nil) } }
        for r in 0..<rounds {
            for (i, f) in settings.enumerated() {
                let parts = f.components(separatedBy: "@")
                BenchSupport.overrides.withLock { $0 = (parts[0], parts.count > 1 ? parts[1] : nil) }
                let home = base + "/r\(r)-\(i)"
                let sys = try await SystemBench.pipelined(home: home + "/sys", durability: "full", agents: 10, window: 64, perAgent: intents / 10, loop: loop)
                let d = try await SystemBench.delivery(home: home + "/delivery", loop: loop, events: 100, killTest: false)
                let p99 = BenchSupport.percentileMicros(d.fromCommit, 99)
                rows[i].intentsPerSecond.append(sys.intentsPerSecond)
                rows[i].deliveryP99Micros.append(p99)
                print(String(format: "  round %d %-18@ %8.0f intents/s   delivery p99 %7.1f us", r + 1, f as NSString, sys.intentsPerSecond, p99))
                try? FileManager.default.removeItem(atPath: home)
            }
        }
        func best(_ a: [Double]) -> Double { a.max() ?? 0 }
        func median(_ a: [Double]) -> Double { a.isEmpty ? 0 : a.sorted()[a.count / 2] }
        let off = best(rows[0].intentsPerSecond)
        for row in rows {
            print(String(format: "  %-18@ best %8.0f intents/s (%.2f of none)   median delivery p99 %7.1f us (%.2f of none)", row.features as NSString,
                         best(row.intentsPerSecond), best(row.intentsPerSecond) / off, median(row.deliveryP99Micros),
                         median(row.deliveryP99Micros) / max(1, median(rows[0].deliveryP99Micros))))
        }
        let figures = Figures(rows: rows, telemetryRatio: best(rows[1].intentsPerSecond) / off, tracingRatio: best(rows[2].intentsPerSecond) / off,
                              sampledTracingRatio: best(rows[3].intentsPerSecond) / off)
        print(String(format: "  telemetry on: %.2f of the throughput off (aim >= 0.95); tracing every intent: %.2f, tracing 1 in 10: %.2f (aim >= 0.85)",
                     figures.telemetryRatio, figures.tracingRatio, figures.sampledTracingRatio))
        return figures
    }
}
