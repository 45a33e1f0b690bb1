import Foundation
import GunnCore
import GunnIO
import GunnOrchestratorServer
import GunnWire
import GunnTelemetry

/// gunnctl: inspect and steer a running gunn system over its sockets.
///
/// Exit codes (scripts may rely on them): 0 done; 1 the command ran and its answer is negative
/// (a chain that does not verify, a replay that does not match, an intent refused); 2 usage error;
/// 3 the system is not running (a socket missing or refused: NOT_RUNNING); 4 the system answered
/// with a coded error; 5 a process did not answer within the deadline (OPERATION_TIMEOUT), or
/// status found a child not answering.
public enum GunnCtl {
    public static let usage = """
    usage: gunnctl [--home DIR] [--json] [--timeout-ms N] COMMAND [ARGS]
      status                          children, breakers, log head, agents, queue depths
      agents                          the agents registered with the orchestrator
      tail [-f] [--from N] [--limit N] log entries (-f: keep following new commits)
      verify [--from A] [--to B]      check the hash chain and the sequence in the log writer
      compact --before SEQ            drop the entries up to the newest durable snapshot before SEQ
      replay [--from A] [--to B] [--check]
                                      rebuild the world from the log; --check compares with the orchestrator
      submit AGENT KIND PAYLOAD_JSON [--req ID]
                                      submit an intent (KIND: move, speak, interact, custom)
      emit KIND PAYLOAD_JSON [--source ID]
                                      emit an effect draft (e.g. EntityUpsert)
      observe AGENT                   the agent's view, filter(world), as the orchestrator computes it
      restart CHILD | stop CHILD | start CHILD
                                      supervisor control of one child
      breaker open|close|reset LINK   manual control of the orchestrator's breaker (LINK: eventlog)
      snapshot                        the log writer's latest snapshot
      metrics                         every process's metrics (Prometheus text; --json: the snapshots)
      health                          whether every process under the home answers (exit 5 if one does not)
      token issue [--tenant T] [--agent A]... [--rights R,R] [--ttl-s N] [--world W]
                                      a bearer token for the web adapter (rights: observe, act, emit,
                                      admin; default observe,act; agents default *; ttl 86400 s)
      token revoke ID | token list    revoke a token by id; list issued tokens (never the tokens)
      token release AGENT             lift the web adapter's quarantine of an agent
    options: --home DIR (else GUNN_HOME, else ./.gunn); --json prints JSON; --help on any command;
             --timeout-ms N: each request's deadline (default 5000, 1…600000)
    exit codes: 0 ok, 1 negative answer, 2 usage, 3 not running, 4 error from the system,
                5 a process did not answer in time (or status shows a child not answering)
    """

    /// Bounds of the numeric arguments: anything outside is refused (exit 2), never converted.
    public enum Limits {
        /// The largest global_seq a log can hold (SQLite's INTEGER is a signed 64-bit number).
        public static let maxSeq: UInt64 = UInt64(Int64.max)
        /// `tail --limit`: entries shown at most.
        public static let maxTailLimit: UInt64 = 1_000_000
        public static let defaultTimeoutMs: UInt64 = 5000
        public static let maxTimeoutMs: UInt64 = 600_000
    }

    struct Exit: Error { let code: Int32; let message: String }

    public static func main(_ arguments: [String], environment: [String: String] = ProcessInfo.processInfo.environment) async -> Int32 {
        var args = arguments
        func flag(_ name: String) -> Bool {
            guard let i = args.firstIndex(of: name) else { return false }
            args.remove(at: i)
            return true
        }
        func option(_ name: String) -> String? {
            guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
            let v = args[i + 1]
            args.removeSubrange(i...(i + 1))
            return v
        }
        if flag("--help") || flag("-h") || args.isEmpty {
            print(usage)
            return args.isEmpty && !arguments.contains("--help") && !arguments.contains("-h") ? 2 : 0
        }
        let json = flag("--json")
        let home = option("--home") ?? environment["GUNN_HOME"] ?? ".gunn"
        let timeoutText = option("--timeout-ms")
        do {
            let timeoutMs = try number(timeoutText, "--timeout-ms", 1...Limits.maxTimeoutMs) ?? Limits.defaultTimeoutMs
            guard !args.isEmpty else { throw Exit(code: 2, message: "no command\n\(usage)") }
            let command = args.removeFirst()
            let ctl = Ctl(home: home, json: json, timeoutMs: Double(timeoutMs))
            switch command {
            case "status": try await ctl.status()
            case "agents": try await ctl.agents()
            case "metrics": try await ctl.metrics()
            case "health": try await ctl.health()
            case "tail":
                let follow = flag("-f") || flag("--follow")
                let from = try seq(option("--from"), "--from")
                let limit = try number(option("--limit"), "--limit", 1...Limits.maxTailLimit)
                try await ctl.tail(follow: follow, from: from, limit: limit)
            case "verify": try await ctl.verify(from: try seq(option("--from"), "--from") ?? 1, to: try seq(option("--to"), "--to") ?? 0)
            case "replay":
                let check = flag("--check")
                try await ctl.replay(from: try seq(option("--from"), "--from") ?? 1, to: try seq(option("--to"), "--to") ?? 0, check: check)
            case "submit":
                let req = option("--req")
                guard args.count == 3 else { throw Exit(code: 2, message: "usage: gunnctl submit AGENT KIND PAYLOAD_JSON [--req ID]") }
                try await ctl.submit(agent: args[0], kind: args[1], payload: args[2], req: req)
            case "emit":
                let source = option("--source") ?? "gunnctl"
                guard args.count == 2 else { throw Exit(code: 2, message: "usage: gunnctl emit KIND PAYLOAD_JSON [--source ID]") }
                try await ctl.emit(kind: args[0], payload: args[1], source: source)
            case "observe":
                guard args.count == 1 else { throw Exit(code: 2, message: "usage: gunnctl observe AGENT") }
                try await ctl.observe(args[0])
            case "restart", "stop", "start":
                guard args.count == 1 else { throw Exit(code: 2, message: "usage: gunnctl \(command) CHILD") }
                try await ctl.control(command, args[0])
            case "breaker":
                let actions = ["open": BreakerControl.forceOpen, "close": BreakerControl.forceClose, "reset": BreakerControl.reset]
                guard args.count == 2, let action = actions[args[0]] else {
                    throw Exit(code: 2, message: "usage: gunnctl breaker open|close|reset LINK")
                }
                try await ctl.breaker(action, args[1])
            case "snapshot": try await ctl.snapshot()
            case "compact":
                guard let before = try seq(option("--before"), "--before"), before > 0 else {
                    throw GunnCtl.Exit(code: 2, message: "usage: gunnctl compact --before SEQ")
                }
                try await ctl.compact(before: before)
            case "token":
                guard !args.isEmpty else { throw Exit(code: 2, message: "usage: gunnctl token issue|revoke|list") }
                switch args.removeFirst() {
                case "issue":
                    let tenant = option("--tenant") ?? "default"
                    let world = option("--world")
                    var agents: [String] = []
                    while let a = option("--agent") {
                        let names = a.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
                        // An empty name (an unset shell variable) must not widen the token to every agent.
                        guard !names.contains(where: \.isEmpty) else { throw Exit(code: 2, message: "\(ErrorCode.configInvalid): --agent needs a non-empty agent id") }
                        agents += names
                    }
                    let rights = (option("--rights") ?? "observe,act").split(separator: ",").map(String.init)
                    let ttl = try number(option("--ttl-s"), "--ttl-s", 1...(10 * 365 * 86400)) ?? 86400
                    try await ctl.tokenIssue(tenant: tenant, world: world, agents: agents.isEmpty ? ["*"] : agents, rights: rights, ttlSeconds: ttl)
                case "revoke":
                    guard args.count == 1 else { throw Exit(code: 2, message: "usage: gunnctl token revoke ID") }
                    try ctl.tokenRevoke(args.removeFirst())
                case "list": ctl.tokenList()
                case "release":
                    guard args.count == 1 else { throw Exit(code: 2, message: "usage: gunnctl token release AGENT") }
                    try await ctl.tokenRelease(args.removeFirst())
                case let other: throw Exit(code: 2, message: "unknown token command \"\(other)\" (issue, revoke, list, release)")
                }
            default: throw Exit(code: 2, message: "unknown command \"\(command)\"\n\(usage)")
            }
            if !args.isEmpty && !["submit", "emit", "observe", "restart", "stop", "start", "breaker"].contains(command) {
                throw Exit(code: 2, message: "unexpected arguments: \(args.joined(separator: " "))")
            }
            return ctl.timedOut ? 5 : ctl.negative ? 1 : 0
        } catch let e as Exit {
            FileHandle.standardError.write(Data("gunnctl: \(e.message)\n".utf8))
            return e.code
        } catch {
            FileHandle.standardError.write(Data("gunnctl: \(error)\n".utf8))
            return 4
        }
    }

    /// A decimal integer within `range`, or a usage error (exit 2) naming the option.
    static func number(_ s: String?, _ name: String, _ range: ClosedRange<UInt64>) throws -> UInt64? {
        guard let s else { return nil }
        guard !s.isEmpty, s.utf8.count <= 20, s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let n = UInt64(s), range.contains(n) else {
            throw Exit(code: 2, message: "\(ErrorCode.configInvalid): \(name) must be an integer "
                       + "from \(range.lowerBound) to \(range.upperBound), got \"\(s.prefix(40))\"")
        }
        return n
    }

    /// A global_seq argument: 0 … the largest seq a log can hold.
    static func seq(_ s: String?, _ name: String) throws -> UInt64? { try number(s, name, 0...Limits.maxSeq) }
}

/// One gunnctl invocation: its sockets and its output.
final class Ctl {
    let home: String
    let json: Bool
    let endpoints: Endpoints
    var negative = false
    /// Set when something did not answer in time but the command could still report (status): exit 5.
    var timedOut = false

    init(home: String, json: Bool, timeoutMs: Double) {
        self.home = home; self.json = json
        endpoints = Endpoints(home: home, timeoutMs: timeoutMs)
    }

    func out(_ s: String) { FileHandle.standardOutput.write(Data((s + "\n").utf8)) }
    func emitJSON(_ v: JSONValue) { out(CanonicalJSON.encodeString(v)) }

    // MARK: - Sockets

    func connect(_ name: String) async throws -> Link { try await endpoints.connect(name) }

    func orchestratorStatus() async throws -> StatusResult {
        guard case .statusResult(let r) = try await endpoints.call("orchestrator", .status(Empty()), "Status") else {
            throw GunnCtl.Exit(code: 4, message: "unexpected reply to Status")
        }
        return r
    }

    func head() async throws -> HeadResult {
        guard case .headResult(let h) = try await endpoints.call("eventlog", .head(Empty()), "Head") else {
            throw GunnCtl.Exit(code: 4, message: "unexpected reply to Head")
        }
        return h
    }

    // MARK: - Commands

    /// Every `run/*.sock` asked for its metrics at once, each within the deadline.
    func gathered() async throws -> MetricsGatherer.Result {
        guard FileManager.default.fileExists(atPath: home + "/run") else {
            throw GunnCtl.Exit(code: 3, message: "\(ErrorCode.notRunning.name): gunn is not running under \(home) (no \(home)/run)")
        }
        let r = await MetricsGatherer.gather(home: home, loop: Endpoints.sharedLoop, deadlineMs: endpoints.timeoutMs)
        guard r.up.values.contains(true) else {
            throw GunnCtl.Exit(code: 3, message: "\(ErrorCode.notRunning.name): no process under \(home)/run answers")
        }
        let silent = r.up.filter { !$0.value }.keys.sorted()
        if !silent.isEmpty {
            timedOut = true
            FileHandle.standardError.write(Data("gunnctl: \(ErrorCode.operationTimeout.name): no answer within \(Int(endpoints.timeoutMs)) ms from \(silent.joined(separator: ", "))\n".utf8))
        }
        return r
    }

    func metrics() async throws {
        let r = try await gathered()
        if json {
            var up = JSONObject()
            for (k, v) in r.up { up[k] = .bool(v) }
            emitJSON(["processes": .array(r.snapshots), "up": .object(up)])
        } else {
            FileHandle.standardOutput.write(Data(PrometheusText.render(r.snapshots + [MetricsGatherer.upSnapshot(r, process: "gunnctl")]).utf8))
        }
    }

    func health() async throws {
        let r = try await gathered()
        if json {
            var processes = JSONObject()
            for (k, v) in r.up { processes[k.replacingOccurrences(of: ".sock", with: "")] = .string(v ? "ok" : "not_answering") }
            emitJSON(["status": .string(r.up.values.allSatisfy { $0 } ? "ok" : "degraded"), "processes": .object(processes)])
        } else {
            for name in r.up.keys.sorted() { out("\(name.replacingOccurrences(of: ".sock", with: ""))\t\(r.up[name]! ? "ok" : "not_answering")") }
        }
    }

    /// Asks the supervisor, the orchestrator and the log writer at once, each within the deadline
    /// (the supervisor answers within its own, shorter, probe deadline), so a wedged process delays
    /// the report by one deadline at most and is named in it: exit 5 when anything did not answer.
    func status() async throws {
        let endpoints = endpoints
        async let supervisorReply = endpoints.result("supervisor", .status(Empty()), "Status")
        async let orchestratorReply = endpoints.result("orchestrator", .status(Empty()), "Status")
        async let logReply = endpoints.result("eventlog", .head(Empty()), "Head")
        let (sup, orchReply, logHeadReply) = await (supervisorReply, orchestratorReply, logReply)
        var silent: [String] = [] // what did not answer, one line each
        func reply(_ r: Result<Frame.Body, GunnCtl.Exit>) throws -> Frame.Body? {
            switch r {
            case .success(let b): return b
            case .failure(let e) where e.code == 3: return nil
            case .failure(let e) where e.code == 5: silent.append(e.message); return nil
            case .failure(let e): throw e
            }
        }
        var children: [ChildStatus] = []
        var features: [String]?, profile = ""
        let silentBefore = silent.count
        let supBody = try reply(sup)
        if case .statusResult(let r)? = supBody { children = r.children; features = r.features; profile = r.profile }
        // Supervised when the supervisor answered, or its socket is there but it did not answer.
        let supervised = supBody != nil || silent.count > silentBefore
        var orch: StatusResult?
        if case .statusResult(let r)? = try reply(orchReply) { orch = r }
        var logHead: HeadResult?
        if case .headResult(let h)? = try reply(logHeadReply) { logHead = h }
        if !supervised && orch == nil && silent.isEmpty {
            throw GunnCtl.Exit(code: 3, message: "\(ErrorCode.notRunning.name): gunn is not running under \(home) "
                               + "(neither supervisor.sock nor orchestrator.sock answers)")
        }
        for c in children where c.state == "not_answering" {
            silent.append("\(c.name) (pid \(c.pid)) is not answering: the supervisor's handshake got no reply (stopped or wedged?)")
        }
        if !silent.isEmpty { timedOut = true }
        if json {
            var o: JSONObject = ["home": .string(home), "supervised": .bool(supervised)]
            o["children"] = .array(children.map(Self.childJSON))
            o["log_head"] = logHead.map {
                ["seq": .number(Double($0.seq)), "checksum": .string($0.checksum), "count": .number(Double($0.count))]
            } ?? .null
            if let orch {
                o["world_digest"] = .string(orch.worldDigest)
                o["head_seq"] = .number(Double(orch.headSeq))
                o["breakers"] = .array(orch.breakers.map { ["name": .string($0.name), "state": .string($0.state)] })
                o["agents"] = .array(orch.agents.map(Self.agentJSON))
                o["gauges"] = .array(orch.gauges.map {
                    ["name": .string($0.name), "value": .number(Double($0.value)), "limit": .number(Double($0.limit)), "high_water": .number(Double($0.highWater))]
                })
            }
            if let features { o["features"] = .array(features.map { .string($0) }) }
            if !profile.isEmpty { o["profile"] = .string(profile) }
            o["not_answering"] = .array(silent.map { .string($0) })
            if let engine = engineStatus() { o["engine"] = engine }
            return emitJSON(.object(o))
        }
        out("gunn under \(home)" + (supervised ? "" : " (no supervisor: processes started by hand)"))
        if let features { out("features: \(features.isEmpty ? "none" : features.joined(separator: ","))" + (profile.isEmpty ? "" : "; profile \(profile)")) }
        if !children.isEmpty {
            out("")
            table(["CHILD", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT"], children.map {
                [$0.name, $0.state, $0.pid == 0 ? "-" : "\($0.pid)",
                 $0.pid == 0 || $0.state == "attached" ? "-" : String(format: "%.1fs", Double($0.uptimeMs) / 1000),
                 $0.state == "attached" ? "-" : "\($0.restarts)", $0.lastExit.isEmpty ? "-" : $0.lastExit]
            })
        }
        if let h = logHead { out("\nlog head: seq \(h.seq), \(h.count) entries, checksum \(h.checksum.prefix(16))…") }
        if let orch {
            out("world: head \(orch.headSeq), digest \(orch.worldDigest.prefix(16))…")
            out("breakers: " + orch.breakers.map { "\($0.name) \($0.state)" }.joined(separator: ", "))
            if !orch.gauges.isEmpty {
                // Each bound: what it holds, its limit ("-": a counter or unbounded), the most it held.
                out("")
                table(["BOUND", "NOW", "LIMIT", "MOST"], orch.gauges.map {
                    [$0.name, "\($0.value)", $0.limit == 0 ? "-" : "\($0.limit)", "\($0.highWater)"]
                })
            }
            out("")
            agentTable(orch.agents)
        }
        if let engine = engineStatus(), case .array(let links)? = engine["engines"] {
            // gunn-adapter-unity's links to game engines (run/engine.status.json).
            out("\nengine bridge: breaker \(engine["breaker"]?.stringValue ?? "?")")
            // A count from the file, shown whole (a corrupt value shows as 0, never traps).
            func count(_ l: JSONValue, _ key: String) -> String { "\(Int64(exactly: (l[key]?.numberValue ?? 0).rounded()) ?? 0)" }
            table(["ENGINE", "LINK", "BREAKER", "CODE", "REASON", "SESSIONS", "TICKS", "COMMANDS SENT", "ANSWERED"], links.map { l in
                [l["engine"]?.stringValue ?? "", l["link"]?.stringValue ?? "", l["breaker"]?.stringValue ?? "",
                 (l["code"]?.stringValue).flatMap { $0.isEmpty ? nil : $0 } ?? "-", (l["reason"]?.stringValue).flatMap { $0.isEmpty ? nil : $0 } ?? "-",
                 count(l, "sessions"), count(l, "ticks"), count(l, "commands_sent"), count(l, "commands_answered")]
            })
        }
        if !silent.isEmpty {
            out("\nNOT ANSWERING:")
            for line in silent { out("  " + line) }
        }
    }

    /// What gunn-adapter-unity last wrote about its engine links, when it runs in this home.
    func engineStatus() -> JSONValue? {
        guard let data = FileManager.default.contents(atPath: home + "/run/engine.status.json") else { return nil }
        return try? JSONParser.parse([UInt8](data))
    }

    func agents() async throws {
        let r = try await orchestratorStatus()
        if json { return emitJSON(.array(r.agents.map(Self.agentJSON))) }
        agentTable(r.agents)
    }

    func agentTable(_ agents: [AgentStatus]) {
        table(["AGENT", "VIEW_SEQ", "QUEUE", "PENDING OBS", "CONNECTED"], agents.map {
            [$0.agentID, "\($0.viewSeq)", "\($0.queueDepth)", "\($0.pendingObservations)", $0.connected ? "yes" : "no"]
        })
    }

    func tail(follow: Bool, from: UInt64?, limit: UInt64?) async throws {
        var next: UInt64
        if let from { next = from } else {
            let h = try await head()
            next = h.seq > 9 ? h.seq - 9 : 1
        }
        var shown: UInt64 = 0
        var reconnecting = false
        while true {
            let link: Link
            do { link = try await connect("eventlog") } catch let e as GunnCtl.Exit where follow && reconnecting && (e.code == 3 || e.code == 5) {
                // -f outlives a restart of the log writer: retry until it is back.
                try await Task.sleep(nanoseconds: 200_000_000)
                continue
            }
            defer { link.close() }
            if reconnecting { FileHandle.standardError.write(Data("gunnctl: following again from \(next)\n".utf8)) }
            let id = link.nextID()
            if follow {
                try await link.send(.subscribe(Nonce(next)), id: id)
            } else {
                // Both bounded (next ≤ maxSeq, limit ≤ maxTailLimit): the sum cannot overflow, and
                // the range asked never passes the largest seq a log can hold.
                let to = limit.map { min(next + $0 - 1, GunnCtl.Limits.maxSeq) } ?? 0
                try await link.send(.readRange(SeqRange(from: next, to: to, maxBatch: 512)), id: id)
            }
            // Following waits for new commits for as long as it takes; a read waits one deadline per batch.
            while let f = follow ? await link.conn.receive() : try await link.receive("ReadRange") {
                if case .error(let e)? = f.body { throw GunnCtl.Exit(code: 4, message: "\(e.name) (\(e.code)): \(e.message)") }
                guard case .entries(let batch)? = f.body else { continue }
                for e in batch.entries where e.globalSeq >= next {
                    printEntry(e)
                    next = e.globalSeq + 1
                    shown += 1
                    if let limit, shown >= limit { return }
                }
                if batch.done && !follow { return }
            }
            guard follow else { throw GunnCtl.Exit(code: 3, message: "\(ErrorCode.notRunning.name): the log writer closed the connection") }
            // The log writer restarted, or dropped this subscription (not read fast enough): resume
            // after the last entry shown, so nothing is shown twice or skipped.
            FileHandle.standardError.write(Data("gunnctl: the log writer closed the subscription; reconnecting\n".utf8))
            reconnecting = true
            try await Task.sleep(nanoseconds: 100_000_000)
        }
    }

    func printEntry(_ e: LogEntry) {
        let effect = (try? JSONParser.parse(e.effect)) ?? .null
        if json {
            return emitJSON(["global_seq": .number(Double(e.globalSeq)), "sim_time": .number(e.simTime), "agent_id": .string(e.agentID),
                             "req_id": .string(e.reqID), "checksum": .string(e.checksum), "effect": effect])
        }
        let kind = effect["kind"]?.stringValue ?? "?"
        let payload = effect["payload"].map { CanonicalJSON.encodeString($0) } ?? ""
        out("\(e.globalSeq)\t\(kind)\t\(e.agentID.isEmpty ? "-" : e.agentID)\t\(payload)")
    }

    func verify(from: UInt64, to: UInt64) async throws {
        guard case .verifyResult(let v) = try await endpoints.call("eventlog", .verify(SeqRange(from: from, to: to)), "Verify") else {
            throw GunnCtl.Exit(code: 4, message: "unexpected reply")
        }
        negative = !v.ok
        if json {
            return emitJSON(["ok": .bool(v.ok), "checked": .number(Double(v.checked)),
                             "first_bad_seq": v.firstBadSeq == 0 ? .null : .number(Double(v.firstBadSeq)),
                             "gaps": .array(v.gaps.map { ["expected": .number(Double($0.expected)), "found": .number(Double($0.found))] }),
                             "tail_truncated": .bool(v.tailTruncated)])
        }
        if v.ok { out("chain ok: \(v.checked) entries checked from seq \(from)") } else {
            out("chain BROKEN: \(v.checked) checked" + (v.firstBadSeq != 0 ? ", first bad seq \(v.firstBadSeq)" : "")
                + (v.gaps.isEmpty ? "" : ", gaps " + v.gaps.map { "\($0.expected)→\($0.found)" }.joined(separator: " "))
                + (v.tailTruncated ? ", tail truncated" : ""))
        }
    }

    /// Rebuilds the world right after `to` (0: the head), starting from the newest durable
    /// snapshot before `from` (or the log's first entry) and streaming the entries after it in
    /// batches: memory holds one batch and the world, whatever the log's length.
    func replay(from: UInt64, to: UInt64, check: Bool) async throws {
        let h = try await head()
        let end = to == 0 ? h.seq : min(to, h.seq)
        guard from >= 1, from <= max(end, 1) else { throw GunnCtl.Exit(code: 2, message: "--from \(from) is past the log's end (\(end))") }
        // A compacted log starts after its base snapshot: a replay from before it starts there.
        let first = h.count > 0 ? h.seq - h.count + 1 : h.seq + 1
        let from = max(from, first)
        guard case .snapshot(let snap) = try await endpoints.call("eventlog", .snapshotRequest(Nonce(from - 1)), "SnapshotRequest") else {
            throw GunnCtl.Exit(code: 4, message: "unexpected reply")
        }
        var world = WorldState()
        var prev: String?
        var next: UInt64 = 1
        if snap.globalSeq > 0 && from > 1 {
            guard let w = try? WireJSON.verifiedSnapshot(snap) else {
                negative = true
                return out("replay FAILED: the durable snapshot at \(snap.globalSeq) does not match its digest")
            }
            world = w; prev = snap.chainChecksum; next = snap.globalSeq + 1
        }
        var replayed = 0
        var failure: String?
        if next <= end {
            let link = try await connect("eventlog")
            defer { link.close() }
            try await link.send(.readRange(SeqRange(from: next, to: end, maxBatch: 512)), id: link.nextID())
            reading: while let f = try await link.receive("ReadRange") {
                if case .error(let e)? = f.body { throw GunnCtl.Exit(code: 4, message: "\(e.name) (\(e.code)): \(e.message)") }
                guard case .entries(let b)? = f.body else { continue }
                do {
                    let entries = try b.entries.map { try WireJSON.eventLogEntry($0) }
                    if next == 1, let first = entries.first, first.globalSeq > 1 {
                        throw GunnError(.snapshotRequired, "the log starts at \(first.globalSeq) (compacted) and no durable snapshot before \(from) covers it; replay from \(first.globalSeq) or later")
                    }
                    world = try Replay.replay(entries[...], from: world, previousChecksum: prev)
                    if let last = entries.last { prev = last.checksum; next = last.globalSeq + 1 }
                    replayed += entries.filter { $0.globalSeq >= from }.count
                } catch {
                    failure = "\(error)"
                    break reading
                }
                if b.done { break }
            }
        }
        if failure == nil && world.lastGlobalSeq != end { failure = "the log ended at \(world.lastGlobalSeq), before \(end)" }
        if let failure {
            negative = true
            if json { return emitJSON(["ok": false, "error": .string(failure)]) }
            return out("replay FAILED: \(failure)")
        }
        var matches: Bool?
        var orchestratorDigest = ""
        if check {
            let st = try await orchestratorStatus()
            guard st.headSeq == end else {
                throw GunnCtl.Exit(code: 2, message: "--check compares at the orchestrator's head (\(st.headSeq)); "
                                   + "replay to it (omit --to) — the log ends at \(end)")
            }
            orchestratorDigest = st.worldDigest
            matches = st.worldDigest == world.digest
            negative = matches == false
        }
        let started = snap.globalSeq > 0 && from > 1 ? "from the snapshot at \(snap.globalSeq)" : "from the log's first entry"
        if json {
            var o: JSONObject = ["ok": .bool(matches ?? true), "from": .number(Double(from)), "to": .number(Double(end)),
                                 "replayed": .number(Double(replayed)), "snapshot_seq": .number(Double(snap.globalSeq > 0 && from > 1 ? snap.globalSeq : 0)),
                                 "world_digest": .string(world.digest), "entities": .number(Double(world.entities.count))]
            if let matches { o["matches_orchestrator"] = .bool(matches); o["orchestrator_digest"] = .string(orchestratorDigest) }
            return emitJSON(.object(o))
        }
        out("replayed \(replayed) entries (\(from)…\(end)) \(started): \(world.entities.count) entities, world digest \(world.digest)")
        if let matches {
            out(matches ? "check ok: the orchestrator's world digest at \(end) is the same"
                        : "check FAILED: the orchestrator has \(orchestratorDigest)")
        }
    }

    func compact(before: UInt64) async throws {
        let reply = try await endpoints.call("eventlog", .compact(Nonce(before)), "Compact")
        guard case .compactResult(let r) = reply else { throw GunnCtl.Exit(code: 4, message: "unexpected reply") }
        if json {
            return emitJSON(["snapshot_seq": .number(Double(r.snapshotSeq)), "dropped": .number(Double(r.dropped)), "first_seq": .number(Double(r.firstSeq))])
        }
        out("compacted: \(r.dropped) entries dropped up to the snapshot at \(r.snapshotSeq); the log starts at \(r.firstSeq)")
    }

    func submit(agent: String, kind: String, payload: String, req: String?) async throws {
        guard let k = IntentKind.allCases.first(where: { $0.rawValue.lowercased() == kind.lowercased() }) else {
            throw GunnCtl.Exit(code: 2, message: "KIND must be one of move, speak, interact, custom; got \"\(kind)\"")
        }
        let p: JSONValue
        do { p = try JSONParser.parse(Array(payload.utf8)) } catch {
            throw GunnCtl.Exit(code: 2, message: "\(ErrorCode.invalidJSON.name): PAYLOAD_JSON is not valid JSON: \(error)")
        }
        let st = try await orchestratorStatus()
        let ctx = st.agents.first { $0.agentID == agent }?.viewSeq ?? 0
        let reqID = req ?? "ctl-\(UInt64(Date().timeIntervalSince1970 * 1e6))"
        let intent = Intent(kind: k, payload: p, contextSeq: ctx, reqID: ReqID(reqID), agentID: AgentID(agent))
        let body = Frame.Body.submitIntent(JSONPayload(CanonicalJSON.encode(intent.json)))
        guard case .intentResult(let r) = try await endpoints.call("orchestrator", body, "SubmitIntent") else {
            throw GunnCtl.Exit(code: 4, message: "unexpected reply to SubmitIntent")
        }
        if let e = r.error {
            if json { emitJSON(["committed": false, "req_id": .string(reqID), "error": Self.errorJSON(e)]) }
            else { out("refused: \(e.name) (\(e.code)): \(e.message)") }
            negative = true
            return
        }
        let effect = (try? JSONParser.parse(r.effect)) ?? .null
        if json { return emitJSON(["committed": true, "req_id": .string(reqID), "effect": effect]) }
        out("committed: global_seq \(effect["global_seq"].map { CanonicalJSON.encodeString($0) } ?? "?"), req_id \(reqID)")
    }

    func emit(kind: String, payload: String, source: String) async throws {
        let p: JSONValue
        do { p = try JSONParser.parse(Array(payload.utf8)) } catch {
            throw GunnCtl.Exit(code: 2, message: "\(ErrorCode.invalidJSON.name): PAYLOAD_JSON is not valid JSON: \(error)")
        }
        let draft = EffectDraft(kind: kind, payload: p, sourceID: source, draftID: "ctl-\(UInt64(Date().timeIntervalSince1970 * 1e6))")
        let body = Frame.Body.emit(JSONPayload(CanonicalJSON.encode(WireJSON.draftJSON(draft))))
        guard case .emitResult(let r) = try await endpoints.call("orchestrator", body, "Emit") else {
            throw GunnCtl.Exit(code: 4, message: "unexpected reply to Emit")
        }
        if let e = r.error {
            negative = true
            if json { return emitJSON(["accepted": false, "error": Self.errorJSON(e)]) }
            return out("refused: \(e.name) (\(e.code)): \(e.message)")
        }
        if json { return emitJSON(["accepted": true, "draft_id": .string(r.draftID)]) }
        out("accepted: \(kind) (draft \(r.draftID))")
    }

    func observe(_ agent: String) async throws {
        var req = ViewSnapshot()
        req.agentID = agent
        guard case .view(let v) = try await endpoints.call("orchestrator", .view(req), "View") else {
            throw GunnCtl.Exit(code: 4, message: "unexpected reply")
        }
        let doc = (try? JSONParser.parse(v.view)) ?? .null
        if json {
            return emitJSON(["agent_id": .string(agent), "view_seq": .number(Double(v.viewSeq)), "global_seq": .number(Double(v.globalSeq)),
                             "context_digest": .string(v.contextDigest), "view": doc])
        }
        out("\(agent): view_seq \(v.viewSeq), reflects global_seq \(v.globalSeq), digest \(v.contextDigest.prefix(16))…")
        if case .object(let ents)? = doc["entities"] {
            table(["ENTITY", "FIELDS"], ents.sortedMembers.map { [$0.key, CanonicalJSON.encodeString($0.value)] })
        }
    }

    func control(_ action: String, _ child: String) async throws {
        let body = Frame.Body.restart(NamedRequest(name: child, action: action))
        guard case .controlResult(let r) = try await endpoints.call("supervisor", body, "RestartChild") else {
            throw GunnCtl.Exit(code: 4, message: "unexpected reply")
        }
        if json { return emitJSON(["ok": .bool(r.ok), "message": .string(r.message)]) }
        out(r.message)
    }

    func breaker(_ action: Int32, _ link: String) async throws {
        var bc = BreakerControl()
        bc.name = link; bc.action = action
        guard case .controlResult(let r) = try await endpoints.call("orchestrator", .breakerControl(bc), "BreakerControl") else {
            throw GunnCtl.Exit(code: 4, message: "unexpected reply")
        }
        if json { return emitJSON(["ok": .bool(r.ok), "message": .string(r.message)]) }
        out(r.message)
    }

    func snapshot() async throws {
        guard case .snapshot(let s) = try await endpoints.call("eventlog", .snapshotRequest(Nonce(0)), "SnapshotRequest") else {
            throw GunnCtl.Exit(code: 4, message: "unexpected reply")
        }
        if json {
            return emitJSON(["global_seq": .number(Double(s.globalSeq)), "digest": .string(s.digest), "bytes": .number(Double(s.state.count))])
        }
        out(s.globalSeq == 0 ? "no snapshot yet" : "snapshot at global_seq \(s.globalSeq): digest \(s.digest), \(s.state.count) bytes")
    }

    // MARK: - Output

    static func childJSON(_ c: ChildStatus) -> JSONValue {
        ["name": .string(c.name), "state": .string(c.state), "pid": .number(Double(c.pid)), "restarts": .number(Double(c.restarts)),
         "uptime_ms": .number(Double(c.uptimeMs)), "last_exit": .string(c.lastExit), "last_exit_status": .number(Double(c.lastExitStatus))]
    }

    static func errorJSON(_ e: WireErrorMessage) -> JSONValue {
        ["code": .number(Double(e.code)), "name": .string(e.name), "message": .string(e.message)]
    }

    static func agentJSON(_ a: AgentStatus) -> JSONValue {
        ["agent_id": .string(a.agentID), "view_seq": .number(Double(a.viewSeq)), "queue_depth": .number(Double(a.queueDepth)),
         "pending_observations": .number(Double(a.pendingObservations)), "connected": .bool(a.connected)]
    }

    func table(_ header: [String], _ rows: [[String]]) {
        var widths = header.map(\.count)
        for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in i == cells.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
        }
        out(line(header))
        for r in rows { out(line(r)) }
        if rows.isEmpty { out("(none)") }
    }
}
