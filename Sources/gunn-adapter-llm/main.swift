import Foundation
import GunnTelemetry
import GunnClient
import GunnCore
import GunnIO
import GunnLLM
import GunnLLMAdapter
import Synchronization

// gunn-adapter-llm: LLM-driven agents, a client of orchestrator.sock like any adapter.
//   gunn-adapter-llm --home DIR --config FILE [--endpoint http://HOST:PORT]
// FILE is the adapter's JSON config (docs/llm.md): the agents it hosts and its breaker settings.
// --endpoint (or GUNN_LLM_ENDPOINT) replaces the endpoint of every HTTP agent. One JSON line per
// event on stdout (registered, heard, generating, cancelled, regenerating, spoke, error, ...).
Supervision.followSupervisor()
let usage = "gunn-adapter-llm --home DIR --config FILE [--endpoint http://HOST:PORT]"
let args = ProcessArguments()
let home = args.homeOrExit(usage: usage)
guard let path = args.value("--config", env: "GUNN_LLM_CONFIG") else {
    FileHandle.standardError.write(Data("usage: \(usage)\n".utf8))
    exit(2)
}
var config: AdapterConfig
do {
    let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
    guard size <= AdapterConfig.Limits.maxConfigBytes else {
        throw GunnError(.configInvalid, "\(path) is \(size) bytes, over the limit of \(AdapterConfig.Limits.maxConfigBytes)")
    }
    guard let data = FileManager.default.contents(atPath: path) else { throw GunnError(.configInvalid, "cannot read \(path)") }
    config = try AdapterConfig.parse([UInt8](data))
    if let e = args.value("--endpoint", env: "GUNN_LLM_ENDPOINT") {
        let endpoint = try AdapterConfig.Endpoint.parse(e)
        for i in config.agents.indices where config.agents[i].backend != .dummy { config.agents[i].endpoint = endpoint }
    }
} catch let e as GunnError {
    Telemetry.write(LogLine.failure(process: "llm", event: "config_invalid", e))
    exit(2)
}
let telemetry = Telemetry(process: "llm", features: Features.fromEnvironmentOrExit("llm"))
let eventsCounted = telemetry.counter("gunn_llm_events_total", help: "The adapter's events (docs/llm.md), by name", labels: ["event"])
let tokensSpoken = telemetry.counter("gunn_llm_tokens_spoken_total", help: "Tokens of generations that were submitted as speech")
let tokensDiscarded = telemetry.counter("gunn_llm_tokens_discarded_total", help: "Tokens generated and thrown away (stale or cancelled), by event",
                                        labels: ["event"])
let termination = TerminationSignals.install()
let loop = try EventLoop(name: "adapter-llm")
let client = GunnClient(path: home + "/run/orchestrator.sock", loop: loop, name: "gunn-adapter-llm")
let out = Mutex<Void>(())
let runID = String(UInt64(Date().timeIntervalSince1970 * 1000) % (36 * 36 * 36 * 36 * 36 * 36), radix: 36)
let adapter = LLMAdapter(config: config, client: client, runID: runID) { event in
    let name = event["event"]?.stringValue ?? "unknown"
    eventsCounted.inc([name])
    if name == "spoke", let n = event["tokens"]?.numberValue { tokensSpoken.inc(by: n) }
    if let n = event["tokens_discarded"]?.numberValue { tokensDiscarded.inc([name], by: n) }
    var line = CanonicalJSON.encode(event)
    line.append(0x0A)
    out.withLock { _ in FileHandle.standardOutput.write(Data(line)) }
}
telemetry.metrics.counter("gunn_orchestrator_reconnects_total", help: "Times this process's connection to the orchestrator was opened again") {
    [([], Double(client.reconnects))]
}
let control = try? await ControlEndpoint.start(home: home, name: "llm", loop: loop, telemetry: telemetry)
telemetry.log(.info, "started", ["agents": .array(config.agents.map { .string("\($0.id) (\($0.backend.rawValue))") }),
                                 "control": .string(control?.path ?? "none")])
Task { await adapter.run() }
_ = await termination.wait()
await control?.stop()
client.close()
exit(0)
