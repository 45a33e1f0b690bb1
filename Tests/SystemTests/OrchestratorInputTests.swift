import Foundation
import Glibc
import XCTest
@testable import GunnIO
@testable import GunnWire
import GunnClient
import GunnOrchestratorServer
import GunnCore

/// Bad input at a real orchestrator process, over raw frames: every field of RegisterAgent,
/// SubmitIntent, Emit and BeginGeneration is checked and refused with its code; only the
/// connection that registered an agent may act for it; Hello is checked; Welcome carries the head.
final class OrchestratorInputTests: XCTestCase {
    typealias Proc = OrchestratorProcessTests.Proc
    var home: String!
    override func setUpWithError() throws {
        home = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-input-\(UUID().uuidString.prefix(8))").path
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: home) }

    func start() throws -> (Proc, Proc) {
        let log = try Proc("gunn-eventlog", ["--home", home, "--world-id", "w1"])
        let orch = try Proc("gunn-orchestrator", ["--home", home, "--world-id", "w1", "--world-seed", "5"])
        return (log, orch)
    }

    func connect(role: String = "agent", world: String = "w1", name: String = "raw") async throws -> FramedConnection {
        try await RawOrchestratorClient.connect(home: home, role: role, world: world, name: name)
    }


    /// The error a reply carries, in whichever documented form (Error, IntentResult, EmitResult).
    func code(_ f: Frame) -> String? {
        switch f.body {
        case .error(let e)?: return e.name
        case .intentResult(let r)?: return r.error?.name
        case .emitResult(let r)?: return r.error?.name
        default: return nil
        }
    }

    func register(_ json: String, agentID: String = "") -> Frame.Body {
        var r = RegisterAgent()
        r.agentID = agentID
        r.registration = Array(json.utf8)
        return .registerAgent(r)
    }

    func testEveryBadFieldIsRefusedWithItsCodeAndTheWorldDoesNotChange() async throws {
        let (log, orch) = try start()
        defer { orch.term(); log.term() }
        let c = try await connect()
        defer { c.close() }
        let ok = try await c.ask(register(#"{"agent_id":"a","spawn":[1,2]}"#), id: 1)
        XCTAssertNil(code(ok), "\(ok)")
        let ctl = try await connect(role: "ctl", name: "ctl")
        defer { ctl.close() }
        guard case .statusResult(let before)? = try await ctl.ask(.status(Empty()), id: 1).body else { return XCTFail("no status") }

        let intent = { (fields: String) -> Frame.Body in .submitIntent(JSONPayload(Array(fields.utf8))) }
        let emit = { (fields: String) -> Frame.Body in .emit(JSONPayload(Array(fields.utf8))) }
        let good = #""kind":"Move","payload":{"to":[3,4]},"context_seq":1,"req_id":"r1","agent_id":"a""#
        let cases: [(String, Frame.Body, String)] = [
            ("registration not JSON", register("{"), "INVALID_JSON"),
            ("registration an array", register("[]"), "INVALID_FIELD"),
            ("registration without agent_id", register(#"{"spawn":[0,0]}"#), "INVALID_AGENT_ID"),
            ("agent_id a number", register(#"{"agent_id":5}"#), "INVALID_AGENT_ID"),
            ("agent_id with a space", register(#"{"agent_id":"b c"}"#), "INVALID_AGENT_ID"),
            ("unknown registration key", register(#"{"agent_id":"b","colour":"red"}"#), "INVALID_FIELD"),
            ("distance_limit a string", register(#"{"agent_id":"b","distance_limit":"far"}"#), "INVALID_FIELD"),
            ("distance_limit negative", register(#"{"agent_id":"b","distance_limit":-1}"#), "INVALID_FIELD"),
            ("distance_limit too large", register(#"{"agent_id":"b","distance_limit":1e13}"#), "INVALID_FIELD"),
            ("hidden_fields a string", register(#"{"agent_id":"b","hidden_fields":"secret"}"#), "INVALID_FIELD"),
            ("hidden_fields with a number", register(#"{"agent_id":"b","hidden_fields":["secret",1]}"#), "INVALID_FIELD"),
            ("hidden_fields with an empty name", register(#"{"agent_id":"b","hidden_fields":[""]}"#), "INVALID_FIELD"),
            ("spawn a word", register(#"{"agent_id":"b","spawn":"here"}"#), "INVALID_FIELD"),
            ("spawn one coordinate", register(#"{"agent_id":"b","spawn":[1]}"#), "INVALID_FIELD"),
            ("spawn a string coordinate", register(#"{"agent_id":"b","spawn":[1,"2"]}"#), "INVALID_FIELD"),
            ("spawn far out", register(#"{"agent_id":"b","spawn":[1e300,0]}"#), "INVALID_FIELD"),
            ("weight zero", register(#"{"agent_id":"b","weight":0}"#), "INVALID_FIELD"),
            ("weight fractional", register(#"{"agent_id":"b","weight":1.5}"#), "INVALID_FIELD"),
            ("weight a string", register(#"{"agent_id":"b","weight":"heavy"}"#), "INVALID_FIELD"),
            ("staleness_threshold negative", register(#"{"agent_id":"b","staleness_threshold":-1}"#), "INVALID_FIELD"),
            ("staleness_threshold huge", register(#"{"agent_id":"b","staleness_threshold":1e20}"#), "INVALID_FIELD"),
            ("interrupt unknown", register(#"{"agent_id":"b","interrupt":"sometimes"}"#), "INVALID_FIELD"),
            ("debounce_ms negative", register(#"{"agent_id":"b","debounce_ms":-5}"#), "INVALID_FIELD"),
            ("tenant a number", register(#"{"agent_id":"b","tenant":7}"#), "INVALID_FIELD"),
            ("tenant empty", register(#"{"agent_id":"b","tenant":""}"#), "INVALID_FIELD"),
            ("entity sets pos", register(#"{"agent_id":"b","spawn":[0,0],"entity":{"pos":[9,9]}}"#), "INVALID_FIELD"),
            ("entity without spawn", register(#"{"agent_id":"b","entity":{"colour":"red"}}"#), "INVALID_FIELD"),
            ("max_patch_ops zero", register(#"{"agent_id":"b","max_patch_ops":0}"#), "INVALID_FIELD"),
            ("require_relationship a string", register(#"{"agent_id":"b","require_relationship":"yes"}"#), "INVALID_FIELD"),
            ("RegisterAgent.agent_id differs", register(#"{"agent_id":"b"}"#, agentID: "c"), "INVALID_FIELD"),
            ("intent not JSON", intent("{"), "INVALID_JSON"),
            ("intent kind unknown", intent(#"{"kind":"Fly","payload":{},"context_seq":1,"req_id":"r","agent_id":"a"}"#), "INVALID_INTENT"),
            ("intent without kind", intent(#"{"payload":{},"context_seq":1,"req_id":"r","agent_id":"a"}"#), "INVALID_INTENT"),
            ("context_seq negative", intent(#"{"kind":"Speak","payload":{"text":"x"},"context_seq":-1,"req_id":"r","agent_id":"a"}"#), "INVALID_INTENT"),
            ("context_seq a string", intent(#"{"kind":"Speak","payload":{"text":"x"},"context_seq":"1","req_id":"r","agent_id":"a"}"#), "INVALID_INTENT"),
            ("context_seq fractional", intent(#"{"kind":"Speak","payload":{"text":"x"},"context_seq":1.5,"req_id":"r","agent_id":"a"}"#), "INVALID_INTENT"),
            ("req_id empty", intent(#"{"kind":"Speak","payload":{"text":"x"},"context_seq":1,"req_id":"","agent_id":"a"}"#), "INVALID_INTENT"),
            ("req_id a number", intent(#"{"kind":"Speak","payload":{"text":"x"},"context_seq":1,"req_id":7,"agent_id":"a"}"#), "INVALID_INTENT"),
            ("priority a string", intent("{\(good),\"priority\":\"high\"}"), "INVALID_INTENT"),
            ("priority out of range", intent("{\(good),\"priority\":5000}"), "INVALID_INTENT"),
            ("schema_version a number", intent("{\(good),\"schema_version\":2}"), "INVALID_INTENT"),
            ("schema_version unsupported", intent("{\(good),\"schema_version\":\"9.0.0\"}"), "UNSUPPORTED_SCHEMA_VERSION"),
            ("unknown intent key", intent("{\(good),\"urgent\":true}"), "INVALID_INTENT"),
            ("payload a string", intent(#"{"kind":"Speak","payload":"hi","context_seq":1,"req_id":"r","agent_id":"a"}"#), "INVALID_INTENT"),
            ("intent without agent_id", intent(#"{"kind":"Speak","payload":{"text":"x"},"context_seq":1,"req_id":"r"}"#), "INVALID_INTENT"),
            ("intent of an unknown agent", intent(#"{"kind":"Speak","payload":{"text":"x"},"context_seq":0,"req_id":"r","agent_id":"zz"}"#), "INVALID_AGENT_ID"),
            ("draft not JSON", emit("nope"), "INVALID_JSON"),
            ("draft without kind", emit(#"{"source_id":"s","payload":{}}"#), "INVALID_FIELD"),
            ("draft source_id a number", emit(#"{"kind":"EntityUpsert","source_id":3,"payload":{}}"#), "INVALID_FIELD"),
            ("draft payload an array", emit(#"{"kind":"EntityUpsert","source_id":"s","payload":[1]}"#), "INVALID_FIELD"),
            ("draft priority huge", emit(#"{"kind":"EntityUpsert","source_id":"s","payload":{},"priority":1e9}"#), "INVALID_FIELD"),
            ("draft sim_time negative", emit(#"{"kind":"EntityUpsert","source_id":"s","payload":{},"sim_time":-1}"#), "INVALID_FIELD"),
            ("unknown draft key", emit(#"{"kind":"EntityUpsert","source_id":"s","payload":{},"when":"now"}"#), "INVALID_FIELD"),
            ("draft of an unknown kind", emit(#"{"kind":"NoSuchKind","source_id":"s","payload":{}}"#), "UNKNOWN_EFFECT_KIND"),
        ]
        XCTAssertGreaterThanOrEqual(cases.count, 40)
        for (n, (name, body, expected)) in cases.enumerated() {
            let reply = try await c.ask(body, id: UInt64(100 + n))
            XCTAssertEqual(code(reply), expected, "\(name): \(reply)")
            if case .error(let e)? = reply.body, expected != "INVALID_JSON" { XCTAssertFalse(e.message.isEmpty, name) }
        }
        var g = BeginGeneration()
        g.agentID = "a"
        let noReq = try await c.ask(.beginGeneration(g), id: 90)
        XCTAssertEqual(code(noReq), "INVALID_FIELD", "a generation without req_id")
        // Nothing changed: the same head and world digest, no agent but "a".
        guard case .statusResult(let after)? = try await ctl.ask(.status(Empty()), id: 2).body else { return XCTFail("no status") }
        XCTAssertEqual(after.headSeq, before.headSeq)
        XCTAssertEqual(after.worldDigest, before.worldDigest)
        XCTAssertEqual(after.agents.map(\.agentID), ["a"])
        // The connection still serves: a good intent commits.
        let r = try await c.ask(intent("{\(good)}"), id: 99)
        guard case .intentResult(let ir)? = r.body else { return XCTFail("\(r)") }
        XCTAssertTrue(ir.committed, "\(ir)")
    }

    func testOnlyTheRegisteringConnectionMayActForItsAgent() async throws {
        let (log, orch) = try start()
        defer { orch.term(); log.term() }
        let owner = try await connect(name: "owner")
        defer { owner.close() }
        let other = try await connect(name: "other")
        defer { other.close() }
        let first = try await owner.ask(register(#"{"agent_id":"a","spawn":[0,0]}"#), id: 1)
        XCTAssertNil(code(first))
        guard case .cancelToken? = try await owner.ask(.beginGeneration(BeginGeneration(agentID: "a", reqID: "g1")), id: 2).body else {
            return XCTFail("the owner may begin a generation")
        }
        let speak = Intent(kind: .speak, payload: ["text": "not mine"], contextSeq: 0, reqID: "x1", agentID: "a")
        var progress = GenerationProgress()
        progress.agentID = "a"; progress.reqID = "g1"; progress.tokensEmitted = 1
        var halted = Halted()
        halted.agentID = "a"; halted.reqID = "g1"
        var token = TokenChunk()
        token.agentID = "a"; token.reqID = "g1"; token.text = "x"
        var view = ViewSnapshot()
        view.agentID = "a"
        let frames: [(String, Frame.Body)] = [
            ("RegisterAgent", register(#"{"agent_id":"a","spawn":[5,5]}"#)),
            ("SubmitIntent", .submitIntent(JSONPayload(CanonicalJSON.encode(speak.json)))),
            ("BeginGeneration", .beginGeneration(BeginGeneration(agentID: "a", reqID: "g2"))),
            ("GenerationProgress", .progress(progress)),
            ("Halted", .halted(halted)),
            ("TokenChunk", .tokenChunk(token)),
            ("ViewSnapshot request", .view(view)),
        ]
        for (n, (name, body)) in frames.enumerated() {
            let reply = try await other.ask(body, id: UInt64(10 + n))
            XCTAssertEqual(code(reply), "FORBIDDEN", "\(name) from another connection: \(reply)")
        }
        // The owner's generation is still live (the other's Halted did not end it: a token is
        // relayed without a refusal) and its agent did not move (the other's registration did not
        // take it over).
        try await owner.send(.tokenChunk(token), id: 20)
        try await owner.send(.view(view), id: 21)
        var r = Frame()
        while let f = await owner.receive() {
            XCTAssertNotEqual(f.id, 20, "the owner's token was refused: \(f)")
            if f.id == 21 { r = f; break }
        }
        guard case .view(let v)? = r.body else { return XCTFail("\(r)") }
        XCTAssertEqual(try JSONParser.parse(v.view)["entities"]?["a"]?["pos"], [0, 0, 0])
        // Once the owner is gone, another connection may register the agent.
        owner.close()
        var taken = false
        for attempt in 0..<100 where !taken {
            taken = code(try await other.ask(register(#"{"agent_id":"a","spawn":[5,5]}"#), id: UInt64(30 + attempt))) == nil
            if !taken { try await Task.sleep(nanoseconds: 20_000_000) }
        }
        XCTAssertTrue(taken, "the agent could not be registered after its connection closed")
    }

    func testHelloIsCheckedAndWelcomeCarriesTheDurableHead() async throws {
        let (log, orch) = try start()
        defer { orch.term(); log.term() }
        do {
            _ = try await connect(world: "another")
            XCTFail("a Hello for another world was admitted")
        } catch let e as ConnectionError {
            XCTAssertEqual(e.code, .worldMismatch, "\(e)")
        }
        do {
            _ = try await connect(role: "wizard")
            XCTFail("a Hello with an unknown role was admitted")
        } catch let e as ConnectionError {
            XCTAssertEqual(e.code, .unknownRole, "\(e)")
        }
        let c = try await connect()
        XCTAssertEqual(c.welcome?.latestGlobalSeq, 0)
        let registered = try await c.ask(register(#"{"agent_id":"a","spawn":[0,0]}"#), id: 1)
        XCTAssertNil(code(registered))
        let move = Intent(kind: .move, payload: ["to": [1, 1]], contextSeq: 1, reqID: "m", agentID: "a")
        _ = try await c.ask(.submitIntent(JSONPayload(CanonicalJSON.encode(move.json))), id: 2)
        let entries = try await OrchestratorProcessTests.logEntries(home: home, worldID: "w1")
        XCTAssertEqual(entries.count, 2)
        let again = try await connect(name: "second")
        XCTAssertEqual(again.welcome?.latestGlobalSeq, entries.last?.globalSeq, "Welcome names the durable head")
        again.close(); c.close()
    }

    /// A known field with the wrong wire type is MALFORMED_FRAME (docs/errors.md), and the process
    /// goes on serving other connections.
    func testAKnownFieldWithTheWrongWireTypeIsAMalformedFrame() async throws {
        let (log, orch) = try start()
        defer { orch.term(); log.term() }
        // Frame{id: 7, submit_intent (field 20) as a varint instead of a message}.
        var w = ProtoWriter()
        w.uint64(1, 7)
        w.uint64(20, 1)
        XCTAssertThrowsError(try Frame(serialized: w.bytes)) { error in
            guard case .wrongWireType(.varint, _)? = error as? WireError else { return XCTFail("\(error)") }
        }
        // Over a raw socket: Hello, then the bad frame; the answer is MALFORMED_FRAME and a close.
        let fd = try Sys.socketUnix()
        defer { Glibc.close(fd) }
        XCTAssertTrue(try Sys.connect(fd, path: home + "/run/orchestrator.sock"))
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) // GunnIO's sockets are non-blocking; this test reads plainly
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let hello = Hello(protocolMajor: 1, protocolMinor: 0, role: "agent", worldID: "w1", clientName: "raw")
        var out = FrameCodec.encode(Frame(epoch: 1, .hello(hello)))
        out += [UInt8(w.bytes.count >> 24), UInt8((w.bytes.count >> 16) & 0xff), UInt8((w.bytes.count >> 8) & 0xff), UInt8(w.bytes.count & 0xff)] + w.bytes
        XCTAssertEqual(out.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }, out.count)
        var decoder = FrameDecoder()
        var names: [String] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { break } // EOF: the orchestrator closed this connection
            decoder.append(Array(buffer[0..<n]))
            while let f = try? decoder.next() {
                if case .error(let e)? = f.body { names.append(e.name) } else { names.append("frame \(f.bodyFieldNumber ?? 0)") }
            }
        }
        XCTAssertEqual(names.filter { !$0.hasPrefix("frame ") }, ["MALFORMED_FRAME"], "\(names)")
        let c = try await connect(name: "after")
        let after = try await c.ask(register(#"{"agent_id":"a"}"#), id: 1)
        XCTAssertNil(code(after))
        c.close()
    }
}

extension BeginGeneration {
    init(agentID: String, reqID: String) {
        self.init()
        self.agentID = agentID
        self.reqID = reqID
    }
}
