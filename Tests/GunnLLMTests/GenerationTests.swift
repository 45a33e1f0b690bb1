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
