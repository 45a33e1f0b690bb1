import XCTest
import GunnClient
import GunnCore
import GunnWire

/// GunnClient's view keeping: a delta applies only with the digest the orchestrator computed.
final class HeldViewsTests: XCTestCase {
    func snapshot(_ doc: JSONValue, seq: ViewSeq, digest: String? = nil) -> ViewSnapshot {
        var v = ViewSnapshot()
        v.agentID = "a"; v.viewSeq = seq; v.view = CanonicalJSON.encode(doc); v.globalSeq = seq
        v.contextDigest = digest ?? HeldViews.digest(doc)
        return v
    }

    func delta(_ patch: JSONValue, seq: ViewSeq, digestOf doc: JSONValue) -> Observation {
        var o = Observation()
        o.agentID = "a"; o.viewSeq = seq; o.globalSeq = seq; o.patches = CanonicalJSON.encode(patch)
        o.contextDigest = HeldViews.digest(doc)
        return o
    }

    func testADeltaAppliesOnlyWithItsDigestAndAMismatchAsksForAWholeView() throws {
        var held = HeldViews()
        let v1: JSONValue = ["entities": ["a": ["pos": [0, 0]]]]
        XCTAssertEqual(held.whole(snapshot(v1, seq: 1)), .applied)
        let v2: JSONValue = ["entities": ["a": ["pos": [1, 1]]]]
        let move: JSONValue = [["op": "replace", "path": "/entities/a/pos", "value": [1, 1]]]
        XCTAssertEqual(held.delta(delta(move, seq: 2, digestOf: v2), resume: false), .applied)
        XCTAssertEqual(held.views["a"]?.doc, v2)
        // A delta whose result is not the view the orchestrator describes: refused, view kept.
        let wrong: JSONValue = [["op": "replace", "path": "/entities/a/pos", "value": [9, 9]]]
        guard case .resync = held.delta(delta(wrong, seq: 3, digestOf: v2), resume: false) else { return XCTFail("a bad digest was accepted") }
        XCTAssertEqual(held.views["a"]?.doc, v2)
        XCTAssertEqual(held.views["a"]?.seq, 2)
        // A delta that does not apply (a path the held view lacks): the same.
        let stray: JSONValue = [["op": "remove", "path": "/entities/b"]]
        guard case .resync = held.delta(delta(stray, seq: 3, digestOf: v2), resume: false) else { return XCTFail("a stray patch was accepted") }
        XCTAssertEqual(held.mismatches, 2)
        // An old delta is passed over; a whole view must carry its own digest.
        XCTAssertEqual(held.delta(delta(move, seq: 2, digestOf: v2), resume: false), .ignored)
        guard case .resync = held.whole(snapshot(v1, seq: 4, digest: "not-the-digest")) else { return XCTFail("a whole view with a wrong digest was taken") }
        XCTAssertEqual(held.views["a"]?.doc, v2)
        // The resync's whole view replaces the held one, whatever its view_seq (a restart renumbers).
        XCTAssertEqual(held.whole(snapshot(v1, seq: 1)), .applied)
        XCTAssertEqual(held.views["a"]?.doc, v1)
    }
}
