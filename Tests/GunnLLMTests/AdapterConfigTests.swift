import Foundation
import Synchronization
import XCTest
import GunnCore
@testable import GunnLLM

final class AdapterConfigTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func testTheShippedDemoConfigParses() throws {
        let c = try AdapterConfig.parse(Array(try Data(contentsOf: Self.root.appendingPathComponent("ops/agents-abc.json"))))
        XCTAssertEqual(c.agents.map(\.id), ["A", "B", "C"])
        XCTAssertEqual(c.agents[1].respondTo, ["A"])
        XCTAssertTrue(c.agents[1].interject)
        XCTAssertEqual(c.agents[0].lines.count, 2)
    }

    func testEveryBadValueIsConfigInvalidNamingTheKey() {
        let cases: [(String, String)] = [
            (#"[]"#, "JSON object"),
            (#"{"agents": []}"#, "agents"),
            (#"{"agents": [{"id": "A"}], "colour": 1}"#, "colour"),
            (#"{"agents": [{"id": "A", "voice": "x"}]}"#, "agents[0].voice"),
            (#"{"agents": [{"id": "A b"}]}"#, "agents[0].id"),
            (#"{"agents": [{"id": "A"}, {"id": "A"}]}"#, "twice"),
            (#"{"agents": [{"id": "A", "backend": "gpt"}]}"#, "agents[0].backend"),
            (#"{"agents": [{"id": "A", "backend": "openai"}]}"#, "agents[0].endpoint"),
            (#"{"agents": [{"id": "A", "backend": "openai", "endpoint": "ftp://api.example.com"}]}"#, "http:// or https://"),
            (#"{"agents": [{"id": "A", "backend": "ollama", "endpoint": "http://localhost"}]}"#, "HOST:PORT"),
            (#"{"agents": [{"id": "A", "backend": "ollama", "endpoint": "http://localhost:11434/api"}]}"#, "without a path"),
            (#"{"agents": [{"id": "A", "ca_file": 3}]}"#, "agents[0].ca_file"),
            (#"{"agents": [{"id": "A", "max_tokens": 0}]}"#, "agents[0].max_tokens"),
            (#"{"agents": [{"id": "A", "interrupt": "sometimes"}]}"#, "agents[0].interrupt"),
            (#"{"agents": [{"id": "A", "token_interval_ms": [30, 20]}]}"#, "agents[0].token_interval_ms"),
            (#"{"agents": [{"id": "A", "spawn": [1]}]}"#, "agents[0].spawn"),
            (#"{"agents": [{"id": "A", "respond_to": "B"}]}"#, "agents[0].respond_to"),
            (#"{"agents": [{"id": "A"}], "breaker": {"open_ms": -1}}"#, "breaker.open_ms"),
            (#"{"agents": [{"id": "A"}], "breaker": {"slow": 1}}"#, "breaker.slow"),
            (#"{"agents": [{"id": "A",}]}"#, "not valid JSON"),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try AdapterConfig.parse(Array(text.utf8)), text) { e in
                XCTAssertEqual((e as? GunnError)?.code, .configInvalid, text)
                XCTAssertTrue("\(e)".contains(expected), "\(text): \(e)")
            }
        }
        let ok = try? AdapterConfig.parse(Array(#"{"agents": [{"id": "A", "backend": "ollama", "endpoint": "http://127.0.0.1:11434/"}]}"#.utf8))
        XCTAssertEqual(ok?.agents.first?.endpoint, AdapterConfig.Endpoint(host: "127.0.0.1", port: 11434))
        XCTAssertEqual(try? AdapterConfig.Endpoint.parse("https://api.example.com"), AdapterConfig.Endpoint(host: "api.example.com", port: 443, tls: true))
        XCTAssertEqual(try? AdapterConfig.Endpoint.parse("https://localhost:8443/"), AdapterConfig.Endpoint(host: "localhost", port: 8443, tls: true))
    }

    /// Every number is bounded and typed: a value the adapter would trap on (a deadline above
    /// UInt32.max for the wire), round or clamp is refused, naming the key.
    func testOutOfRangeAndIllTypedSettingsAreRefusedNamingTheKey() {
        let long = String(repeating: "x", count: AdapterConfig.Limits.maxTextBytes + 1)
        let many = "[" + Array(repeating: #""B""#, count: AdapterConfig.Limits.maxListCount + 1).joined(separator: ",") + "]"
        let agentCases: [(String, String)] = [
            (#""deadline_ms": 5000000000"#, "deadline_ms"),       // above 2^32: trapped in UInt32(deadlineMs)
            (#""deadline_ms": 86400001"#, "deadline_ms"),
            (#""deadline_ms": 1.5"#, "deadline_ms"),
            (#""deadline_ms": "100""#, "deadline_ms"),
            (#""token_budget": 4294967296"#, "token_budget"),     // above UInt32.max
            (#""token_budget": 0"#, "token_budget"),
            (#""max_tokens": 2.5"#, "max_tokens"),
            (#""max_tokens": 100001"#, "max_tokens"),
            (#""max_tokens": true"#, "max_tokens"),
            (#""staleness_threshold": -1"#, "staleness_threshold"),
            (#""staleness_threshold": 1073741825"#, "staleness_threshold"),
            (#""staleness_threshold": 0.5"#, "staleness_threshold"),
            (#""debounce_ms": 1e12"#, "debounce_ms"),
            (#""temperature": 2.5"#, "temperature"),
            (#""temperature": -0.1"#, "temperature"),
            (#""max_turns": 1000001"#, "max_turns"),
            (#""max_retries": 1001"#, "max_retries"),
            (#""max_retries": 1.25"#, "max_retries"),
            (#""seed": -1"#, "seed"),
            (#""seed": 9007199254740994"#, "seed"),               // above 2^53
            (#""seed": 0.5"#, "seed"),
            (#""stall_ms": 0"#, "stall_ms"),
            (#""stall_ms": 1e10"#, "stall_ms"),
            (#""connect_timeout_ms": 0"#, "connect_timeout_ms"),
            (#""connect_timeout_ms": 600001"#, "connect_timeout_ms"),
            (#""connect_timeout_ms": null"#, "connect_timeout_ms"),
            (#""spawn": [1e10, 0]"#, "spawn"),
            (#""persona": "\#(long)""#, "persona"),
            (#""lines": ["\#(long)"]"#, "lines"),
            (#""respond_to": \#(many)"#, "respond_to"),
            (#""model": 7"#, "model"),
        ]
        var cases = agentCases.map { (#"{"agents": [{"id": "Z"}, {"id": "A", "# + $0.0 + "}]}", "agents[1].\($0.1)") }
        cases += [
            (#"{"agents": [{"id": "A"}], "breaker": {"consecutive_failures": 2.5}}"#, "breaker.consecutive_failures"),
            (#"{"agents": [{"id": "A"}], "breaker": {"consecutive_failures": 0}}"#, "breaker.consecutive_failures"),
            (#"{"agents": [{"id": "A"}], "breaker": {"consecutive_failures": 1001}}"#, "breaker.consecutive_failures"),
            (#"{"agents": [{"id": "A"}], "breaker": {"slow_first_token_ms": 1e12}}"#, "breaker.slow_first_token_ms"),
            (#"{"agents": [{"id": "A"}], "breaker": {"open_ms": "5"}}"#, "breaker.open_ms"),
            (#"{"agents": [{"id": "A"}], "breaker": {"open_ms": 5000, "open_max_ms": 1000}}"#, "breaker.open_max_ms"),
        ]
        for (text, key) in cases {
            XCTAssertThrowsError(try AdapterConfig.parse(Array(text.utf8)), String(text.prefix(200))) { e in
                XCTAssertEqual((e as? GunnError)?.code, .configInvalid, String(text.prefix(200)))
                XCTAssertTrue("\(e)".contains(key), "\(text.prefix(200)): \(e)")
            }
        }
        XCTAssertThrowsError(try AdapterConfig.parse([UInt8](repeating: 0x20, count: AdapterConfig.Limits.maxConfigBytes + 1))) { e in
            XCTAssertEqual((e as? GunnError)?.code, .configInvalid)
        }
    }

    /// The largest values in range parse to exactly what was written (no rounding, no clamping).
    func testTheBoundsThemselvesAreAccepted() throws {
        let text = #"{"agents": [{"id": "A", "deadline_ms": 86400000, "token_budget": 1000000, "max_tokens": 100000, "seed": 9007199254740992, "#
            + #""staleness_threshold": 1073741824, "max_retries": 1000, "temperature": 2, "connect_timeout_ms": 250, "stall_ms": 1}], "#
            + #""breaker": {"consecutive_failures": 1000, "open_ms": 0, "open_max_ms": 86400000}}"#
        let a = try AdapterConfig.parse(Array(text.utf8)).agents[0]
        XCTAssertEqual(a.deadlineMs, 86_400_000)
        XCTAssertEqual(a.tokenBudget, 1_000_000)
        XCTAssertEqual(a.maxTokens, 100_000)
        XCTAssertEqual(a.seed, 9_007_199_254_740_992)
        XCTAssertEqual(a.stalenessThreshold, 1 << 30)
        XCTAssertEqual(a.connectTimeoutMs, 250)
        XCTAssertEqual(AdapterConfig.Agent(id: "B").connectTimeoutMs, 10_000, "the default: HTTPStream.Request.defaultConnectTimeoutSeconds")
    }

    /// A retry-after from a peer is honoured up to a day; UInt64.max (which trapped converting to
    /// nanoseconds) waits a day, and no retry-after means the backoff's delay.
    func testRetryDelaysAreBoundedWhateverThePeerSays() {
        XCTAssertEqual(RetryDelay.nanoseconds(retryAfterMs: 1500, fallbackSeconds: 9), 1_500_000_000)
        XCTAssertEqual(RetryDelay.nanoseconds(retryAfterMs: nil, fallbackSeconds: 0.25), 250_000_000)
        XCTAssertEqual(RetryDelay.nanoseconds(retryAfterMs: .max, fallbackSeconds: 1), 86_400_000_000_000)
        XCTAssertEqual(RetryDelay.nanoseconds(retryAfterMs: 86_400_001, fallbackSeconds: 1), 86_400_000_000_000)
        XCTAssertEqual(RetryDelay.nanoseconds(retryAfterMs: nil, fallbackSeconds: -3), 0)
        XCTAssertEqual(RetryDelay.nanoseconds(retryAfterMs: nil, fallbackSeconds: .infinity), 86_400_000_000_000)
    }

    func testScriptedDummyLinesFollowTheSeed() {
        let d = DummyBackend(lines: ["one two three", "four five"])
        var p = GenerationParams(messages: [("user", "x")])
        p.seed = 0
        XCTAssertEqual(d.tokens(p), ["one", " two", " three"])
        p.seed = 1
        XCTAssertEqual(d.tokens(p), ["four", " five"])
        p.maxTokens = 1
        XCTAssertEqual(d.tokens(p), ["four"])
    }
}
