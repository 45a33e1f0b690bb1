import Foundation
import Glibc
import XCTest
@testable import GunnIO
@testable import GunnWire
@testable import GunnClient
import GunnCore
import GunnStore

/// gunn-supervisor, gunnctl and ops/run as real processes.
final class SupervisorTests: XCTestCase {
    static var bin: URL { EventLogProcessTests.root.appendingPathComponent(".build/debug") }
    var home: String!
    var started: [Process] = []
    var sessions: [SessionProcess] = []

    /// A process spawned as the leader of a new session (POSIX_SPAWN_SETSID): its pid is its
    /// session id, so whatever it leaves behind can be found by session.
    final class SessionProcess {
        let pid: pid_t
        private(set) var status: Int32?

        init(_ path: String, _ args: [String], environment: [String: String], stderrPath: String) throws {
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            var attr = posix_spawnattr_t()
            posix_spawnattr_init(&attr)
            defer { posix_spawnattr_destroy(&attr) }
            posix_spawnattr_setflags(&attr, 0x80) // POSIX_SPAWN_SETSID
            let argv = ([path] + args).map { strdup($0) } + [nil]
            let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
            defer { for p in argv { free(p) }; for p in envp { free(p) } }
            var pid: pid_t = 0
            let rc = posix_spawn(&pid, path, &actions, &attr, argv, envp)
            guard rc == 0 else { throw ConnectionError(.internalError, "spawn \(path): \(rc)") }
            self.pid = pid
        }

        var isRunning: Bool {
            guard status == nil else { return false }
            var st: Int32 = 0
            if waitpid(pid, &st, WNOHANG) == pid { status = Self.decode(st); return false }
            return true
        }

        @discardableResult
        func wait() -> Int32 {
            if let status { return status }
            var st: Int32 = 0
            while waitpid(pid, &st, 0) < 0 && errno == EINTR {}
            status = Self.decode(st)
            return status!
        }

        static func decode(_ st: Int32) -> Int32 { (st & 0x7f) == 0 ? (st >> 8) & 0xff : 128 + (st & 0x7f) }
    }

    override func setUpWithError() throws {
        home = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-sup-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        for p in started where p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        for s in sessions where s.isRunning { kill(-s.pid, SIGKILL); kill(s.pid, SIGKILL); s.wait() }
        // Whatever a test left (a child of a killed supervisor dies by PDEATHSIG; be sure anyway).
        for pid in Self.processes(where: { $0.cmdline.contains(home) }) { kill(pid, SIGKILL) }
        try? FileManager.default.removeItem(atPath: home)
    }

    // MARK: - Helpers

    /// A config with the log writer, the orchestrator and (optionally) the demo agents, plus `extra` children.
    func writeConfig(demo: Bool = true, extra: String = "", maxRestarts: Int = 20, strategy: String = "one_for_one") throws -> String {
        var children = [
            #"{"name": "eventlog", "executable": "gunn-eventlog", "socket": "run/eventlog.sock", "args": ["--home", "{home}", "--world-id", "{world_id}", "--durability", "{durability}"]}"#,
            #"{"name": "orchestrator", "executable": "gunn-orchestrator", "socket": "run/orchestrator.sock", "depends_on": ["eventlog"], "args": ["--home", "{home}", "--world-id", "{world_id}", "--world-seed", "{world_seed}"]}"#,
        ]
        if demo {
            children.append(#"{"name": "demo", "executable": "gunn-demo", "depends_on": ["orchestrator"], "args": ["--home", "{home}", "--interval-ms", "100"]}"#)
        }
        if !extra.isEmpty { children.append(extra) }
        let text = """
        {"world_id": "sup", "world_seed": 3, "durability": "normal", "max_restarts": \(maxRestarts), "max_seconds": 60, "strategy": "\(strategy)",
         "backoff_base_ms": 50, "backoff_cap_ms": 400, "stable_seconds": 5, "log_max_bytes": 65536, "status_probe_ms": 3000,
         "children": [\(children.joined(separator: ",\n"))]}
        """
        let path = home + "/gunn.json"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Starts gunn-supervisor in a session of its own (so what it leaves behind can be found by session).
    func startSupervisor(config: String) throws -> SessionProcess {
        let p = try SessionProcess(Self.bin.appendingPathComponent("gunn-supervisor").path, ["--config", config, "--home", home],
                                   environment: ProcessInfo.processInfo.environment, stderrPath: home + "/supervisor.err")
        sessions.append(p)
        return p
    }

    typealias Ctl = GunnHome.Ctl

    /// Runs gunnctl and waits for it.
    func gunnctl(_ args: [String], home: String? = nil) throws -> Ctl { try GunnHome(home ?? self.home).gunnctl(args) }

    /// The supervisor's children as `gunnctl --json status` reports them, by name.
    func children() throws -> [String: JSONValue] { try GunnHome(home).children() }

    /// Waits until every named child is ready (with a pid other than `not`).
    func waitReady(_ names: [String], notPIDs: [String: Double] = [:], seconds: Double = 30) throws -> [String: JSONValue] {
        try GunnHome(home).waitReady(names, notPIDs: notPIDs, seconds: seconds)
    }

    static func first(_ v: JSONValue?) -> JSONValue? {
        if case .array(let a)? = v { return a.first }
        return nil
    }

    struct ProcInfo { var pid: pid_t; var pgrp: pid_t; var session: pid_t; var state: Character; var cmdline: String }

    /// Every process on the machine, from /proc.
    static func processes(where match: (ProcInfo) -> Bool) -> [pid_t] {
        let dirs = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        var out: [pid_t] = []
        for d in dirs {
            guard let pid = pid_t(d), let stat = try? String(contentsOfFile: "/proc/\(d)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            let f = stat[stat.index(after: close)...].split(separator: " ")
            guard f.count > 4, let pgrp = pid_t(f[2]), let session = pid_t(f[3]) else { continue }
            let cmd = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(d)/cmdline"))).map { String(decoding: $0.map { $0 == 0 ? 32 : $0 }, as: UTF8.self) } ?? ""
            let info = ProcInfo(pid: pid, pgrp: pgrp, session: session, state: f[0].first ?? "?", cmdline: cmd)
            if info.state != "Z" && match(info) { out.append(pid) }
        }
        return out
    }

    func waitGone(_ pids: [pid_t], seconds: Double = 10) -> [pid_t] {
        let until = Date().addingTimeInterval(seconds)
        var alive = pids
        while Date() < until {
            alive = pids.filter { pid in !Self.processes(where: { $0.pid == pid }).isEmpty }
            if alive.isEmpty { return [] }
            usleep(50_000)
        }
        return alive
    }

    func logEntries() async throws -> [LogEntry] { try await OrchestratorProcessTests.logEntries(home: home, worldID: "sup") }

    // MARK: - Tests

    func testKillNineOfEachChildUnderLoadRestartsItAndLosesNothing() async throws {
        let sup = try startSupervisor(config: try writeConfig())
        _ = try waitReady(["eventlog", "orchestrator", "demo"])
        let client = GunnClient(path: home + "/run/orchestrator.sock", loop: EventLogProcessTests.loop, name: "load")
        try await client.register(["agent_id": "load", "spawn": [9, 9], "staleness_threshold": 1_000_000])
        var committed: [String: UInt64] = [:]
        var n = 0
        func burst(_ count: Int) async throws {
            for _ in 0..<count {
                n += 1
                let req = "r\(n)"
                var outcome: IntentOutcome = .rejected(GunnError(.internalError, "not tried"))
                for _ in 0..<200 {
                    do {
                        outcome = try await client.submit(Intent(kind: .speak, payload: ["text": .string("line \(n)")], contextSeq: 0, reqID: ReqID(req), agentID: "load"))
                    } catch {
                        try await Task.sleep(nanoseconds: 50_000_000); continue
                    }
                    if outcome.error?.code == .adapterUnavailable { try await Task.sleep(nanoseconds: 50_000_000); continue }
                    break
                }
                guard case .committed(let e) = outcome else { return XCTFail("\(req): \(outcome)") }
                committed[req] = e.globalSeq
            }
        }
        try await burst(20)
        var restartsSeen: [String: Int] = [:]
        for victim in ["orchestrator", "eventlog", "demo", "orchestrator", "eventlog", "demo"] {
            let before = try children()
            guard case .number(let pid)? = before[victim]?["pid"], case .number(let restarts)? = before[victim]?["restarts"] else { return XCTFail("no \(victim) in \(before)") }
            kill(pid_t(pid), SIGKILL)
            try await burst(15)
            let after = try waitReady(["eventlog", "orchestrator", "demo"], notPIDs: [victim: pid])
            guard case .number(let r2)? = after[victim]?["restarts"] else { return XCTFail() }
            XCTAssertEqual(r2, restarts + 1, "\(victim) restarted once")
            restartsSeen[victim] = Int(r2)
        }
        try await burst(10)
        XCTAssertEqual(restartsSeen, ["orchestrator": 2, "eventlog": 2, "demo": 2])
        let entries = try await logEntries()
        XCTAssertEqual(entries.map(\.globalSeq), Array(1...UInt64(entries.count)), "no gap")
        var perReq: [String: Int] = [:]
        for e in entries where e.agentID == "load" { perReq[e.reqID, default: 0] += 1 }
        for (req, seq) in committed {
            XCTAssertEqual(perReq[req], 1, "\(req) exactly once")
            XCTAssertEqual(entries.first { $0.reqID == req && $0.agentID == "load" }?.globalSeq, seq)
        }
        let verify = try gunnctl(["--json", "verify"])
        XCTAssertEqual(verify.status, 0, verify.err)
        XCTAssertEqual(verify.json?["ok"], true)
        // Every restart is recorded in the supervisor's log too.
        let err = try String(contentsOfFile: home + "/supervisor.err", encoding: .utf8)
        XCTAssertEqual(err.components(separatedBy: "orchestrator exited (killed by signal 9)").count - 1, 2)
        client.close()
        kill(sup.pid, SIGTERM)
        XCTAssertEqual(sup.wait(), 0)
        XCTAssertEqual(waitGone(Self.processes(where: { $0.session == sup.pid })), [], "nothing left in the supervisor's session")
    }

    /// one_for_one: the orchestrator restarted, the demo adapter keeps running and re-handshakes;
    /// rest_for_one: what depends on it is restarted after it.
    func testOneForOneKeepsDependentsAndRestForOneRestartsThem() throws {
        for strategy in ["one_for_one", "rest_for_one"] {
            let sup = try startSupervisor(config: try writeConfig(strategy: strategy))
            let before = try waitReady(["eventlog", "orchestrator", "demo"])
            guard case .number(let orch)? = before["orchestrator"]?["pid"], case .number(let demo)? = before["demo"]?["pid"] else { return XCTFail() }
            kill(pid_t(orch), SIGKILL)
            var after = try waitReady(["eventlog", "orchestrator", "demo"], notPIDs: strategy == "one_for_one" ? ["orchestrator": orch] : ["orchestrator": orch, "demo": demo])
            if strategy == "one_for_one" {
                XCTAssertEqual(after["demo"]?["pid"], .number(demo), "one_for_one leaves the adapter running")
                // ... and it carries on against the new orchestrator: the log keeps growing.
                let head = try gunnctl(["--json", "status"]).json?["log_head"]?["seq"]
                var grew = false
                for _ in 0..<100 where !grew {
                    grew = try gunnctl(["--json", "status"]).json?["log_head"]?["seq"] != head
                    if !grew { usleep(50_000) }
                }
                XCTAssertTrue(grew, "the demo goes on after the orchestrator's restart")
            } else {
                XCTAssertNotEqual(after["demo"]?["pid"], .number(demo), "rest_for_one restarts the dependent")
                XCTAssertEqual(after["demo"]?["restarts"], 1)
            }
            after = try children()
            XCTAssertEqual(after["eventlog"]?["restarts"], 0)
            kill(sup.pid, SIGTERM)
            XCTAssertEqual(sup.wait(), 0)
            try? FileManager.default.removeItem(atPath: home + "/data")
        }
    }

    func testAChildCrashingInALoopExhaustsTheIntensityAndTheSupervisorExitsNamingIt() throws {
        let config = try writeConfig(demo: false, extra: #"{"name": "crasher", "executable": "/bin/sh", "args": ["-c", "sleep 0.05; exit 3"], "depends_on": ["orchestrator"]}"#, maxRestarts: 3)
        let sup = try startSupervisor(config: config)
        let sid = sup.pid
        XCTAssertEqual(sup.wait(), 1)
        let err = try String(contentsOfFile: home + "/supervisor.err", encoding: .utf8)
        let last = err.split(separator: "\n").last.map(String.init) ?? ""
        XCTAssertTrue(last.contains("CHILD_FAILED") && last.contains("crasher") && last.contains("exit status 3"), last)
        // The others were stopped cleanly, in reverse order, and nothing is left running.
        XCTAssertTrue(err.contains("orchestrator stopped (exit status 0)"), err)
        XCTAssertTrue(err.contains("eventlog stopped (exit status 0)"), err)
        XCTAssertEqual(waitGone(Self.processes(where: { $0.session == sid })), [], "nothing left in the session")
        XCTAssertTrue(Self.processes(where: { $0.pgrp == sid }).isEmpty, "nothing left in the process group")
        XCTAssertFalse(FileManager.default.fileExists(atPath: home + "/run/supervisor.sock"))
        // Its output went to logs/crasher.log... and the log writer's to its own.
        XCTAssertTrue(FileManager.default.fileExists(atPath: home + "/logs/eventlog.log"))
    }

    func testKillNineOfTheSupervisorTakesItsChildrenAndANewOneStartsCleanly() async throws {
        let config = try writeConfig()
        let sup = try startSupervisor(config: config)
        let first = try waitReady(["eventlog", "orchestrator", "demo"])
        let pids = ["eventlog", "orchestrator", "demo"].compactMap { n -> pid_t? in
            if case .number(let p)? = first[n]?["pid"] { return pid_t(p) } else { return nil }
        }
        XCTAssertEqual(pids.count, 3)
        let headBefore = try gunnctl(["--json", "status"]).json?["log_head"]?["seq"]
        kill(sup.pid, SIGKILL)
        sup.wait()
        XCTAssertEqual(waitGone(pids), [], "children die with their supervisor (PDEATHSIG)")
        let again = try startSupervisor(config: config)
        let second = try waitReady(["eventlog", "orchestrator", "demo"])
        for n in ["eventlog", "orchestrator", "demo"] {
            XCTAssertEqual(second[n]?["restarts"], 0)
            guard case .number(let p)? = second[n]?["pid"] else { XCTFail("\(n): no pid in \(String(describing: second[n]))"); continue }
            XCTAssertFalse(pids.contains(pid_t(p)), "\(n) is a new process")
            XCTAssertEqual(kill(pid_t(p), 0), 0, "\(n) (pid \(Int(p))) is alive")
        }
        // The world continued from its log.
        let status = try gunnctl(["--json", "status"])
        if case .number(let before)? = headBefore, case .number(let now)? = status.json?["log_head"]?["seq"] {
            XCTAssertGreaterThanOrEqual(now, before)
        } else { XCTFail("no log head: \(status)") }
        let replay = try gunnctl(["--json", "verify"])
        XCTAssertEqual(replay.json?["ok"], true)
        kill(again.pid, SIGTERM)
        XCTAssertEqual(again.wait(), 0)
    }

    func testGunnctlAgainstNothingAndEveryCommandOnALiveSystem() async throws {
        // Not running: one line, NOT_RUNNING, exit 3 — for every command that needs a socket.
        for args in [["status"], ["agents"], ["tail"], ["verify"], ["replay"], ["submit", "a", "speak", "{}"], ["emit", "TimeTick", "{}"],
                     ["observe", "a"], ["restart", "demo"], ["breaker", "open", "eventlog"], ["snapshot"]] {
            let r = try gunnctl(args, home: home + "/nothing-here")
            XCTAssertEqual(r.status, 3, "\(args): \(r)")
            XCTAssertEqual(r.err.split(separator: "\n").count, 1, "\(args): \(r.err)")
            XCTAssertTrue(r.err.contains("NOT_RUNNING"), r.err)
        }
        XCTAssertEqual(try gunnctl(["frobnicate"]).status, 2)
        XCTAssertEqual(try gunnctl(["verify", "--from", "x"]).status, 2)
        for cmd in ["status", "tail", "submit", "restart"] { XCTAssertEqual(try gunnctl([cmd, "--help"]).status, 0) }

        let sup = try startSupervisor(config: try writeConfig())
        _ = try waitReady(["eventlog", "orchestrator", "demo"])
        // An adapter attached by hand shows up as attached.
        let hand = GunnClient(path: home + "/run/orchestrator.sock", loop: EventLogProcessTests.loop, name: "by-hand")
        // A generous staleness threshold: gunnctl submit reads zed's view_seq and then submits, and
        // the demo agents nearby may commit in between (STALE_CONTEXT is not what this test is about).
        try await hand.register(["agent_id": "zed", "spawn": [1, 1], "staleness_threshold": 1_000_000])
        let status = try gunnctl(["--json", "status"])
        XCTAssertEqual(status.status, 0, status.err)
        guard case .array(let kids)? = status.json?["children"] else { return XCTFail(status.out) }
        XCTAssertEqual(Set(kids.compactMap { $0["state"]?.stringValue == "ready" ? $0["name"]?.stringValue : nil }), ["eventlog", "orchestrator", "demo"])
        XCTAssertTrue(kids.contains { $0["name"] == "by-hand" && $0["state"] == "attached" }, "\(kids)")
        XCTAssertEqual(Self.first(status.json?["breakers"])?["state"], "closed")
        let human = try gunnctl(["status"])
        XCTAssertTrue(human.out.contains("CHILD") && human.out.contains("orchestrator") && human.out.contains("ready"), human.out)

        let agents = try gunnctl(["--json", "agents"])
        guard case .array(let list)? = agents.json else { return XCTFail(agents.out) }
        XCTAssertTrue(Set(list.compactMap { $0["agent_id"]?.stringValue }).isSuperset(of: ["ann", "bob", "cyd", "zed"]))

        let submit = try gunnctl(["--json", "submit", "zed", "speak", #"{"text":"from gunnctl"}"#, "--req", "ctl-1"])
        XCTAssertEqual(submit.status, 0, submit.err)
        XCTAssertEqual(submit.json?["committed"], true)
        guard case .number(let seq)? = submit.json?["effect"]?["global_seq"] else { return XCTFail(submit.out) }
        let refused = try gunnctl(["--json", "submit", "ghost", "speak", #"{"text":"x"}"#])
        XCTAssertEqual(refused.status, 1)
        XCTAssertEqual(refused.json?["error"]?["name"], "INVALID_AGENT_ID")
        XCTAssertEqual(try gunnctl(["submit", "zed", "speak", "{not json"]).status, 2)

        let emit = try gunnctl(["--json", "emit", "EntityUpsert", #"{"id":"well","entity":{"pos":[2,2],"kind":"well"}}"#])
        XCTAssertEqual(emit.json?["accepted"], true, emit.out + emit.err)

        let tail = try gunnctl(["--json", "tail", "--from", "\(Int(seq))", "--limit", "1"])
        XCTAssertEqual(tail.json?["global_seq"], .number(seq))
        XCTAssertEqual(tail.json?["req_id"], "ctl-1")
        // tail -f follows new commits: started, then something is committed, then it shows it.
        let follow = Process()
        follow.executableURL = Self.bin.appendingPathComponent("gunnctl")
        follow.arguments = ["--home", home, "--json", "tail", "-f", "--from", "\(Int(seq) + 1)"]
        let pipe = Pipe()
        follow.standardOutput = pipe
        try follow.run()
        started.append(follow)
        _ = try gunnctl(["submit", "zed", "speak", #"{"text":"followed"}"#, "--req", "ctl-2"])
        var seen = ""
        let until = Date().addingTimeInterval(10)
        while !seen.contains("ctl-2") && Date() < until {
            seen += String(decoding: pipe.fileHandleForReading.availableData, as: UTF8.self)
        }
        XCTAssertTrue(seen.contains("\"req_id\":\"ctl-2\""), seen)
        // ...and outlives a kill -9 of the log writer: it follows again after the restart, with
        // nothing shown twice and nothing skipped.
        let logPID = try XCTUnwrap(children()["eventlog"]?["pid"]?.numberValue)
        kill(pid_t(logPID), SIGKILL)
        _ = try waitReady(["eventlog"], notPIDs: ["eventlog": logPID])
        var after = try gunnctl(["submit", "zed", "speak", #"{"text":"after the restart"}"#, "--req", "ctl-3"])
        for _ in 0..<50 where after.status != 0 { // the orchestrator's link may still be reconnecting
            usleep(100_000)
            after = try gunnctl(["submit", "zed", "speak", #"{"text":"after the restart"}"#, "--req", "ctl-3"])
        }
        XCTAssertEqual(after.status, 0, after.out + after.err)
        let again = Date().addingTimeInterval(20)
        while !seen.contains("ctl-3") && Date() < again {
            seen += String(decoding: pipe.fileHandleForReading.availableData, as: UTF8.self)
        }
        XCTAssertTrue(seen.contains("\"req_id\":\"ctl-3\""), seen)
        let seqs = seen.split(separator: "\n").compactMap { try? JSONParser.parse(Array($0.utf8))["global_seq"]?.numberValue }
        XCTAssertEqual(seqs, Array(Set(seqs)).sorted(), "in order, none twice")
        XCTAssertEqual(seqs.last.map { Int($0) - Int(seq) }, seqs.count, "none skipped")
        follow.terminate()

        let observe = try gunnctl(["--json", "observe", "zed"])
        XCTAssertNotNil(observe.json?["view"]?["entities"]?["zed"], observe.out)
        XCTAssertNotNil(observe.json?["view"]?["entities"]?["well"], observe.out)

        let verify = try gunnctl(["--json", "verify"])
        XCTAssertEqual(verify.json?["ok"], true)
        let replay = try gunnctl(["--json", "replay", "--check"])
        if replay.status != 0 { // the demo may commit between the read and the check: once more
            let again = try gunnctl(["--json", "replay", "--check"])
            XCTAssertEqual(again.json?["matches_orchestrator"], true, again.out + again.err)
        } else {
            XCTAssertEqual(replay.json?["matches_orchestrator"], true)
        }

        XCTAssertEqual(try gunnctl(["--json", "breaker", "open", "eventlog"]).json?["message"], "breaker eventlog open")
        let whileOpen = try gunnctl(["--json", "status"])
        XCTAssertEqual(Self.first(whileOpen.json?["breakers"])?["state"], "open")
        XCTAssertEqual(try gunnctl(["--json", "breaker", "reset", "eventlog"]).json?["message"], "breaker eventlog closed")
        XCTAssertEqual(try gunnctl(["--json", "breaker", "close", "eventlog"]).json?["message"], "breaker eventlog closed")
        XCTAssertEqual(try gunnctl(["breaker", "open", "nosuchlink"]).status, 4)
        _ = try gunnctl(["breaker", "reset", "eventlog"])

        let snap = try gunnctl(["--json", "snapshot"])
        XCTAssertEqual(snap.status, 0, snap.err)
        guard case .number(let snapSeq)? = snap.json?["global_seq"], case .string(let digest)? = snap.json?["digest"] else {
            return XCTFail("no snapshot answer: \(snap.out)")
        }
        if snapSeq == 0 {
            XCTAssertEqual(digest, "", "no snapshot stored, no digest")
        } else {
            // The stored snapshot is the world the log gives at its seq.
            let replayTo = try gunnctl(["--json", "replay", "--to", String(Int(snapSeq))])
            XCTAssertEqual(replayTo.json?["world_digest"], .string(digest), replayTo.out + replayTo.err)
        }

        let before = try children()
        let restart = try gunnctl(["--json", "restart", "demo"])
        XCTAssertEqual(restart.json?["ok"], true)
        guard case .number(let old)? = before["demo"]?["pid"] else { return XCTFail("no pid for demo: \(String(describing: before["demo"]))") }
        let restarted = try waitReady(["demo"], notPIDs: ["demo": old])
        XCTAssertNotEqual(restarted["demo"]?["pid"], .number(old), "restart started a new demo process")
        XCTAssertEqual(try gunnctl(["restart", "nosuchchild"]).status, 4)
        XCTAssertEqual(try gunnctl(["--json", "stop", "demo"]).json?["ok"], true)
        var stopped = false
        for _ in 0..<100 where !stopped {
            stopped = (try children())["demo"]?["state"] == "stopped"
            if !stopped { usleep(50_000) }
        }
        XCTAssertTrue(stopped)
        XCTAssertEqual(try gunnctl(["--json", "start", "demo"]).json?["ok"], true)
        _ = try waitReady(["demo"])
        hand.close()
        kill(sup.pid, SIGTERM)
        XCTAssertEqual(sup.wait(), 0)
    }

    /// A number no conversion could hold is a coded refusal with the documented exit code, not a trap.
    func testAnOutOfRangeConfigNumberIsRefusedWithExit78NamingTheKey() throws {
        for (key, value) in [("world_seed", "1e20"), ("max_restarts", "-1"), ("log_keep", "1.5"), ("ready_timeout_ms", "1e308")] {
            let path = home + "/bad.json"
            let text = #"{"\#(key)": \#(value), "children": [{"name": "a", "executable": "/bin/true"}]}"#
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            let sup = try startSupervisor(config: path)
            XCTAssertEqual(sup.wait(), 78, key)
            let err = try String(contentsOfFile: home + "/supervisor.err", encoding: .utf8)
            let last = err.split(separator: "\n").last.map(String.init) ?? ""
            XCTAssertTrue(last.contains("CONFIG_INVALID") && last.contains(key), last)
        }
    }

    /// The supervisor tells every child the world it serves (GUNN_WORLD_ID, GUNN_WORLD_SEED), so
    /// the log's durable header names the configured seed although the log writer's args do not.
    func testTheLogHeaderRecordsTheConfiguredWorldAndSeed() throws {
        // writeConfig's log writer gets --world-id but no --world-seed in its args; the config says 3.
        let sup = try startSupervisor(config: try writeConfig(demo: false))
        _ = try waitReady(["eventlog", "orchestrator"])
        kill(sup.pid, SIGTERM)
        XCTAssertEqual(sup.wait(), 0)
        let db = try SQLiteDatabase(path: home + "/data/events.sqlite")
        var header: [String: String] = [:]
        let q = try db.prepare("SELECT key, value FROM header")
        while try q.step() { header[q.string(0) ?? ""] = q.string(1) }
        XCTAssertEqual(header["world_id"], "sup")
        XCTAssertEqual(header["world_seed"], "3")
    }

    /// A SIGSTOPped orchestrator: status answers (the supervisor asks every child at once, each
    /// within status_probe_ms), shows it not_answering, reports the others, and gunnctl exits 5;
    /// a request to it times out naming it. SIGCONT: ready again, exit 0.
    func testAStoppedOrchestratorIsShownNotAnsweringAndTheOthersAreStillReported() throws {
        let sup = try startSupervisor(config: try writeConfig())
        let ready = try waitReady(["eventlog", "orchestrator", "demo"])
        let orch = pid_t(try XCTUnwrap(ready["orchestrator"]?["pid"]?.numberValue))
        kill(orch, SIGSTOP)
        var continued = false
        defer { if !continued { kill(orch, SIGCONT) } }
        // gunnctl's own deadline for the orchestrator's Status; the supervisor's probe (status_probe_ms
        // 3 s: generous for the children that do answer, on a loaded machine) is well inside it.
        let status = try gunnctl(["--timeout-ms", "6000", "--json", "status"])
        XCTAssertEqual(status.status, 5, status.out + status.err)
        guard case .array(let kids)? = status.json?["children"] else { return XCTFail(status.out + status.err) }
        var states: [String: String] = [:]
        for k in kids { if let n = k["name"]?.stringValue { states[n] = k["state"]?.stringValue ?? "" } }
        XCTAssertEqual(states["orchestrator"], "not_answering", "\(kids)")
        XCTAssertEqual(states["eventlog"], "ready", "\(kids)")
        XCTAssertNotNil(states["demo"], "every child is reported: \(kids)")
        XCTAssertNotNil(status.json?["log_head"]?["seq"], "the log writer's head is still reported")
        guard case .array(let silent)? = status.json?["not_answering"] else { return XCTFail(status.out) }
        XCTAssertTrue(silent.contains { $0.stringValue?.contains("orchestrator") == true }, "\(silent)")
        let human = try gunnctl(["--timeout-ms", "6000", "status"])
        XCTAssertEqual(human.status, 5)
        XCTAssertTrue(human.out.contains("not_answering") && human.out.contains("NOT ANSWERING"), human.out)
        for args in [["agents"], ["observe", "ann"], ["submit", "ann", "speak", #"{"text":"x"}"#]] {
            let r = try gunnctl(["--timeout-ms", "300"] + args)
            XCTAssertEqual(r.status, 5, "\(args): \(r)")
            XCTAssertTrue(r.err.contains("OPERATION_TIMEOUT") && r.err.contains("orchestrator"), r.err)
        }
        kill(orch, SIGCONT)
        continued = true
        _ = try waitReady(["eventlog", "orchestrator", "demo"])
        var again = try gunnctl(["--json", "status"])
        for _ in 0..<100 where again.status != 0 { usleep(100_000); again = try gunnctl(["--json", "status"]) }
        XCTAssertEqual(again.status, 0, again.out + again.err)
        XCTAssertEqual(again.json?["not_answering"], .array([]))
        kill(sup.pid, SIGTERM)
        XCTAssertEqual(sup.wait(), 0)
    }

    /// A child that never answers its socket is killed at its readiness deadline; that counts like
    /// any other failure: the restarts back off, and the supervisor stops with CHILD_FAILED.
    func testAChildThatNeverBecomesReadyBacksOffAndExhaustsTheIntensity() throws {
        // Each attempt takes the 300 ms deadline, so 2 exits never fit in max_seconds 0.5: only
        // the count of failed starts in a row can stop this loop. stable_seconds is below the
        // deadline: time spent starting must not reset the backoff.
        let text = #"{"world_id": "sup", "max_restarts": 2, "max_seconds": 0.5, "ready_timeout_ms": 300, "stable_seconds": 0.1, "#
            + #""backoff_base_ms": 50, "backoff_cap_ms": 400, "children": [{"name": "mute", "executable": "/bin/sh", "#
            + #""args": ["-c", "exec sleep 600"], "socket": "run/mute.sock"}]}"#
        let path = home + "/mute.json"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let sup = try startSupervisor(config: path)
        // Bounded: a supervisor that restarts it for ever is stopped here, and the test fails.
        let until = Date().addingTimeInterval(60)
        while sup.isRunning && Date() < until { usleep(50_000) }
        let err = try String(contentsOfFile: home + "/supervisor.err", encoding: .utf8)
        guard !sup.isRunning else {
            kill(sup.pid, SIGTERM)
            sup.wait()
            return XCTFail("still restarting the child that never becomes ready after 60 s:\n\(err)")
        }
        XCTAssertEqual(sup.wait(), 1)
        let last = err.split(separator: "\n").last.map(String.init) ?? ""
        XCTAssertTrue(last.contains("CHILD_FAILED") && last.contains("mute") && last.contains("ready"), last)
        let delays = err.split(separator: "\n").compactMap { line -> Int? in
            guard let r = line.range(of: #"restart \d+ in (\d+) ms"#, options: .regularExpression) else { return nil }
            return Int(line[r].split(separator: " ")[3])
        }
        XCTAssertEqual(delays.count, 2, err)
        XCTAssertGreaterThan(delays.last ?? 0, 0, "the second restart backs off: \(err)")
        XCTAssertTrue(err.contains("mute exited (not ready within 300 ms"), err)
        XCTAssertEqual(waitGone(Self.processes(where: { $0.session == sup.pid })), [], "nothing left in the session")
    }

    /// ops/setup installs only what its caller needs: the model (llama.cpp, minutes to compile)
    /// only when asked or for the tests.
    func testOpsSetupBuildsTheModelOnlyWhenAskedOrForTheTests() throws {
        // A copy of the script in an empty tree: nothing is installed there, and a dry run says
        // what would be.
        try FileManager.default.createDirectory(atPath: home + "/tree/ops", withIntermediateDirectories: true)
        let script = home + "/tree/ops/setup"
        try FileManager.default.copyItem(atPath: EventLogProcessTests.root.appendingPathComponent("ops/setup").path, toPath: script)
        func setup(_ args: [String], env extra: [String: String] = [:]) throws -> String {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/bash")
            p.arguments = [script] + args
            var env = ProcessInfo.processInfo.environment
            env["GUNN_NO_LLM"] = nil
            for (k, v) in extra { env[k] = v }
            p.environment = env
            let out = Pipe()
            p.standardOutput = out
            p.standardError = out
            try p.run()
            let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 0, "\(args): \(text)")
            return text
        }
        let plain = try setup(["--dry-run"])
        XCTAssertTrue(plain.contains(".venv-llm skipped"), plain)
        XCTAssertFalse(plain.contains("would create .venv"), plain)
        let llm = try setup(["--dry-run", "--llm"])
        XCTAssertTrue(llm.contains("would create .venv-llm"), llm)
        XCTAssertFalse(llm.contains("would create .venv-tools"), llm)
        let tests = try setup(["--dry-run", "--test"])
        XCTAssertTrue(tests.contains("would create .venv-llm") && tests.contains("would create .venv-tools"), tests)
        let noLLM = try setup(["--dry-run", "--test"], env: ["GUNN_NO_LLM": "1"])
        XCTAssertTrue(noLLM.contains(".venv-llm skipped") && noLLM.contains("would create .venv-tools"), noLLM)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: home + "/tree").sorted(), ["ops"], "a dry run changes nothing")
    }

    /// The newcomer's path: ops/run, gunnctl status shows every child ready, Ctrl-C leaves nothing.
    func testOpsRunStartsTheSystemAndCtrlCLeavesNoProcess() throws {
        var env = ProcessInfo.processInfo.environment
        env["GUNN_HOME"] = home
        env["GUNN_BUILD"] = "debug"
        // The build step is skipped: `swift test` holds SwiftPM's lock on .build, so a build from
        // here would wait for ever; ops/test has just built these binaries.
        env["GUNN_SKIP_BUILD"] = "1"
        let run = try SessionProcess("/bin/bash", [EventLogProcessTests.root.appendingPathComponent("ops/run").path], environment: env,
                                     stderrPath: home + "/supervisor.err")
        sessions.append(run)
        let sid = run.pid
        _ = try waitReady(["eventlog", "orchestrator", "demo"], seconds: 60)
        // The default demo needs no model: ops/run's setup leaves .venv-llm alone.
        let runLog = try String(contentsOfFile: home + "/supervisor.err", encoding: .utf8)
        XCTAssertTrue(runLog.contains("ops/setup: .venv-llm skipped"), runLog)
        XCTAssertFalse(runLog.contains("creating .venv-llm"), runLog)
        let human = try gunnctl(["status"])
        XCTAssertEqual(human.status, 0)
        // Life: the demo agents commit.
        var head = 0.0
        for _ in 0..<100 where head < 5 {
            if case .number(let h)? = try gunnctl(["--json", "status"]).json?["log_head"]?["seq"] { head = h }
            usleep(100_000)
        }
        XCTAssertGreaterThanOrEqual(head, 5)
        // Ctrl-C: SIGINT to the foreground process group.
        kill(-sid, SIGINT)
        XCTAssertEqual(run.wait(), 0)
        XCTAssertEqual(waitGone(Self.processes(where: { $0.session == sid })), [], "no process left in the session")
        XCTAssertTrue(Self.processes(where: { $0.cmdline.contains(home) }).isEmpty)
    }
}
