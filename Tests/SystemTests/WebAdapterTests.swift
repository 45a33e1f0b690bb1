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

    func token(_ args: [String] = []) throws -> String {
        let ctl = try GunnHome(home).gunnctl(["token", "issue"] + args)
        XCTAssertEqual(ctl.status, 0, ctl.err)
        return ctl.out.trimmingCharacters(in: .whitespacesAndNewlines)
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
        try startSystem(["--agent-rate", "0.5", "--agent-burst", "3", "--max-streams-per-tenant", "1"])
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
        XCTAssertEqual(statuses.filter { $0 == 200 }.count, 2, "the burst of 3 includes the registration: \(statuses)")
        XCTAssertEqual(statuses.filter { $0 == 429 }.count, 3, "\(statuses)")
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
        let path = home + "/streams.py"
        try script.write(toFile: path, atomically: true, encoding: .utf8)
        let (status, out) = try runTool(python, [path, url, t1, t2])
        XCTAssertEqual(status, 0, out)
        XCTAssertEqual(out.trimmingCharacters(in: .whitespacesAndNewlines), #"{"code": 4429, "first": "view", "other": "view", "refused": "QUOTA_EXCEEDED"}"#)
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
        XCTAssertTrue(out.contains("Tested: 6"), "every operation was tested:\n\(out.suffix(2000))")
        XCTAssertFalse(out.contains(tok), "the token appears in schemathesis's output")
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
