import Foundation
import Glibc
import XCTest
import GunnAuth
import GunnCore
import GunnCrypto

/// gunn-adapter-web as a real process beside gunn-eventlog and gunn-orchestrator, spoken to by
/// Python (the example agent in clients/python/examples), curl-like raw HTTP from the test, and
/// tokens made by gunnctl.
final class WebAdapterTests: XCTestCase {
    var home: String!
    var procs: [Process] = []
    var url = ""
    var webErr: String { home + "/web.stderr" }
    var python: String { EventLogProcessTests.root.path + "/.venv-tools/bin/python" }

    override func setUpWithError() throws {
        home = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-web-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        for p in procs.reversed() where p.isRunning { kill(p.processIdentifier, SIGTERM); p.waitUntilExit() }
        try? FileManager.default.removeItem(atPath: home)
    }

    /// Starts a binary and waits for its "ready" line; stderr goes to `stderr` (or /dev/null).
    @discardableResult
    func launch(_ binary: String, _ args: [String], stderr: String? = nil) throws -> (Process, String) {
        let p = Process()
        p.executableURL = EventLogProcessTests.root.appendingPathComponent(".build/debug/\(binary)")
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        if let stderr { FileManager.default.createFile(atPath: stderr, contents: nil); p.standardError = FileHandle(forWritingAtPath: stderr) }
        else { p.standardError = FileHandle(forWritingAtPath: "/dev/null") }
        try p.run()
        procs.append(p)
        let line = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
        guard line.hasPrefix("ready") else { throw GunnError(.internalError, "\(binary) did not start: \(line)") }
        return (p, line.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    func startSystem(_ webArgs: [String] = []) throws {
        try launch("gunn-eventlog", ["--home", home, "--world-id", "w1"])
        try launch("gunn-orchestrator", ["--home", home, "--world-id", "w1", "--world-seed", "3"])
        let (_, line) = try launch("gunn-adapter-web", ["--home", home, "--world-id", "w1", "--listen", "127.0.0.1:0"] + webArgs, stderr: webErr)
        url = String(line.dropFirst("ready ".count))
        XCTAssertEqual(try String(contentsOfFile: home + "/run/web.addr", encoding: .utf8), url + "\n", "run/web.addr names the bound address")
    }

    /// The log writer, the orchestrator and the web adapter under the supervisor (fast restarts),
    /// once the adapter has written run/web.addr.
    func startSupervised(durability: String) throws -> SupervisorTests.SessionProcess {
        let config = """
        {"world_id": "w1", "world_seed": 4, "durability": "\(durability)", "max_restarts": 10, "max_seconds": 60, "backoff_base_ms": 50,
         "backoff_cap_ms": 400, "stable_seconds": 5, "children": [
          {"name": "eventlog", "executable": "gunn-eventlog", "socket": "run/eventlog.sock", "args": ["--home", "{home}", "--world-id", "{world_id}", "--durability", "{durability}"]},
          {"name": "orchestrator", "executable": "gunn-orchestrator", "socket": "run/orchestrator.sock", "depends_on": ["eventlog"], "args": ["--home", "{home}", "--world-id", "{world_id}", "--world-seed", "{world_seed}"]},
          {"name": "web", "executable": "gunn-adapter-web", "depends_on": ["orchestrator"], "args": ["--home", "{home}", "--world-id", "{world_id}", "--listen", "127.0.0.1:0"]}]}
        """
        try config.write(toFile: home + "/gunn.json", atomically: true, encoding: .utf8)
        var env = ProcessInfo.processInfo.environment
        env["PATH"] = EventLogProcessTests.root.appendingPathComponent(".build/debug").path + ":" + (env["PATH"] ?? "")
        let sup = try SupervisorTests.SessionProcess(EventLogProcessTests.root.appendingPathComponent(".build/debug/gunn-supervisor").path,
                                                     ["--config", home + "/gunn.json", "--home", home], environment: env, stderrPath: home + "/supervisor.err")
        do { _ = try GunnHome(home).waitReady(["eventlog", "orchestrator", "web"]) } catch { stopSupervised(sup); throw error }
        waitFor("run/web.addr") { FileManager.default.fileExists(atPath: self.home + "/run/web.addr") }
        return sup
    }

    func stopSupervised(_ sup: SupervisorTests.SessionProcess) {
        kill(sup.pid, SIGTERM)
        sup.wait()
        for pid in SupervisorTests.processes(where: { $0.cmdline.contains(self.home) }) { kill(pid, SIGKILL) }
    }

    func token(_ args: [String] = []) throws -> String {
        let ctl = try GunnHome(home).gunnctl(["token", "issue"] + args)
        XCTAssertEqual(ctl.status, 0, ctl.err)
        return ctl.out.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Writes a Python script into the home and runs it with the tools' Python; its stdout, after
    /// checking that it exited 0.
    func runScript(_ script: String, named name: String, _ args: [String]) throws -> String {
        let path = home + "/\(name).py"
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        let (status, out) = try runTool(python, [path] + args)
        XCTAssertEqual(status, 0, out)
        return out
    }

    /// One HTTP/1.1 request with curl (a connection of its own); the status, the JSON body and the
    /// response's headers (names lowercased).
    func http(_ method: String, _ path: String, token: String? = nil, body: [UInt8]? = nil, headers: [(String, String)] = []) throws -> (Int, JSONValue?, [String: String]) {
        var args = ["-sS", "--http1.1", "-X", method, "-D", "-", "--max-time", "20"]
        if let token { args += ["-H", "Authorization: Bearer " + token] }
        for (k, v) in headers { args += ["-H", "\(k): \(v)"] }
        if let body {
            let file = home + "/body-\(UUID().uuidString.prefix(6))"
            try Data(body).write(to: URL(fileURLWithPath: file))
            args += ["--data-binary", "@" + file, "-H", "Content-Type: application/json"]
        }
        let (status, out) = try runTool("/usr/bin/curl", args + [url + path])
        guard status == 0, let split = out.range(of: "\r\n\r\n") else { throw GunnError(.internalError, "curl \(status): \(out.prefix(300))") }
        var lines = out[..<split.lowerBound].components(separatedBy: "\r\n")
        // A 100 Continue comes first when curl sent Expect for a large body.
        while lines.first?.contains(" 100 ") == true, let i = lines.firstIndex(of: "") { lines.removeFirst(i + 1) }
        let code = Int(lines.first?.split(separator: " ").dropFirst().first ?? "") ?? 0
        var hs: [String: String] = [:]
        for l in lines.dropFirst() { if let c = l.firstIndex(of: ":") { hs[l[..<c].lowercased()] = l[l.index(after: c)...].trimmingCharacters(in: .whitespaces) } }
        let bodyText = String(out[split.upperBound...])
        let last = bodyText.components(separatedBy: "\r\n\r\n").last ?? bodyText
        return (code, try? JSONParser.parse(last), hs)
    }

    func testThePythonExampleAgentRebuildsItsViewsFromTheStreamAndMatchesGETView() throws {
        try startSystem()
        let tok = try token(["--tenant", "t1", "--rights", "observe,act"])
        let (status, out) = try runTool(python, [EventLogProcessTests.root.path + "/clients/python/examples/agent.py",
                                                 "--url", url, "--token", tok, "--agents", "ann,bob,cyd", "--moves", "6"])
        XCTAssertEqual(status, 0, out)
        let summary = try JSONParser.parse(out.split(separator: "\n").last.map(String.init) ?? "")
        XCTAssertEqual(summary["same"], true)
        XCTAssertEqual(summary["committed"]?.numberValue, 18)
        XCTAssertGreaterThanOrEqual(summary["checked"]?.numberValue ?? 0, 3 + 18, "every view and delta checked against its digest")
        XCTAssertEqual(summary["failures"], .array([]))
    }

    func testEveryTokenFailureHasItsCodeAndNoTokenIsLoggedInClear() throws {
        try startSystem()
        let t1 = try token(["--tenant", "t1", "--rights", "observe,act,emit"])
        let t2 = try token(["--tenant", "t2", "--rights", "observe,act"])
        let observer = try token(["--tenant", "t1", "--rights", "observe"])
        let onlyZed = try token(["--tenant", "t1", "--agent", "zed", "--rights", "observe,act"])
        let t2emit = try token(["--tenant", "t2", "--rights", "emit"])
        let (s0, _, _) = try http("POST", "/v1/agents", token: t1, body: Array(#"{"agent_id":"ann","spawn":[0,0]}"#.utf8))
        XCTAssertEqual(s0, 201)

        let secret = [UInt8](FileManager.default.contents(atPath: home + "/data/web-secret")!)
        let now = Int64(Date().timeIntervalSince1970)
        func signed(world: String = "w1", exp: Int64 = now + 600, secret key: [UInt8] = secret) -> String {
            TokenCodec.sign(TokenClaims(id: "0123456789abcdef0123456789abcdef", tenant: "t1", world: world, agents: ["*"], rights: [.observe, .act],
                                        issuedAt: now - 1000, expiresAt: exp), secret: key)
        }
        let forged = signed(secret: [UInt8](repeating: 7, count: 32))
        let expired = signed(exp: now - 10)
        let otherWorld = signed(world: "w2")
        let revoked = try token(["--tenant", "t1"])
        XCTAssertEqual(try http("GET", "/v1/agents/ann/view", token: revoked).0, 200, "valid before it is revoked")
        let list = try GunnHome(home).gunnctl(["--json", "token", "list"])
        guard case .array(let issued)? = list.json, let revokedID = issued.last?["id"]?.stringValue else { return XCTFail("token list: \(list.out)") }
        XCTAssertEqual(try GunnHome(home).gunnctl(["token", "revoke", revokedID]).status, 0)
        XCTAssertEqual(try GunnHome(home).gunnctl(["token", "revoke", "feedfacefeedfacefeedfacefeedface"]).status, 1, "an unknown id is a negative answer")

        let cases: [(String, String, String?, [UInt8]?, Int, ErrorCode)] = [
            ("no token", "/v1/agents/ann/view", nil, nil, 401, .unauthorized),
            ("malformed", "/v1/agents/ann/view", "not-a-token", nil, 401, .unauthorized),
            ("forged", "/v1/agents/ann/view", forged, nil, 401, .unauthorized),
            ("expired", "/v1/agents/ann/view", expired, nil, 401, .unauthorized),
            ("revoked, replayed", "/v1/agents/ann/view", revoked, nil, 401, .unauthorized),
            ("another world", "/v1/agents/ann/view", otherWorld, nil, 403, .worldMismatch),
            ("no act right", "/v1/agents/ann/intents", observer, Array(#"{"kind":"Move","payload":{"to":[1,1]}}"#.utf8), 403, .forbidden),
            ("another agent", "/v1/agents/ann/view", onlyZed, nil, 403, .forbidden),
            ("another tenant's agent", "/v1/agents/ann/view", t2, nil, 403, .tenantIsolationViolation),
            ("another tenant registers it", "/v1/agents", t2, Array(#"{"agent_id":"ann"}"#.utf8), 403, .tenantIsolationViolation),
            ("another tenant's agent in an effect", "/v1/effects", t2emit, Array(#"{"kind":"Move","payload":{"agent_id":"ann","to":[9,9]},"source_id":"x"}"#.utf8), 403, .tenantIsolationViolation),
            ("a JSONPatch without admin", "/v1/effects", t2emit, Array(#"{"kind":"JSONPatch","payload":{},"source_id":"x"}"#.utf8), 403, .forbidden),
            ("an engine's record from the web", "/v1/effects", t2emit, Array(#"{"kind":"EngineLink","payload":{"engine":"godot","state":"lost"},"source_id":"engine:godot"}"#.utf8), 403, .forbidden),
            ("invalid JSON", "/v1/agents/ann/intents", t1, Array(#"{"kind":"Move","#.utf8), 400, .invalidJSON),
            ("unknown field", "/v1/agents", t1, Array(#"{"agent_id":"bob","colour":"red"}"#.utf8), 400, .invalidField),
            ("tenant in the body", "/v1/agents", t1, Array(#"{"agent_id":"bob","tenant":"t1"}"#.utf8), 400, .invalidField),
            ("oversize body", "/v1/agents", t1, Array(repeating: 0x20, count: 2 << 20), 413, .payloadTooLarge),
            ("unknown agent", "/v1/agents/nobody/view", t1, nil, 404, .invalidAgentID),
        ]
        for (what, path, tok, body, status, code) in cases {
            let (s, json, headers) = try http(body == nil ? "GET" : "POST", path, token: tok, body: body)
            XCTAssertEqual(s, status, what)
            XCTAssertEqual(json?["name"]?.stringValue, code.name, "\(what): \(String(describing: json))")
            if status == 401 { XCTAssertNil(headers["set-cookie"]) }
        }
        // The world is unchanged by all of that: ann's view still answers, nothing was committed for bob.
        XCTAssertEqual(try http("GET", "/v1/agents/ann/view", token: t1).0, 200)
        XCTAssertEqual(try http("GET", "/v1/agents/bob/view", token: t1).0, 404)
        // No token appears in clear in the adapter's log.
        let log = (try? String(contentsOfFile: webErr, encoding: .utf8)) ?? ""
        for t in [t1, t2, observer, onlyZed, forged, expired, otherWorld, revoked] {
            XCTAssertFalse(log.contains(String(t.suffix(43))), "a token's signature is in the log")
        }
    }

    func testRateLimitsAndTheStreamCapAnswerWithTheirCodes() async throws {
        try startSystem(["--agent-rate", "0.001", "--agent-burst", "3", "--max-streams-per-tenant", "1"])
        let t1 = try token(["--tenant", "t1"])
        let t2 = try token(["--tenant", "t2"])
        XCTAssertEqual(try http("POST", "/v1/agents", token: t1, body: Array(#"{"agent_id":"ann"}"#.utf8)).0, 201)
        XCTAssertEqual(try http("POST", "/v1/agents", token: t2, body: Array(#"{"agent_id":"bob"}"#.utf8)).0, 201)
        XCTAssertEqual(try http("POST", "/v1/agents", token: t1, body: Array(#"{"agent_id":"cy"}"#.utf8)).0, 201)
        var statuses: [Int] = []
        var retryAfter: String?
        for _ in 0..<5 {
            let (s, json, headers) = try http("GET", "/v1/agents/ann/view", token: t1)
            statuses.append(s)
            if s == 429 {
                retryAfter = headers["retry-after"]
                XCTAssertEqual(json?["name"]?.stringValue, "QUOTA_EXCEEDED")
                XCTAssertNotNil(json?["retry_after_ms"]?.numberValue)
            }
        }
        XCTAssertEqual(statuses, [200, 200, 200, 429, 429], "a burst of 3 (the registration came before the agent was ann's), then nothing refills")
        XCTAssertNotNil(retryAfter)
        // The other tenant's agent is not limited by ann's bucket.
        XCTAssertEqual(try http("GET", "/v1/agents/bob/view", token: t2).0, 200)

        // One stream per tenant: the second is refused on open (an error message, close 4429); t2 still streams.
        let script = """
        import asyncio, json, sys, websockets
        url, t1, t2 = sys.argv[1].replace("http", "ws", 1), sys.argv[2], sys.argv[3]
        async def main():
            h1 = {"Authorization": "Bearer " + t1}
            async with websockets.connect(url + "/v1/stream?agents=cy", additional_headers=h1) as a:
                first = json.loads(await a.recv())
                async with websockets.connect(url + "/v1/stream?agents=cy", additional_headers=h1) as b:
                    refused = json.loads(await b.recv())
                    try:
                        await b.recv()
                    except websockets.ConnectionClosed as e:
                        code = e.rcvd.code if e.rcvd else None
                async with websockets.connect(url + "/v1/stream?agents=bob", additional_headers={"Authorization": "Bearer " + t2}) as c:
                    other = json.loads(await c.recv())
            print(json.dumps({"first": first["type"], "refused": refused["name"], "code": code, "other": other["type"]}, sort_keys=True))
        asyncio.run(main())
        """
        let out = try runScript(script, named: "streams", [url, t1, t2])
        XCTAssertEqual(out.trimmingCharacters(in: .whitespacesAndNewlines), #"{"code": 4429, "first": "subscribed", "other": "subscribed", "refused": "QUOTA_EXCEEDED"}"#)
    }

    /// schemathesis 4 against the live /openapi.json with a valid token: every default check, the
    /// coverage, fuzzing and stateful phases, 200 examples per operation, a fixed seed (so a failure
    /// reproduces). Tests/Interop/schemathesis.toml says which world-state refusals count as accepted.
    func testSchemathesisFindsNoFailureInTheServedOpenAPIDocument() throws {
        let st = EventLogProcessTests.root.path + "/.venv-schemathesis/bin/schemathesis"
        guard FileManager.default.isExecutableFile(atPath: st) else { return XCTFail("schemathesis is missing at \(st): ops/setup --test installs it") }
        try startSystem()
        let tok = try token(["--tenant", "st", "--rights", "observe,act,emit"])
        let p = Process()
        p.executableURL = URL(fileURLWithPath: st)
        p.arguments = ["--config-file", EventLogProcessTests.root.path + "/Tests/Interop/schemathesis.toml", "run", url + "/openapi.json",
                       "--max-examples", "200", "--seed", "19", "-H", "Authorization: Bearer " + tok, "--no-color"]
        p.currentDirectoryURL = URL(fileURLWithPath: home)
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        let summary = out.components(separatedBy: "\n").filter { $0.contains("generated") || $0.contains("passed") || $0.contains("failures") || $0.contains("Scenarios") }
        print("schemathesis: " + summary.joined(separator: " | "))
        XCTAssertEqual(p.terminationStatus, 0, "schemathesis found failures:\n\(out.suffix(6000))")
        let (_, doc, _) = try http("GET", "/openapi.json")
        let operations = doc?["paths"]?.objectValue?.reduce(0) { $0 + ($1.value.objectValue?.count ?? 0) } ?? 0
        XCTAssertGreaterThanOrEqual(operations, 9)
        XCTAssertTrue(out.contains("Tested: \(operations)"), "every one of the \(operations) operations was tested:\n\(out.suffix(2000))")
        XCTAssertFalse(out.contains(tok), "the token appears in schemathesis's output")
    }

    /// Under the supervisor, 20 WebSocket clients stream and 5 submit intents while the web adapter
    /// is killed with SIGKILL: it is restarted, every client reconnects and resumes (a whole view
    /// from the new process), every intent acknowledged with 200 is in the log exactly once (the
    /// retries carried the same Idempotency-Key, and the context the adapter filled in for it was
    /// journalled, so a retry after the restart is the same intent), none refused is in it, and no
    /// client's view diverges from GET view.
    func testKillNineOfTheWebAdapterUnderLoadLosesAndDuplicatesNothing() async throws {
        let sup = try startSupervised(durability: "normal")
        defer { stopSupervised(sup) }
        let before = try GunnHome(home).waitReady(["eventlog", "orchestrator", "web"])
        guard case .number(let webPID)? = before["web"]?["pid"] else { return XCTFail("no pid for web: \(before)") }
        let tok = try token(["--tenant", "t1", "--world", "w1"])

        let script = Process()
        script.executableURL = URL(fileURLWithPath: python)
        script.arguments = [EventLogProcessTests.root.path + "/Tests/Interop/web_chaos.py", home, tok, "a0,a1,a2,a3,a4", "20", "40"]
        let out = Pipe()
        script.standardOutput = out
        script.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try script.run()
        let reader = LineReader(out.fileHandleForReading)
        XCTAssertEqual(reader.next(), "running", "the clients started")
        let oldAddr = try String(contentsOfFile: home + "/run/web.addr", encoding: .utf8)
        kill(pid_t(webPID), SIGKILL)
        _ = try GunnHome(home).waitReady(["web"], notPIDs: ["web": webPID])
        guard let last = reader.next() else { return XCTFail("the clients printed no summary") }
        script.waitUntilExit()
        XCTAssertEqual(script.terminationStatus, 0)
        let summary = try JSONParser.parse(last)
        XCTAssertNotEqual(try String(contentsOfFile: home + "/run/web.addr", encoding: .utf8), oldAddr, "the restarted adapter wrote its new address")
        XCTAssertGreaterThanOrEqual(summary["reconnects"]?.numberValue ?? 0, 20, "every stream reconnected: \(last)")
        XCTAssertEqual(summary["diverged"], .array([]), last)
        XCTAssertEqual(summary["digest_failures"]?.numberValue, 0, last)

        let entries = try await OrchestratorProcessTests.logEntries(home: home, worldID: "w1")
        var inLog: [String: Int] = [:]
        for e in entries where !e.reqID.isEmpty { inLog["\(e.agentID)/\(e.reqID)", default: 0] += 1 }
        var acked = 0
        for a in ["a0", "a1", "a2", "a3", "a4"] {
            for key in summary["acked"]?[a]?.arrayValue?.compactMap(\.stringValue) ?? [] {
                acked += 1
                XCTAssertEqual(inLog["\(a)/\(key)"], 1, "acknowledged \(key) is in the log exactly once")
            }
        }
        XCTAssertEqual(acked, 200, "every submitter's 40 intents were acknowledged")
        for key in summary["refused"]?.arrayValue?.compactMap(\.stringValue) ?? [] {
            let agent = String(key.split(separator: "-").first ?? "")
            XCTAssertNil(inLog["\(agent)/\(key)"], "refused \(key) (STALE_CONTEXT) is not in the log")
        }
        XCTAssertEqual(inLog.values.filter { $0 > 1 }.count, 0, "no req_id is in the log twice")
        print("kill -9 under load: \(acked) intents acknowledged, \(Int(summary["reconnects"]?.numberValue ?? 0)) reconnects, resumed by view \(Int(summary["view"]?.numberValue ?? 0)), by delta \(Int(summary["delta"]?.numberValue ?? 0))")
    }

    /// A stream that reconnects to the same adapter with its held view_seq and digest gets the
    /// observations it missed (one delta message each), not the whole view; a mark the recent window
    /// no longer holds (or a wrong digest) gets the whole view. Over SSE the same messages arrive as events.
    func testResumeWithHeldViewGetsTheMissedDeltasAndSSECarriesTheSameMessages() throws {
        try startSystem()
        let tok = try token(["--tenant", "t1"])
        let script = """
        import asyncio, hashlib, json, sys, urllib.request
        import jsonpatch, rfc8785, websockets
        url, tok = sys.argv[1], sys.argv[2]
        H = {"Authorization": "Bearer " + tok}
        def post(path, body, key):
            req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST", headers={**H, "Idempotency-Key": key})
            with urllib.request.urlopen(req) as r:
                return json.loads(r.read())
        def digest(d):
            return hashlib.sha256(rfc8785.dumps(d)).hexdigest()
        async def main():
            post("/v1/agents", {"agent_id": "ann", "spawn": [0, 0]}, "r")
            ws_url = url.replace("http", "ws", 1) + "/v1/stream?agents=ann"
            async with websockets.connect(ws_url, additional_headers=H) as ws:
                first = json.loads(await ws.recv())
                view = json.loads(await ws.recv())
            doc, seq = view["view"], view["view_seq"]
            for k in range(3):
                post("/v1/agents/ann/intents", {"kind": "Move", "payload": {"to": [k + 1, 0]}}, f"m{k}")
            out = {"first": first["start"]}
            async with websockets.connect(ws_url + f"&resume=ann:{seq}:{digest(doc)}", additional_headers=H) as ws:
                sub = json.loads(await ws.recv())
                out["resumed"] = sub["start"]
                n = 0
                while n < 3:
                    m = json.loads(await ws.recv())
                    assert m["type"] == "observation", m
                    doc = jsonpatch.apply_patch(doc, m["patches"])
                    assert digest(doc) == m["context_digest"]
                    n += 1
            out["deltas"] = n
            async with websockets.connect(ws_url + f"&resume=ann:{seq}:{'0' * 64}", additional_headers=H) as ws:
                out["wrong_digest"] = json.loads(await ws.recv())["start"]
                out["then"] = json.loads(await ws.recv())["type"]
            # SSE: the whole view first, as an event named after the message type.
            req = urllib.request.Request(url + "/v1/events?agents=ann", headers=H)
            with urllib.request.urlopen(req, timeout=10) as r:
                out["sse_type"] = r.headers["Content-Type"]
                lines = []
                while len(lines) < 4:
                    line = r.readline().decode().strip()
                    if line:
                        lines.append(line)
                out["sse"] = [lines[0], json.loads(lines[1][len("data: "):])["type"], lines[2], json.loads(lines[3][len("data: "):])["type"]]
            print(json.dumps(out, sort_keys=True))
        asyncio.run(main())
        """
        let out = try runScript(script, named: "resume", [url, tok])
        XCTAssertEqual(out.trimmingCharacters(in: .whitespacesAndNewlines),
                       #"{"deltas": 3, "first": "view", "resumed": "delta", "sse": ["event: subscribed", "subscribed", "event: view", "view"], "sse_type": "text/event-stream", "then": "view", "wrong_digest": "view"}"#)
    }

    /// Every ```sh block of docs/web.md, run as written by bash (-euo pipefail) against a live
    /// system, with GUNN_HOME set and gunn's binaries and the test venv's python3 on PATH.
    func testTheExamplesOfDocsWebRunAsWritten() throws {
        try startSystem()
        let doc = try String(contentsOfFile: EventLogProcessTests.root.path + "/docs/web.md", encoding: .utf8)
        var blocks: [String] = []
        var current: [String]?
        for line in doc.components(separatedBy: "\n") {
            if current == nil, line == "```sh" { current = []; continue }
            if current != nil, line == "```" { blocks.append(current!.joined(separator: "\n")); current = nil; continue }
            current?.append(line)
        }
        XCTAssertEqual(blocks.count, 2, "docs/web.md has its two example blocks")
        let script = "set -euo pipefail\n" + blocks.joined(separator: "\n")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = ["-c", script]
        p.currentDirectoryURL = EventLogProcessTests.root
        var env = ProcessInfo.processInfo.environment
        env["GUNN_HOME"] = home
        env["PATH"] = EventLogProcessTests.root.path + "/.build/debug:" + EventLogProcessTests.root.path + "/.venv-tools/bin:" + (env["PATH"] ?? "")
        p.environment = env
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, out)
        XCTAssertTrue(out.contains(#"{"status":"ok"}"#), out)
        XCTAssertTrue(out.contains(#""status":"committed""#), out)
        XCTAssertTrue(out.contains(#""same": true"#), out)
    }

    /// One tenant opens 1,000 WebSocket streams: the tenant's cap (256 by default) is served, the
    /// rest are refused with an error message and close 4429, and another tenant is served at the
    /// same time (its stream gets its view, its REST call its answer).
    /// Slowloris against the adapter: 60 connections that send part of a request head (REST and
    /// WebSocket upgrades) or part of an intent's body, then nothing. Each is answered 408
    /// REQUEST_TIMEOUT and closed; a normal client is served meanwhile, and no partial intent
    /// reaches the log.
    func testSlowClientsGet408AndNothingOfTheirsIsCommitted() async throws {
        try startSystem(["--header-timeout-ms", "1000", "--body-timeout-ms", "1000"])
        let t1 = try token(["--tenant", "t1"])
        XCTAssertEqual(try http("POST", "/v1/agents", token: t1, body: Array(#"{"agent_id":"ann","spawn":[0,0]}"#.utf8)).0, 201)
        let script = """
        import json, socket, sys, urllib.request
        base, tok = sys.argv[1], sys.argv[2]
        host, port = base.split("//")[1].split(":")
        auth = "Authorization: Bearer " + tok + "\\r\\n"
        body = '{"kind":"Speak","payload":{"text":"slow"},"req_id":"slow-%d"}'
        slow = []
        def open_with(data, what):
            s = socket.create_connection((host, int(port)))
            s.settimeout(30)
            s.sendall(data.encode())
            slow.append((s, what))
        for i in range(20):
            open_with("GET /v1/agents/ann/view HTTP/1.1\\r\\nHost: x\\r\\n" + auth + "X-Slow: a", "head")
        for i in range(20):
            b = body % i
            open_with("POST /v1/agents/ann/intents HTTP/1.1\\r\\nHost: x\\r\\n" + auth + "Content-Type: application/json\\r\\nContent-Length: %d\\r\\n\\r\\n" % (len(b) + 1) + b, "body")
        for i in range(20):
            open_with("GET /v1/stream?agents=ann HTTP/1.1\\r\\nHost: x\\r\\n" + auth + "Upgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Version: 13\\r\\n", "upgrade")
        # A normal client while all of them hang.
        req = urllib.request.Request(base + "/v1/agents/ann/intents", data=b'{"kind":"Speak","payload":{"text":"fast"},"req_id":"fast-1"}',
                                     headers={"Authorization": "Bearer " + tok, "Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            served = r.status
        answers = {}
        for s, what in slow:
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            head, _, rest = data.partition(b"\\r\\n\\r\\n")
            status = head.split(b" ")[1].decode() if head else "none"
            code = json.loads(rest)["code"] if rest else None
            answers.setdefault(what, set()).add((status, code))
        print(json.dumps({"served": served, "answers": {k: sorted(map(list, v)) for k, v in answers.items()}}, sort_keys=True))
        """
        let out = try runScript(script, named: "slowloris", [url, t1])
        XCTAssertEqual(out.trimmingCharacters(in: .whitespacesAndNewlines),
                       #"{"answers": {"body": [["408", 3007]], "head": [["408", 3007]], "upgrade": [["408", 3007]]}, "served": 200}"#)
        // Still serving, and only the normal client's intent is in the log.
        XCTAssertEqual(try http("GET", "/v1/agents/ann/view", token: t1).0, 200)
        let speeches = try await OrchestratorProcessTests.logEntries(home: home, worldID: "w1").compactMap { e -> String? in
            let effect = try JSONParser.parse(e.effect)
            return effect["kind"] == "Speak" ? effect["payload"]?["text"]?.stringValue : nil
        }
        XCTAssertEqual(speeches, ["fast"])
        let log = (try? String(contentsOfFile: webErr, encoding: .utf8)) ?? ""
        XCTAssertFalse(log.contains(String(t1.suffix(43))), "the token's signature is in the log")
    }

    func testAThousandConnectionsFromOneTenantAreCappedAndOthersServed() throws {
        try startSystem()
        let t1 = try token(["--tenant", "t1"])
        let t2 = try token(["--tenant", "t2"])
        XCTAssertEqual(try http("POST", "/v1/agents", token: t1, body: Array(#"{"agent_id":"ann"}"#.utf8)).0, 201)
        XCTAssertEqual(try http("POST", "/v1/agents", token: t2, body: Array(#"{"agent_id":"bob"}"#.utf8)).0, 201)
        let script = """
        import asyncio, json, sys, urllib.request, resource, websockets
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        url, t1, t2 = sys.argv[1].replace("http", "ws", 1), sys.argv[2], sys.argv[3]
        async def one(tok, agent):
            ws = await websockets.connect(url + "/v1/stream?agents=" + agent, additional_headers={"Authorization": "Bearer " + tok}, open_timeout=30)
            first = json.loads(await ws.recv())
            return ws, first
        async def main():
            results = await asyncio.gather(*[one(t1, "ann") for _ in range(1000)], return_exceptions=True)
            served = [r for r in results if not isinstance(r, Exception) and r[1]["type"] == "subscribed"]
            refused = [r for r in results if not isinstance(r, Exception) and r[1]["type"] == "error"]
            codes = set()
            for ws, m in refused:
                try:
                    await asyncio.wait_for(ws.recv(), timeout=10)
                except websockets.ConnectionClosed as e:
                    codes.add(e.rcvd.code if e.rcvd else None)
            other, first = await one(t2, "bob")
            view = json.loads(await other.recv())
            req = urllib.request.Request(sys.argv[1] + "/v1/agents/bob/view", headers={"Authorization": "Bearer " + t2})
            with urllib.request.urlopen(req, timeout=10) as r:
                rest = r.status
            for ws, _ in served:
                await ws.close()
            print(json.dumps({"served": len(served), "refused": len(refused), "failed": len(results) - len(served) - len(refused),
                              "codes": sorted(c for c in codes if c), "names": sorted({m["name"] for _, m in refused}),
                              "other": [first["type"], view["type"], rest]}, sort_keys=True))
        asyncio.run(main())
        """
        let out = try runScript(script, named: "thousand", [url, t1, t2])
        XCTAssertEqual(out.trimmingCharacters(in: .whitespacesAndNewlines),
                       #"{"codes": [4429], "failed": 0, "names": ["QUOTA_EXCEEDED"], "other": ["subscribed", "view", 200], "refused": 744, "served": 256}"#)
    }

    /// An agent whose LLM runs in the client: it begins a generation, streams tokens that the
    /// agent beside it sees as partial speech on its stream, is cancelled the moment another
    /// agent's move makes its context stale (a cancel message naming stale_due_to:N), reports
    /// halted, and the orchestrator logs the cancellation.
    func testAnExternalGenerationStreamsTokensAndIsInterruptedWhenItGoesStale() async throws {
        try startSystem()
        let tok = try token(["--tenant", "t1"])
        let script = """
        import asyncio, json, sys, urllib.request, urllib.error
        import websockets
        url, tok = sys.argv[1], sys.argv[2]
        H = {"Authorization": "Bearer " + tok}
        def post(path, body, key=None):
            h = dict(H, **({"Idempotency-Key": key} if key else {}))
            req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST", headers=h)
            try:
                with urllib.request.urlopen(req) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())
        async def until(ws, kind):
            while True:
                m = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
                if m["type"] == kind:
                    return m
        async def main():
            post("/v1/agents", {"agent_id": "ann", "spawn": [0, 0], "interrupt": "always"})
            post("/v1/agents", {"agent_id": "bob", "spawn": [1, 0]})
            base = url.replace("http", "ws", 1) + "/v1/stream?agents="
            async with websockets.connect(base + "ann", additional_headers=H) as a, websockets.connect(base + "bob", additional_headers=H) as b:
                await until(a, "view"); await until(b, "view")
                status, begun = post("/v1/agents/ann/generations", {"req_id": "g1", "token_budget": 100})
                out = {"begin": status, "context_seq": begun.get("context_seq") is not None}
                for k, t in enumerate(["Hel", "lo ", "bob"]):
                    post("/v1/agents/ann/generations/g1/tokens", {"index": k, "text": t})
                heard = [await until(b, "token") for _ in range(3)]
                out["heard"] = "".join(m["text"] for m in heard)
                out["speaker"] = heard[0]["speaker"]
                status, moved = post("/v1/agents/bob/intents", {"kind": "Move", "payload": {"to": [2, 0]}}, "b1")
                out["move"] = status
                cancel = await until(a, "cancel")
                out["cancel"] = [cancel["req_id"], cancel["reason"] == "stale_due_to:%d" % moved["effect"]["global_seq"]]
                status, _ = post("/v1/agents/ann/generations/g1/halted", {"tokens_emitted": 3, "cancelled": True})
                out["halted"] = status
            print(json.dumps(out, sort_keys=True))
        asyncio.run(main())
        """
        let out = try runScript(script, named: "generation", [url, tok])
        XCTAssertEqual(out.trimmingCharacters(in: .whitespacesAndNewlines),
                       #"{"begin": 201, "cancel": ["g1", true], "context_seq": true, "halted": 200, "heard": "Hello bob", "move": 200, "speaker": "ann"}"#)
        let entries = try await OrchestratorProcessTests.logEntries(home: home, worldID: "w1")
        let kinds = entries.compactMap { (try? JSONParser.parse($0.effect))?["kind"]?.stringValue }
        XCTAssertTrue(kinds.contains("GenerationCancelled"), "the cancellation is in the log: \(kinds)")
    }

    /// The register → stream → act cycle from JavaScript in headless Chromium (Playwright): the
    /// page is the adapter's own /docs (so every request is same-origin), the stream authenticates
    /// with access_token, every delta is applied by a small RFC 6902 implementation in the page
    /// and checked against its digest (SHA-256 of the JCS form, by crypto.subtle), and the rebuilt
    /// view equals GET view. No console error, no request outside the adapter.
    func testTheRegisterStreamActCycleFromJavaScriptInHeadlessChromium() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium") else { return XCTFail("chromium is missing: ops/setup --test installs it") }
        try startSystem()
        let tok = try token(["--tenant", "browser"])
        let script = #"""
        import json, sys
        from playwright.sync_api import sync_playwright
        url, tok = sys.argv[1], sys.argv[2]
        js = """
        async ([tok]) => {
          const H = {'Authorization': 'Bearer ' + tok, 'Content-Type': 'application/json'};
          const canon = v => Array.isArray(v) ? '[' + v.map(canon).join(',') + ']'
            : (v !== null && typeof v === 'object') ? '{' + Object.keys(v).sort().map(k => JSON.stringify(k) + ':' + canon(v[k])).join(',') + '}'
            : JSON.stringify(v);
          const digest = async v => Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(canon(v)))))
            .map(b => b.toString(16).padStart(2, '0')).join('');
          const unescape = s => s.replace(/~1/g, '/').replace(/~0/g, '~');
          const apply = (doc, patch) => {
            for (const op of patch) {
              if (op.path === '') { doc = structuredClone(op.value); continue; }
              const parts = op.path.split('/').slice(1).map(unescape);
              const last = parts.pop();
              let parent = doc;
              for (const p of parts) parent = parent[p];
              if (op.op === 'remove') { if (Array.isArray(parent)) parent.splice(+last, 1); else delete parent[last]; }
              else if (op.op === 'add' && Array.isArray(parent)) { if (last === '-') parent.push(op.value); else parent.splice(+last, 0, op.value); }
              else if (op.op === 'add' || op.op === 'replace') parent[last] = structuredClone(op.value);
              else throw new Error('op ' + op.op);
            }
            return doc;
          };
          const reg = await fetch('/v1/agents', {method: 'POST', headers: H, body: JSON.stringify({agent_id: 'js-ann', spawn: [0, 0]})});
          if (reg.status !== 201) throw new Error('register ' + reg.status);
          let doc = null, seq = 0, checked = 0, bad = 0, gseq = 0;
          const ws = new WebSocket(location.origin.replace('http', 'ws') + '/v1/stream?agents=js-ann&access_token=' + encodeURIComponent(tok));
          const done = new Promise((resolve, reject) => {
            ws.onerror = () => reject(new Error('websocket error'));
            ws.onmessage = async ev => {
              const m = JSON.parse(ev.data);
              if (m.type === 'view') { doc = m.view; seq = m.view_seq; }
              else if (m.type === 'observation' && m.view_seq > seq) { doc = apply(doc, m.patches); seq = m.view_seq; }
              else return;
              gseq = Math.max(gseq, m.global_seq);
              if (await digest(doc) === m.context_digest) checked++; else bad++;
              window.gunnLast = gseq;
              if (window.gunnWant && gseq >= window.gunnWant) resolve();
            };
          });
          await new Promise(r => { const t = setInterval(() => { if (doc) { clearInterval(t); r(); } }, 10); });
          let want = 0;
          for (let k = 0; k < 5; k++) {
            const r = await fetch('/v1/agents/js-ann/intents', {method: 'POST', headers: {...H, 'Idempotency-Key': 'js-' + k},
                                  body: JSON.stringify({kind: 'Move', payload: {to: [k + 1, 2 * k]}, context_seq: seq})});
            const b = await r.json();
            if (r.status !== 200) throw new Error('intent ' + r.status + ' ' + JSON.stringify(b));
            want = b.effect.global_seq;
          }
          window.gunnWant = want;
          if (window.gunnLast >= want) {} else await done;
          const v = await (await fetch('/v1/agents/js-ann/view', {headers: H})).json();
          ws.close();
          return {checked, bad, same: canon(v.view) === canon(doc) && v.view_seq === seq, pos: doc.entities['js-ann'].pos};
        }
        """
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page()
            errors, outside = [], []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(url) else None)
            page.goto(url + "/docs")
            page.wait_for_function("window.gunnDocsReady === true")
            result = page.evaluate(js, [tok])
            browser.close()
        print(json.dumps({"result": result, "console_errors": errors, "outside": outside}, sort_keys=True))
        """#
        let out = try runScript(script, named: "browser", [url, tok])
        guard let line = out.split(separator: "\n").last, let v = try? JSONParser.parse(String(line)) else { return XCTFail(out) }
        print("headless Chromium: \(line)")
        XCTAssertEqual(v["console_errors"], .array([]), out)
        XCTAssertEqual(v["outside"], .array([]), out)
        XCTAssertEqual(v["result"]?["same"], true, out)
        XCTAssertEqual(v["result"]?["bad"]?.numberValue, 0, out)
        XCTAssertGreaterThanOrEqual(v["result"]?["checked"]?.numberValue ?? 0, 6, "the view and five deltas checked: \(out)")
        XCTAssertEqual(v["result"]?["pos"], [5, 8, 0])
    }

    /// A kill -9 of the orchestrator under a WebSocket stream: the adapter's client re-registers
    /// the agent and takes the view the orchestrator resumes it with as a whole view, which the
    /// stream gets as a `view` message (the second one it sees), then the deltas after it. The
    /// stream's rebuilt view equals GET view, with every digest checked.
    func testAStreamGoesOnAfterTheOrchestratorRestarts() throws {
        let sup = try startSupervised(durability: "full")
        defer { stopSupervised(sup) }
        let before = try GunnHome(home).waitReady(["eventlog", "orchestrator", "web"])
        url = try String(contentsOfFile: home + "/run/web.addr", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        guard case .number(let orchestratorPID)? = before["orchestrator"]?["pid"] else { return XCTFail("no pid: \(before)") }
        let tok = try token(["--tenant", "t1", "--world", "w1"])
        let script = #"""
        import asyncio, hashlib, json, os, signal, sys, time, urllib.request, urllib.error
        import jsonpatch, rfc8785, websockets
        url, tok, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
        H = {"Authorization": "Bearer " + tok, "Content-Type": "application/json"}
        def call(method, path, body=None):
            req = urllib.request.Request(url + path, data=None if body is None else json.dumps(body).encode(), method=method, headers=H)
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, None
            except Exception:
                return 0, None
        def digest(doc):
            return hashlib.sha256(rfc8785.dumps(doc)).hexdigest()
        async def main():
            assert call("POST", "/v1/agents", {"agent_id": "s1", "spawn": [0, 0]})[0] == 201
            state = {"doc": None, "seq": 0, "bad": 0, "views": 0}
            applied = asyncio.Event()  # set by the reader each time it applies a message
            async def moves(k0, n):
                for k in range(k0, k0 + n):
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline:
                        status, _ = await asyncio.to_thread(call, "POST", "/v1/agents/s1/intents", {"kind": "Move", "payload": {"to": [k, 1]}})
                        if status == 200:
                            break
                        await asyncio.sleep(0.05)  # the orchestrator is restarting: a client's retry
            async with websockets.connect(url.replace("http", "ws") + "/v1/stream?agents=s1", additional_headers={"Authorization": H["Authorization"]}) as ws:
                async def read():
                    async for text in ws:
                        m = json.loads(text)
                        if m["type"] == "view":
                            state["doc"], state["seq"] = m["view"], m["view_seq"]
                            state["views"] += 1
                        elif m["type"] == "observation" and state["doc"] is not None and m["view_seq"] > state["seq"]:
                            state["doc"], state["seq"] = jsonpatch.apply_patch(state["doc"], m["patches"]), m["view_seq"]
                        else:
                            continue
                        if digest(state["doc"]) != m["context_digest"]:
                            state["bad"] += 1
                        applied.set()
                reader = asyncio.create_task(read())
                await moves(1, 5)
                os.kill(pid, signal.SIGKILL)
                await moves(6, 5)
                status, v = await asyncio.to_thread(call, "GET", "/v1/agents/s1/view")
                deadline = time.monotonic() + 20
                # Each message the stream applies is looked at, until it holds the view read (or the deadline).
                while time.monotonic() < deadline:
                    applied.clear()  # before the check: a message applied after it wakes the wait
                    if state["doc"] is not None and rfc8785.dumps(state["doc"]) == rfc8785.dumps(v["view"]):
                        break
                    try:
                        await asyncio.wait_for(applied.wait(), timeout=max(0.01, deadline - time.monotonic()))
                    except asyncio.TimeoutError:
                        break
                reader.cancel()
                same = state["doc"] is not None and rfc8785.dumps(state["doc"]) == rfc8785.dumps(v["view"])
                print(json.dumps({"same": same, "bad": state["bad"], "views": state["views"], "pos": v["view"]["entities"]["s1"]["pos"]}))
        asyncio.run(main())
        """#
        let out = try runScript(script, named: "restart", [url, tok, String(Int(orchestratorPID))])
        guard let line = out.split(separator: "\n").last, let v = try? JSONParser.parse(String(line)) else { return XCTFail(out) }
        print("stream across an orchestrator restart: \(line)")
        XCTAssertEqual(v["same"], true, "the stream's view is GET view after the restart: \(line)")
        XCTAssertEqual(v["bad"]?.numberValue, 0, String(line))
        XCTAssertEqual(v["pos"], [10, 1, 0], String(line))
        XCTAssertGreaterThanOrEqual(v["views"]?.numberValue ?? 0, 2, "a whole view at the start and one after the restart: \(line)")
    }

    /// A token refused again and again for its own agent quarantines that agent (403
    /// AGENT_QUARANTINED for every token, an AgentQuarantined record in the log) until gunnctl
    /// releases it (an AgentReleased record); refusals for an agent the token does not cover
    /// quarantine nobody.
    func testRepeatedRefusalsQuarantineTheAgentUntilGunnctlReleasesIt() async throws {
        try startSystem(["--quarantine-after", "3"])
        let owner = try token(["--tenant", "t1", "--rights", "observe,act"])
        let onlyObserve = try token(["--tenant", "t1", "--agent", "ann", "--rights", "observe"])
        let stranger = try token(["--tenant", "t2", "--agent", "zed", "--rights", "observe,act"])
        let namesAnn = try token(["--tenant", "t2", "--agent", "ann", "--rights", "observe,act"])
        XCTAssertEqual(try http("POST", "/v1/agents", token: owner, body: Array(#"{"agent_id":"ann"}"#.utf8)).0, 201)
        let move = Array(#"{"kind":"Move","payload":{"to":[1,1]}}"#.utf8)
        // Another tenant's token for an agent it does not name: refused, and counts against nobody.
        for _ in 0..<5 { XCTAssertEqual(try http("POST", "/v1/agents/ann/intents", token: stranger, body: move).0, 403) }
        // Nor does another tenant's token that names the same agent id.
        for _ in 0..<5 { XCTAssertEqual(try http("POST", "/v1/agents/ann/intents", token: namesAnn, body: move).1?["name"]?.stringValue, "TENANT_ISOLATION_VIOLATION") }
        XCTAssertEqual(try http("GET", "/v1/agents/ann/view", token: owner).0, 200, "not quarantined by a stranger")
        // Its own token, without the act right, three times: quarantined.
        for _ in 0..<3 { XCTAssertEqual(try http("POST", "/v1/agents/ann/intents", token: onlyObserve, body: move).1?["name"]?.stringValue, "FORBIDDEN") }
        let (s1, j1, _) = try http("GET", "/v1/agents/ann/view", token: owner)
        XCTAssertEqual(s1, 403)
        XCTAssertEqual(j1?["name"]?.stringValue, ErrorCode.agentQuarantined.name)
        let released = try GunnHome(home).gunnctl(["token", "release", "ann"])
        XCTAssertEqual(released.status, 0, released.err)
        XCTAssertEqual(try http("GET", "/v1/agents/ann/view", token: owner).0, 200, "released")
        XCTAssertEqual(try GunnHome(home).gunnctl(["token", "release", "ann"]).status, 1, "releasing an agent not quarantined is a negative answer")
        let entries = try await OrchestratorProcessTests.logEntries(home: home, worldID: "w1")
        let kinds = entries.compactMap { (try? JSONParser.parse($0.effect))?["kind"]?.stringValue }
        XCTAssertEqual(kinds.filter { $0 == "AgentQuarantined" }.count, 1, "\(kinds)")
        XCTAssertEqual(kinds.filter { $0 == "AgentReleased" }.count, 1, "\(kinds)")
    }

    /// /health answers while the process lives; /ready only while the orchestrator answers and its
    /// log breaker is closed (opened by hand with gunnctl, then closed again).
    func testReadyFollowsTheOrchestratorsBreaker() throws {
        try startSystem()
        XCTAssertEqual(try http("GET", "/health").0, 200)
        XCTAssertEqual(try http("GET", "/ready").0, 200)
        XCTAssertEqual(try GunnHome(home).gunnctl(["breaker", "open", "eventlog"]).status, 0)
        let (s, j, _) = try http("GET", "/ready")
        XCTAssertEqual(s, 503)
        XCTAssertEqual(j?["name"]?.stringValue, ErrorCode.adapterUnavailable.name)
        XCTAssertEqual(try GunnHome(home).gunnctl(["breaker", "close", "eventlog"]).status, 0)
        XCTAssertEqual(try http("GET", "/ready").0, 200)
        XCTAssertEqual(try http("GET", "/health").0, 200)
    }

    func waitFor(_ what: String, timeout: Double = 20, _ condition: () -> Bool) {
        let end = Date().addingTimeInterval(timeout)
        while !condition() {
            if Date() > end { XCTFail("timed out waiting for \(what)"); return }
            usleep(20_000)
        }
    }
}

/// Runs a program to its end; its exit status and stdout+stderr.
func runTool(_ path: String, _ args: [String]) throws -> (Int32, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Reads a pipe line by line (blocking).
final class LineReader {
    let handle: FileHandle
    var buffer: [UInt8] = []
    init(_ handle: FileHandle) { self.handle = handle }
    func next() -> String? {
        while true {
            if let i = buffer.firstIndex(of: 0x0A) {
                let line = String(decoding: buffer[..<i], as: UTF8.self)
                buffer.removeFirst(i + 1)
                return line
            }
            let d = handle.availableData
            if d.isEmpty { return buffer.isEmpty ? nil : String(decoding: buffer, as: UTF8.self) }
            buffer += d
        }
    }
}
