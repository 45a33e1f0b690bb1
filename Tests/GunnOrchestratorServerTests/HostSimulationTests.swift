import Foundation
import XCTest

/// The host simulation over many seeds (500 in CI); `GUNN_HOST_SIM_SEED=n` reruns one seed alone
/// and prints what it exercised.
final class HostSimulationTests: XCTestCase {
    func testInvariantsHoldAcrossSeeds() {
        let env = ProcessInfo.processInfo.environment
        if let one = env["GUNN_HOST_SIM_SEED"], let seed = UInt64(one) {
            var sim = HostSimulation(seed: seed)
            let problems = sim.run()
            print("seed \(seed): durable \(sim.durable.count) entries; \(sim.stats.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))")
            XCTAssertEqual(problems, [], "seed \(seed)")
            return
        }
        let seeds = UInt64(env["GUNN_HOST_SIM_SEEDS"] ?? "500") ?? 500
        var totals: [String: Int] = [:]
        var entries = 0
        for seed in 1...seeds {
            var sim = HostSimulation(seed: seed)
            let problems = sim.run()
            entries += sim.durable.count
            for (k, v) in sim.stats { totals[k, default: 0] += v }
            if !problems.isEmpty {
                XCTFail("seed \(seed) broke invariants (rerun: GUNN_HOST_SIM_SEED=\(seed) swift test --filter HostSimulationTests): \(problems.prefix(5))")
                return
            }
        }
        // The faults must really happen, or the run proves nothing.
        for fault in ["orchestrator crashes", "writer outages", "writer refusals", "rollbacks", "lost acks", "duplicated acks", "client disconnects"] {
            XCTAssertGreaterThan(totals[fault] ?? 0, 0, "no seed exercised \(fault)")
        }
        XCTAssertGreaterThan(entries, Int(seeds) * 10, "the seeds committed almost nothing")
        print("host simulation: \(seeds) seeds, \(entries) durable entries; \(totals.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))")
    }
}
