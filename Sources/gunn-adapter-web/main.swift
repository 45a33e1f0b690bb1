import Foundation
import GunnAuth
import GunnClient
import GunnCore
import GunnHTTP
import GunnIO
import GunnTelemetry
import GunnWeb

// gunn-adapter-web: agents in any language join the world over REST, WebSocket and SSE.
//   gunn-adapter-web --home DIR --world-id ID [--listen HOST:PORT] [--tls-cert PEM --tls-key PEM]
//     [--agent-rate R --agent-burst B --tenant-rate R --tenant-burst B] (requests/s, token buckets)
//     [--max-agents-per-tenant N --max-streams-per-tenant N] [--quarantine-after N (0: never)]
//     [--header-timeout-ms MS --body-timeout-ms MS --idle-timeout-ms MS] (slow clients get 408)
//     [--dashboard on|off] (the dashboard at /, on by default; GUNN_DASHBOARD)
// --listen (or GUNN_WEB_LISTEN) defaults to 127.0.0.1:8787; port 0 picks a free one. The address
// bound is written to run/web.addr ("http://HOST:PORT"). --world-id falls back to GUNN_WORLD_ID
// (the supervisor sets it). Tokens are checked against data/web-secret and data/web-tokens.json.
// Serves run/web.sock (metrics) and GET /metrics: every process's metrics under the home, in the
// Prometheus text format (docs/operations.md).
Supervision.followSupervisor()
let usage = "gunn-adapter-web --home DIR --world-id ID [--listen HOST:PORT] [--tls-cert PEM --tls-key PEM]"
let args = ProcessArguments()
let home = args.homeOrExit(usage: usage)

func fail(_ e: GunnError) -> Never {
    Telemetry.write(LogLine.failure(process: "web", event: "config_invalid", e))
    exit(64)
}
let telemetry = Telemetry(process: "web", features: Features.fromEnvironmentOrExit("web"))

let world = args.worldIDOrExit(program: "gunn-adapter-web")
let listen = args.value("--listen", env: "GUNN_WEB_LISTEN") ?? "127.0.0.1:8787"
var config = HTTPServerConfiguration()
do { try config.setListen(listen) } catch { fail(error) }

try? FileManager.default.createDirectory(atPath: home + "/run", withIntermediateDirectories: true)
try? FileManager.default.createDirectory(atPath: home + "/data", withIntermediateDirectories: true)
let store = TokenStore(dataDir: home + "/data")
let auth: Authenticator
do { auth = try Authenticator(store: store, world: world) } catch { fail(error) }

let termination = TerminationSignals.install()
let loop = try EventLoop(name: "adapter-web")
// The dashboard (docs/dashboard.md) keeps a replica of the world that follows the log: on by
// default; --dashboard off (or GUNN_DASHBOARD=off) for an adapter that serves only agents.
let dashboardSetting = args.value("--dashboard", env: "GUNN_DASHBOARD") ?? "on"
guard dashboardSetting == "on" || dashboardSetting == "off" else { fail(GunnError(.configInvalid, "--dashboard must be on or off, got \(dashboardSetting)")) }
// A spectator of partial speech: the dashboard shows every agent's tokens as they come.
// Whole views are queued with the deltas, so the streams rebase on them (docs/web.md, After a restart).
let client = GunnClient(path: home + "/run/orchestrator.sock", loop: loop, name: "gunn-adapter-web",
                        capabilities: dashboardSetting == "on" ? ["spectate_speech"] : [], queuesWholeViews: true)
var webConfig = WebConfig(worldID: world)
func number(_ flag: String, _ range: ClosedRange<Double>) -> Double? {
    guard let text = args.value(flag) else { return nil }
    guard let v = Double(text), range.contains(v) else { fail(GunnError(.configInvalid, "\(flag) must be a number in \(range), got \(text)")) }
    return v
}
webConfig.agentRate = number("--agent-rate", 0.001...1e6) ?? webConfig.agentRate
webConfig.agentBurst = number("--agent-burst", 1...1e6) ?? webConfig.agentBurst
webConfig.tenantRate = number("--tenant-rate", 0.001...1e6) ?? webConfig.tenantRate
webConfig.tenantBurst = number("--tenant-burst", 1...1e6) ?? webConfig.tenantBurst
webConfig.maxAgentsPerTenant = Int(number("--max-agents-per-tenant", 1...1e6) ?? Double(webConfig.maxAgentsPerTenant))
webConfig.maxStreamsPerTenant = Int(number("--max-streams-per-tenant", 1...1e6) ?? Double(webConfig.maxStreamsPerTenant))
webConfig.quarantineAfter = Int(number("--quarantine-after", 0...1e6) ?? Double(webConfig.quarantineAfter))
let tracer = telemetry.tracer(home: home)
let scrapes = ScrapeCache(home: home, loop: loop, process: "web")
let dashboard = dashboardSetting == "on" ? Dashboard(home: home, loop: loop, client: client) { await scrapes.gathered() } : nil
let adapter = WebAdapter(config: webConfig, client: client, auth: auth, agentsFile: home + "/data/web-agents.json", tracer: tracer,
                         dashboard: dashboard)

config.serverName = "gunn-adapter-web"
let requests = telemetry.counter("gunn_http_requests_total", help: "HTTP responses written, by route pattern, method and status",
                                 labels: ["route", "method", "status"])
let requestSeconds = telemetry.histogram("gunn_http_request_seconds", help: "HTTP request head to response (seconds), by route pattern",
                                         labels: ["route"])
config.onResponse = { route, method, status, seconds in
    requests.inc([route, method, String(status)])
    requestSeconds.observe([route], seconds)
}
telemetry.metrics.counter("gunn_orchestrator_reconnects_total", help: "Times this process's connection to the orchestrator was opened again") {
    [([], Double(client.reconnects))]
}
telemetry.gauge("gunn_dashboard_pages", help: "Dashboard pages connected") { [([], Double(dashboard?.pages ?? 0))] }
telemetry.gauge("gunn_web_streams", help: "WebSocket and SSE streams open") { [([], Double(adapter.openStreams))] }
telemetry.metrics.counter("gunn_web_observations_delivered_total", help: "Observations delivered to WebSocket and SSE streams") {
    [([], Double(adapter.delivered))]
}
config.maxConnections = 4096
// Slow clients (slowloris): the header and body progress deadlines and the keep-alive idle time.
config.headerTimeout = (number("--header-timeout-ms", 50...600_000) ?? config.headerTimeout * 1000) / 1000
config.bodyTimeout = (number("--body-timeout-ms", 50...600_000) ?? config.bodyTimeout * 1000) / 1000
config.idleTimeout = (number("--idle-timeout-ms", 50...3_600_000) ?? config.idleTimeout * 1000) / 1000
if let cert = args.value("--tls-cert"), let key = args.value("--tls-key") {
    do { config.tls = try TLSServerContext(certificateFile: cert, keyFile: key) } catch { fail(GunnError(.configInvalid, "\(error)")) }
}
let server: HTTPServer
var router = adapter.router()
router.on("GET", "/metrics") { _, res in
    Task {
        let text = await scrapes.exposition()
        res.respond(HTTPResponse(status: 200, headers: [("Content-Type", PrometheusText.contentType)], body: Array(text.utf8)))
    }
}
// Every process's health: 200 when all of them answer, 503 naming the ones that do not.
router.on("GET", "/health/processes") { _, res in
    Task {
        let (ok, body) = await scrapes.health()
        res.respond(.json(body, status: ok ? 200 : 503))
    }
}
do { server = try HTTPServer(configuration: config, router: router) } catch {
    fail(GunnError(.configInvalid, "cannot listen on \(listen): \(error)"))
}
let url = "\(config.tls == nil ? "http" : "https")://\(config.urlHost):\(server.port)"
let addrPath = home + "/run/web.addr"
if FileManager.default.createFile(atPath: addrPath + ".tmp", contents: Data((url + "\n").utf8)) { _ = rename(addrPath + ".tmp", addrPath) }
dashboard?.start()
// Agents registered before a restart are registered again, so their views and streams go on.
Task { await adapter.restoreAgents() }
let control: ControlEndpoint
do { control = try await ControlEndpoint.start(home: home, name: "web", loop: loop, telemetry: telemetry) } catch {
    fail(GunnError(.configInvalid, "cannot serve \(home)/run/web.sock: \(error)"))
}
FileHandle.standardOutput.write(Data("ready \(url)\n".utf8))
telemetry.log(.info, "started", ["world_id": .string(world), "url": .string(url), "control": .string(control.path)])
_ = await termination.wait()
await server.stop()
await control.stop()
tracer.flush()
try? FileManager.default.removeItem(atPath: addrPath)
client.close()
exit(0)
