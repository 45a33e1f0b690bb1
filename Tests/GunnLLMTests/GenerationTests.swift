import Foundation
import Synchronization
import XCTest
import GunnCore
@testable import GunnLLM

/// Runs one generation; `cancelAfter` tokens → cancel(reason:).
enum GenerationRunner {
    struct Result { var tokens: [String]; var end: GenerationEnd; var emitted: Int; var afterEnd: Int }

    static func run(_ backend: any LLMBackend, _ params: GenerationParams, cancelAfter: Int? = nil) -> Result {
        let state = Mutex((tokens: [String](), end: GenerationEnd?.none, emitted: 0, afterEnd: 0))
        let done = DispatchSemaphore(value: 0)
        let box = Mutex<Generation?>(nil)
        let g = Generation(onToken: { t in
            let n = state.withLock { s -> Int in
                if s.end != nil { s.afterEnd += 1 }
                s.tokens.append(t)
                return s.tokens.count
            }
            if let c = cancelAfter, n == c { box.withLock { $0 }?.cancel(reason: "stale_due_to:42") }
        }, onEnd: { end, emitted in
            state.withLock { $0.end = end; $0.emitted = emitted }
            done.signal()
        })
        box.withLock { $0 = g }
        g.start(backend, params)
        XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
        usleep(100_000) // a token racing the end would show up here
        return state.withLock { Result(tokens: $0.tokens, end: $0.end!, emitted: $0.emitted, afterEnd: $0.afterEnd) }
    }
}

final class GenerationTests: XCTestCase {
    func run(_ backend: any LLMBackend, _ params: GenerationParams, cancelAfter: Int? = nil) -> GenerationRunner.Result {
        GenerationRunner.run(backend, params, cancelAfter: cancelAfter)
    }

    func params(_ text: String, max: Int = 12, seed: UInt64 = 1) -> GenerationParams {
        var p = GenerationParams(messages: [("user", text)])
        p.maxTokens = max
        p.seed = seed
        return p
    }

    func testTheDummyBackendIsDeterministicFromItsSeed() {
        let fast = DummyBackend(minIntervalMs: 1, maxIntervalMs: 2)
        let a = run(fast, params("hello"))
        XCTAssertEqual(a.end, .completed(reason: nil))
        XCTAssertEqual(a.tokens, DummyBackend.text(params("hello")))
        XCTAssertEqual(a.tokens.count, 12)
        XCTAssertEqual(run(fast, params("hello")).tokens, a.tokens, "same seed and prompt, same text")
        XCTAssertNotEqual(DummyBackend.text(params("hello", seed: 2)), a.tokens)
        XCTAssertNotEqual(DummyBackend.text(params("other")), a.tokens)
    }

    func testCancelHaltsAtOnceAndNothingFollows() {
        let r = run(DummyBackend(), params("hi", max: 200), cancelAfter: 3)
        XCTAssertEqual(r.end, .cancelled(reason: "stale_due_to:42"))
        XCTAssertEqual(r.emitted, 3)
        XCTAssertEqual(r.tokens.count, 3)
        XCTAssertEqual(r.afterEnd, 0)
    }

    func testBudgetAndDeadlineEndTheGenerationWithTheirCodes() {
        var p = params("hi", max: 50)
        p.tokenBudget = 5
        let budget = run(DummyBackend(minIntervalMs: 1, maxIntervalMs: 2), p)
        XCTAssertEqual(budget.tokens.count, 5)
        guard case .failed(let e) = budget.end else { return XCTFail("\(budget.end)") }
        XCTAssertEqual(e.code, .tokenBudgetExceeded)
        var q = params("hi", max: 500) // 500 tokens at 20-30 ms: far past a 100 ms deadline
        q.deadlineMs = 100
        let late = run(DummyBackend(), q)
        guard case .failed(let t) = late.end else { return XCTFail("\(late.end)") }
        XCTAssertEqual(t.code, .operationTimeout)
        XCTAssertLessThan(late.tokens.count, 500)
        XCTAssertEqual(late.afterEnd, 0)
    }
}

/// The HTTP backends against the local streaming server.
extension HTTPStreamTests {
    func testOpenAIBackendStreamsAndCancels() {
        var p = GenerationParams(messages: [("user", "hi")])
        p.model = "ok"
        let ok = GenerationRunner.run(HTTPBackend(host: "127.0.0.1", port: port, format: .openAISSE), p)
        XCTAssertEqual(ok.tokens, ["Hello", ",", " wörld"])
        XCTAssertEqual(ok.end, .completed(reason: nil))
        p.model = "slow"
        let cancelled = GenerationRunner.run(HTTPBackend(host: "127.0.0.1", port: port, format: .openAISSE), p, cancelAfter: 4)
        XCTAssertEqual(cancelled.end, .cancelled(reason: "stale_due_to:42"))
        XCTAssertEqual(cancelled.tokens.count, 4)
        XCTAssertEqual(cancelled.afterEnd, 0)
        p.model = "garbage"
        guard case .failed(let e) = GenerationRunner.run(HTTPBackend(host: "127.0.0.1", port: port, format: .openAISSE), p).end else { return XCTFail() }
        XCTAssertEqual(e.code, .llmServiceError)
    }
}

/// Per-endpoint breakers in front of the HTTP backend, against the local streaming server.
extension HTTPStreamTests {
    func guarded(_ breakers: EndpointBreakers, port: UInt16? = nil) -> GuardedBackend {
        GuardedBackend(HTTPBackend(host: "127.0.0.1", port: port ?? self.port, format: .openAISSE), breakers: breakers)
    }

    func request(_ model: String) -> GenerationParams {
        var p = GenerationParams(messages: [("user", "hi")])
        p.model = model
        return p
    }

    func testFailuresOpenTheEndpointsBreakerAndItFailsFastWithARetryAfter() {
        var settings = AdapterConfig.Breaker()
        settings.consecutiveFailures = 3
        settings.openMs = 60_000
        let transitions = Mutex<[String]>([])
        let breakers = EndpointBreakers(settings) { endpoint, t in transitions.withLock { $0.append("\(endpoint) \(t.from.rawValue)→\(t.to.rawValue)") } }
        let backend = guarded(breakers)
        for _ in 0..<3 {
            guard case .failed(let e) = GenerationRunner.run(backend, request("500")).end else { return XCTFail("a 500 must fail") }
            XCTAssertEqual(e.code, .llmServiceError)
            XCTAssertTrue(e.message.contains("500"), e.message)
        }
        XCTAssertEqual(breakers.state(of: backend.endpoint), .open)
        XCTAssertEqual(transitions.withLock { $0 }, ["\(backend.endpoint) closed→open"])
        // Open: even a healthy model is not asked; the refusal says when to come back.
        guard case .failed(let e) = GenerationRunner.run(backend, request("ok")).end else { return XCTFail("an open breaker must refuse") }
        XCTAssertEqual(e.code, .llmServiceError)
        XCTAssertTrue(e.message.contains("circuit breaker"), e.message)
        XCTAssertGreaterThan(e.retryAfterMs ?? 0, 0)
        // Another endpoint has its own breaker.
        XCTAssertEqual(breakers.state(of: "http://127.0.0.1:1"), .closed)
        guard case .failed(let refused) = GenerationRunner.run(guarded(breakers, port: 1), request("ok")).end else { return XCTFail("nothing listens on port 1") }
        XCTAssertTrue(refused.message.contains("cannot connect"), refused.message)
    }

    func testASlowFirstTokenCountsAsASlowCallEvenWhenTheStreamSucceeds() {
        var settings = AdapterConfig.Breaker()
        settings.slowFirstTokenMs = 500
        settings.openMs = 60_000
        let breakers = EndpointBreakers(settings)
        let backend = guarded(breakers)
        // Fast first tokens: a long stream is not a slow call.
        for _ in 0..<4 { XCTAssertEqual(GenerationRunner.run(backend, request("slow"), cancelAfter: 8).end, .cancelled(reason: "stale_due_to:42")) }
        XCTAssertEqual(breakers.state(of: backend.endpoint), .closed)
        // First tokens after 1 s: every call completes, yet the breaker opens on the slow-call rate.
        for _ in 0..<6 where breakers.state(of: backend.endpoint) == .closed {
            XCTAssertEqual(GenerationRunner.run(backend, request("late")).end, .completed(reason: nil))
        }
        XCTAssertEqual(breakers.state(of: backend.endpoint), .open)
    }
}

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
