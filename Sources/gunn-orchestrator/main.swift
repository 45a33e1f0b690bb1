import Foundation
import GunnCore
import GunnIO
import GunnOrchestratorServer

// gunn-orchestrator: the world as a process.
//   gunn-orchestrator --home DIR [--world-id ID] [--world-seed N] [--quantum-ms N]
// Needs gunn-eventlog serving DIR/run/eventlog.sock; serves DIR/run/orchestrator.sock.
Supervision.followSupervisor()
let args = ProcessArguments()
let home = args.homeOrExit(usage: "gunn-orchestrator --home DIR [--world-id ID] [--world-seed N] [--quantum-ms N]")
let termination = TerminationSignals.install()
var settings = OrchestratorServer.Settings(home: home)
settings.worldID = args.value("--world-id", env: "GUNN_WORLD_ID") ?? "world"
settings.worldSeed = UInt64(args.value("--world-seed", env: "GUNN_WORLD_SEED") ?? "0") ?? 0
settings.engine.quantumMs = Double(args.value("--quantum-ms") ?? "0") ?? 0
// Orchestrator-level quotas are generous by default; tighten them in the config later.
settings.engine.agentQuota = TokenBucket(capacity: 100_000, refillPerSecond: 100_000)
settings.engine.tenantQuota = TokenBucket(capacity: 1_000_000, refillPerSecond: 1_000_000)
let server = try OrchestratorServer(settings: settings)
do { try await server.start() } catch {
    FileHandle.standardError.write(Data("gunn-orchestrator: cannot start: \(error)\n".utf8))
    exit(70)
}
FileHandle.standardError.write(Data("gunn-orchestrator: recovered \(await server.recoveredEntries) entries, head \(await server.headSeq)\n".utf8))
FileHandle.standardOutput.write(Data("ready\n".utf8))
_ = await termination.wait()
await server.stop()
exit(0)
