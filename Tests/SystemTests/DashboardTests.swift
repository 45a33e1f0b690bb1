import Foundation
import Glibc
import XCTest
import GunnCore

/// The dashboard (docs/dashboard.md) in Debian's headless Chromium, driven by Playwright
/// (Tests/Interop/dashboard_check.py), against live systems under the supervisor: a small world
/// for what the page must get exactly right, and the shipped city demo (ops/city.json) for frame
/// rate, the adapter's CPU and the screenshots in docs/.
final class DashboardTests: XCTestCase {
    var home: String!
    var root: String { EventLogProcessTests.root.path }

    override func setUpWithError() throws {
        home = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-dash-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        for pid in SupervisorTests.processes(where: { $0.cmdline.contains(self.home) }) { kill(pid, SIGKILL) }
        try? FileManager.default.removeItem(atPath: home)
    }

    var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["PATH"] = root + "/.build/debug:" + root + "/.venv-tools/bin:" + (env["PATH"] ?? "")
        env["GUNN_WEB_LISTEN"] = "127.0.0.1:0"
        return env
    }

    /// Starts the supervisor on `config`, waits for `children` and the web adapter's address.
    func start(_ config: String, _ children: [String]) throws -> (SupervisorTests.SessionProcess, String) {
        let sup = try SupervisorTests.SessionProcess(root + "/.build/debug/gunn-supervisor", ["--config", config, "--home", home],
                                                     environment: environment, stderrPath: home + "/supervisor.err")
        _ = try GunnHome(home).waitReady(children, seconds: 60)
        let deadline = Date().addingTimeInterval(30)
        while !FileManager.default.fileExists(atPath: home + "/run/web.addr") && Date() < deadline { usleep(20_000) }
        let url = try String(contentsOfFile: home + "/run/web.addr", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        return (sup, url)
    }

    func token(_ args: [String]) throws -> String {
        let ctl = try GunnHome(home).gunnctl(["token", "issue"] + args)
        XCTAssertEqual(ctl.status, 0, ctl.err)
        return ctl.out.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Runs the check script; its findings (the last line of its stdout, JSON).
    func check(_ args: [String]) throws -> JSONValue {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: root + "/.venv-tools/bin/python")
        p.arguments = [root + "/Tests/Interop/dashboard_check.py"] + args
        p.environment = environment
        let out = Pipe()
        let errPath = home + "/dashboard_check.\(args[0]).err"
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        p.standardOutput = out; p.standardError = FileHandle(forWritingAtPath: errPath)
        try p.run()
        let o = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        let e = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        guard p.terminationStatus == 0, let line = o.split(separator: "\n").last, let v = try? JSONParser.parse(String(line)) else {
            throw GunnError(.internalError, "dashboard_check.py exited \(p.terminationStatus): \(o.suffix(2000)) \(e.suffix(3000))")
        }
        print("dashboard_check.py \(args[0]): \(line)")
        return v
    }

    func http(_ method: String, _ url: String, token: String, body: String) throws -> Int32 {
        let (status, out) = try runTool("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method, "-H", "Authorization: Bearer " + token,
                                                        "-H", "Content-Type: application/json", "--data-binary", body, url])
        XCTAssertEqual(status, 0, out)
        return Int32(out.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }

    /// A small world: the page's model is the log's world at the seq it names (positions
    /// recomputed by the script from `gunnctl tail`); an agent chosen with the keyboard shows
    /// exactly its view (GET view: the orchestrator's), its hidden field and what is out of its
    /// radius absent; A's partial tokens stream into a bubble, B's remark strikes it out with its
    /// reason linking to the entry, which replays the world at that seq; the tail shows new
    /// commits with the log's checksums; a kill -9 of the orchestrator shows as a restart in the
    /// tree and the page goes on by itself. No console error, no request outside the adapter.
    func testTheDashboardFollowsTheLogShowsAnAgentsEyesSpeechAndARestart() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium") else { return XCTFail("chromium is missing: ops/setup --test installs it") }
        let config = """
        {"world_id": "dash", "world_seed": 5, "durability": "normal", "max_restarts": 10, "max_seconds": 60, "backoff_base_ms": 50,
         "backoff_cap_ms": 400, "stable_seconds": 5, "children": [
          {"name": "eventlog", "executable": "gunn-eventlog", "socket": "run/eventlog.sock", "args": ["--home", "{home}", "--world-id", "{world_id}", "--durability", "{durability}"]},
          {"name": "orchestrator", "executable": "gunn-orchestrator", "socket": "run/orchestrator.sock", "depends_on": ["eventlog"], "args": ["--home", "{home}", "--world-id", "{world_id}", "--world-seed", "{world_seed}"]},
          {"name": "web", "executable": "gunn-adapter-web", "depends_on": ["orchestrator"], "args": ["--home", "{home}", "--world-id", "{world_id}"]},
          {"name": "demo", "executable": "gunn-demo", "depends_on": ["orchestrator"], "args": ["--home", "{home}", "--agents", "ann,bob,cyd", "--interval-ms", "200", "--talk-one-in", "1000000"]}]}
        """
        try config.write(toFile: home + "/gunn.json", atomically: true, encoding: .utf8)
        // The three dummy-LLM agents of ops/agents-city.json, in a corner of their own.
        let llm = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: root + "/ops/agents-city.json"))))
        var agents: [JSONValue] = []
        for (i, a) in (llm["agents"]?.arrayValue ?? []).enumerated() {
            guard case .object(var o) = a else { continue }
            o["spawn"] = [.number(200 + Double(i == 1 ? 3 : 0)), .number(200 + Double(i == 2 ? 3 : 0))]
            agents.append(.object(o))
        }
        XCTAssertEqual(agents.count, 3)
        try CanonicalJSON.encodeString(["agents": .array(agents)]).write(toFile: home + "/agents-llm.json", atomically: true, encoding: .utf8)
        let (sup, url) = try start(home + "/gunn.json", ["eventlog", "orchestrator", "web", "demo"])
        defer { kill(sup.pid, SIGTERM); sup.wait() }
        let admin = try token(["--rights", "admin"])
        // `eye` sees 6 units around it and never the field "secret"; `lamp` is near, `far` is not.
        XCTAssertEqual(try http("POST", url + "/v1/agents", token: admin,
                                body: #"{"agent_id": "eye", "spawn": [100, 100], "distance_limit": 6, "hidden_fields": ["secret"]}"#), 201)
        XCTAssertEqual(try http("POST", url + "/v1/effects", token: admin,
                                body: #"{"kind": "EntityUpsert", "source_id": "test", "payload": {"id": "lamp", "entity": {"kind": "lamp", "pos": [103, 100], "secret": "s3", "color": "red"}}}"#), 202)
        XCTAssertEqual(try http("POST", url + "/v1/effects", token: admin,
                                body: #"{"kind": "EntityUpsert", "source_id": "test", "payload": {"id": "far", "entity": {"kind": "lamp", "pos": [120, 100], "secret": "s4"}}}"#), 202)

        let r = try check(["follow", home, url, admin, home + "/agents-llm.json"])
        XCTAssertEqual(r["console_errors"], .array([]))
        XCTAssertEqual(r["outside"], .array([]))
        XCTAssertEqual(r["follow"]?["mismatched"], .array([]), "the page's positions are the log's at its seq")
        XCTAssertGreaterThanOrEqual(r["follow"]?["entities"]?.numberValue ?? 0, 6)
        XCTAssertGreaterThanOrEqual(r["caught_up"]?["page"]?.numberValue ?? 0, r["caught_up"]?["head"]?.numberValue ?? 1)
        let eyes = r["eyes"]
        XCTAssertEqual(eyes?["selected_by_keyboard"]?.stringValue, "eye")
        XCTAssertEqual(eyes?["same_view"], true, "the eyes are exactly the orchestrator's view")
        XCTAssertEqual(eyes?["same_digest"], true)
        XCTAssertEqual(eyes?["seen"], ["eye", "lamp"])
        XCTAssertEqual(eyes?["secret_in_world"], true)
        XCTAssertEqual(eyes?["secret_in_eyes"], false, "the hidden field is hidden")
        XCTAssertEqual(eyes?["far_in_world"], true)
        XCTAssertEqual(eyes?["far_in_eyes"], false, "what is out of its radius is not shown")
        let speech = r["speech"]
        XCTAssertGreaterThan(speech?["partial_tokens_seen"]?.numberValue ?? 0, 0, "partial tokens streamed into A's bubble")
        XCTAssertEqual(speech?["reason"]?.stringValue, "stale_due_to:\(Int(speech?["link"]?.numberValue ?? -1))")
        XCTAssertEqual(speech?["stale_entry_kind"]?.stringValue, "Speak", "the entry that made A stale is B's remark")
        XCTAssertEqual(speech?["stale_entry_agent"]?.stringValue, "B")
        XCTAssertEqual(speech?["log_record"], ["GenerationCancelled", .string(speech?["reason"]?.stringValue ?? "")])
        XCTAssertEqual(speech?["struck"]?.stringValue, "line-through")
        XCTAssertEqual(r["replay"]?["mismatched"], .array([]), "the world at the linked seq is the log's")
        XCTAssertGreaterThan(r["replay"]?["entities"]?.numberValue ?? 0, 0)
        XCTAssertGreaterThan(r["tail"]?["top"]?.numberValue ?? 0, r["tail"]?["first"]?.numberValue ?? .infinity)
        XCTAssertEqual(r["tail"]?["checksum_shown"], true)
        XCTAssertEqual(r["tail"]?["kind_shown"], true)
        XCTAssertEqual(r["restart"]?["restarts_after"]?.numberValue, (r["restart"]?["restarts_before"]?.numberValue ?? -2) + 1)
        XCTAssertGreaterThan(r["restart"]?["seq_after"]?.numberValue ?? 0, r["restart"]?["head_at_restart"]?.numberValue ?? .infinity)
        XCTAssertEqual(r["restart"]?["mismatched"], .array([]))
        XCTAssertEqual(r["restart"]?["hellos_after"], r["restart"]?["hellos_before"], "the page's stream was not even reopened")
        let logRestart = r["log_restart"]
        XCTAssertEqual(logRestart?["restarts_after"]?.numberValue, (logRestart?["restarts_before"]?.numberValue ?? -2) + 1)
        XCTAssertGreaterThan(logRestart?["seq_after"]?.numberValue ?? 0, logRestart?["head_at_restart"]?.numberValue ?? .infinity)
        XCTAssertEqual(logRestart?["mismatched"], .array([]), "after the log writer's restart the page is still the log's world")
        XCTAssertEqual(logRestart?["tail_in_order"], true, "nothing listed twice")
        XCTAssertEqual(logRestart?["follow_error"], .null)
    }

    /// Every bad input to the dashboard gets its code from docs/errors.md and traps nothing: a
    /// stream with no token, a forged one, a message that is not a selection, text or binary, a
    /// selection an observe token may not make, one page too many; the world at a seq without
    /// admin, with a seq that is no number, zero, or past the log. The page itself needs no token.
    func testBadDashboardInputIsAnsweredWithCodes() throws {
        let config = """
        {"world_id": "dash", "durability": "normal", "children": [
          {"name": "eventlog", "executable": "gunn-eventlog", "socket": "run/eventlog.sock", "args": ["--home", "{home}", "--world-id", "{world_id}", "--durability", "{durability}"]},
          {"name": "orchestrator", "executable": "gunn-orchestrator", "socket": "run/orchestrator.sock", "depends_on": ["eventlog"], "args": ["--home", "{home}", "--world-id", "{world_id}"]},
          {"name": "web", "executable": "gunn-adapter-web", "depends_on": ["orchestrator"], "args": ["--home", "{home}", "--world-id", "{world_id}"]}]}
        """
        try config.write(toFile: home + "/gunn.json", atomically: true, encoding: .utf8)
        let (sup, url) = try start(home + "/gunn.json", ["eventlog", "orchestrator", "web"])
        defer { kill(sup.pid, SIGTERM); sup.wait() }
        let admin = try token(["--rights", "admin"])
        let observer = try token(["--tenant", "t1", "--rights", "observe,act"])
        XCTAssertEqual(try http("POST", url + "/v1/agents", token: observer, body: #"{"agent_id": "mine", "spawn": [1, 1]}"#), 201)
        XCTAssertEqual(try http("POST", url + "/v1/agents", token: admin, body: #"{"agent_id": "theirs", "spawn": [2, 2]}"#), 201)
        let script = #"""
        import asyncio, json, sys, urllib.request, urllib.error
        import websockets
        url, admin, observer = sys.argv[1], sys.argv[2], sys.argv[3]
        ws_url = url.replace("http", "ws") + "/v1/dashboard/stream"
        out = {}
        def get(path, tok=None):
            req = urllib.request.Request(url + path, headers={"Authorization": "Bearer " + tok} if tok else {})
            try:
                with urllib.request.urlopen(req, timeout=20) as r:
                    body = r.read()
                    return r.status, r.headers.get("Content-Type"), body
            except urllib.error.HTTPError as e:
                return e.code, e.headers.get("Content-Type"), e.read()
        def code(path, tok=None):
            s, _, b = get(path, tok)
            return [s, json.loads(b).get("name")] if s != 200 else [s, json.loads(b).get("seq")]
        async def refused(q):
            async with websockets.connect(ws_url + q, subprotocols=["gunn.dashboard.v1"]) as ws:
                m = json.loads(await ws.recv())
                try:
                    await ws.recv()
                except websockets.ConnectionClosed as c:
                    return [m["name"], c.rcvd.code]
        async def until(ws, t):
            while True:
                m = json.loads(await asyncio.wait_for(ws.recv(), 20))
                if m["type"] == t:
                    return m
        async def main():
            out["no_token"] = await refused("")
            out["forged"] = await refused("?access_token=gunn1.e30.AAAA")
            async with websockets.connect(ws_url + "?access_token=" + observer, subprotocols=["gunn.dashboard.v1"]) as ws:
                hello = await until(ws, "hello")
                out["observer_hello"] = [hello["scope"], hello.get("agents"), "entities" in hello, "tail" in hello]
                agents = await until(ws, "agents")
                while not agents["agents"]:  # the status polled before "mine" was registered
                    agents = await until(ws, "agents")
                out["observer_agents"] = sorted(a["agent_id"] for a in agents["agents"])
                await ws.send(json.dumps({"select": "theirs"}))
                out["select_theirs"] = (await until(ws, "error"))["name"]
                await ws.send("not json")
                out["garbage"] = (await until(ws, "error"))["name"]
                await ws.send(json.dumps({"select": 7}))
                out["ill_typed"] = (await until(ws, "error"))["name"]
                await ws.send(json.dumps({"select": "mine", "extra": 1}))
                out["unknown_field"] = (await until(ws, "error"))["name"]
                await ws.send(b"\x00\x01")
                out["binary"] = (await until(ws, "error"))["name"]
                await ws.send(json.dumps({"select": "mine"}))
                eyes = await until(ws, "eyes")
                while not eyes["known"]:  # its policy comes with the orchestrator's next status (once a second)
                    eyes = await until(ws, "eyes")
                out["select_mine"] = [eyes["agent_id"], eyes["known"], sorted(eyes.get("view", {}).get("entities", {}))]
            pages = []
            try:
                for _ in range(32):
                    ws = await websockets.connect(ws_url + "?access_token=" + admin, subprotocols=["gunn.dashboard.v1"])
                    await until(ws, "hello")
                    pages.append(ws)
                out["one_too_many"] = await refused("?access_token=" + admin)
            finally:
                for ws in pages:
                    await ws.close()
        asyncio.run(main())
        s, ctype, body = get("/")
        out["page"] = [s, ctype, b"gunn dashboard" in body]
        s, ctype, _ = get("/dashboard.js")
        out["script"] = [s, ctype]
        out["world_no_token"] = code("/v1/dashboard/world?seq=1")
        out["world_observer"] = code("/v1/dashboard/world?seq=1", observer)
        out["world_not_a_number"] = code("/v1/dashboard/world?seq=abc", admin)
        out["world_zero"] = code("/v1/dashboard/world?seq=0", admin)
        out["world_past_the_log"] = code("/v1/dashboard/world?seq=99999999", admin)
        out["world_one"] = code("/v1/dashboard/world?seq=1", admin)
        print(json.dumps(out, sort_keys=True))
        """#
        try script.write(toFile: home + "/bad.py", atomically: true, encoding: .utf8)
        let (status, out) = try runTool(root + "/.venv-tools/bin/python", [home + "/bad.py", url, admin, observer])
        XCTAssertEqual(status, 0, out)
        guard let line = out.split(separator: "\n").last, let r = try? JSONParser.parse(String(line)) else { return XCTFail(out) }
        print("dashboard refusals: \(line)")
        XCTAssertEqual(r["no_token"], ["UNAUTHORIZED", 4401])
        XCTAssertEqual(r["forged"], ["UNAUTHORIZED", 4401])
        XCTAssertEqual(r["observer_hello"], ["agents", ["mine"], false, false])
        XCTAssertEqual(r["observer_agents"], ["mine"], "an observe token hears of its own agents only")
        XCTAssertEqual(r["select_theirs"], "FORBIDDEN")
        for key in ["garbage", "ill_typed", "unknown_field", "binary"] { XCTAssertEqual(r[key], "UNKNOWN_MESSAGE", key) }
        XCTAssertEqual(r["select_mine"], ["mine", true, ["mine", "theirs"]], "the stream went on after every refusal; its eyes are its view (no radius: it sees both)")
        XCTAssertEqual(r["one_too_many"], ["TOO_MANY_CONNECTIONS", 4429])
        XCTAssertEqual(r["page"], [200, "text/html; charset=utf-8", true])
        XCTAssertEqual(r["script"], [200, "text/javascript; charset=utf-8"])
        XCTAssertEqual(r["world_no_token"], [401, "UNAUTHORIZED"])
        XCTAssertEqual(r["world_observer"], [403, "FORBIDDEN"])
        XCTAssertEqual(r["world_not_a_number"], [400, "INVALID_FIELD"])
        XCTAssertEqual(r["world_zero"], [400, "INVALID_FIELD"])
        XCTAssertEqual(r["world_past_the_log"], [400, "INVALID_FIELD"])
        XCTAssertEqual(r["world_one"], [200, 1])
    }

    /// `--dashboard off` serves no dashboard (and keeps no replica); a value other than on or off
    /// is refused at start: exit 64 with a CONFIG_INVALID line, nothing served.
    func testTheDashboardFlag() throws {
        let (exit, text) = try GunnHome.runToExit("gunn-adapter-web", ["--home", home, "--world-id", "w", "--listen", "127.0.0.1:0", "--dashboard", "maybe"])
        XCTAssertEqual(exit, 64, text)
        XCTAssertTrue(text.contains("CONFIG_INVALID") && text.contains("--dashboard must be on or off"), text)
        XCTAssertFalse(FileManager.default.fileExists(atPath: home + "/run/web.addr"), "nothing served")

        let config = """
        {"world_id": "dash", "durability": "normal", "children": [
          {"name": "eventlog", "executable": "gunn-eventlog", "socket": "run/eventlog.sock", "args": ["--home", "{home}", "--world-id", "{world_id}", "--durability", "{durability}"]},
          {"name": "orchestrator", "executable": "gunn-orchestrator", "socket": "run/orchestrator.sock", "depends_on": ["eventlog"], "args": ["--home", "{home}", "--world-id", "{world_id}"]},
          {"name": "web", "executable": "gunn-adapter-web", "depends_on": ["orchestrator"], "args": ["--home", "{home}", "--world-id", "{world_id}", "--dashboard", "off"]}]}
        """
        try config.write(toFile: home + "/gunn.json", atomically: true, encoding: .utf8)
        let (sup, url) = try start(home + "/gunn.json", ["eventlog", "orchestrator", "web"])
        defer { kill(sup.pid, SIGTERM); sup.wait() }
        let admin = try token(["--rights", "admin"])
        let (status, out) = try runTool("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", url + "/"])
        XCTAssertEqual(status, 0)
        XCTAssertEqual(out, "404", "no page")
        let (_, world) = try runTool("/usr/bin/curl", ["-s", "-H", "Authorization: Bearer " + admin, url + "/v1/dashboard/world?seq=1"])
        XCTAssertTrue(world.contains("NOT_FOUND") || world.contains("404"), world)
        let (_, health) = try runTool("/usr/bin/curl", ["-s", url + "/health"])
        XCTAssertTrue(health.contains("ok"), "the rest of the adapter is served: \(health)")
    }

    /// The shipped city demo (ops/city.json: 1,000 scripted agents, three dummy-LLM agents):
    /// frames per second with all of them moving and the web adapter's CPU are printed (not
    /// asserted: machines are noisy); the batches the page got are bounded by the design (one
    /// per 100 ms at most, whatever the commit rate); three screenshots are taken and checked for
    /// being non-blank (GUNN_SCREENSHOTS names a directory to keep them, as docs/ does).
    func testTheCityDemoFillsTheDashboard() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium") else { return XCTFail("chromium is missing: ops/setup --test installs it") }
        let (sup, url) = try start(root + "/ops/city.json", ["eventlog", "orchestrator", "web", "city", "llm"])
        defer { kill(sup.pid, SIGTERM); sup.wait() }
        let admin = try token(["--rights", "admin"])
        let shots = ProcessInfo.processInfo.environment["GUNN_SCREENSHOTS"] ?? home!
        try FileManager.default.createDirectory(atPath: shots, withIntermediateDirectories: true)
        let r = try check(["city", home, url, admin, shots])
        print(String(format: "dashboard, city of 1,003 agents: %.1f frames/s in headless Chromium; %.0f commits/s; web adapter CPU %.0f%% of a core",
                     r["fps"]?.numberValue ?? 0, r["commits_per_s"]?.numberValue ?? 0, 100 * (r["adapter_cpu"]?.numberValue ?? 0)))
        XCTAssertEqual(r["console_errors"], .array([]))
        XCTAssertEqual(r["outside"], .array([]))
        XCTAssertEqual(r["agents_moving"]?.numberValue, 1003)
        XCTAssertGreaterThan(r["commits"]?.numberValue ?? 0, 0, "the city moved during the measurement")
        XCTAssertGreaterThan(r["fps"]?.numberValue ?? 0, 0)
        let window = r["window_s"]?.numberValue ?? 0
        XCTAssertLessThanOrEqual(r["batches"]?.numberValue ?? .infinity, (window / 0.1).rounded(.up) + 2, "at most one batch per 100 ms")
        XCTAssertGreaterThan(r["eyes_entities"]?.numberValue ?? 0, 0)
        XCTAssertTrue(r["cancelled_reason"]?.stringValue?.hasPrefix("stale_due_to:") == true, "\(r)")
        for key in ["world_colours", "eyes_colours", "cancelled_colours"] {
            XCTAssertGreaterThanOrEqual(r[key]?.numberValue ?? 0, 3, "\(key): the screenshot's map is not blank")
        }
        for (name, size) in r["shots"]?.objectValue ?? JSONObject() {
            XCTAssertGreaterThan(size.numberValue ?? 0, 10_000, "\(name) is an image of something")
        }
    }
}
