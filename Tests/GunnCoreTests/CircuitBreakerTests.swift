import XCTest
@testable import GunnCore

final class CircuitBreakerTests: XCTestCase {
    func config(_ change: (inout CircuitBreakerConfig) -> Void = { _ in }) -> CircuitBreakerConfig {
        var c = CircuitBreakerConfig()
        c.openJitter = 0
        change(&c)
        return c
    }

    /// Makes one call at `t` with the given result; returns the transitions it caused.
    @discardableResult
    func call(_ b: inout CircuitBreaker, _ t: Double, ok: Bool, duration: Double = 0) -> [BreakerTransition] {
        let (d, e1) = b.acquire(at: t)
        guard case .allowed(let p) = d else { XCTFail("rejected at \(t) in \(b.state)"); return e1 }
        return e1 + b.record(p, success: ok, at: t + duration)
    }

    func testConsecutiveFailuresOpenAndOpenRejectsWithRetryAfter() {
        var b = CircuitBreaker(name: "log", config: config { $0.consecutiveFailuresThreshold = 3; $0.minimumCalls = 100 })
        call(&b, 0, ok: false); call(&b, 1, ok: false)
        XCTAssertEqual(b.state, .closed)
        let t = call(&b, 2, ok: false)
        XCTAssertEqual(t.map(\.to), [.open])
        XCTAssertEqual(b.state, .open)
        let (d, _) = b.acquire(at: 2.5)
        XCTAssertEqual(d, .rejected(retryAfterMs: 500))
        XCTAssertEqual(b.rejection(retryAfterMs: 500).code, .adapterUnavailable)
    }

    func testFailureRateNeedsTheMinimumCalls() {
        var b = CircuitBreaker(name: "llm", config: config { $0.window = .count(calls: 10); $0.minimumCalls = 6; $0.failureRateThreshold = 0.5 })
        for i in 0..<5 { call(&b, Double(i), ok: i % 2 == 0) } // 2 failures of 5: below the minimum
        XCTAssertEqual(b.state, .closed)
        call(&b, 5, ok: false) // 3 of 6 = 50%
        XCTAssertEqual(b.state, .open)
    }

    func testTimeWindowForgetsOldFailures() {
        var b = CircuitBreaker(name: "t", config: config { $0.window = .time(seconds: 10); $0.minimumCalls = 4; $0.failureRateThreshold = 0.5; $0.consecutiveFailuresThreshold = 100 })
        call(&b, 0, ok: false); call(&b, 1, ok: false); call(&b, 2, ok: true)
        // 20 s later the failures are out of the window.
        call(&b, 22, ok: true); call(&b, 23, ok: true); call(&b, 24, ok: false)
        XCTAssertEqual(b.windowCounts(at: 24).calls, 3)
        XCTAssertEqual(b.state, .closed)
        call(&b, 25, ok: false) // 2 of 4
        XCTAssertEqual(b.state, .open)
    }

    func testSlowCallsOpenTheBreaker() {
        var b = CircuitBreaker(name: "s", config: config { $0.slowCallSeconds = 1; $0.slowCallRateThreshold = 0.5; $0.minimumCalls = 4 })
        for i in 0..<3 { call(&b, Double(i * 10), ok: true, duration: 2) }
        XCTAssertEqual(b.state, .closed)
        call(&b, 40, ok: true, duration: 0.1)
        XCTAssertEqual(b.state, .open, "3 slow of 4")
    }

    func testHalfOpenClosesAfterAllProbesSucceed() {
        var b = CircuitBreaker(name: "h", config: config { $0.consecutiveFailuresThreshold = 1; $0.halfOpenProbes = 2 })
        call(&b, 0, ok: false)
        XCTAssertEqual(b.state, .open)
        let (d1, e1) = b.acquire(at: 1.0)
        XCTAssertEqual(e1.map(\.to), [.halfOpen])
        let (d2, _) = b.acquire(at: 1.0)
        let (d3, _) = b.acquire(at: 1.0)
        guard case .allowed(let p1) = d1, case .allowed(let p2) = d2 else { return XCTFail() }
        guard case .rejected = d3 else { return XCTFail("only 2 probes") }
        XCTAssertTrue(b.record(p1, success: true, at: 1.1).isEmpty)
        XCTAssertEqual(b.record(p2, success: true, at: 1.2).map(\.to), [.closed])
    }

    func testFailedProbeReopensForLongerAndCloseResetsTheDuration() {
        var b = CircuitBreaker(name: "x", config: config { $0.consecutiveFailuresThreshold = 1; $0.halfOpenProbes = 1; $0.openBaseSeconds = 1; $0.openMultiplier = 2 })
        call(&b, 0, ok: false)                      // open for 1 s
        call(&b, 1, ok: false)                      // probe fails: open for 2 s
        XCTAssertEqual(b.state, .open)
        XCTAssertEqual(b.acquire(at: 2.5).0, .rejected(retryAfterMs: 500))
        call(&b, 3.01, ok: false)                    // probe fails again: 4 s
        XCTAssertEqual(b.acquire(at: 6.5).0, .rejected(retryAfterMs: 510))
        call(&b, 7.01, ok: true)                     // probe succeeds: closed
        XCTAssertEqual(b.state, .closed)
        call(&b, 8, ok: false)                       // opens again for the base second only
        XCTAssertEqual(b.acquire(at: 8.5).0, .rejected(retryAfterMs: 500))
    }

    func testProbePastItsDeadlineCountsAsFailure() {
        var b = CircuitBreaker(name: "d", config: config { $0.consecutiveFailuresThreshold = 1; $0.halfOpenProbes = 1; $0.probeDeadlineSeconds = 2 })
        call(&b, 0, ok: false)
        let (d, _) = b.acquire(at: 1.5)
        guard case .allowed = d else { return XCTFail() }
        let (later, events) = b.acquire(at: 4)
        XCTAssertEqual(events.map(\.reason), ["a probe passed its deadline"])
        guard case .rejected = later else { return XCTFail() }
    }

    func testResultsFromAnOlderGenerationAreIgnored() {
        var b = CircuitBreaker(name: "g", config: config { $0.consecutiveFailuresThreshold = 2 })
        let (d, _) = b.acquire(at: 0)
        guard case .allowed(let stale) = d else { return XCTFail() }
        call(&b, 0.1, ok: false); call(&b, 0.2, ok: false) // opens: a new generation
        XCTAssertEqual(b.state, .open)
        XCTAssertTrue(b.record(stale, success: false, at: 0.3).isEmpty)
        XCTAssertTrue(b.record(stale, success: true, at: 0.3).isEmpty)
        XCTAssertEqual(b.state, .open)
    }

    func testManualForceAndRelease() {
        var b = CircuitBreaker(name: "m", config: config())
        XCTAssertEqual(b.force(.open, at: 0).map(\.to), [.open])
        XCTAssertEqual(b.acquire(at: 1000).0, .rejected(retryAfterMs: 1000), "forced open stays open")
        XCTAssertEqual(b.release(at: 1000).map(\.to), [.closed])
        _ = b.force(.closed, at: 1001)
        for i in 0..<20 { call(&b, 1001 + Double(i), ok: false) }
        XCTAssertEqual(b.state, .closed, "forced closed ignores failures")
        XCTAssertEqual(b.transitions[.open], 1)
    }

    func testJitterIsSeededAndBounded() {
        var c = config { $0.consecutiveFailuresThreshold = 1; $0.openJitter = 0.2; $0.openBaseSeconds = 10 }
        c.openMaxSeconds = 100
        var durations: Set<UInt64> = []
        for seed in 0..<20 as Range<UInt64> {
            var a = CircuitBreaker(name: "j", config: c, seed: seed)
            var b = CircuitBreaker(name: "j", config: c, seed: seed)
            call(&a, 0, ok: false); call(&b, 0, ok: false)
            let (da, _) = a.acquire(at: 0.01), (db, _) = b.acquire(at: 0.01)
            XCTAssertEqual(da, db, "same seed, same duration")
            guard case .rejected(let ms) = da else { return XCTFail() }
            XCTAssertTrue((7_990...12_010).contains(ms), "\(ms)")
            durations.insert(ms)
        }
        XCTAssertGreaterThan(durations.count, 5)
    }
}

final class BackoffTests: XCTestCase {
    func testFirstRetryImmediateThenExponentialWithJitterAndCap() {
        var b = Backoff(baseSeconds: 0.1, multiplier: 2, capSeconds: 1, jitter: 0.1, seed: 9)
        XCTAssertEqual(b.next(), 0)
        let delays = (0..<8).map { _ in b.next() }
        let nominal = [0.1, 0.2, 0.4, 0.8, 1, 1, 1, 1]
        for (d, n) in zip(delays, nominal) { XCTAssertTrue(d >= n * 0.9 - 1e-9 && d <= min(1, n * 1.1) + 1e-9, "\(d) vs \(n)") }
        b.reset()
        XCTAssertEqual(b.next(), 0)
        var c = Backoff(baseSeconds: 0.1, multiplier: 2, capSeconds: 1, jitter: 0.1, seed: 9)
        _ = c.next()
        XCTAssertEqual(c.next(), delays[0], "seeded")
    }
}
