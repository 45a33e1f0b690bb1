import Foundation
import Glibc
import XCTest
import GunnCore
@testable import GunnSupervisorKit

final class SupervisorConfigTests: XCTestCase {
    func parse(_ text: String, env: [String: String] = [:]) throws -> SupervisorConfig {
        try SupervisorConfig.parse(Array(text.utf8), environment: env)
    }

    func refusal(_ text: String, env: [String: String] = [:]) -> GunnError? {
        do { _ = try parse(text, env: env); return nil } catch { return error as? GunnError }
    }

    let minimal = #"{"children": [{"name": "a", "executable": "x"}]}"#

    func testTheShippedConfigParsesInDependencyOrder() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("ops/gunn.json")
        let c = try SupervisorConfig.parse([UInt8](try Data(contentsOf: url)))
        XCTAssertEqual(try c.startOrder().map(\.name), ["eventlog", "orchestrator", "demo", "web", "unity"])
        XCTAssertEqual(c.dependents(of: "eventlog"), ["orchestrator", "demo", "web", "unity"])
        XCTAssertEqual(c.children[0].socket, "run/eventlog.sock")
    }

    func testDefaultsAndEnvironmentOverrides() throws {
        let c = try parse(minimal, env: ["GUNN_WORLD_ID": "w9", "GUNN_WORLD_SEED": "42", "GUNN_STRATEGY": "rest_for_one", "GUNN_MAX_RESTARTS": "2",
                                         "GUNN_MAX_SECONDS": "1.5", "GUNN_DURABILITY": "normal"])
        XCTAssertEqual(c.worldID, "w9"); XCTAssertEqual(c.worldSeed, 42); XCTAssertEqual(c.strategy, .restForOne)
        XCTAssertEqual(c.maxRestarts, 2); XCTAssertEqual(c.maxSeconds, 1.5); XCTAssertEqual(c.durability, "normal")
        XCTAssertEqual(c.children[0].restart, .permanent)
        XCTAssertEqual(c.children[0].shutdownTimeoutMs, 5000)
    }

    /// ops/profiles.json's profiles: a profile's keys win over the config's, the environment
    /// over both; an unknown profile, a profile with children or an unknown key, a bad feature
    /// or log level are CONFIG_INVALID.
    func testProfilesFeaturesAndLogLevel() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("ops/profiles.json")
        let file = [UInt8](try Data(contentsOf: url))
        let dev = try SupervisorConfig.profile("dev", from: file)
        let config = #"{"durability": "full", "max_restarts": 3, "log_level": "warn", "children": [{"name": "a", "executable": "x"}]}"#
        let c = try SupervisorConfig.parse(Array(config.utf8), profile: ("dev", dev))
        XCTAssertEqual(c.durability, "normal"); XCTAssertEqual(c.maxRestarts, 20); XCTAssertEqual(c.logLevel, .debug)
        XCTAssertEqual(c.features.enabled, ["telemetry", "tracing"]); XCTAssertEqual(c.profile, "dev")
        let prod = try SupervisorConfig.parse(Array(config.utf8), environment: ["GUNN_FEATURES": "none", "GUNN_LOG_LEVEL": "error"],
                                              profile: ("prod", try SupervisorConfig.profile("prod", from: file)))
        XCTAssertEqual(prod.durability, "full"); XCTAssertEqual(prod.features.enabled, []); XCTAssertEqual(prod.features.list, "none")
        XCTAssertEqual(prod.logLevel, .error)
        let plain = try parse(config)
        XCTAssertEqual(plain.logLevel, .warn); XCTAssertEqual(plain.features.enabled, ["telemetry"]); XCTAssertNil(plain.profile)
        func refused(_ body: () throws -> Void, _ mention: String) {
            do { try body(); XCTFail("accepted: \(mention)") } catch {
                XCTAssertEqual((error as? GunnError)?.code, .configInvalid, mention)
                XCTAssertTrue("\(error)".contains(mention), "\(error)")
            }
        }
        refused({ _ = try SupervisorConfig.profile("staging", from: file) }, "profiles: dev, prod")
        refused({ _ = try SupervisorConfig.profile("p", from: Array(#"{"p": {"children": []}}"#.utf8)) }, "\"children\"")
        refused({ _ = try SupervisorConfig.profile("p", from: Array(#"{"p": {"durabilty": "full"}}"#.utf8)) }, "\"durabilty\"")
        refused({ _ = try SupervisorConfig.profile("p", from: Array("not json".utf8)) }, "not valid JSON")
        refused({ _ = try self.parse(#"{"features": "telemetry,warp", "children": [{"name": "a", "executable": "x"}]}"#) }, "warp")
        refused({ _ = try self.parse(#"{"log_level": "loud", "children": [{"name": "a", "executable": "x"}]}"#) }, "log_level")
        refused({ _ = try self.parse(self.minimal, env: ["GUNN_LOG_LEVEL": "loud"]) }, "GUNN_LOG_LEVEL")
        refused({ _ = try self.parse(self.minimal, env: ["GUNN_FEATURES": "nope"]) }, "nope")
    }

    func testUnknownKeysAndBadValuesAreRefusedNamingTheKey() {
        let cases: [(String, [String: String], String)] = [
            (#"{"childrn": []}"#, [:], "\"childrn\""),
            (#"{"children": [{"name": "a", "executable": "x", "restrat": "permanent"}]}"#, [:], "children[0].restrat"),
            (#"{"max_restarts": -1, "children": [{"name": "a", "executable": "x"}]}"#, [:], "max_restarts"),
            (#"{"max_seconds": "10", "children": [{"name": "a", "executable": "x"}]}"#, [:], "max_seconds"),
            (#"{"strategy": "one_for_all", "children": [{"name": "a", "executable": "x"}]}"#, [:], "strategy"),
            (#"{"children": [{"name": "a", "executable": "x", "restart": "sometimes"}]}"#, [:], "children[0].restart"),
            (#"{"children": [{"name": "a"}]}"#, [:], "children[0].executable"),
            (#"{"children": [{"name": "a", "executable": "x", "depends_on": ["b"]}]}"#, [:], "depends_on"),
            (#"{"children": [{"name": "a", "executable": "x", "depends_on": ["b"]}, {"name": "b", "executable": "x", "depends_on": ["a"]}]}"#, [:], "cycle"),
            (#"{"children": [{"name": "a", "executable": "x"}, {"name": "a", "executable": "y"}]}"#, [:], "twice"),
            (#"{"children": [{"name": "a b", "executable": "x"}]}"#, [:], "identifier"),
            (#"{"children": []}"#, [:], "empty"),
            (#"{"children": [{"name": "a", "executable": "x"}],}"#, [:], "not valid JSON"),
            (#"[1]"#, [:], "object"),
            (minimal, ["GUNN_WORLD_SEED": "-3"], "GUNN_WORLD_SEED"),
            (minimal, ["GUNN_STRATEGY": "x"], "GUNN_STRATEGY"),
            (minimal, ["GUNN_MAX_RESTARTS": "many"], "GUNN_MAX_RESTARTS"),
        ]
        for (text, env, key) in cases {
            let e = refusal(text, env: env)
            XCTAssertEqual(e?.code, .configInvalid, text)
            XCTAssertTrue(e?.message.contains(key) == true, "\(key) not named in: \(e?.message ?? "accepted")")
        }
    }

    /// Every number of the file and of the GUNN_* overrides: finite, integral where it must be, in
    /// range — or CONFIG_INVALID naming the key (never a trap in a conversion).
    func testEveryNumberOutOfRangeNonIntegralOrNotFiniteIsRefusedNamingTheKey() {
        func top(_ key: String, _ value: String) -> String { #"{"\#(key)": \#(value), "children": [{"name": "a", "executable": "x"}]}"# }
        func child(_ value: String) -> String { #"{"children": [{"name": "a", "executable": "x", "shutdown_timeout_ms": \#(value)}]}"# }
        var cases: [(String, [String: String], String)] = []
        let integers = ["world_seed", "max_restarts", "log_max_bytes", "log_keep"]
        let reals = ["max_seconds", "backoff_base_ms", "backoff_cap_ms", "stable_seconds", "ready_timeout_ms", "status_probe_ms"]
        for key in integers {
            for bad in ["1e20", "-1", "1.5", "1e308", "-1e308", "18446744073709551616", "\"5\"", "true", "null"] {
                cases.append((top(key, bad), [:], key))
            }
        }
        for key in reals {
            for bad in ["1e20", "-1", "1e308", "-1e308", "\"nan\"", "[1]"] { cases.append((top(key, bad), [:], key)) }
        }
        for bad in ["1e20", "-1", "1.5", "1e308", "\"10\""] { cases.append((child(bad), [:], "children[0].shutdown_timeout_ms")) }
        for bad in ["18446744073709551616", "-1", "1.5", "nan", "NaN", "inf", "1e20", "0x10", " 5", "+5", ""] {
            cases.append((minimal, ["GUNN_WORLD_SEED": bad], "GUNN_WORLD_SEED"))
        }
        for bad in ["1e20", "-1", "1.5", "nan", "inf", "Infinity", "0x10", " 5", "9223372036854775808", ""] {
            cases.append((minimal, ["GUNN_MAX_RESTARTS": bad], "GUNN_MAX_RESTARTS"))
        }
        for bad in ["nan", "NaN", "inf", "-inf", "1e400", "1e20", "0", "-1", "0x10", ""] {
            cases.append((minimal, ["GUNN_MAX_SECONDS": bad], "GUNN_MAX_SECONDS"))
        }
        for (text, env, key) in cases {
            let e = refusal(text, env: env)
            XCTAssertEqual(e?.code, .configInvalid, "\(text) \(env)")
            XCTAssertTrue(e?.message.contains(key) == true, "\(key) not named in: \(e?.message ?? "accepted") for \(text) \(env)")
        }
    }

    func testNumbersAtTheirBoundsAreAccepted() throws {
        let c = try parse(#"{"world_seed": 9007199254740991, "max_restarts": 10000, "max_seconds": 86400, "backoff_cap_ms": 3600000, "#
            + #""ready_timeout_ms": 1, "status_probe_ms": 60000, "log_max_bytes": 1099511627776, "log_keep": 0, "#
            + #""children": [{"name": "a", "executable": "x", "shutdown_timeout_ms": 0}]}"#)
        XCTAssertEqual(c.worldSeed, 9_007_199_254_740_991)
        XCTAssertEqual(c.maxRestarts, 10_000)
        XCTAssertEqual(c.logMaxBytes, 1 << 40)
        XCTAssertEqual(c.statusProbeMs, 60_000)
        XCTAssertEqual(c.children[0].shutdownTimeoutMs, 0)
        let e = try parse(minimal, env: ["GUNN_WORLD_SEED": "18446744073709551615", "GUNN_MAX_RESTARTS": "0", "GUNN_MAX_SECONDS": "0.5"])
        XCTAssertEqual(e.worldSeed, .max, "the environment carries the whole 64-bit range exactly")
        XCTAssertEqual(e.maxRestarts, 0)
        XCTAssertEqual(e.maxSeconds, 0.5)
    }

    func testRestForOneDependentsAreTransitive() throws {
        let c = try parse(#"{"children": [{"name": "log", "executable": "x"}, {"name": "orch", "executable": "x", "depends_on": ["log"]}, "# +
            #"{"name": "llm", "executable": "x", "depends_on": ["orch"]}, {"name": "web", "executable": "x", "depends_on": ["orch"]}, {"name": "lone", "executable": "x"}]}"#)
        XCTAssertEqual(c.dependents(of: "log"), ["orch", "llm", "web"])
        XCTAssertEqual(c.dependents(of: "orch"), ["llm", "web"])
        XCTAssertEqual(c.dependents(of: "lone"), [])
        XCTAssertEqual(try c.startOrder().map(\.name), ["log", "orch", "llm", "web", "lone"])
    }
}

final class SupervisorPartsTests: XCTestCase {
    var dir: String!
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-svk-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir + "/run", withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    func testLogsRotateBySizeKeepingTheNewestFiles() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        let path = dir + "/child.log"
        LogPump(readFD: fds[0], path: path, maxBytes: 1000, keep: 2, process: "child").start()
        let line = [UInt8](repeating: UInt8(ascii: "x"), count: 99) + [10]
        for _ in 0..<50 { _ = line.withUnsafeBytes { write(fds[1], $0.baseAddress, $0.count) } }
        close(fds[1])
        var done = false
        for _ in 0..<200 where !done {
            done = FileManager.default.fileExists(atPath: path + ".2") && ((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0) > 0
            usleep(10_000)
        }
        usleep(50_000)
        for p in [path, path + ".1", path + ".2"] {
            let size = (try FileManager.default.attributesOfItem(atPath: p)[.size] as? Int) ?? -1
            XCTAssertTrue(size > 0 && size <= 1000, "\(p): \(size)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path + ".3"), "only `keep` old files")
    }

    /// Every line a child writes reaches its log file as one redacted JSON line: gunn's own lines
    /// as they are (redacted), anything else wrapped; a line past the bound is cut, and a last
    /// line without a newline is written when the child's output ends.
    func testTheLogPumpRedactsEveryLineAndWrapsPlainOnes() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        let path = dir + "/child.log"
        let pump = LogPump(readFD: fds[0], path: path, maxBytes: 1 << 20, keep: 1, process: "child")
        let token = "gunn1.eyJ0ZW5hbnQiOiJ0MSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
        let input = [
            #"{"event":"started","level":"info","process":"child","ts":"2026-12-01T00:00:00.000Z","note":"mail ann@example.com"}"#,
            "panic: Authorization: Bearer \(token)",
            #"plain line with "quotes" and a phone +44 20 7946 0958"#,
            String(repeating: "y", count: LogPump.maxLineBytes - 20) + " Authorization: Bearer \(token)" + String(repeating: "z", count: 100),
            "the last line, no newline, sk-abcdefghijklmnopqrstuvwx",
        ].joined(separator: "\n")
        let bytes = Array(input.utf8)
        // Written in small pieces, so lines cross reads.
        var off = 0
        while off < bytes.count {
            let n = min(7, bytes.count - off)
            _ = bytes[off..<(off + n)].withUnsafeBytes { write(fds[1], $0.baseAddress, n) }
            off += n
        }
        close(fds[1])
        pump.runUntilEnd()
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let lines = text.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 5, text) // the long line is cut once, its rest dropped
        for l in lines {
            let o = try JSONParser.parse(Array(l.utf8))
            XCTAssertNotNil(o["ts"]); XCTAssertNotNil(o["event"]); XCTAssertEqual(o["process"], "child")
        }
        for secret in ["ann@example.com", token, "7946 0958", "sk-abcdefghijklmnopqrstuvwx"] { XCTAssertFalse(text.contains(secret), secret) }
        XCTAssertEqual(try JSONParser.parse(Array(lines[0].utf8))["note"], "mail [REDACTED:email]")
        XCTAssertEqual(try JSONParser.parse(Array(lines[2].utf8))["message"], "plain line with \"quotes\" and a phone [REDACTED:phone]")
        // The bound falls inside the token: the line is cut before it (at the last space), not through it.
        let cut = try JSONParser.parse(Array(lines[3].utf8))
        let long = try XCTUnwrap(cut["message"]?.stringValue)
        XCTAssertEqual(cut["truncated"], true)
        XCTAssertTrue(long.hasSuffix("Authorization:") && long.count < LogPump.maxLineBytes, "\(long.suffix(60))")
        XCTAssertFalse(text.contains("zzz") || text.contains(String(token.prefix(20))), "nothing of the line past the cut")
        XCTAssertEqual(try JSONParser.parse(Array(lines[4].utf8))["message"], "the last line, no newline, [REDACTED:api_key]")
    }

    func testStraysOfAPreviousSupervisorAreKilledButAReusedPidIsNot() throws {
        let stray = Process()
        stray.executableURL = URL(fileURLWithPath: "/bin/sleep")
        stray.arguments = ["60"]
        try stray.run()
        let innocent = Process()
        innocent.executableURL = URL(fileURLWithPath: "/bin/sleep")
        innocent.arguments = ["60"]
        try innocent.run()
        defer { if innocent.isRunning { innocent.terminate() } }
        let start = try XCTUnwrap(Spawn.startTime(of: stray.processIdentifier))
        try "\(stray.processIdentifier) \(start)\n".write(toFile: dir + "/run/old.pid", atomically: true, encoding: .utf8)
        // A pid file whose start time does not match: the pid now belongs to someone else.
        try "\(innocent.processIdentifier) 1\n".write(toFile: dir + "/run/reused.pid", atomically: true, encoding: .utf8)
        var config = SupervisorConfig()
        config.children = [.init(name: "a", executable: "/bin/true")]
        let s = try Supervisor(config: config, home: dir)
        s.reapStrays()
        stray.waitUntilExit()
        XCTAssertEqual(stray.terminationReason, .uncaughtSignal)
        XCTAssertTrue(innocent.isRunning, "a reused pid is left alone")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/run/old.pid"))
        XCTAssertTrue(s.events.contains { $0.contains("killing stray old") })
    }
}
