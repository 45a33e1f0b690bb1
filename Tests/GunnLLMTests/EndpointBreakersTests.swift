import Foundation
import Synchronization
import XCTest
import GunnCore
@testable import GunnLLM

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
