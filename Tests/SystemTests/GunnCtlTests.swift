import Foundation
import Glibc
import XCTest
import GunnCore

/// gunnctl's arguments and deadlines against a real log writer.
final class GunnCtlTests: XCTestCase {
    var home: String!
    var log: EventLogProcessTests.LogProcess!

    override func setUpWithError() throws {
        home = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-ctl-\(UUID().uuidString.prefix(8))").path
        log = try EventLogProcessTests.LogProcess(home: home)
    }

    override func tearDownWithError() throws {
        kill(log.process.processIdentifier, SIGCONT)
        log.kill9()
        try? FileManager.default.removeItem(atPath: home)
    }

    func gunnctl(_ args: [String]) throws -> GunnHome.Ctl { try GunnHome(home).gunnctl(args) }

    /// Every numeric argument is bounded: outside, a coded refusal and the usage exit code (2),
    /// never an overflow trap — and the log writer is not sent a range it cannot hold.
    func testNumericArgumentsOutOfRangeAreRefusedWithACodeNotATrap() throws {
        let overflow = try gunnctl(["tail", "--from", "18446744073709551615", "--limit", "2"])
        XCTAssertEqual(overflow.status, 2, "\(overflow)")
        XCTAssertTrue(overflow.err.contains("CONFIG_INVALID") && overflow.err.contains("--from"), overflow.err)
        let bad: [[String]] = [
            ["tail", "--from", "-1"], ["tail", "--from", "1e3"], ["tail", "--from", "1.5"], ["tail", "--from", "99999999999999999999"],
            ["tail", "--from", "9223372036854775808"], ["tail", "--from", " 5"], ["tail", "--from", ""],
            ["tail", "--limit", "0"], ["tail", "--limit", "1000001"], ["tail", "--limit", "-2"], ["tail", "--limit", "ten"],
            ["verify", "--from", "0x10"], ["verify", "--to", "18446744073709551616"], ["replay", "--from", "nan"], ["replay", "--to", "+3"],
            ["--timeout-ms", "0", "status"], ["--timeout-ms", "600001", "status"], ["--timeout-ms", "inf", "status"],
            ["--timeout-ms", "-5", "status"],
        ]
        for args in bad {
            let r = try gunnctl(args)
            let option = args.first { $0.hasPrefix("--") } ?? ""
            XCTAssertEqual(r.status, 2, "\(args): \(r)")
            XCTAssertTrue(r.err.contains("CONFIG_INVALID") && r.err.contains(option), "\(args): \(r.err)")
        }
        // At the bounds: the largest seq a log can hold, the largest limit; nothing there, no error.
        let edge = try gunnctl(["tail", "--from", "9223372036854775807", "--limit", "1000000"])
        XCTAssertEqual(edge.status, 0, "\(edge)")
        XCTAssertEqual(edge.out, "")
        let verify = try gunnctl(["--json", "verify"])
        XCTAssertEqual(verify.status, 0, "the log writer is still serving: \(verify)")
        XCTAssertEqual(verify.json?["ok"], true)
    }

    /// A stopped log writer: every request ends at its deadline, naming what did not answer (exit 5).
    func testARequestToAStoppedProcessTimesOutNamingIt() throws {
        kill(log.process.processIdentifier, SIGSTOP)
        for args in [["tail"], ["tail", "--from", "1", "--limit", "3"], ["verify"], ["snapshot"], ["replay"]] {
            let r = try gunnctl(["--timeout-ms", "300"] + args)
            XCTAssertEqual(r.status, 5, "\(args): \(r)")
            XCTAssertTrue(r.err.contains("OPERATION_TIMEOUT") && r.err.contains("eventlog") && r.err.contains("300 ms"), "\(args): \(r.err)")
            XCTAssertEqual(r.err.split(separator: "\n").count, 1, r.err)
        }
        kill(log.process.processIdentifier, SIGCONT)
        let after = try gunnctl(["--timeout-ms", "5000", "verify"])
        XCTAssertEqual(after.status, 0, "answers again after SIGCONT: \(after)")
    }
}
