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
