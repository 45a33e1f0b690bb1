import Foundation
import XCTest
import GunnCore
@testable import GunnTelemetry

final class MetricsTests: XCTestCase {
    func testARegistryRendersAsThePrometheusTextFormat() throws {
        let m = Metrics(process: "orch")
        let intents = m.counter("gunn_intents_total", help: "Intents answered", labels: ["outcome", "code"])
        intents.inc(["committed", ""])
        intents.inc(["committed", ""], by: 2)
        intents.inc(["rejected", "STALE_CONTEXT"])
        m.gauge("gunn_head_seq", help: "Head").set([], 42)
        let h = m.histogram("gunn_x_seconds", help: "X", buckets: [0.1, 1])
        h.observe([], 0.05); h.observe([], 0.5); h.observe([], 0.5); h.observe([], 7)
        let text = PrometheusText.render([m.snapshot()])
        XCTAssertEqual(text, """
        # HELP gunn_head_seq Head
        # TYPE gunn_head_seq gauge
        gunn_head_seq{process="orch"} 42
        # HELP gunn_intents_total Intents answered
        # TYPE gunn_intents_total counter
        gunn_intents_total{process="orch",outcome="committed",code=""} 3
        gunn_intents_total{process="orch",outcome="rejected",code="STALE_CONTEXT"} 1
        # HELP gunn_metrics_series_folded_total Label combinations past a family's bound, counted in its _other series
        # TYPE gunn_metrics_series_folded_total counter
        gunn_metrics_series_folded_total{process="orch"} 0
        # HELP gunn_x_seconds X
        # TYPE gunn_x_seconds histogram
        gunn_x_seconds_bucket{process="orch",le="0.1"} 1
        gunn_x_seconds_bucket{process="orch",le="1"} 3
        gunn_x_seconds_bucket{process="orch",le="+Inf"} 4
        gunn_x_seconds_sum{process="orch"} 8.05
        gunn_x_seconds_count{process="orch"} 4

        """)
        try promtoolAccepts(text)
    }

    /// Label values from input (an effect kind, a route) with quotes, backslashes and newlines are
    /// escaped, and promtool reads the result.
    func testLabelValuesAreEscapedAndPromtoolReadsThem() throws {
        let m = Metrics(process: "web\"1")
        let c = m.counter("gunn_effects_total", help: "Effects\nby kind \\ all", labels: ["kind"])
        for k in ["a\"b", "back\\slash", "new\nline", "ünïcode ✓", ""] { c.inc([k]) }
        let text = PrometheusText.render([m.snapshot()])
        XCTAssertTrue(text.contains(#"gunn_effects_total{process="web\"1",kind="a\"b"} 1"#), text)
        XCTAssertTrue(text.contains(#"kind="back\\slash""#), text)
        XCTAssertTrue(text.contains(#"kind="new\nline""#), text)
        XCTAssertTrue(text.contains("# HELP gunn_effects_total Effects\\nby kind \\\\ all\n"), text)
        try promtoolAccepts(text)
    }

    /// A label fed by input cannot grow a family past its bound: the rest is folded into `_other`.
    func testAFamilyIsBoundedAndTheRestFoldsIntoOther() {
        let m = Metrics(process: "p")
        let c = m.counter("gunn_effects_total", help: "E", labels: ["kind"])
        for i in 0..<(Metrics.maxSeries + 44) { c.inc(["k\(i)"]) }
        c.inc(["k0"]) // an existing series still counts as itself
        let snap = m.snapshot()
        let fam = snap["families"]?.arrayValue?.first { $0["name"] == "gunn_effects_total" }
        let series = fam?["series"]?.arrayValue ?? []
        XCTAssertEqual(series.count, Metrics.maxSeries + 1)
        XCTAssertEqual(series.first { $0["labels"] == ["_other"] }?["value"], 44)
        XCTAssertEqual(series.first { $0["labels"] == ["k0"] }?["value"], 2)
        let folded = snap["families"]?.arrayValue?.first { $0["name"] == "gunn_metrics_series_folded_total" }
        XCTAssertEqual(folded?["series"]?.arrayValue?.first?["value"], 44)
    }

    /// Several processes' snapshots: one HELP/TYPE per family, each series with its process; a
    /// family whose type disagrees and a malformed snapshot are left out, the rest rendered.
    func testSnapshotsOfManyProcessesMergeAndBadOnesAreLeftOut() throws {
        let a = Metrics(process: "a"), b = Metrics(process: "b")
        a.counter("gunn_frames_total", help: "F").inc(by: 5)
        b.counter("gunn_frames_total", help: "F").inc(by: 7)
        a.gauge("gunn_depth", help: "D").set([], 1)
        b.counter("gunn_depth", help: "D as a counter").inc()
        let bad: [JSONValue] = [["process": "c"], "nonsense", ["process": "d", "families": [["name": "9bad", "type": "counter", "labels": [], "series": []]]],
                                ["process": "e", "families": [["name": "gunn_h", "type": "histogram", "labels": [], "help": "",
                                                               "series": [["labels": [], "buckets": [1], "counts": [1], "sum": 1, "count": 1]]]]]]
        let text = PrometheusText.render([a.snapshot(), b.snapshot()] + bad)
        XCTAssertEqual(text.components(separatedBy: "# TYPE gunn_frames_total counter").count, 2)
        XCTAssertTrue(text.contains("gunn_frames_total{process=\"a\"} 5\ngunn_frames_total{process=\"b\"} 7\n"), text)
        XCTAssertTrue(text.contains("gunn_depth{process=\"a\"} 1"), text)
        XCTAssertFalse(text.contains("gunn_depth{process=\"b\"}"), "the disagreeing type is left out")
        XCTAssertFalse(text.contains("9bad") || text.contains("gunn_h_bucket"), "malformed families are left out")
        try promtoolAccepts(text)
    }

    func testFeaturesAreParsedStrictly() throws {
        XCTAssertEqual(try Features.parse(nil), Features(["telemetry"]))
        XCTAssertEqual(try Features.parse("  "), Features(["telemetry"]))
        XCTAssertEqual(try Features.parse(" Telemetry ,telemetry"), Features(["telemetry"]))
        XCTAssertEqual(try Features.parse("tracing"), Features(["tracing"]))
        XCTAssertEqual(try Features.parse("telemetry,TRACING"), Features(["telemetry", "tracing"]))
        for bad in ["telemetry,warp", "telemetry,,", "trace"] {
            XCTAssertThrowsError(try Features.parse(bad)) { e in
                XCTAssertEqual((e as? GunnError)?.code, .configInvalid, bad)
                XCTAssertTrue((e as? GunnError)?.message.contains("known: telemetry, tracing") == true)
            }
        }
    }

    /// With telemetry off nothing is recorded; the process gauges still answer.
    func testTelemetryOffRecordsNothingButTheProcessGauges() {
        let t = Telemetry(process: "p", features: Features([]))
        let c = t.counter("gunn_things_total", help: "T")
        c.inc(); c.inc(by: 10)
        t.histogram("gunn_t_seconds", help: "T").observe([], 1)
        let text = PrometheusText.render([t.metrics.snapshot()])
        XCTAssertFalse(text.contains("gunn_things_total{"), text)
        XCTAssertFalse(text.contains("gunn_t_seconds_count{"), text)
        XCTAssertTrue(text.contains("gunn_process_resident_memory_bytes{process=\"p\"}"), text)
        XCTAssertTrue(text.contains("gunn_feature_enabled{process=\"p\",feature=\"telemetry\"} 0"), text)
        let on = Telemetry(process: "p", features: Features(["telemetry"]))
        on.counter("gunn_things_total", help: "T").inc()
        XCTAssertTrue(PrometheusText.render([on.metrics.snapshot()]).contains("gunn_things_total{process=\"p\"} 1"))
    }

    /// promtool check metrics: exit 0 (valid, lint clean).
    func promtoolAccepts(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/promtool")
        p.arguments = ["check", "metrics"]
        let input = Pipe(), err = Pipe()
        p.standardInput = input; p.standardError = err; p.standardOutput = err
        try p.run()
        input.fileHandleForWriting.write(Data(text.utf8))
        try input.fileHandleForWriting.close()
        let out = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "promtool: \(out)\n\(text)", file: file, line: line)
    }
}
