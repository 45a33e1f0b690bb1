import Foundation
import Glibc
import XCTest
import GunnClient
import GunnCore
import GunnIO
import GunnWire

/// gunn-adapter-unity under the supervisor with real game-engine peers: Godot 3 headless (its own
/// 2D physics) and the Unity client's C# core on Mono.
final class EngineAdapterTests: XCTestCase {
    var home: String!
    var sup: SupervisorTests.SessionProcess?
    var peers: [Process] = []
    var clients: [GunnClient] = []
    // A loop that cannot be created (no epoll/poll descriptor) is a broken test machine, not input.
    static let loop = try! EventLoop(name: "engine-tests")
    var root: URL { EventLogProcessTests.root }

    override func setUpWithError() throws {
        home = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-engine-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        for c in clients { c.close() }
        for p in peers where p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        if let sup { kill(sup.pid, SIGTERM); sup.wait() }
        for pid in SupervisorTests.processes(where: { $0.cmdline.contains(self.home) }) { kill(pid, SIGKILL) }
        try? FileManager.default.removeItem(atPath: home)
    }

    /// eventlog, orchestrator (engine sim time) and the unity adapter under the supervisor.
    func startSystem(unityArgs: [String] = [], listen: String = "127.0.0.1:0") throws -> (url: String, token: String) {
        let extra = unityArgs.map { "\"\($0)\"" }.joined(separator: ", ")
        let config = """
        {"world_id": "w1", "world_seed": 5, "durability": "normal", "max_restarts": 10, "max_seconds": 60, "backoff_base_ms": 50,
         "backoff_cap_ms": 400, "stable_seconds": 5, "children": [
          {"name": "eventlog", "executable": "gunn-eventlog", "socket": "run/eventlog.sock", "args": ["--home", "{home}", "--world-id", "{world_id}", "--durability", "{durability}"]},
          {"name": "orchestrator", "executable": "gunn-orchestrator", "socket": "run/orchestrator.sock", "depends_on": ["eventlog"],
           "args": ["--home", "{home}", "--world-id", "{world_id}", "--world-seed", "{world_seed}", "--sim-time", "engine"]},
          {"name": "unity", "executable": "gunn-adapter-unity", "depends_on": ["orchestrator"],
           "args": ["--home", "{home}", "--world-id", "{world_id}", "--listen", "\(listen)", "--sim-time", "engine"\(extra.isEmpty ? "" : ", " + extra)]}]}
        """
        try config.write(toFile: home + "/gunn.json", atomically: true, encoding: .utf8)
        var env = ProcessInfo.processInfo.environment
        env["PATH"] = root.appendingPathComponent(".build/debug").path + ":" + (env["PATH"] ?? "")
        sup = try SupervisorTests.SessionProcess(root.appendingPathComponent(".build/debug/gunn-supervisor").path,
                                                 ["--config", home + "/gunn.json", "--home", home], environment: env, stderrPath: home + "/supervisor.err")
        _ = try GunnHome(home).waitReady(["eventlog", "orchestrator", "unity"])
        try poll("run/engine.addr") { FileManager.default.fileExists(atPath: self.home + "/run/engine.addr") }
        let url = try String(contentsOfFile: home + "/run/engine.addr", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let ctl = try GunnHome(home).gunnctl(["token", "issue", "--tenant", "engine", "--rights", "emit"])
        XCTAssertEqual(ctl.status, 0, ctl.err)
        return (url, ctl.out.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    func poll(_ what: String, seconds: Double = 30, _ condition: () throws -> Bool) throws {
        let end = Date().addingTimeInterval(seconds)
        while try !condition() {
            if Date() > end { throw GunnError(.operationTimeout, "timed out waiting for \(what)") }
            usleep(20_000)  // the condition is re-read each 20 ms until it holds or the deadline passes
        }
    }

    func client(_ name: String) -> GunnClient {
        let c = GunnClient(path: home + "/run/orchestrator.sock", loop: Self.loop, name: name)
        clients.append(c)
        return c
    }

    struct Logged { var seq: UInt64; var simTime: Double; var kind: String; var payload: JSONValue }

    func logged() async throws -> [Logged] {
        try await OrchestratorProcessTests.logEntries(home: home, worldID: "w1").map { e in
            let effect = try JSONParser.parse(e.effect)
            return Logged(seq: e.globalSeq, simTime: e.simTime, kind: effect["kind"]?.stringValue ?? "", payload: effect["payload"] ?? .null)
        }
    }

    func launchGodot(url: String, token: String, scene: String, record: String, out: String) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/godot3-server")
        p.arguments = ["--path", root.appendingPathComponent("clients/godot").path, "-s", "gunn_engine.gd", "--",
                       "--url=\(url)", "--token=\(token)", "--scene=\(scene)", "--record=\(record)"]
        var env = ProcessInfo.processInfo.environment
        env["LANG"] = "en"
        p.environment = env
        FileManager.default.createFile(atPath: out, contents: nil)
        p.standardOutput = FileHandle(forWritingAtPath: out)
        p.standardError = FileHandle(forWritingAtPath: out + ".err")
        try p.run()
        peers.append(p)
        return p
    }

    /// Two agents' bodies in Godot are commanded towards each other; Godot's physics reports their
    /// contact, which is a Collision in the log that an agent nearby observes and one far away
    /// does not; the engine's ticks are the log's sim time; the replay needs no engine.
    func testGodotPhysicsContactIsACollisionThatNearbyAgentsObserve() async throws {
        let (url, token) = try startSystem()
        let c = client("test")
        for (id, spawn) in [("A", [0.0, 0.0]), ("B", [6.0, 0.0]), ("C", [3.0, 2.0]), ("D", [100.0, 0.0])] {
            // Bodies move at 60 ticks/s: an intent's context is a few ticks old when it is ordered.
            _ = try await c.register(["agent_id": .string(id), "spawn": .array(spawn.map { .number($0) }), "distance_limit": 5, "staleness_threshold": 10_000])
        }
        let scene = home + "/scene.json"
        try #"{"bodies": [{"id": "A", "pos": [0, 0], "radius": 0.5}, {"id": "B", "pos": [6, 0], "radius": 0.5}], "speed": 3}"#
            .write(toFile: scene, atomically: true, encoding: .utf8)
        let godotOut = home + "/godot.out"
        let godot = try launchGodot(url: url, token: token, scene: scene, record: home + "/godot-record.jsonl", out: godotOut)
        // Godot's bodies are in the world: C (near) sees them bound to the engine.
        try poll("A and B to be Godot's bodies in C's view") {
            guard let v = c.view(of: "C")?.doc["entities"] else { return false }
            return v["A"]?["engine"] == "godot" && v["B"]?["engine"] == "godot"
        }
        // The world's clock starts at Godot's first committed step (before it, sim time is 0).
        try await pollAsync("Godot's first step in the log") { try await self.logged().contains { $0.kind == "TimeTick" } }
        let moveA = try await c.submit(Intent(kind: .move, payload: ["to": [6, 0]], contextSeq: 0, reqID: "a1", agentID: "A"))
        let moveB = try await c.submit(Intent(kind: .move, payload: ["to": [0, 0]], contextSeq: 0, reqID: "b1", agentID: "B"))
        XCTAssertEqual(moveA.effect?.kind, "EngineCommand", "\(moveA)")
        XCTAssertEqual(moveB.effect?.kind, "EngineCommand", "\(moveB)")
        let seqA = try XCTUnwrap(moveA.effect?.globalSeq), seqB = try XCTUnwrap(moveB.effect?.globalSeq)

        var entries: [Logged] = []
        try await pollAsync("the collision and both commands' results in the log") {
            entries = try await self.logged()
            let results = entries.filter { $0.kind == "EngineCommandResult" }.compactMap { $0.payload["command_seq"]?.numberValue }
            return entries.contains { $0.kind == "Collision" } && results.contains(Double(seqA)) && results.contains(Double(seqB))
        }
        let godotLog = (try? String(contentsOfFile: godotOut, encoding: .utf8)) ?? ""
        let collision = try XCTUnwrap(entries.first { $0.kind == "Collision" }, godotLog)
        XCTAssertEqual(Set([collision.payload["a"], collision.payload["b"]]), Set<JSONValue?>(["A", "B"]))
        XCTAssertTrue(godotLog.contains(#""event":"contact""#), "the contact came from Godot's physics: \(godotLog)")
        // C, 3.6 away, observes it; D, 97 away, sees neither body.
        try poll("C's view to show the collision") { c.view(of: "C")?.doc["entities"]?["A"]?["last_collision"]?["with"] == "B" }
        XCTAssertEqual(c.view(of: "C")?.doc["entities"]?["A"]?["last_collision"]?["global_seq"], .number(Double(collision.seq)))
        let dView = try XCTUnwrap(c.view(of: "D")?.doc["entities"]?.objectValue)
        XCTAssertEqual(dView.sortedKeys, ["D"], "D is out of range of both bodies")
        // The bodies stopped against each other: both commands ended blocked (or done), once each.
        let results = entries.filter { $0.kind == "EngineCommandResult" }
        XCTAssertEqual(results.count, 2, results.map { CanonicalJSON.encodeString($0.payload) }.joined(separator: "\n"))
        for r in results { XCTAssertTrue(["blocked", "done"].contains(r.payload["status"]?.stringValue ?? ""), CanonicalJSON.encodeString(r.payload)) }
        XCTAssertNotNil(c.view(of: "C")?.doc["entities"]?["A"]?["last_command"])
        // Sim time comes from Godot's ticks: every effect's time is a tick's time, never the host's.
        let ticks = entries.filter { $0.kind == "TimeTick" }
        XCTAssertGreaterThan(ticks.count, 10)
        let tickTimes = Set(ticks.map(\.simTime))
        XCTAssertEqual(ticks.map(\.simTime), ticks.map(\.simTime).sorted(), "ticks in order")
        for e in entries where e.kind == "EngineCommand" || e.kind == "Collision" {
            XCTAssertTrue(tickTimes.contains(e.simTime), "\(e.kind) at \(e.simTime) is not a tick's time")
        }
        XCTAssertLessThan(entries.map(\.simTime).max() ?? 0, 600, "sim time is the engine's seconds")
        // The engine's own record: each command once.
        // Godot 3 does not stop on SIGTERM; its record is written line by line, so SIGKILL loses nothing.
        kill(godot.processIdentifier, SIGKILL)
        godot.waitUntilExit()
        let record = try String(contentsOfFile: home + "/godot-record.jsonl", encoding: .utf8).split(separator: "\n")
            .compactMap { try? JSONParser.parse(Array($0.utf8))["seq"]?.numberValue }
        XCTAssertEqual(record.sorted(), [Double(seqA), Double(seqB)].sorted())
        // The link is lost in the log once Godot is gone; the replay needs no engine.
        try await pollAsync("EngineLink lost") { try await self.logged().contains { $0.kind == "EngineLink" && $0.payload["state"] == "lost" } }
        let replay = try GunnHome(home).gunnctl(["replay", "--check"])
        XCTAssertEqual(replay.status, 0, replay.out + replay.err)
        XCTAssertTrue(replay.out.contains("check ok"), replay.out)
        print("godot: \(ticks.count) ticks, collision at seq \(collision.seq) (sim time \(collision.simTime)), results \(results.map { $0.payload["status"]?.stringValue ?? "" })")
    }

    // MARK: - The C# core on Mono

    /// Compiles the Unity client's protocol core with the probe engine (mcs, C# 7.2) into the home.
    func buildProbe() throws -> String {
        let dir = root.appendingPathComponent("clients/unity").path
        let exe = home + "/probe.exe"
        let (status, out) = try runTool("/usr/bin/mcs", ["-langversion:7.2", "-warnaserror+", "-nowarn:4014", "-out:" + exe,
                                                        dir + "/Gunn.Engine/MiniJson.cs", dir + "/Gunn.Engine/EngineClient.cs", dir + "/Probe/Probe.cs"])
        XCTAssertEqual(status, 0, out)
        return exe
    }

    func launchProbe(_ exe: String, _ mode: String, url: String, token: String, record: String, seconds: Double = 60) throws -> (Process, LineReader) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/mono")
        p.arguments = [exe, mode, url, token, record, String(seconds)]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try p.run()
        peers.append(p)
        return (p, LineReader(out.fileHandleForReading))
    }

    /// Reads the probe's lines until one with this event (the lines before it are returned too).
    func until(_ reader: LineReader, _ event: String) throws -> (JSONValue, [String]) {
        var seen: [String] = []
        while let line = reader.next() {
            seen.append(line)
            if let v = try? JSONParser.parse(Array(line.utf8)), v["event"] == .string(event) { return (v, seen) }
        }
        throw GunnError(.operationTimeout, "the probe ended before \(event): \(seen.joined(separator: "\n"))")
    }

    /// The C# core on Mono: handshake with capabilities negotiated, lock-step ticks, a move and a
    /// custom command each executed once and answered; a protocol 2 engine is refused naming both
    /// versions; an engine that never finishes its sync is told the stage; a connect that is never
    /// upgraded times out naming the connect stage.
    func testTheCSharpCoreOnMonoNegotiatesCommandsAndNamesRefusalsAndStages() async throws {
        let exe = try buildProbe()
        let (url, token) = try startSystem(unityArgs: ["--time", "lockstep", "--sync-timeout-ms", "1000"])
        let c = client("test")
        for (id, x) in [("U1", 0.0), ("U2", 10.0)] {
            _ = try await c.register(["agent_id": .string(id), "spawn": [.number(x), 0], "staleness_threshold": 10_000])
        }
        let record = home + "/probe-record.jsonl"
        let (probe, reader) = try launchProbe(exe, "run", url: url, token: token, record: record)
        let (welcome, _) = try until(reader, "welcome")
        XCTAssertEqual(welcome["time_mode"], "lockstep")
        XCTAssertEqual(welcome["capabilities"], ["lockstep", "free", "contacts", "custom_commands", "heartbeat", "resume"],
                       "the intersection: the probe's teleport_v2 is not one of the adapter's")
        _ = try until(reader, "synced")
        try poll("U1 and U2 to be the probe's bodies") {
            c.view(of: "U1")?.doc["entities"]?["U1"]?["engine"] == "unity" && c.view(of: "U2")?.doc["entities"]?["U2"]?["engine"] == "unity"
        }
        XCTAssertEqual(c.view(of: "U1")?.doc["entities"]?["U1"]?["prefab"], "Capsule", "the body's fields from the engine")
        let move = try await c.submit(Intent(kind: .move, payload: ["to": [4, 0]], contextSeq: 0, reqID: "m1", agentID: "U1"))
        let jump = try await c.submit(Intent(kind: .custom, payload: ["kind": "jump", "data": ["h": 2]], contextSeq: 0, reqID: "j1", agentID: "U1"))
        let move2 = try await c.submit(Intent(kind: .move, payload: ["to": [12, 0]], contextSeq: 0, reqID: "m2", agentID: "U2"))
        let seqs = try [move, jump, move2].map { try XCTUnwrap($0.effect?.globalSeq, "\($0)") }
        XCTAssertEqual([move, jump, move2].map { $0.effect?.kind }, ["EngineCommand", "EngineCommand", "EngineCommand"])
        var entries: [Logged] = []
        try await pollAsync("three command results") {
            entries = try await self.logged()
            return entries.filter { $0.kind == "EngineCommandResult" }.count >= 3
        }
        let results = entries.filter { $0.kind == "EngineCommandResult" }
        XCTAssertEqual(results.compactMap { $0.payload["command_seq"]?.numberValue }.sorted(), seqs.map { Double($0) }.sorted())
        XCTAssertEqual(Set(results.compactMap { $0.payload["status"]?.stringValue }), ["done"])
        try poll("U1 to stand at its target") { c.view(of: "U1")?.doc["entities"]?["U1"]?["pos"] == [4, 0, 0] }
        XCTAssertEqual(c.view(of: "U1")?.doc["entities"]?["U1"]?["last_command"]?["status"], "done")
        let (acked, _) = try until(reader, "acked")
        XCTAssertNotNil(acked["tick"], "lock-step: the probe waited for gunn's TickAck of each step")
        kill(probe.processIdentifier, SIGKILL)
        probe.waitUntilExit()
        let executed = try String(contentsOfFile: record, encoding: .utf8).split(separator: "\n").compactMap { try? JSONParser.parse(Array($0.utf8))["seq"]?.numberValue }
        XCTAssertEqual(executed.sorted(), seqs.map { Double($0) }.sorted(), "each command executed once")

        // A major version gunn does not speak: refused, naming both versions.
        let (_, r1) = try launchProbe(exe, "mismatch", url: url, token: token, record: "-")
        let (refused, _) = try until(r1, "refused")
        XCTAssertEqual(refused["name"], "VERSION_MISMATCH")
        XCTAssertEqual(refused["close"], 4426)
        let text = refused["message"]?.stringValue ?? ""
        XCTAssertTrue(text.contains("protocol 2.0") && text.contains("speaks 1.0"), text)
        // A bad token: refused with its code.
        let (_, r2) = try launchProbe(exe, "stall-sync", url: url, token: "gunn1.bad.token", record: "-")
        let (badToken, _) = try until(r2, "refused")
        XCTAssertEqual(badToken["name"], "UNAUTHORIZED")
        XCTAssertEqual(badToken["close"], 4401)
        // An engine that never sends SyncDone: gunn names the stage that timed out.
        let (_, r3) = try launchProbe(exe, "stall-sync", url: url, token: token, record: "-")
        let (closed, _) = try until(r3, "closed")
        let errors = closed["errors"]?.arrayValue?.compactMap(\.stringValue) ?? []
        XCTAssertTrue(errors.contains { $0.hasPrefix("OPERATION_TIMEOUT: stage world_sync") }, "\(errors)")
        // A server that accepts the TCP connection and never upgrades it: the client names the stage.
        let silent = try RawListener()
        defer { silent.close() }
        let (_, r4) = try launchProbe(exe, "stage-connect", url: "ws://127.0.0.1:\(silent.port)/v1/engine", token: token, record: "-")
        let (stage, _) = try until(r4, "stage_timeout")
        XCTAssertEqual(stage["stage"], "connect")
        XCTAssertTrue(stage["message"]?.stringValue?.hasPrefix("stage connect timed out after 1000 ms") == true, "\(stage)")
        let status = try GunnHome(home).gunnctl(["--json", "status"])
        XCTAssertEqual(status.json?["engine"]?["engines"]?.arrayValue?.first?["engine"], "unity", status.out)
        print("mono: \(results.count) commands answered; refusals: \(text); \(errors.first ?? "")")
    }

    /// kill -9 of the adapter while its engine executes commands, then the engine itself killed
    /// and started again: each time the engine resumes from its record, every command is answered
    /// once and executed once, none is lost; while the engine is away its agents' moves are refused
    /// with UNITY_CONNECTION_LOST and a retry-after, which gunnctl status and the log show.
    func testKillNineOfTheAdapterAndALostEngineResumeWithoutRepeatingOrLosingCommands() async throws {
        let exe = try buildProbe()
        // A fixed port, so the engine finds the restarted adapter where it was.
        let port = try LLMAdapterTests.freePort()
        let (url, token) = try startSystem(listen: "127.0.0.1:\(port)")
        let c = client("test")
        _ = try await c.register(["agent_id": "U1", "spawn": [0, 0], "staleness_threshold": 100_000])
        _ = try await c.register(["agent_id": "U2", "spawn": [10, 0], "staleness_threshold": 100_000])
        let record = home + "/probe-record.jsonl"
        var (probe, reader) = try launchProbe(exe, "run", url: url, token: token, record: record, seconds: 120)
        _ = try until(reader, "synced")
        try poll("U1 to be the probe's body") { c.view(of: "U1")?.doc["entities"]?["U1"]?["engine"] == "unity" }

        var seqs: [UInt64] = []
        var refusedWhileLost: GunnError?
        var attempt = 0
        func submitMove(_ i: Int) async throws -> UInt64 {
            let until = Date().addingTimeInterval(60)
            while Date() < until {
                attempt += 1
                let o = try await c.submit(Intent(kind: .move, payload: ["to": [.number(Double(i % 2 == 0 ? 3 : 0)), .number(Double(i))]],
                                                  contextSeq: 0, reqID: ReqID("m\(i)-\(attempt)"), agentID: "U1"))
                if let e = o.effect { return e.globalSeq }
                guard let error = o.error, error.code == .unityConnectionLost, let retry = error.retryAfterMs else { throw GunnError(.internalError, "move \(i): \(o)") }
                // A client obeying the refusal's retry-after, as the protocol asks; not a wait for an event.
                try await Task.sleep(nanoseconds: retry * 1_000_000)
            }
            throw GunnError(.operationTimeout, "move \(i) was refused for 60 s")
        }
        func answered(_ seq: UInt64) async throws -> Bool {
            try await logged().contains { $0.kind == "EngineCommandResult" && $0.payload["command_seq"] == .number(Double(seq)) }
        }
        for i in 0..<12 {
            let seq = try await submitMove(i)
            seqs.append(seq)
            if i == 3 {
                // The adapter dies with command 3 in flight; the supervisor restarts it.
                let st = try GunnHome(home).waitReady(["unity"])
                guard case .number(let pid)? = st["unity"]?["pid"] else { return XCTFail("no pid for unity: \(st)") }
                kill(pid_t(pid), SIGKILL)
                _ = try GunnHome(home).waitReady(["unity"], notPIDs: ["unity": pid])
            }
            if i == 7 {
                // The engine dies with command 7 pending: the link is lost in the world.
                kill(probe.processIdentifier, SIGKILL)
                probe.waitUntilExit()
                try poll("U1's body to be marked lost") { c.view(of: "U1")?.doc["entities"]?["U1"]?["engine_link"] == "lost" }
                let o = try await c.submit(Intent(kind: .move, payload: ["to": [9, 9]], contextSeq: 0, reqID: "while-lost", agentID: "U1"))
                refusedWhileLost = o.error
                let status = try GunnHome(home).gunnctl(["status"])
                XCTAssertTrue(status.out.contains("engine bridge: breaker") && status.out.contains("UNITY_CONNECTION_LOST"), status.out)
                let js = try GunnHome(home).gunnctl(["--json", "status"])
                XCTAssertEqual(js.json?["engine"]?["engines"]?.arrayValue?.first?["link"], "lost", js.out)
                (probe, reader) = try launchProbe(exe, "run", url: url, token: token, record: record, seconds: 120)
            }
            try await pollAsync("command \(i) (seq \(seq)) answered", seconds: 40) { try await answered(seq) }
        }
        XCTAssertEqual(refusedWhileLost?.code, .unityConnectionLost)
        XCTAssertNotNil(refusedWhileLost?.retryAfterMs)
        let entries = try await logged()
        var answers: [Double: Int] = [:]
        for e in entries where e.kind == "EngineCommandResult" { answers[e.payload["command_seq"]?.numberValue ?? 0, default: 0] += 1 }
        XCTAssertEqual(answers.keys.sorted(), seqs.map { Double($0) }, "every command answered, none other")
        XCTAssertEqual(answers.values.filter { $0 != 1 }.count, 0, "each once: \(answers)")
        let executed = try String(contentsOfFile: record, encoding: .utf8).split(separator: "\n").compactMap { try? JSONParser.parse(Array($0.utf8))["seq"]?.numberValue }
        XCTAssertEqual(executed.sorted(), seqs.map { Double($0) }, "the engine's own record: each command executed once")
        let lost = entries.filter { $0.kind == "EngineLink" && $0.payload["state"] == "lost" }
        XCTAssertFalse(lost.isEmpty)
        XCTAssertTrue(lost.allSatisfy { $0.payload["name"] == "UNITY_CONNECTION_LOST" })
        XCTAssertGreaterThanOrEqual(entries.filter { $0.kind == "EngineLink" && $0.payload["state"] == "connected" }.count, 3, "three sessions")
        // The engine stops, so the log stops growing; the replay needs no engine.
        kill(probe.processIdentifier, SIGKILL)
        probe.waitUntilExit()
        try await pollAsync("the last link loss") { try await self.logged().filter { $0.kind == "EngineLink" && $0.payload["state"] == "lost" }.count > lost.count }
        let replay = try GunnHome(home).gunnctl(["replay", "--check"])
        XCTAssertEqual(replay.status, 0, replay.out + replay.err)
        print("kill -9: \(seqs.count) commands, each answered and executed once; \(lost.count) EngineLink lost records; \(attempt) submissions")
    }

    /// An engine that takes commands and never answers them: each unanswered command counts
    /// against the link's breaker, which opens, cuts the link and refuses the engine's Hellos
    /// until its open time is over; then one probe session is let through again.
    func testAnEngineThatNeverAnswersOpensTheBreaker() async throws {
        let exe = try buildProbe()
        // The breaker stays open 5 s the first time: long enough to see it refuse, on a slow machine too.
        let (url, token) = try startSystem(unityArgs: ["--command-timeout-ms", "300", "--breaker-failures", "2", "--breaker-open-ms", "5000"])
        let c = client("test")
        _ = try await c.register(["agent_id": "U1", "spawn": [0, 0], "staleness_threshold": 100_000])
        let (_, reader) = try launchProbe(exe, "silent", url: url, token: token, record: "-", seconds: 60)
        _ = try until(reader, "synced")
        try poll("U1 to be the probe's body") { c.view(of: "U1")?.doc["entities"]?["U1"]?["engine"] == "unity" }
        for k in 0..<2 {
            let o = try await c.submit(Intent(kind: .move, payload: ["to": [.number(Double(k + 1)), 0]], contextSeq: 0, reqID: ReqID("s\(k)"), agentID: "U1"))
            XCTAssertEqual(o.effect?.kind, "EngineCommand", "\(o)")
        }
        // The engine is cut off and, reconnecting while the breaker is open, refused.
        let (refused, lines) = try until(reader, "refused")
        XCTAssertEqual(refused["name"], "ADAPTER_UNAVAILABLE", lines.joined(separator: "\n"))
        XCTAssertTrue(lines.contains { $0.contains("breaker opened") }, "the engine was told why it was cut off: \(lines.joined(separator: "\n"))")
        let o = try await c.submit(Intent(kind: .move, payload: ["to": [5, 5]], contextSeq: 0, reqID: "while-open", agentID: "U1"))
        XCTAssertEqual(o.error?.code, .unityConnectionLost, "\(o)")
        let status = try GunnHome(home).gunnctl(["--json", "status"])
        let breaker = status.json?["engine"]?["breaker"]?.stringValue ?? ""
        XCTAssertTrue(["open", "half_open"].contains(breaker), status.out)
        try await pollAsync("the lost link in the log") { try await self.logged().contains { $0.kind == "EngineLink" && $0.payload["state"] == "lost" } }
        let lost = try await logged().filter { $0.kind == "EngineLink" && $0.payload["state"] == "lost" }
        XCTAssertEqual(lost.first?.payload["name"], "UNITY_CONNECTION_LOST")
        // After the open time one session is let through again (a half-open probe); still silent,
        // its commands count again and the breaker opens again.
        let (again, _) = try until(reader, "welcome")
        XCTAssertNotNil(again["session"])
        let (second, more) = try until(reader, "refused")
        XCTAssertEqual(second["name"], "ADAPTER_UNAVAILABLE", more.joined(separator: "\n"))
        XCTAssertTrue(more.contains { $0.contains("breaker opened") }, "the recovered session was cut again: \(more.joined(separator: "\n"))")
        print("breaker: \(breaker) after 2 unanswered commands; \(refused["message"]?.stringValue ?? "")")
    }

    /// A hostile engine: garbage, frames of the wrong kind, unknown bodies, answers to commands
    /// never sent, reserved fields, a flood of contacts. Each is answered with its code, nothing of
    /// it reaches the log, the flood is cut at the contact rate, and the adapter goes on serving.
    func testBadEngineInputIsAnsweredWithCodesAndNeverStallsTheAdapter() async throws {
        let (url, token) = try startSystem(unityArgs: ["--contacts-per-second", "200"])
        let pidBefore = try GunnHome(home).waitReady(["unity"])["unity"]?["pid"]
        let python = root.path + "/.venv-tools/bin/python"
        let started = Date()
        let (status, out) = try runTool(python, [root.path + "/Tests/Interop/engine_hostile.py", url, token])
        let elapsed = Date().timeIntervalSince(started)
        XCTAssertEqual(status, 0, out)
        let summary = try JSONParser.parse(Array(out.utf8))
        XCTAssertEqual(summary["welcome"], true, "the Welcome is the first frame: \(out)")
        XCTAssertEqual(summary["sync"], true, "the Sync is the second: \(out)")
        XCTAssertEqual(summary["after"], "acked", "a normal tick is still acknowledged")
        XCTAssertEqual(summary["errors"], ["INVALID_FIELD", "INVALID_JSON", "MALFORMED_FRAME", "QUOTA_EXCEEDED", "UNKNOWN_COMMAND", "UNKNOWN_MESSAGE"], out)
        XCTAssertEqual(summary["binary_error_tag"], 0x62, "an EngineFrame.error in protobuf")
        XCTAssertEqual(summary["binary_welcome_tag"], 0x5A, "an EngineFrame.welcome in protobuf")
        let messages = summary["messages"]?.arrayValue?.compactMap(\.stringValue) ?? []
        XCTAssertTrue(messages.contains { $0.contains("ghost") } && messages.contains { $0.contains("999999") }, "\(messages)")
        let entries = try await logged()
        let collisions = entries.filter { $0.kind == "Collision" }
        XCTAssertFalse(collisions.contains { $0.payload["b"] == "ghost" })
        XCTAssertGreaterThan(collisions.count, 0)
        // The bucket holds 200 and refills 200 a second: no more can pass in the script's time.
        XCTAssertLessThanOrEqual(Double(collisions.count), 200 + 200 * elapsed + 1, "the flood of 10,000 contacts was cut at the contact rate")
        XCTAssertFalse(entries.contains { $0.kind == "EngineCommandResult" })
        let bodies = entries.filter { $0.kind == "BodyUpdate" }.flatMap { $0.payload["bodies"]?.arrayValue ?? [] }
        XCTAssertEqual(Set(bodies.compactMap { $0["id"]?.stringValue }), ["X", "Y"])
        XCTAssertEqual(bodies.compactMap { $0["fields"]?["engine"] }, [], "a reserved field never reached the log")
        XCTAssertEqual(try GunnHome(home).waitReady(["unity"])["unity"]?["pid"], pidBefore, "the adapter did not restart")
        print("hostile engine: \(summary["errors"].map(CanonicalJSON.encodeString) ?? ""), \(collisions.count) of 10000 flooded contacts logged")
    }

    func pollAsync(_ what: String, seconds: Double = 30, _ condition: () async throws -> Bool) async throws {
        let end = Date().addingTimeInterval(seconds)
        while try await !condition() {
            if Date() > end { throw GunnError(.operationTimeout, "timed out waiting for \(what)") }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
    }
}

/// A TCP listener that accepts nothing and answers nothing (a peer that never upgrades).
final class RawListener {
    let fd: Int32
    let port: UInt16
    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &a) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && listen(fd, 8) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { throw GunnError(.internalError, "cannot listen") }
        port = UInt16(bigEndian: a.sin_port)
    }
    func close() { Glibc.close(fd) }
}
