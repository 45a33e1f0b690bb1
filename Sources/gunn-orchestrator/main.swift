import Foundation
import GunnCore
import GunnIO
import GunnOrchestratorServer
import GunnTelemetry

// gunn-orchestrator: the world as a process.
//   gunn-orchestrator --home DIR [--world-id ID] [--world-seed N] [--quantum-ms N] [--sim-time host|engine]
//                     [--max-batch-items N] [--max-in-flight N] [--batches-in-flight N]
//                     [--resume-window N] [--snapshot-every N] [--view-cache-bytes N] [--idempotency-entries N]
// Needs gunn-eventlog serving DIR/run/eventlog.sock; serves DIR/run/orchestrator.sock.
Supervision.followSupervisor()
let args = ProcessArguments()
let home = args.homeOrExit(usage: "gunn-orchestrator --home DIR [--world-id ID] [--world-seed N] [--quantum-ms N]")
let termination = TerminationSignals.install()
var settings = OrchestratorServer.Settings(home: home)
settings.worldID = args.value("--world-id", env: "GUNN_WORLD_ID") ?? "world"
settings.features = Features.fromEnvironmentOrExit("orchestrator")
func refuse(_ flag: String, _ text: String, _ rule: String) -> Never {
    FileHandle.standardError.write(Data("gunn-orchestrator: CONFIG_INVALID (7001): \(flag) must be \(rule), not \"\(text)\"\n".utf8))
    exit(64)
}
if let text = args.value("--world-seed", env: "GUNN_WORLD_SEED") {
    guard let seed = UInt64(text) else { refuse("--world-seed", text, "an integer in 0...\(UInt64.max)") }
    settings.worldSeed = seed
}
if let text = args.value("--quantum-ms") {
    guard let ms = Double(text), ms.isFinite, (0...60_000).contains(ms) else { refuse("--quantum-ms", text, "a number of milliseconds in 0...60000") }
    settings.engine.quantumMs = ms
}
// Where sim time comes from: the host's clock, or a game engine's TimeTick effects (docs/engine.md).
if let text = args.value("--sim-time", env: "GUNN_SIM_TIME") {
    switch text {
    case "host": settings.engine.simTimeAuthority = .hostWallTime
    case "engine": settings.engine.simTimeAuthority = .externalTicks
    default: refuse("--sim-time", text, "host or engine")
    }
}
// Batching and pipelining bounds (docs/orchestrator.md).
for (flag, range, set) in [("--max-batch-items", 1...65_536, { (n: Int) in settings.maxBatchItems = n }),
                           ("--max-in-flight", 1...65_536, { (n: Int) in settings.maxInFlightPerConnection = n }),
                           ("--batches-in-flight", 1...8, { (n: Int) in settings.maxBatchesInFlight = n })] {
    guard let text = args.value(flag) else { continue }
    guard let n = Int(text), range.contains(n) else { refuse(flag, text, "an integer in \(range.lowerBound)...\(range.upperBound)") }
    set(n)
}
// Memory bounds (docs/orchestrator.md, "Memory"): the resume window (entries held in memory,
// over `memory.snapshots` in-memory snapshots), durable snapshots, the view cache, idempotency.
for (flag, range, set) in [("--resume-window", 1...100_000_000, { (n: Int) in
                               settings.engine.snapshotEvery = max(1, (n + settings.engine.memory.snapshots - 1) / max(1, settings.engine.memory.snapshots)) }),
                           ("--snapshot-every", 0...100_000_000, { (n: Int) in settings.durableSnapshotEvery = n }),
                           ("--view-cache-bytes", 0...(1 << 40), { (n: Int) in settings.engine.memory.viewCacheBytes = n }),
                           ("--idempotency-entries", 1...100_000_000, { (n: Int) in settings.engine.idempotencyMaxEntries = n })] {
    guard let text = args.value(flag) else { continue }
    guard let n = Int(text), range.contains(n) else { refuse(flag, text, "an integer in \(range.lowerBound)...\(range.upperBound)") }
    set(n)
}
// Orchestrator-level quotas are generous by default; tighten them in the config later.
settings.engine.agentQuota = TokenBucket(capacity: 100_000, refillPerSecond: 100_000)
settings.engine.tenantQuota = TokenBucket(capacity: 1_000_000, refillPerSecond: 1_000_000)
let server = try OrchestratorServer(settings: settings)
do { try await server.start() } catch {
    // A log the engine cannot take (a broken chain, another world) is named; the supervisor restarts.
    FileHandle.standardError.write(Data("gunn-orchestrator: cannot start: \(error)\n".utf8))
    exit(70)
}
server.metrics.telemetry.log(.info, "started", [
    "recovered_entries": .number(Double(await server.recoveredEntries)), "snapshot_seq": .number(Double(await server.recoveredFromSnapshot)),
    "request_ids": .number(Double(await server.recoveredRequests)), "global_seq": .number(Double(await server.headSeq)),
    "latency_ms": .number(await server.recoveryMillis), "request_ids_ms": .number(await server.requestIDsMillis),
    "features": .array(settings.features.enabled.sorted().map { .string($0) })])
FileHandle.standardOutput.write(Data("ready\n".utf8))
_ = await termination.wait()
await server.stop()
server.tracer.flush()
exit(0)
