import Foundation
import XCTest
import GunnCore
@testable import GunnTelemetry

/// The redaction corpus (redaction-corpus.json): each case's secret is gone from the redacted
/// line and a marker says what was there; lines without secrets come out unchanged.
final class RedactionTests: XCTestCase {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("redaction-corpus.json")

    func testTheCorpus() throws {
        let cases = try XCTUnwrap(JSONParser.parse([UInt8](try Data(contentsOf: Self.corpus))).arrayValue)
        XCTAssertGreaterThanOrEqual(cases.count, 30)
        let r = Redactor()
        var secrets = 0, kept = 0
        for c in cases {
            let name = c["name"]?.stringValue ?? "?"
            let input = try XCTUnwrap(c["in"]?.stringValue, name)
            let out = r.redact(input)
            for key in ["secret", "secret2"] {
                guard let secret = c[key]?.stringValue else { continue }
                XCTAssertTrue(input.contains(secret), "\(name): the corpus names a secret that is not in its line")
                XCTAssertFalse(out.contains(secret), "\(name): \(out)")
                XCTAssertTrue(out.contains("[REDACTED"), "\(name): no marker in \(out)")
                secrets += 1
            }
            if let keep = c["keep"]?.stringValue {
                XCTAssertEqual(out, input, "\(name): a line without secrets changed")
                XCTAssertTrue(out.contains(keep), name)
                kept += 1
            }
            // Redacting twice changes nothing more.
            XCTAssertEqual(r.redact(out), out, name)
        }
        print("redaction corpus: \(cases.count) cases, \(secrets) secrets removed, \(kept) clean lines unchanged")
    }

    func testALogLineIsOneRedactedJSONObject() throws {
        let line = LogLine(.info, process: "gunn-adapter-web", event: "request",
                           ["agent_id": "ann", "latency_ms": 1.5, "authorization": "Bearer gunn1.abc.def123", "note": "from ann@example.com"])
            .render(wallTime: 1_796_157_005.25)
        let v = try JSONParser.parse(Array(line.utf8))
        XCTAssertEqual(v["ts"], "2026-12-01T20:30:05.250Z")
        XCTAssertEqual(v["level"], "info")
        XCTAssertEqual(v["process"], "gunn-adapter-web")
        XCTAssertEqual(v["event"], "request")
        XCTAssertEqual(v["latency_ms"], 1.5)
        XCTAssertEqual(v["authorization"], "[REDACTED]")
        XCTAssertEqual(v["note"], "from [REDACTED:email]")
        XCTAssertFalse(line.contains("\n"))
    }
}
