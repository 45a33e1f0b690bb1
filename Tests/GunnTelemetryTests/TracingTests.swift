import Foundation
import XCTest
import GunnCore
@testable import GunnTelemetry

final class TracingTests: XCTestCase {
    var home: String!
    override func setUpWithError() throws {
        home = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-trace-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: home) }

    /// W3C Trace Context §3.2: what parses and what is refused (then a new trace starts).
    func testTraceparentIsParsedStrictly() throws {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        let ctx = try XCTUnwrap(TraceContext.parse(good))
        XCTAssertEqual(TraceContext.hexString(ctx.traceID), "4bf92f3577b34da6a3ce929d0e0e4736")
        XCTAssertEqual(TraceContext.hexString(ctx.spanID), "00f067aa0ba902b7")
        XCTAssertTrue(ctx.sampled)
        XCTAssertEqual(ctx.header, good)
        XCTAssertEqual(TraceContext.parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")?.sampled, false)
        // A later version may carry more after the flags.
        XCTAssertNotNil(TraceContext.parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"))
        for bad in ["", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                    "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x"] {
            XCTAssertNil(TraceContext.parse(bad), bad)
        }
        let child = ctx.child()
        XCTAssertEqual(child.traceID, ctx.traceID)
        XCTAssertNotEqual(child.spanID, ctx.spanID)
    }

    /// An unsampled parent, or a new trace the ratio leaves out, gives a span that records
    /// nothing and passes `-00` on; a ratio of 1/4 records exactly one new trace in four.
    func testSamplingIsPassedOnAndTheRatioHolds() throws {
        let t = Tracer(process: "p", home: home, enabled: true, sampleRatio: 0.25)
        let unsampled = TraceContext.parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
        let quiet = try XCTUnwrap(t.start("s", parent: unsampled))
        XCTAssertFalse(quiet.recording)
        XCTAssertTrue(quiet.context.header.hasSuffix("-00"))
        t.end(quiet)
        var recorded = 0
        for _ in 0..<100 {
            let s = try XCTUnwrap(t.start("root", parent: nil, sampleNew: true))
            if s.recording { recorded += 1 } else { XCTAssertTrue(s.context.header.hasSuffix("-00")) }
            t.end(s)
        }
        XCTAssertEqual(recorded, 25)
        t.flush()
        let lines = try String(contentsOfFile: home + "/logs/traces.p.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 25, "only recorded spans are exported")
        XCTAssertEqual(t.exported, 25)
        XCTAssertNil(Tracer(process: "off", home: home, enabled: false).start("x", parent: nil), "tracing off: no span at all")
    }

    /// One exported line: a TracesData with hex ids, decimal-string times, integer enums, the
    /// parent, typed attributes and an error status.
    func testASpanIsOneOTLPJSONLine() throws {
        let t = Tracer(process: "p", home: home, enabled: true)
        let parent = TraceContext.parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        let s = try XCTUnwrap(t.start("op \"quoted\"", parent: parent, kind: .server))
        t.end(s, ["agent_id": "ann", "global_seq": 7, "ratio": 0.5, "ok": true], error: "STALE_CONTEXT: late")
        t.flush()
        let line = try String(contentsOfFile: home + "/logs/traces.p.jsonl", encoding: .utf8).trimmingCharacters(in: .newlines)
        let v = try JSONParser.parse(Array(line.utf8))
        let span = try XCTUnwrap(v["resourceSpans"]?.arrayValue?.first?["scopeSpans"]?.arrayValue?.first?["spans"]?.arrayValue?.first)
        XCTAssertEqual(v["resourceSpans"]?.arrayValue?.first?["resource"]?["attributes"]?.arrayValue?.first?["value"]?["stringValue"], "gunn-p")
        XCTAssertEqual(span["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736")
        XCTAssertEqual(span["parentSpanId"], "00f067aa0ba902b7")
        XCTAssertEqual(span["spanId"]?.stringValue?.count, 16)
        XCTAssertEqual(span["name"], "op \"quoted\"")
        XCTAssertEqual(span["kind"], 2)
        let start = try XCTUnwrap(UInt64(span["startTimeUnixNano"]?.stringValue ?? ""))
        let end = try XCTUnwrap(UInt64(span["endTimeUnixNano"]?.stringValue ?? ""))
        XCTAssertGreaterThanOrEqual(end, start)
        var attrs: [String: JSONValue] = [:]
        for a in span["attributes"]?.arrayValue ?? [] { attrs[a["key"]?.stringValue ?? ""] = a["value"] }
        XCTAssertEqual(attrs["agent_id"], ["stringValue": "ann"])
        XCTAssertEqual(attrs["global_seq"], ["intValue": "7"])
        XCTAssertEqual(attrs["ratio"], ["doubleValue": 0.5])
        XCTAssertEqual(attrs["ok"], ["boolValue": true])
        XCTAssertEqual(span["status"], ["code": 2, "message": "STALE_CONTEXT: late"])
    }
}
