import Foundation
import XCTest
@testable import GunnIO
@testable import GunnWire
import GunnClient
import GunnCore
import GunnOrchestratorServer

/// Pipelined frames on one connection against the real processes: the orchestrator reads a
/// connection's frames without waiting for their commits, up to its in-flight bound, answers
/// them in the order they came, and a sender faster than the world waits for credit on its own
/// side (backpressure), with nothing shed, lost or done twice.
final class PipeliningTests: XCTestCase {
    typealias Proc = OrchestratorProcessTests.Proc
    var home: String!
    override func setUpWithError() throws {
        home = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-pipe-\(UUID().uuidString.prefix(8))").path
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: home) }

    func intent(_ k: Int, agent: String = "p") -> Frame.Body {
        let i = Intent(kind: .speak, payload: ["text": .string("n\(k)")], contextSeq: 0, reqID: ReqID("r\(k)"), agentID: AgentID(agent))
        return .submitIntent(JSONPayload(CanonicalJSON.encode(i.json)))
    }

    func testTenThousandPipelinedIntentsOnOneConnectionAreAnsweredInOrderUnderBackpressure() async throws {
        let bound = 64
        let log = try Proc("gunn-eventlog", ["--home", home, "--world-id", "w1"])
        defer { log.term() }
        let orch = try Proc("gunn-orchestrator", ["--home", home, "--world-id", "w1", "--max-in-flight", "\(bound)"])
        defer { orch.term() }
        let c = try await RawOrchestratorClient.connect(home: home)
        defer { c.close() }
        let reg = try await c.ask(.registerAgent(RegisterAgent(agentID: "p", json: ["agent_id": "p", "staleness_threshold": 1_000_000_000])), id: 1)
        guard case .controlResult(let ok)? = reg.body, ok.ok else { return XCTFail("registration: \(reg)") }
        let n = 10_000
        // Every request in one call: the connection's outbound queue takes what fits and the rest
        // waits for room, which comes only as the orchestrator reads (its bound, then credit).
        let frames = (0..<n).map { Frame(id: UInt64(2 + $0), intent($0)) }
        async let sent: Void = c.send(frames: frames)
        var replyIDs: [UInt64] = []
        var seqs: [UInt64] = []
        var refusals: [String] = []
        while replyIDs.count < n, let f = await c.receive() {
            guard case .intentResult(let r)? = f.body else { continue }
            replyIDs.append(f.id)
            guard r.committed, let effect = try? Effect(json: JSONParser.parse(r.effect)) else {
                refusals.append("\(f.id): \(r.error.map { "\($0.name) \($0.message)" } ?? "neither effect nor error")")
                continue
            }
            XCTAssertEqual(r.reqID, "r\(f.id - 2)", "the reply to frame \(f.id) is for another intent")
            seqs.append(effect.globalSeq)
        }
        try await sent
        XCTAssertEqual(replyIDs.count, n, "replies missing")
        XCTAssertEqual(replyIDs, (0..<n).map { UInt64(2 + $0) }, "replies out of order")
        XCTAssertEqual(refusals, [], "pipelined intents were refused")
        XCTAssertEqual(seqs, seqs.sorted(), "effects committed out of submission order")
        XCTAssertEqual(Set(seqs).count, n, "an intent was committed twice")

        // Backpressure: the orchestrator never held more than its bound of this connection's
        // frames, and did reach it; the sender was held at its own outbound bound; nothing shed.
        let ctl = try await RawOrchestratorClient.connect(home: home, role: "ctl", name: "ctl")
        defer { ctl.close() }
        guard case .statusResult(let st)? = try await ctl.ask(.status(Empty()), id: 1).body else { return XCTFail("no status") }
        let gauge = st.gauges.first { $0.name == "in_flight_per_connection" }
        XCTAssertEqual(gauge?.limit, UInt64(bound))
        XCTAssertEqual(gauge?.highWater, UInt64(bound), "the in-flight bound was not reached or was passed: \(String(describing: gauge))")
        XCTAssertEqual(gauge?.value, 1, "frames in flight after every reply besides this status request")
        let stats = await c.currentStats()
        XCTAssertEqual(stats.maxOutboundQueued, c.options.maxOutboundFrames, "the sender was never held back")
        XCTAssertEqual(stats.shed, 0)
        // Durable, each once: the writer holds the registration's entity and the 10,000 effects.
        guard case .headResult(let head)? = try await ctl.ask(.head(Empty()), id: 2).body else { return XCTFail("no head") }
        XCTAssertEqual(head.seq, seqs.max())
    }

    /// GunnClient's tickets: intents sent without awaiting each reply, outcomes taken later, in order.
    func testGunnClientTicketsPipelineIntentsAndKeepTheirOrder() async throws {
        let log = try Proc("gunn-eventlog", ["--home", home, "--world-id", "w1"])
        defer { log.term() }
        let orch = try Proc("gunn-orchestrator", ["--home", home, "--world-id", "w1"])
        defer { orch.term() }
        let client = GunnClient(path: home + "/run/orchestrator.sock", loop: EventLogProcessTests.loop, name: "tickets")
        defer { client.close() }
        try await client.register(["agent_id": "t", "staleness_threshold": 1_000_000_000])
        var tickets: [GunnClient.IntentTicket] = []
        for chunk in stride(from: 0, to: 2_000, by: 250) {
            tickets += try await client.send((chunk..<(chunk + 250)).map {
                Intent(kind: .speak, payload: ["text": .string("n\($0)")], contextSeq: 0, reqID: ReqID("r\($0)"), agentID: "t")
            })
        }
        var seqs: [UInt64] = []
        for t in tickets {
            let o = try await t.outcome()
            guard let e = o.effect else { return XCTFail("\(o)") }
            seqs.append(e.globalSeq)
        }
        XCTAssertEqual(seqs.count, 2_000)
        XCTAssertEqual(seqs, seqs.sorted())
        XCTAssertEqual(Set(seqs).count, 2_000)
        // A second send of the same req_ids executes nothing again: the same outcomes come back.
        let again = try await client.send([Intent(kind: .speak, payload: ["text": "n0"], contextSeq: 0, reqID: "r0", agentID: "t")])
        let repeated = try await again[0].outcome()
        XCTAssertEqual(repeated.effect?.globalSeq, seqs[0])
        let head = try await client.head()
        XCTAssertEqual(head.seq, seqs.last)
    }
}
