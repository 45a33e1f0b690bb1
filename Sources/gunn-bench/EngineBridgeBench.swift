import Foundation
import Glibc
import GunnAuth
import GunnClient
import GunnCore
import GunnIO
import Synchronization

/// `gunn-bench engine-bridge`: gunn-eventlog, gunn-orchestrator (engine sim time) and
/// gunn-adapter-unity as processes, and an engine in this process that steps 100 bodies at 60
/// ticks/s over gunn.engine.v1+json. Two figures, p50/p99: engine tick → its effects committed →
/// observed by an agent; an agent's Move → engine command → the engine's answer → the result
/// observed by that agent. Beside them, a bare GunnHTTP WebSocket round trip in the same run.
enum EngineBridgeBench {
    struct Figures: Codable {
        var bodies: Int, ticksPerSecond: Int, ticksSent: Int
        var tickObservedP50Micros: Double, tickObservedP99Micros: Double, ticksObserved: Int
        var commandP50Micros: Double, commandP99Micros: Double, commands: Int
        var bareWebSocketP50Micros: Double, bareWebSocketP99Micros: Double
    }

    static func run(arguments: [String]) async throws -> Figures {
        let bodies = 100, rate = 60, commands = 200
        let loop = try EventLoop(name: "bench-engine")
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-bench-engine-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: home) }
        print("== engine-bridge: gunn-adapter-unity with an engine of \(bodies) bodies at \(rate) ticks/s (JSON subprotocol), beside a bare WebSocket round trip")
        let log = try BenchSupport.launch("gunn-eventlog", ["--home", home, "--world-id", "b", "--durability", "normal"]).process
        let orch = try BenchSupport.launch("gunn-orchestrator", ["--home", home, "--world-id", "b", "--sim-time", "engine"]).process
        let unity = try BenchSupport.launch("gunn-adapter-unity", ["--home", home, "--world-id", "b", "--listen", "127.0.0.1:0", "--sim-time", "engine"]).process
        defer { for p in [unity, orch, log] { kill(p.processIdentifier, SIGTERM); p.waitUntilExit() } }
        let url = try String(contentsOfFile: home + "/run/engine.addr", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let port = UInt16(url.split(separator: ":").last?.split(separator: "/").first ?? "") else { throw GunnError(.internalError, "no port in \(url)") }
        let (token, _) = try TokenStore(dataDir: home + "/data").issue(tenant: "bench", world: "b", agents: ["*"], rights: [.emit], ttlSeconds: 3600)

        // The agents: one commands body b1, one watches b0 (each sees only its own neighbourhood).
        let client = GunnClient(path: home + "/run/orchestrator.sock", loop: loop, name: "bench")
        defer { client.close() }
        _ = try await client.register(["agent_id": "b1", "spawn": [10, 0], "distance_limit": 2, "staleness_threshold": 1_000_000_000])
        _ = try await client.register(["agent_id": "watcher", "spawn": [0, 1], "distance_limit": 2])

        let engine = try BenchEngine(port: port, token: token, bodies: bodies)
        try engine.handshake()
        let sent = Mutex<[UInt64: Double]>([:])
        let stop = Atomic<Bool>(false)
        let ticker = Thread {
            var tick: UInt64 = 0
            let start = EventLoop.now()
            while !stop.load(ordering: .relaxed) {
                tick += 1
                let t0 = EventLoop.now()
                sent.withLock { $0[tick] = t0 }
                engine.tick(tick)
                let next = start + Double(tick) / Double(rate)
                let wait = next - EventLoop.now()
                if wait > 0 { usleep(UInt32(wait * 1e6)) }
            }
        }
        ticker.start()
        let reader = Thread { engine.readLoop() }
        reader.start()

        // Tick → observed: the watcher's view of b0 carries the tick in its y coordinate.
        let watch = Task { () -> [Double] in
            var times: [Double] = []
            var seen = Set<UInt64>()
            while times.count < 600, await client.nextObservation(for: "watcher") != nil {
                guard case .array(let pos)? = client.view(of: "watcher")?.doc["entities"]?["b0"]?["pos"], pos.count >= 2,
                      let y = pos[1].numberValue else { continue }
                let tick = UInt64((y / BenchEngine.step).rounded())
                guard tick > 30, seen.insert(tick).inserted, let t0 = sent.withLock({ $0[tick] }) else { continue }
                times.append(EventLoop.now() - t0)
            }
            return times
        }
        // Move → command → answer → observed result, one at a time.
        var commandTimes: [Double] = []
        try await Task.sleep(nanoseconds: 500_000_000)
        for k in 0..<commands {
            let t0 = EventLoop.now()
            let o = try await client.submit(Intent(kind: .move, payload: ["to": [.number(10 + Double(k % 2)), 0]], contextSeq: 0, reqID: ReqID("c\(k)"), agentID: "b1"))
            guard let seq = o.effect?.globalSeq, o.effect?.kind == "EngineCommand" else { throw GunnError(.internalError, "move \(k): \(o)") }
            while true {
                if client.view(of: "b1")?.doc["entities"]?["b1"]?["last_command"]?["seq"] == .number(Double(seq)) { break }
                guard await client.nextObservation(for: "b1") != nil else { throw GunnError(.internalError, "b1's observations ended") }
            }
            commandTimes.append(EventLoop.now() - t0)
        }
        let tickTimes = await watch.value
        stop.store(true, ordering: .relaxed)
        let ticksSent = sent.withLock { $0.count }
        engine.close()
        let bare = try HTTPBench.webSocketRoundTrips(rounds: 2000)
        let f = Figures(bodies: bodies, ticksPerSecond: rate, ticksSent: ticksSent,
                        tickObservedP50Micros: BenchSupport.percentileMicros(tickTimes, 50), tickObservedP99Micros: BenchSupport.percentileMicros(tickTimes, 99),
                        ticksObserved: tickTimes.count,
                        commandP50Micros: BenchSupport.percentileMicros(commandTimes, 50), commandP99Micros: BenchSupport.percentileMicros(commandTimes, 99),
                        commands: commandTimes.count, bareWebSocketP50Micros: bare.0, bareWebSocketP99Micros: bare.1)
        print(String(format: "  tick → committed → observed: p50 %7.0f µs p99 %7.0f µs (%d ticks of %d bodies; %d sent)",
                     f.tickObservedP50Micros, f.tickObservedP99Micros, f.ticksObserved, bodies, f.ticksSent))
        print(String(format: "  intent → command → answer → result observed: p50 %7.0f µs p99 %7.0f µs (%d commands)",
                     f.commandP50Micros, f.commandP99Micros, f.commands))
        print(String(format: "  bare WebSocket round trip (GunnHTTP echo): p50 %5.0f µs p99 %5.0f µs | tick/bare p50 %.0f×, command/bare p50 %.0f×",
                     f.bareWebSocketP50Micros, f.bareWebSocketP99Micros, f.tickObservedP50Micros / max(1, f.bareWebSocketP50Micros),
                     f.commandP50Micros / max(1, f.bareWebSocketP50Micros)))
        return f
    }
}

/// A blocking WebSocket client playing a game engine: `bodies` bodies, b0…, every one moved a
/// little each tick (b0's y is the tick × `step`), commands answered `done` at once.
final class BenchEngine: @unchecked Sendable {
    // `@unchecked Sendable` is safe: the socket is written under `sendLock` only, and read by the
    // one thread that runs `readLoop`; `pending` is touched by that thread alone.
    static let step = 1e-4
    let fd: Int32
    let token: String
    let bodies: Int
    private let sendLock = Mutex<Void>(())
    private var pending: [UInt8] = []

    init(port: UInt16, token: String, bodies: Int) throws {
        fd = try RawTCP.connect(port: port)
        self.token = token
        self.bodies = bodies
    }

    func close() { Glibc.shutdown(fd, Int32(SHUT_RDWR)) }

    func send(_ text: String) {
        let payload = Array(text.utf8)
        var frame: [UInt8] = [0x81]
        if payload.count < 126 { frame.append(0x80 | UInt8(payload.count)) }
        else if payload.count < 65536 { frame += [0x80 | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)] }
        else { frame.append(0x80 | 127); for s in stride(from: 56, through: 0, by: -8) { frame.append(UInt8((payload.count >> s) & 0xFF)) } }
        let mask: [UInt8] = [7, 1, 3, 9]
        frame += mask
        frame += payload.enumerated().map { $0.element ^ mask[$0.offset & 3] }
        sendLock.withLock { _ in try? RawTCP.sendAll(fd, frame) }
    }

    /// The next text message (control frames skipped); nil when the socket ends.
    func message() -> [UInt8]? {
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            if pending.count >= 2 {
                var len = Int(pending[1] & 0x7F), off = 2
                if len == 126, pending.count >= 4 { len = Int(pending[2]) << 8 | Int(pending[3]); off = 4 }
                else if len == 127, pending.count >= 10 { len = pending[2..<10].reduce(0) { $0 << 8 | Int($1) }; off = 10 }
                else if len >= 126 { len = Int.max }
                if len != Int.max, pending.count >= off + len {
                    let opcode = pending[0] & 0x0F
                    let payload = Array(pending[off..<(off + len)])
                    pending.removeFirst(off + len)
                    if opcode == 8 { return nil }
                    if opcode >= 8 { continue }
                    return payload
                }
            }
            let n = buf.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return nil }
            pending += buf[0..<n]
        }
    }

    func handshake() throws {
        try RawTCP.sendAll(fd, Array(("GET /v1/engine HTTP/1.1\r\nHost: b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                       + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: gunn.engine.v1+json\r\n\r\n").utf8))
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            if let i = (0..<max(0, pending.count - 3)).first(where: { pending[$0] == 13 && pending[$0 + 1] == 10 && pending[$0 + 2] == 13 && pending[$0 + 3] == 10 }) {
                pending.removeFirst(i + 4)
                break
            }
            let n = buf.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { throw GunnError(.internalError, "the engine handshake failed") }
            pending += buf[0..<n]
        }
        send(#"{"hello":{"engineName":"bench","protocolMajor":1,"capabilities":["free"],"token":"\#(token)"}}"#)
        while let m = message() {
            if String(decoding: m, as: UTF8.self).hasPrefix(#"{"sync""#) { break }
        }
        var all: [String] = []
        for i in 0..<bodies { all.append(#"{"id":"b\#(i)","pos":[\#(i * 10),0]}"#) }
        send(#"{"bodies":{"bodies":[\#(all.joined(separator: ","))]}}"#)
        send(#"{"syncDone":{"bodies":\#(bodies)}}"#)
    }

    func tick(_ tick: UInt64) {
        let y = Double(tick) * Self.step
        var moved: [String] = []
        moved.reserveCapacity(bodies)
        for i in 0..<bodies { moved.append(#"{"id":"b\#(i)","pos":[\#(i * 10),\#(y)]}"#) }
        send(#"{"tick":{"tick":"\#(tick)","simTime":\#(Double(tick) / 60),"bodies":[\#(moved.joined(separator: ","))]}}"#)
    }

    /// Answers every command `done` as it arrives; heartbeats are answered too.
    func readLoop() {
        while let m = message() {
            guard let v = try? JSONParser.parse(m) else { continue }
            if let c = v["command"], let seq = c["commandSeq"]?.stringValue {
                send(#"{"commandResult":{"commandSeq":"\#(seq)","status":"done"}}"#)
            } else if let h = v["heartbeat"], h["reply"] == nil {
                send(#"{"heartbeat":{"nonce":"\#(h["nonce"]?.stringValue ?? "0")","reply":true}}"#)
            }
        }
    }
}
