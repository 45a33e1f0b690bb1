import Foundation
import GunnTelemetry
import GunnAuth
import GunnClient
import GunnCore
import GunnHTTP
import GunnIO
import GunnUnity

// gunn-adapter-unity: game engines (Unity, Godot, anything with a WebSocket client) join the world.
//   gunn-adapter-unity --home DIR --world-id ID [--listen HOST:PORT] [--time free|lockstep] [--sim-time host|engine]
//     [--hello-timeout-ms MS --sync-timeout-ms MS --heartbeat-ms MS --command-timeout-ms MS]
//     [--breaker-failures N] [--breaker-open-ms MS] [--contacts-per-second N]
// --listen (or GUNN_ENGINE_LISTEN) defaults to 127.0.0.1:8788; port 0 picks a free one. The address
// bound is written to run/engine.addr ("ws://HOST:PORT/v1/engine"), the links' state to
// run/engine.status.json. Engines authenticate with a gunn token that has the emit right.
// --sim-time (or GUNN_SIM_TIME, which the orchestrator reads too) says whether the engine's clock
// is the world's: then its effects carry the engine's sim time.
// Concurrency: GunnHTTP's loop runs the sockets, one EventLoop the orchestrator client; the
// bridge's state is behind its Mutex (EngineBridge).
Supervision.followSupervisor()
let usage = "gunn-adapter-unity --home DIR --world-id ID [--listen HOST:PORT] [--time free|lockstep]"
let args = ProcessArguments()
let home = args.homeOrExit(usage: usage)

func fail(_ e: GunnError) -> Never {
    Telemetry.write(LogLine.failure(process: "unity", event: "config_invalid", e))
    exit(64)
}
let telemetry = Telemetry(process: "unity", features: Features.fromEnvironmentOrExit("unity"))

let world = args.worldIDOrExit(program: "gunn-adapter-unity")
let listen = args.value("--listen", env: "GUNN_ENGINE_LISTEN") ?? "127.0.0.1:8788"
var http = HTTPServerConfiguration()
do { try http.setListen(listen) } catch { fail(error) }

var config = EngineBridgeConfig(worldID: world)
func number(_ flag: String, _ range: ClosedRange<Double>) -> Double? {
    guard let text = args.value(flag) else { return nil }
    guard let v = Double(text), range.contains(v) else { fail(GunnError(.configInvalid, "\(flag) must be a number in \(range), got \(text)")) }
    return v
}
if let mode = args.value("--time") {
    guard ["free", "lockstep"].contains(mode) else { fail(GunnError(.configInvalid, "--time must be free or lockstep, got \(mode)")) }
    config.timeMode = mode
}
if let t = args.value("--sim-time", env: "GUNN_SIM_TIME") {
    guard ["host", "engine"].contains(t) else { fail(GunnError(.configInvalid, "--sim-time must be host or engine, got \(t)")) }
    config.engineTime = t == "engine"
}
config.helloTimeoutSeconds = (number("--hello-timeout-ms", 50...600_000) ?? config.helloTimeoutSeconds * 1000) / 1000
config.syncTimeoutSeconds = (number("--sync-timeout-ms", 50...600_000) ?? config.syncTimeoutSeconds * 1000) / 1000
config.heartbeatMs = UInt32(number("--heartbeat-ms", 50...600_000) ?? Double(config.heartbeatMs))
config.commandTimeoutSeconds = (number("--command-timeout-ms", 50...3_600_000) ?? config.commandTimeoutSeconds * 1000) / 1000
config.breakerFailures = Int(number("--breaker-failures", 1...1000) ?? Double(config.breakerFailures))
config.breakerOpenSeconds = (number("--breaker-open-ms", 50...600_000) ?? config.breakerOpenSeconds * 1000) / 1000
config.contactsPerSecond = number("--contacts-per-second", 1...1e6) ?? config.contactsPerSecond

try? FileManager.default.createDirectory(atPath: home + "/run", withIntermediateDirectories: true)
try? FileManager.default.createDirectory(atPath: home + "/data", withIntermediateDirectories: true)
let auth: Authenticator
do { auth = try Authenticator(store: TokenStore(dataDir: home + "/data"), world: world) } catch { fail(error) }

let termination = TerminationSignals.install()
let loop = try EventLoop(name: "adapter-unity")
let client = GunnClient(path: home + "/run/orchestrator.sock", loop: loop, name: "gunn-adapter-unity")
let bridge = EngineBridge(client: client, auth: auth, config: config, statusPath: home + "/run/engine.status.json")

var router = Router()
router.webSocket("/v1/engine", bridge.endpoint())
router.get("/health") { _ in .json(["status": "alive"]) }
http.serverName = "gunn-adapter-unity"
http.maxConnections = 256
let server: HTTPServer
do { server = try HTTPServer(configuration: http, router: router) } catch {
    fail(GunnError(.configInvalid, "cannot listen on \(listen): \(error)"))
}
let url = "ws://\(http.urlHost):\(server.port)/v1/engine"
let addrPath = home + "/run/engine.addr"
if FileManager.default.createFile(atPath: addrPath + ".tmp", contents: Data((url + "\n").utf8)) { _ = rename(addrPath + ".tmp", addrPath) }
// The observer agent that finds commands; retried while the orchestrator is not there yet.
Task {
    while true {
        do { try await bridge.start(); break } catch {
            telemetry.log(.warn, "waiting_for_orchestrator", ["message": .string("\(error)")])
            try? await Task.sleep(nanoseconds: 500_000_000)
        }
    }
}
telemetry.metrics.counter("gunn_orchestrator_reconnects_total", help: "Times this process's connection to the orchestrator was opened again") {
    [([], Double(client.reconnects))]
}
telemetry.gauge("gunn_engine_links", help: "Each engine's link: 1 connected, 0.5 syncing, 0 lost or none", labels: ["engine"]) {
    bridge.linkStatus.map { ([$0.engine], $0.link == "connected" ? 1 : $0.link == "syncing" ? 0.5 : 0) }
}
telemetry.gauge("gunn_engine_commands_sent", help: "Commands sent to each engine", labels: ["engine"]) {
    bridge.linkStatus.map { ([$0.engine], Double($0.commandsSent)) }
}
telemetry.gauge("gunn_engine_sessions", help: "Sessions each engine opened", labels: ["engine"]) {
    bridge.linkStatus.map { ([$0.engine], Double($0.sessions)) }
}
telemetry.gauge("gunn_breaker_state", help: "Each engine link's breaker: 0 closed, 1 half open, 2 open", labels: ["breaker"]) {
    bridge.linkStatus.map { (["engine:" + $0.engine], $0.breaker == "open" ? 2 : $0.breaker == "half_open" ? 1 : 0) }
}
let control = try? await ControlEndpoint.start(home: home, name: "unity", loop: loop, telemetry: telemetry)
FileHandle.standardOutput.write(Data("ready \(url)\n".utf8))
telemetry.log(.info, "started", ["world_id": .string(world), "url": .string(url), "time_mode": .string(config.timeMode),
                                 "control": .string(control?.path ?? "none")])
_ = await termination.wait()
await server.stop()
await control?.stop()
try? FileManager.default.removeItem(atPath: addrPath)
client.close()
exit(0)
