import Foundation
import Glibc
import XCTest
import GunnClient
import GunnCore
import GunnIO
import GunnWire

/// Observability from the outside: a real Prometheus scraping the web adapter's /metrics of a live
/// system under load, promtool checking the exposition, gunnctl metrics and health, and every log
/// file of a run that used bearer tokens and e-mail addresses read back for anything in clear.
final class TelemetryTests: XCTestCase {
    var home: String!
    var sup: SupervisorTests.SessionProcess?
    var peers: [Process] = []
    var clients: [GunnClient] = []
    static let loop = try! EventLoop(name: "telemetry-tests") // no loop: a broken test machine, not input
    var root: URL { EventLogProcessTests.root }

    override func setUpWithError() throws {
        home = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-tel-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        for c in clients { c.close() }
        for p in peers where p.isRunning { kill(p.processIdentifier, SIGTERM); p.waitUntilExit() }
        if let sup { kill(sup.pid, SIGTERM); sup.wait() }
        for pid in SupervisorTests.processes(where: { $0.cmdline.contains(self.home) }) { kill(pid, SIGKILL) }
        try? FileManager.default.removeItem(atPath: home)
    }

    /// eventlog, orchestrator and the web adapter under the supervisor, plus `extraChildren`.
    func startSystem(extraChildren: String = "", environment: [String: String] = [:]) throws -> String {
        let config = """
        {"world_id": "w1", "world_seed": 5, "durability": "normal", "children": [
          {"name": "eventlog", "executable": "gunn-eventlog", "socket": "run/eventlog.sock", "args": ["--home", "{home}", "--world-id", "{world_id}", "--durability", "{durability}"]},
          {"name": "orchestrator", "executable": "gunn-orchestrator", "socket": "run/orchestrator.sock", "depends_on": ["eventlog"],
           "args": ["--home", "{home}", "--world-id", "{world_id}", "--world-seed", "{world_seed}"]},
          {"name": "web", "executable": "gunn-adapter-web", "socket": "run/web.sock", "depends_on": ["orchestrator"],
           "args": ["--home", "{home}", "--world-id", "{world_id}", "--listen", "127.0.0.1:0"]}\(extraChildren)]}
        """
        try config.write(toFile: home + "/gunn.json", atomically: true, encoding: .utf8)
        var env = ProcessInfo.processInfo.environment
        env["PATH"] = root.appendingPathComponent(".build/debug").path + ":" + (env["PATH"] ?? "")
        for (k, v) in environment { env[k] = v }
        sup = try SupervisorTests.SessionProcess(root.appendingPathComponent(".build/debug/gunn-supervisor").path,
                                                 ["--config", home + "/gunn.json", "--home", home], environment: env, stderrPath: home + "/supervisor.err")
        _ = try GunnHome(home).waitReady(["eventlog", "orchestrator", "web"])
        return try String(contentsOfFile: home + "/run/web.addr", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func client(_ name: String) -> GunnClient {
        let c = GunnClient(path: home + "/run/orchestrator.sock", loop: Self.loop, name: name)
        clients.append(c)
        return c
    }

    func curl(_ args: [String]) throws -> String {
        let (status, out) = try runTool("/usr/bin/curl", ["-sS", "--max-time", "20"] + args)
        XCTAssertEqual(status, 0, out)
        return out
    }

    /// One PromQL instant query through Prometheus's HTTP API: the single result's value.
    func promQuery(_ base: String, _ query: String, at time: Double? = nil) throws -> Double? {
        var args = ["-G", base + "/api/v1/query", "--data-urlencode", "query=" + query]
        if let time { args += ["--data-urlencode", "time=\(time)"] }
        // Not listening yet (Prometheus starts in a few seconds): no answer, asked again by the caller.
        let (status, out) = try runTool("/usr/bin/curl", ["-sS", "--max-time", "20"] + args)
        guard status == 0, let reply = try? JSONParser.parse(Array(out.utf8)) else { return nil }
        guard reply["status"] == "success", case .array(let results)? = reply["data"]?["result"], let first = results.first,
              case .array(let pair)? = first["value"], pair.count == 2, let text = pair[1].stringValue else { return nil }
        return Double(text)
    }

    func poll(_ what: String, seconds: Double = 60, _ condition: () throws -> Bool) throws {
        let end = Date().addingTimeInterval(seconds)
        while try !condition() {
            if Date() > end { throw GunnError(.operationTimeout, "timed out waiting for \(what)") }
            usleep(200_000)  // Prometheus is asked again every 200 ms until it holds or the deadline passes
        }
    }

    func testPrometheusScrapesALiveSystemAndItsRateAndQuantileAgreeWithTheLog() async throws {
        let web = try startSystem()
        let port = try LLMAdapterTests.freePort()
        let prom = "http://127.0.0.1:\(port)"
        let target = web.replacingOccurrences(of: "http://", with: "")
        let config = """
        global: {scrape_interval: 1s, evaluation_interval: 1s}
        scrape_configs:
          - job_name: gunn
            static_configs: [{targets: ["\(target)"]}]
        """
        try config.write(toFile: home + "/prometheus.yml", atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/prometheus")
        p.arguments = ["--config.file=" + home + "/prometheus.yml", "--storage.tsdb.path=" + home + "/prom-data",
                       "--web.listen-address=127.0.0.1:\(port)"]
        p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        FileManager.default.createFile(atPath: home + "/prometheus.err", contents: nil)
        p.standardError = FileHandle(forWritingAtPath: home + "/prometheus.err")
        try p.run()
        peers.append(p)
        // Scraped, and the counter is there (at 0: nothing was submitted yet).
        try poll("Prometheus's first scrape of /metrics") {
            (try? promQuery(prom, "up{job=\"gunn\"}")) == 1 && (try? promQuery(prom, "gunn_process_up{socket=\"orchestrator.sock\"}")) == 1
        }
        // The window opens on a whole second, before any intent.
        let windowStart = Date().timeIntervalSince1970.rounded(.up) + 1
        // A scrape inside the window before the load (so the window has opened): the rate starts from a sample of 0, however
        // late a loaded machine's next scrapes come.
        try poll("a scrape inside the window, before the load") {
            (try? promQuery(prom, "timestamp(gunn_intents_total{outcome=\"committed\"})")).map { $0 >= windowStart } ?? false
        }
        XCTAssertEqual(try promQuery(prom, "sum(gunn_intents_total{outcome=\"committed\"})"), 0)
        // Load: three agents speak lines of many lengths (so effect sizes spread over buckets),
        // and some intents are refused (an agent nobody registered).
        let c = client("load")
        for a in ["ann", "bob", "cyd"] { _ = try await c.register(["agent_id": .string(a), "spawn": [0, 0], "staleness_threshold": 1_000_000]) }
        var rng = SplitMix64(seed: 21)
        var committed = 0, refused = 0
        let loadEnd = Date().addingTimeInterval(8)
        var n = 0
        while Date() < loadEnd {
            n += 1
            let agent = ["ann", "bob", "cyd"][n % 3]
            let text = String(repeating: "x", count: 10 + Int(rng.next() % 1500))
            let o = try await c.submit(Intent(kind: .speak, payload: ["text": .string(text)], contextSeq: 0, reqID: ReqID("r\(n)"), agentID: AgentID(agent)))
            if o.effect != nil { committed += 1 }
            if n % 10 == 0 {
                let r = try await c.submit(Intent(kind: .speak, payload: ["text": "nobody"], contextSeq: 0, reqID: ReqID("x\(n)"), agentID: "ghost"))
                if r.error != nil { refused += 1 }
            }
        }
        // promtool on the exposition as it stands under load.
        let exposition = try curl([web + "/metrics"])
        try exposition.write(toFile: home + "/metrics.txt", atomically: true, encoding: .utf8)
        let (lint, lintOut) = try runTool("/bin/sh", ["-c", "/usr/bin/promtool check metrics < '\(home!)/metrics.txt' 2>&1"])
        XCTAssertEqual(lint, 0, "promtool check metrics: \(lintOut)")
        XCTAssertTrue(exposition.contains("gunn_orchestrator_reconnects_total{process=\"web\"} 0"), "the web adapter never lost the orchestrator")
        // Prometheus holds the final count, then the window closes on a whole second.
        try poll("the committed count in Prometheus") {
            (try? promQuery(prom, "sum(gunn_intents_total{outcome=\"committed\"})")) == Double(committed)
        }
        let windowEnd = Date().timeIntervalSince1970.rounded(.up) + 2
        // A scrape stamped after the window's end (so it has closed).
        try poll("a scrape after the window") { (try? promQuery(prom, "timestamp(up{job=\"gunn\"})")).map { $0 >= windowEnd } ?? false }
        let entries = try await OrchestratorProcessTests.logEntries(home: home, worldID: "w1")
        let spoken = entries.filter { (try? JSONParser.parse($0.effect))?["kind"] == "Speak" }
        XCTAssertEqual(spoken.count, committed, "each committed intent is one Speak in the log")
        // The rate: PromQL over the window against the log's count over the same window.
        let window = Int(windowEnd - windowStart)
        let rate = try XCTUnwrap(try promQuery(prom, "sum(rate(gunn_intents_total{outcome=\"committed\"}[\(window)s]))", at: windowEnd))
        let inWindow = spoken.filter { $0.wallTime >= windowStart && $0.wallTime <= windowEnd }.count
        XCTAssertEqual(inWindow, committed, "the whole load fell inside the window")
        let logRate = Double(inWindow) / Double(window)
        // rate() extrapolates from the first and last samples in the window to its edges (at most
        // one scrape interval, 1 s, of a window of \(window) s); within 15% of the log's rate.
        XCTAssertEqual(rate, logRate, accuracy: logRate * 0.15, "PromQL rate \(rate)/s vs the log's \(logRate)/s")
        let refusedCount = try promQuery(prom, "sum(gunn_intents_total{outcome=\"rejected\",code=\"INVALID_AGENT_ID\"})", at: windowEnd)
        XCTAssertEqual(refusedCount, Double(refused), "refusals counted by code")
        // The quantile: the median size of the effects the log writer committed, from its
        // histogram, lands in the bucket that holds the log's own median effect.
        let bounds: [Double] = [64, 128, 256, 512, 1024, 2048, 4096, 16384, 65536, 262144, 1048576]
        let sizes = entries.map { Double($0.effect.count) }.sorted()
        let count = try promQuery(prom, "sum(gunn_eventlog_effect_size_bytes_count)", at: windowEnd)
        XCTAssertEqual(count, Double(sizes.count), "every committed entry observed once")
        let q = try XCTUnwrap(try promQuery(prom, "histogram_quantile(0.5, sum by (le) (gunn_eventlog_effect_size_bytes_bucket))", at: windowEnd))
        let median = sizes[Int((Double(sizes.count) * 0.5).rounded(.up)) - 1]
        func bucket(_ v: Double) -> Int { bounds.firstIndex { v <= $0 } ?? bounds.count }
        XCTAssertEqual(bucket(q), bucket(median), "histogram_quantile \(q) and the log's median \(median) in one bucket")
        let p99 = try XCTUnwrap(try promQuery(prom, "histogram_quantile(0.99, sum by (le) (gunn_intent_seconds_bucket))", at: windowEnd))
        XCTAssertTrue(p99 > 0 && p99.isFinite, "intent latency p99 \(p99)")
        // gunnctl reads the same counters.
        let m = try GunnHome(home).gunnctl(["--json", "metrics"])
        XCTAssertEqual(m.status, 0, m.err)
        let orch = m.json?["processes"]?.arrayValue?.first { $0["process"] == "orchestrator" }
        let intents = orch?["families"]?.arrayValue?.first { $0["name"] == "gunn_intents_total" }
        let committedSeries = intents?["series"]?.arrayValue?.first { $0["labels"] == ["committed", ""] }
        XCTAssertEqual(committedSeries?["value"]?.numberValue, Double(committed))
        let web200 = try JSONParser.parse(Array(try curl([web + "/health/processes"]).utf8))
        XCTAssertEqual(web200["status"], "ok")
        XCTAssertEqual(web200["processes"]?["eventlog"], "ok")
        XCTAssertEqual(web200["processes"]?["web"], "ok")
        let health = try GunnHome(home).gunnctl(["--json", "health"])
        XCTAssertEqual(health.status, 0, health.err)
        XCTAssertEqual(health.json?["status"], "ok")
        XCTAssertEqual(health.json?["processes"]?["orchestrator"], "ok")
        print("prometheus: \(committed) committed, rate \(rate)/s vs log \(logRate)/s over \(window) s; effect size median \(median) B, quantile \(q) B; intent p99 \(p99 * 1000) ms")
    }

    /// GUNN_FEATURES is parsed strictly: the supervisor refuses an unknown flag before starting anything.
    func testAnUnknownFeatureFlagIsConfigInvalid() throws {
        try "{\"children\": [{\"name\": \"eventlog\", \"executable\": \"gunn-eventlog\", \"args\": [\"--home\", \"{home}\"]}]}"
            .write(toFile: home + "/gunn.json", atomically: true, encoding: .utf8)
        var env = ProcessInfo.processInfo.environment
        env["GUNN_FEATURES"] = "telemetry,warp-drive"
        let p = try SupervisorTests.SessionProcess(root.appendingPathComponent(".build/debug/gunn-supervisor").path,
                                                   ["--config", home + "/gunn.json", "--home", home], environment: env, stderrPath: home + "/supervisor.err")
        let status = p.wait()
        let err = try String(contentsOfFile: home + "/supervisor.err", encoding: .utf8)
        XCTAssertEqual(status, 78, err)
        XCTAssertTrue(err.contains("CONFIG_INVALID") && err.contains("warp-drive") && err.contains("known: telemetry, tracing"), err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: home + "/run/eventlog.sock"), "nothing started")
        // A process started by hand refuses it too, with exit 78.
        let (exit, text) = try GunnHome.runToExit("gunn-eventlog", ["--home", home], environment: env)
        XCTAssertEqual(exit, 78, text)
        let line = try JSONParser.parse(Array(text.split(separator: "\n").first.map { Array($0.utf8) } ?? []))
        XCTAssertEqual(line["event"], "config_invalid")
        XCTAssertEqual(line["code"], 7001)
    }

    /// A run that used bearer tokens and e-mail addresses everywhere it could: REST calls with good
    /// and forged tokens, agents and speech carrying addresses and phone numbers, and a child that
    /// prints credentials on its stderr. Every file under logs/ is JSON lines, and none holds a
    /// token, an address or a number in clear; the chatty child's lines are there, redacted.
    func testNoLogFileHoldsATokenOrAnAddressInClear() async throws {
        let chatty = """
        ,
          {"name": "chatty", "executable": "/bin/sh", "args": ["-c", "while :; do if [ -f {home}/say ]; then cat {home}/say >&2; rm -f {home}/say; fi; sleep 0.05; done"]}
        """
        let web = try startSystem(extraChildren: chatty)
        let issued = try GunnHome(home).gunnctl(["token", "issue", "--tenant", "t1", "--rights", "observe,act"])
        XCTAssertEqual(issued.status, 0, issued.err)
        let token = issued.out.trimmingCharacters(in: .whitespacesAndNewlines)
        let email = "ann.lee@example.com", phone = "+44 20 7946 0958"
        let register = #"{"agent_id":"ann","spawn":[0,0],"entity":{"contact":"\#(email)","phone":"\#(phone)"}}"#
        _ = try curl(["-X", "POST", "-H", "Authorization: Bearer " + token, "-H", "Content-Type: application/json", "--data-binary", register, web + "/v1/agents"])
        let speak = #"{"kind":"Speak","payload":{"text":"write to \#(email) or call \#(phone)"},"context_seq":0,"req_id":"s1"}"#
        _ = try curl(["-X", "POST", "-H", "Authorization: Bearer " + token, "-H", "Content-Type: application/json", "--data-binary", speak,
                      web + "/v1/agents/ann/intents"])
        let forged = String(token.dropLast(4)) + "AAAA"
        _ = try curl(["-H", "Authorization: Bearer " + forged, web + "/v1/agents/ann/view"])
        _ = try curl([web + "/v1/agents/ann/view?access_token=" + token])
        // The child prints what a careless library would.
        let said = "Authorization: Bearer \(token)\nuser \(email) phone \(phone)\n{\"api_key\": \"sk-proj-abcdefghijklmnopqrstuvwx\"}\n"
        try said.write(toFile: home + "/say", atomically: true, encoding: .utf8)
        let chattyLog = home + "/logs/chatty.log"
        try poll("the chatty child's lines in its log", seconds: 30) {
            ((try? String(contentsOfFile: chattyLog, encoding: .utf8)) ?? "").contains("api_key")
        }
        // A clean stop flushes every pipe into its file.
        if let sup { kill(sup.pid, SIGTERM); _ = sup.wait() }
        sup = nil
        let files = try FileManager.default.contentsOfDirectory(atPath: home + "/logs").sorted()
        XCTAssertTrue(["chatty.log", "eventlog.log", "orchestrator.log", "web.log"].allSatisfy(files.contains), "\(files)")
        var lines = 0
        for f in files {
            let text = try String(contentsOfFile: home + "/logs/" + f, encoding: .utf8)
            for secret in [token, forged, email, phone, "7946 0958", "sk-proj-abcdefghijklmnopqrstuvwx"] {
                XCTAssertFalse(text.contains(secret), "\(f) holds \(secret.prefix(12))… in clear")
            }
            for line in text.split(separator: "\n") {
                lines += 1
                let o = try? JSONParser.parse(Array(line.utf8))
                XCTAssertTrue(o?["ts"] != nil && o?["level"] != nil && o?["process"] != nil && o?["event"] != nil, "\(f): not a log line: \(line)")
            }
        }
        let chattyText = try String(contentsOfFile: chattyLog, encoding: .utf8)
        // What the child said is there, each secret replaced by its marker.
        for marker in ["Authorization: [REDACTED]", "user [REDACTED:email] phone [REDACTED:phone]", #""api_key":"[REDACTED]""#] {
            XCTAssertTrue(chattyText.contains(marker), "\(marker) in \(chattyText)")
        }
        print("logs: \(files.count) files, \(lines) lines, nothing in clear")
    }

    /// The units in ops/systemd pass `systemd-analyze verify` (with this build's binaries where the
    /// units name /usr/local/bin): no error and no warning. A unit with a mistake is caught too.
    func testTheSystemdUnitsVerify() throws {
        let dir = home + "/units"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let bin = root.appendingPathComponent(".build/debug").path
        for unit in ["gunn.service", "gunn-adapter-web@.service"] {
            let text = try String(contentsOfFile: root.path + "/ops/systemd/" + unit, encoding: .utf8)
            XCTAssertTrue(text.contains("/usr/local/bin/"), unit)
            try text.replacingOccurrences(of: "/usr/local/bin", with: bin).write(toFile: dir + "/" + unit, atomically: true, encoding: .utf8)
        }
        func verify(_ unit: String) throws -> (Int32, String) {
            try runTool("/bin/sh", ["-c", "cd '\(dir)' && /usr/bin/systemd-analyze verify '\(dir)/\(unit)' 2>&1"])
        }
        for unit in ["gunn.service", "gunn-adapter-web@8790.service"] {
            let (status, out) = try verify(unit)
            XCTAssertEqual(status, 0, "\(unit): \(out)")
            XCTAssertEqual(out.trimmingCharacters(in: .whitespacesAndNewlines), "", "\(unit) verifies without a warning")
        }
        // The check is real: a bad directive is reported.
        let broken = try String(contentsOfFile: dir + "/gunn.service", encoding: .utf8).replacingOccurrences(of: "Restart=on-failure", with: "Restart=sometimes")
        try broken.write(toFile: dir + "/gunn.service", atomically: true, encoding: .utf8)
        let (_, out) = try verify("gunn.service")
        XCTAssertTrue(out.contains("sometimes"), out)
    }

    /// One intent submitted over REST with a `traceparent` header is one trace across three
    /// processes: the web adapter's request span (child of the caller's), the orchestrator's intent
    /// span, the log writer's append span, and the orchestrator's delivery span to each observer.
    /// Read back from the OTLP/JSON files by the OpenTelemetry protobufs.
    func testOneIntentIsOneTraceAcrossThreeProcesses() async throws {
        let web = try startSystem(environment: ["GUNN_FEATURES": "telemetry,tracing"])
        let issued = try GunnHome(home).gunnctl(["token", "issue", "--tenant", "t1", "--rights", "observe,act"])
        XCTAssertEqual(issued.status, 0, issued.err)
        let token = issued.out.trimmingCharacters(in: .whitespacesAndNewlines)
        for (a, x) in [("ann", 0), ("bob", 1)] {
            _ = try curl(["-X", "POST", "-H", "Authorization: Bearer " + token, "-H", "Content-Type: application/json",
                          "--data-binary", #"{"agent_id":"\#(a)","spawn":[\#(x),0],"staleness_threshold":1000000}"#, web + "/v1/agents"])
        }
        let traceID = "4bf92f3577b34da6a3ce929d0e0e4736", caller = "00f067aa0ba902b7"
        let reply = try curl(["-X", "POST", "-H", "Authorization: Bearer " + token, "-H", "Content-Type: application/json",
                              "-H", "traceparent: 00-\(traceID)-\(caller)-01",
                              "--data-binary", #"{"kind":"Speak","payload":{"text":"hello"},"context_seq":0,"req_id":"traced-1"}"#,
                              web + "/v1/agents/ann/intents"])
        XCTAssertTrue(reply.contains("committed"), reply)
        // A request with a malformed traceparent starts a trace of its own (the header is ignored).
        _ = try curl(["-X", "POST", "-H", "Authorization: Bearer " + token, "-H", "Content-Type: application/json",
                      "-H", "traceparent: 00-\(traceID.uppercased())-\(caller)-01",
                      "--data-binary", #"{"kind":"Speak","payload":{"text":"again"},"context_seq":0,"req_id":"traced-2"}"#,
                      web + "/v1/agents/ann/intents"])
        let files = ["web", "orchestrator", "eventlog"].map { home + "/logs/traces.\($0).jsonl" }
        try poll("the spans of the trace in every process's file", seconds: 30) {
            files.allSatisfy { ((try? String(contentsOfFile: $0, encoding: .utf8)) ?? "").contains(traceID) }
                && ((try? String(contentsOfFile: files[1], encoding: .utf8)) ?? "").components(separatedBy: "orchestrator deliver").count > 2
        }
        let (status, out) = try runTool(root.path + "/.venv-otel/bin/python", [root.path + "/Tests/Interop/otlp_check.py", traceID] + files)
        XCTAssertEqual(status, 0, out)
        let summary = try JSONParser.parse(Array(out.utf8))
        let spans = summary["spans"]?.arrayValue ?? []
        func one(_ name: String) -> JSONValue? {
            let found = spans.filter { $0["name"]?.stringValue == name }
            XCTAssertEqual(found.count, 1, "\(name): \(spans)")
            return found.first
        }
        let webSpan = try XCTUnwrap(one("web POST /v1/agents/{agent_id}/intents"))
        let intent = try XCTUnwrap(one("orchestrator intent"))
        let append = try XCTUnwrap(one("eventlog append"))
        XCTAssertEqual(webSpan["service"], "gunn-web")
        XCTAssertEqual(intent["service"], "gunn-orchestrator")
        XCTAssertEqual(append["service"], "gunn-eventlog")
        XCTAssertEqual(webSpan["parent"]?.stringValue, caller, "the caller's span is the parent")
        XCTAssertEqual(intent["parent"], webSpan["span_id"])
        XCTAssertEqual(append["parent"], intent["span_id"])
        let deliveries = spans.filter { $0["name"] == "orchestrator deliver" }
        XCTAssertEqual(Set(deliveries.compactMap { $0["attributes"]?["agent_id"]?["stringValue"]?.stringValue }), ["ann", "bob"], "\(deliveries)")
        XCTAssertTrue(deliveries.allSatisfy { $0["parent"] == intent["span_id"] })
        XCTAssertEqual(intent["attributes"]?["req_id"]?["stringValue"], "traced-1")
        XCTAssertEqual(Set(spans.compactMap { $0["service"]?.stringValue }), ["gunn-web", "gunn-orchestrator", "gunn-eventlog"])
        XCTAssertGreaterThanOrEqual(summary["trace_ids"]?.numberValue ?? 0, 2, "the second request began a trace of its own")
        print("trace: \(spans.count) spans in one trace over 3 processes; \(summary["lines"]?.numberValue ?? 0) OTLP lines parsed")
    }

    /// `--profile dev` (ops/profiles.json) sets the features every child runs with, and status
    /// and the metrics say so.
    func testAProfileSetsTheFeaturesOfEveryProcessAndStatusShowsThem() throws {
        let config = """
        {"world_id": "w1", "children": [
          {"name": "eventlog", "executable": "gunn-eventlog", "socket": "run/eventlog.sock", "args": ["--home", "{home}"]},
          {"name": "orchestrator", "executable": "gunn-orchestrator", "socket": "run/orchestrator.sock", "depends_on": ["eventlog"], "args": ["--home", "{home}"]}]}
        """
        try config.write(toFile: home + "/gunn.json", atomically: true, encoding: .utf8)
        var env = ProcessInfo.processInfo.environment
        env["PATH"] = root.appendingPathComponent(".build/debug").path + ":" + (env["PATH"] ?? "")
        env["GUNN_FEATURES"] = nil
        sup = try SupervisorTests.SessionProcess(root.appendingPathComponent(".build/debug/gunn-supervisor").path,
                                                 ["--config", home + "/gunn.json", "--home", home, "--profile", "dev", "--profiles", root.path + "/ops/profiles.json"],
                                                 environment: env, stderrPath: home + "/supervisor.err")
        _ = try GunnHome(home).waitReady(["eventlog", "orchestrator"])
        let status = try GunnHome(home).gunnctl(["--json", "status"])
        XCTAssertEqual(status.json?["features"], ["telemetry", "tracing"], status.out)
        XCTAssertEqual(status.json?["profile"], "dev")
        let human = try GunnHome(home).gunnctl(["status"])
        XCTAssertTrue(human.out.contains("features: telemetry,tracing; profile dev"), human.out)
        let metrics = try GunnHome(home).gunnctl(["metrics"])
        XCTAssertEqual(metrics.status, 0, metrics.err)
        for p in ["orchestrator", "eventlog", "supervisor"] {
            XCTAssertTrue(metrics.out.contains("gunn_feature_enabled{process=\"\(p)\",feature=\"tracing\"} 1"), metrics.out)
        }
        // A wedged process: health names it and exits 5, within its deadline, and says ok again after.
        let orchPID = try XCTUnwrap(status.json?["children"]?.arrayValue?.first { $0["name"] == "orchestrator" }?["pid"]?.numberValue)
        kill(pid_t(orchPID), SIGSTOP)
        let wedged = try GunnHome(home).gunnctl(["--json", "--timeout-ms", "1000", "health"])
        kill(pid_t(orchPID), SIGCONT)
        XCTAssertEqual(wedged.status, 5, wedged.out + wedged.err)
        XCTAssertEqual(wedged.json?["status"], "degraded")
        XCTAssertEqual(wedged.json?["processes"]?["orchestrator"], "not_answering")
        XCTAssertEqual(wedged.json?["processes"]?["eventlog"], "ok")
        XCTAssertTrue(wedged.err.contains("OPERATION_TIMEOUT") && wedged.err.contains("orchestrator.sock"), wedged.err)
        XCTAssertEqual(try GunnHome(home).gunnctl(["health"]).status, 0)
        // The children write their structured lines under the profile: the log writer's start line is there.
        let log = try String(contentsOfFile: home + "/logs/eventlog.log", encoding: .utf8)
        XCTAssertTrue(log.contains("\"event\":\"started\""), log)
    }
}
