import XCTest
import GunnCore
@testable import GunnSupervisorKit

final class RestartIntensityTests: XCTestCase {
    func machine(maxRestarts: Int = 5, maxSeconds: Double = 30, stableSeconds: Double = 10) -> RestartIntensity {
        RestartIntensity(maxRestarts: maxRestarts, maxSeconds: maxSeconds, stableSeconds: stableSeconds,
                         backoff: Backoff(baseSeconds: 0.1, capSeconds: 5, seed: 1))
    }

    /// The case seen with a long log: each start takes the whole 10 s readiness deadline, so the
    /// 30 s window never holds more than 3 exits; the failed starts in a row stop it after 6.
    func testSlowReadinessMissesBackOffAndExhaustAfterMaxRestartsPlusOne() {
        var m = machine()
        var now = 0.0
        var delays: [Double] = []
        var verdict: RestartIntensity.Decision?
        for _ in 0..<100 {
            now += 10 // started, never ready, killed at the deadline
            switch m.unplannedExit(at: now) {
            case .restart(let d): delays.append(d); now += d
            case let v: verdict = v
            }
            if verdict != nil { break }
        }
        XCTAssertEqual(delays.count, 5)
        XCTAssertEqual(delays.first, 0, "the first restart at once")
        XCTAssertEqual(delays.dropFirst().allSatisfy { $0 > 0 }, true, "then backoff: time spent starting is not stability")
        XCTAssertEqual(delays.dropFirst(), delays.dropFirst().sorted()[...], "growing")
        guard case .exhausted(let reason)? = verdict else { return XCTFail("\(String(describing: verdict))") }
        XCTAssertTrue(reason.contains("failed to become ready 6 times in a row"), reason)
    }

    func testACrashLoopExhaustsTheWindow() {
        var m = machine(maxRestarts: 3, maxSeconds: 60)
        var results: [RestartIntensity.Decision] = []
        for i in 0..<4 {
            m.becameReady(at: Double(i))
            results.append(m.unplannedExit(at: Double(i) + 0.05))
        }
        XCTAssertEqual(results.prefix(3).filter { if case .restart = $0 { return true } else { return false } }.count, 3)
        guard case .exhausted(let reason) = results[3] else { return XCTFail("\(results)") }
        XCTAssertTrue(reason.contains("exited 4 times within 60.0 s"), reason)
    }

    func testBecomingReadyClearsTheFailedStartsAndAStableRunResetsTheBackoff() {
        var m = machine(maxRestarts: 2, maxSeconds: 1, stableSeconds: 10)
        XCTAssertEqual(m.unplannedExit(at: 100), .restart(afterSeconds: 0))
        guard case .restart(let second) = m.unplannedExit(at: 200), second > 0 else { return XCTFail() }
        XCTAssertEqual(m.failedStarts, 2)
        m.becameReady(at: 300)
        XCTAssertEqual(m.failedStarts, 0)
        // Up for 10 s: the next restart is at once again, and only one failed start is counted after it.
        XCTAssertEqual(m.unplannedExit(at: 310), .restart(afterSeconds: 0))
        XCTAssertEqual(m.failedStarts, 0)
        guard case .restart = m.unplannedExit(at: 400) else { return XCTFail() }
        guard case .restart = m.unplannedExit(at: 500) else { return XCTFail() }
        guard case .exhausted = m.unplannedExit(at: 600) else { return XCTFail("three failed starts in a row > max_restarts 2") }
    }

    func testPlannedExitsAreNotCounted() {
        var m = machine(maxRestarts: 0, maxSeconds: 60)
        m.becameReady(at: 0)
        for _ in 0..<10 { m.plannedExit(); m.becameReady(at: 1) }
        XCTAssertEqual(m.failedStarts, 0)
        guard case .exhausted = m.unplannedExit(at: 2) else { return XCTFail("max_restarts 0: the first unplanned exit fails it") }
    }
}
