import Foundation
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
    FileHandle.standardError.write(Data("gunn-adapter-llm: \(e.code.name) (\(e.code.code)): \(e.message)\n".utf8))
    exit(2)
}
let termination = TerminationSignals.install()
let loop = try EventLoop(name: "adapter-llm")
let client = GunnClient(path: home + "/run/orchestrator.sock", loop: loop, name: "gunn-adapter-llm")
let out = Mutex<Void>(())
let runID = String(UInt64(Date().timeIntervalSince1970 * 1000) % (36 * 36 * 36 * 36 * 36 * 36), radix: 36)
let adapter = LLMAdapter(config: config, client: client, runID: runID) { event in
    var line = CanonicalJSON.encode(event)
    line.append(0x0A)
    out.withLock { _ in FileHandle.standardOutput.write(Data(line)) }
}
FileHandle.standardError.write(Data("gunn-adapter-llm: \(config.agents.count) agents: \(config.agents.map { "\($0.id) (\($0.backend.rawValue))" }.joined(separator: ", "))\n".utf8))
Task { await adapter.run() }
_ = await termination.wait()
client.close()
exit(0)
