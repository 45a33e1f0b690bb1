import Foundation
import GunnEventLogServer
import GunnIO
import GunnStore
import GunnTelemetry

// gunn-eventlog: the durable, hash-chained log writer.
//   gunn-eventlog --home DIR [--world-id ID] [--world-seed N] [--durability full|normal] [--max-db-pages N]
// --max-db-pages caps the database (SQLite max_page_count); reaching it is exactly a full disk
// (SQLITE_FULL → LOG_STORAGE_FAILURE), which the tests use.
// Environment: GUNN_HOME, GUNN_WORLD_ID, GUNN_WORLD_SEED, GUNN_DURABILITY. Serves DIR/run/eventlog.sock; stores
// DIR/data/events.sqlite. SIGTERM/SIGINT: clean head anchor, checkpoint, exit 0.
Supervision.followSupervisor()
let args = ProcessArguments()
let home = args.homeOrExit(usage: "gunn-eventlog --home DIR [--world-id ID] [--world-seed N] [--durability full|normal]")
let termination = TerminationSignals.install() // before "ready": a stop right after start-up is clean
var settings = EventLogServer.Settings(home: home)
settings.worldID = args.value("--world-id", env: "GUNN_WORLD_ID") ?? "world"
settings.features = Features.fromEnvironmentOrExit("eventlog")
func number(_ flag: String, env: String? = nil, _ range: ClosedRange<UInt64>) -> UInt64? {
    guard let text = args.value(flag, env: env) else { return nil }
    guard let v = UInt64(text), range.contains(v) else {
        FileHandle.standardError.write(Data("gunn-eventlog: CONFIG_INVALID (7001): \(flag) must be an integer in \(range.lowerBound)...\(range.upperBound), not \"\(text)\"\n".utf8))
        exit(64)
    }
    return v
}
settings.worldSeed = number("--world-seed", env: "GUNN_WORLD_SEED", 0...UInt64.max) ?? 0
settings.store.maxPageCount = number("--max-db-pages", 1...(1 << 31)).map { Int($0) }
let durabilityText = args.value("--durability", env: "GUNN_DURABILITY") ?? "full"
guard let durability = Durability(rawValue: durabilityText) else {
    FileHandle.standardError.write(Data("gunn-eventlog: --durability must be full or normal, not \"\(durabilityText)\"\n".utf8))
    exit(64)
}
settings.store.durability = durability

let server: EventLogServer
do { server = try EventLogServer(settings: settings) } catch {
    FileHandle.standardError.write(Data("gunn-eventlog: cannot open the log: \(error)\n".utf8))
    exit(70)
}
let report = server.startupReport
let startHead = await server.head().seq
let verified = report.ok ? "ok" : "PROBLEMS \(report.problems)"
server.telemetry.log(report.ok ? .info : .error, "started", ["global_seq": .number(Double(startHead)), "verified_entries": .number(Double(report.checked)),
                                                              "verification": .string(verified),
                                                              "features": .array(settings.features.enabled.sorted().map { .string($0) })])
try await server.start()
FileHandle.standardOutput.write(Data("ready\n".utf8))
_ = await termination.wait()
await server.stop()
server.tracer.flush()
server.telemetry.log(.info, "stopped", ["global_seq": .number(Double(await server.head().seq))])
exit(0)
