import Foundation
import GunnIO

/// `gunn-bench quick`: a short run for every CI log (measurement only, never failing on a figure):
/// the bare limits of the parts (the engine in process, the log writer's acknowledged appends),
/// then the whole system, pipelined, with its CPU per intent by process, and delivery.
enum QuickBench {
    struct Figures: Codable {
        var engineAlonePerSecond: Double
        var logWriterPerSecond: Double, logWriterCPUMicrosPerEntry: Double
        var system: SystemBench.PipelinedRow
        var deliveryP50Micros: Double, deliveryP99Micros: Double
    }

    static func run(arguments: [String]) async throws -> Figures {
        let loop = try EventLoop(name: "bench-quick")
        defer { loop.shutdown() }
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-bench-quick-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: base) }
        print("quick: bare limits of the parts, then the system with full durability (a figure to watch, never a verdict)")
        // `--system-only`: skip the bare parts and delivery (for profiling the system row).
        let systemOnly = arguments.contains("--system-only")
        let engine = systemOnly ? 0 : EngineBench.run(agents: 10, perAgent: 5_000, quantumMs: 0, baseline: nil).intentsPerSecond
        print(String(format: "  bare engine (in process, observation on, 10 agents): %8.0f intents/s", engine))
        let writer = systemOnly ? (perSecond: 0.0, cpuMicrosPerEntry: 0.0) : try await LogBench.appendRate(home: base + "/log", durability: "full", batch: 512, inFlight: 1, total: 102_400, loop: loop)
        print(String(format: "  bare log writer (full, batches of 512, one in flight, as the orchestrator sends): %8.0f entries/s, %.1f us CPU/entry",
                     writer.perSecond, writer.cpuMicrosPerEntry))
        func option(_ name: String, _ fallback: Int) -> Int {
            arguments.firstIndex(of: name).flatMap { $0 + 1 < arguments.count ? Int(arguments[$0 + 1]) : nil } ?? fallback
        }
        let agents = option("--agents", 10)
        let orchestratorArgs = ["--max-batch-items", "--max-in-flight", "--batches-in-flight"].flatMap { flag in
            arguments.firstIndex(of: flag).map { [flag, arguments[$0 + 1]] } ?? []
        }
        let system = try await SystemBench.pipelined(home: base + "/sys", durability: "full", agents: agents, window: option("--window", 64),
                                                     perAgent: option("--intents", 100_000) / agents, loop: loop, orchestratorArgs: orchestratorArgs)
        print(system.line)
        print(String(format: "  system / min(bare engine, bare log writer) = %.2f", system.intentsPerSecond / min(engine, writer.perSecond)))
        if systemOnly && !arguments.contains("--delivery") { return Figures(engineAlonePerSecond: 0, logWriterPerSecond: 0, logWriterCPUMicrosPerEntry: 0, system: system, deliveryP50Micros: 0, deliveryP99Micros: 0) }
        let d = try await SystemBench.delivery(home: base + "/delivery", loop: loop, events: 100, killTest: false, orchestratorArgs: orchestratorArgs)
        print(String(format: "  delivery, 10 agents at 50 events/s: committed->delta received p50 %.1f us  p99 %.1f us (%d deltas)",
                     BenchSupport.percentileMicros(d.fromCommit, 50), BenchSupport.percentileMicros(d.fromCommit, 99), d.fromCommit.count))
        return Figures(engineAlonePerSecond: engine, logWriterPerSecond: writer.perSecond, logWriterCPUMicrosPerEntry: writer.cpuMicrosPerEntry,
                       system: system, deliveryP50Micros: BenchSupport.percentileMicros(d.fromCommit, 50), deliveryP99Micros: BenchSupport.percentileMicros(d.fromCommit, 99))
    }
}
