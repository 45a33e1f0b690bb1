import Foundation
import Glibc
import GunnAuth
import GunnClient
import GunnCore
import GunnIO

/// `gunn-bench web`: gunn-adapter-web beside GunnClient on orchestrator.sock, in the same run
/// against the same gunn-eventlog and gunn-orchestrator processes. For 10 and 100 agents (one
/// intent in flight each, each agent on a keep-alive connection of its own): intents/s and reply
/// p50/p99 over REST and over the socket; then one speaker at 50 events/s and every agent's
/// committed → delta time on a WebSocket stream, then (a second group, a second speaker) on
/// GunnClient's queue: `agents` observers at a time, one path at a time.
enum WebBench {
    struct Row: Codable {
        var agents: Int
        var restIntentsPerSecond: Double, restP50Micros: Double, restP99Micros: Double
        var socketIntentsPerSecond: Double, socketP50Micros: Double, socketP99Micros: Double
        var wsDeliveryP50Micros: Double, wsDeliveryP99Micros: Double
        var socketDeliveryP50Micros: Double, socketDeliveryP99Micros: Double
    }
    struct Figures: Codable { var rows: [Row] }

    static func run(arguments: [String]) async throws -> Figures {
        let loop = try EventLoop(name: "bench-web")
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-bench-web-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: base) }
        print("== web: gunn-adapter-web (REST, WebSocket) beside GunnClient on orchestrator.sock, same processes, same run")
        var rows: [Row] = []
        for agents in [10, 100] {
            let home = base + "/\(agents)"
            let log = try BenchSupport.launch("gunn-eventlog", ["--home", home, "--world-id", "b", "--durability", "normal"]).process
            let orch = try BenchSupport.launch("gunn-orchestrator", ["--home", home, "--world-id", "b"]).process
            let web = try BenchSupport.launch("gunn-adapter-web", ["--home", home, "--world-id", "b", "--listen", "127.0.0.1:0",
                                                                   "--agent-rate", "100000", "--agent-burst", "100000",
                                                                   "--tenant-rate", "1000000", "--tenant-burst", "1000000"]).process
            defer { for p in [web, orch, log] { kill(p.processIdentifier, SIGTERM); p.waitUntilExit() } }
            let url = try String(contentsOfFile: home + "/run/web.addr", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            guard let port = UInt16(url.split(separator: ":").last ?? "") else { throw GunnError(.internalError, "no port in \(url)") }
            let (token, _) = try TokenStore(dataDir: home + "/data").issue(tenant: "bench", world: "b", agents: ["*"], rights: [.observe, .act], ttlSeconds: 3600)

            // REST: each agent registers, then submits one intent at a time on its own connection.
            let perAgent = max(20, 4000 / agents)
            // Real threads (blocking sockets must not hold the cooperative pool's two threads).
            let restTimes = Mutex<[Double]>([])
            let restError = Mutex<String?>(nil)
            let restDone = DispatchGroup()
            let registered = DispatchGroup()
            let go = DispatchSemaphore(value: 0)
            for i in 0..<agents {
                restDone.enter()
                registered.enter()
                Thread {
                    defer { restDone.leave() }
                    do {
                        let c = try HTTPKeepAlive(port: port, token: token)
                        let (rs, rb) = try c.call("POST", "/v1/agents", #"{"agent_id":"w\#(i)","spawn":[\#(i * 10),0],"distance_limit":1,"staleness_threshold":1000000}"#)
                        registered.leave()
                        guard rs == 201 else { throw GunnError(.internalError, "REST registration answered \(rs): \(String(decoding: rb, as: UTF8.self))") }
                        go.wait()
                        var l: [Double] = []
                        for k in 0..<perAgent {
                            let t0 = EventLoop.now()
                            let (status, body) = try c.call("POST", "/v1/agents/w\(i)/intents", #"{"kind":"Speak","payload":{"text":"hi"},"req_id":"r\#(k)","context_seq":0}"#)
                            guard status == 200 else { throw GunnError(.internalError, "REST intent answered \(status): \(String(decoding: body, as: UTF8.self))") }
                            l.append(EventLoop.now() - t0)
                        }
                        restTimes.withLock { $0 += l }
                    } catch {
                        restError.withLock { $0 = "\(error)" }
                    }
                }.start()
            }
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in DispatchQueue.global().async { registered.wait(); c.resume() } }
            let restStart = EventLoop.now()
            for _ in 0..<agents { go.signal() }
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in DispatchQueue.global().async { restDone.wait(); c.resume() } }
            let rest = (restTimes.withLock { $0 }, EventLoop.now() - restStart)
            if let e = restError.withLock({ $0 }) { throw GunnError(.internalError, e) }
            // The socket path: the same work with GunnClient, one connection per agent.
            var clients: [GunnClient] = []
            for i in 0..<agents {
                let c = GunnClient(path: home + "/run/orchestrator.sock", loop: loop, name: "s\(i)")
                try await c.register(["agent_id": .string("s\(i)"), "spawn": [.number(Double(i * 10)), 5000], "distance_limit": 1, "staleness_threshold": 1_000_000])
                clients.append(c)
            }
            let t1 = EventLoop.now()
            let socket = try await withThrowingTaskGroup(of: [Double].self) { group in
                for (i, c) in clients.enumerated() {
                    group.addTask {
                        var l: [Double] = []
                        for k in 0..<perAgent {
                            let t0 = EventLoop.now()
                            let o = try await c.submit(Intent(kind: .speak, payload: ["text": "hi"], contextSeq: 0, reqID: ReqID("r\(k)"), agentID: AgentID("s\(i)")))
                            guard o.effect != nil else { throw GunnError(.internalError, "\(o)") }
                            l.append(EventLoop.now() - t0)
                        }
                        return l
                    }
                }
                var all: [Double] = []
                for try await l in group { all += l }
                return all
            }
            let socketSeconds = EventLoop.now() - t1

            // Delivery: a speaker at 50 events/s with `agents` observers around it, over one path
            // at a time (WebSocket streams of REST-registered agents, then GunnClient queues, each
            // group around its own speaker far from the other), committed → received.
            let events = 100
            func around(_ i: Int, _ center: Double) -> (Double, Double) {
                let a = Double(i) / Double(agents) * 2 * Double.pi
                return (center + 0.4 * cos(a), center + 0.4 * sin(a))
            }
            /// Submits `events` speeches of a new speaker at `center`, 20 ms apart, while `collect` runs.
            func speak(at center: Double, name: String, collect: @escaping @Sendable (UInt64) async throws -> [Double]) async throws -> [Double] {
                let speaker = GunnClient(path: home + "/run/orchestrator.sock", loop: loop, name: name)
                defer { speaker.close() }
                try await speaker.register(["agent_id": .string(name), "spawn": [.number(center), .number(center)], "distance_limit": 1, "staleness_threshold": 1_000_000_000])
                try await Task.sleep(nanoseconds: 300_000_000)
                let startSeq = try await speaker.head().seq
                let collecting = Task { try await collect(startSeq) }
                for k in 0..<events {
                    _ = try await speaker.submit(Intent(kind: .speak, payload: ["text": "tick"], contextSeq: 0, reqID: ReqID("e\(k)"), agentID: AgentID(name)))
                    try await Task.sleep(nanoseconds: 20_000_000)
                }
                return try await collecting.value
            }

            let wsCenter = -10_000.0
            let registrar = try HTTPKeepAlive(port: port, token: token)
            for i in 0..<agents {
                let (x, y) = around(i, wsCenter)
                let (rs, rb) = try registrar.call("POST", "/v1/agents", #"{"agent_id":"dw\#(i)","spawn":[\#(x),\#(y)],"distance_limit":1}"#)
                guard rs == 201 else { throw GunnError(.internalError, "REST registration answered \(rs): \(String(decoding: rb, as: UTF8.self))") }
            }
            let streams = try (0..<agents).map { i in try WSReader(port: port, token: token, agent: "dw\(i)") }
            let ws = try await speak(at: wsCenter, name: "speaker-ws") { startSeq in
                // One thread per stream, so each observation's time is taken as it arrives.
                let wsTimes = Mutex<[Double]>([])
                let readers = DispatchGroup()
                for s in streams {
                    s.countAfter(startSeq)
                    readers.enter()
                    Thread {
                        let t = s.collect(events: events, seconds: 30)
                        wsTimes.withLock { $0 += t }
                        readers.leave()
                    }.start()
                }
                await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in DispatchQueue.global().async { readers.wait(); c.resume() } }
                return wsTimes.withLock { $0 }
            }

            let socketCenter = -20_000.0
            var observers: [GunnClient] = []
            for i in 0..<agents {
                let (x, y) = around(i, socketCenter)
                let c = GunnClient(path: home + "/run/orchestrator.sock", loop: loop, name: "ds\(i)")
                try await c.register(["agent_id": .string("ds\(i)"), "spawn": [.number(x), .number(y)], "distance_limit": 1])
                observers.append(c)
            }
            let watched = observers
            let sock = try await speak(at: socketCenter, name: "speaker-socket") { startSeq in
                try await withThrowingTaskGroup(of: [Double].self) { group in
                    for (i, c) in watched.enumerated() {
                        group.addTask {
                            var l: [Double] = []
                            while l.count < events, let o = await c.nextObservation(for: AgentID("ds\(i)")) {
                                if o.globalSeq > startSeq && o.committedAtMicros > 0 { l.append(Date().timeIntervalSince1970 - Double(o.committedAtMicros) / 1e6) }
                            }
                            return l
                        }
                    }
                    var all: [Double] = []
                    for try await l in group { all += l }
                    return all
                }
            }
            for c in clients + observers { c.close() }
            let row = Row(agents: agents,
                          restIntentsPerSecond: Double(rest.0.count) / rest.1, restP50Micros: BenchSupport.percentileMicros(rest.0, 50), restP99Micros: BenchSupport.percentileMicros(rest.0, 99),
                          socketIntentsPerSecond: Double(socket.count) / socketSeconds, socketP50Micros: BenchSupport.percentileMicros(socket, 50), socketP99Micros: BenchSupport.percentileMicros(socket, 99),
                          wsDeliveryP50Micros: BenchSupport.percentileMicros(ws, 50), wsDeliveryP99Micros: BenchSupport.percentileMicros(ws, 99),
                          socketDeliveryP50Micros: BenchSupport.percentileMicros(sock, 50), socketDeliveryP99Micros: BenchSupport.percentileMicros(sock, 99))
            rows.append(row)
            print(String(format: "  %3d agents: REST %7.0f intents/s p50 %6.0f µs p99 %6.0f µs | socket %7.0f intents/s p50 %6.0f µs p99 %6.0f µs | REST/socket p50 %.2f (aim ≤ 2)",
                         agents, row.restIntentsPerSecond, row.restP50Micros, row.restP99Micros, row.socketIntentsPerSecond, row.socketP50Micros, row.socketP99Micros,
                         row.restP50Micros / max(1, row.socketP50Micros)))
            print(String(format: "             delivery committed→delta: WebSocket p50 %6.0f µs p99 %6.0f µs (%d deltas) | socket p50 %6.0f µs p99 %6.0f µs (%d deltas)%@",
                         row.wsDeliveryP50Micros, row.wsDeliveryP99Micros, ws.count, row.socketDeliveryP50Micros, row.socketDeliveryP99Micros, sock.count,
                         agents == 10 ? " (aim: WebSocket p99 ≤ 2000 µs)" : ""))
        }
        return Figures(rows: rows)
    }
}

/// A blocking HTTP/1.1 client on one keep-alive connection (Content-Length answers only).
final class HTTPKeepAlive {
    let fd: Int32
    let token: String
    var pending: [UInt8] = []
    init(port: UInt16, token: String) throws {
        fd = try RawTCP.connect(port: port)
        self.token = token
    }
    deinit { Sys.close(fd) }

    func call(_ method: String, _ path: String, _ body: String) throws -> (Int, [UInt8]) {
        let req = "\(method) \(path) HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer \(token)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        try RawTCP.sendAll(fd, Array(req.utf8))
        var buf = [UInt8](repeating: 0, count: 65536)
        func more() throws {
            let n = buf.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { throw GunnError(.internalError, "the adapter closed the connection") }
            pending += buf[0..<n]
        }
        var headEnd: Int?
        while headEnd == nil {
            if pending.count >= 4 { for i in 0...(pending.count - 4) where pending[i] == 13 && pending[i + 1] == 10 && pending[i + 2] == 13 && pending[i + 3] == 10 { headEnd = i; break } }
            if headEnd == nil { try more() }
        }
        let head = String(decoding: pending[0..<headEnd!], as: UTF8.self)
        let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
        var length = 0
        for line in head.components(separatedBy: "\r\n") where line.lowercased().hasPrefix("content-length:") {
            length = Int(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) ?? 0
        }
        pending.removeFirst(headEnd! + 4)
        while pending.count < length { try more() }
        let bodyBytes = Array(pending[0..<length])
        pending.removeFirst(length)
        return (status, bodyBytes)
    }
}

/// A WebSocket stream of one agent, read on a thread of its own: the committed → received time
/// of every observation after `startCounting`.
final class WSReader: @unchecked Sendable {
    // `@unchecked Sendable` is safe: `times` and `pending` are touched only inside `collect`, which
    // runs on one reading thread; the only cross-thread member is `after`, an Atomic.
    let fd: Int32
    private let after = Atomic<UInt64>(UInt64.max)
    private var times: [Double] = []
    private var pending: [UInt8] = []

    init(port: UInt16, token: String, agent: String) throws {
        fd = try RawTCP.connect(port: port)
        try RawTCP.sendAll(fd, Array("GET /v1/stream?agents=\(agent) HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer \(token)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".utf8))
        try Sys.setIOTimeout(fd, seconds: 30)
    }

    /// Counts only observations of effects after `seq` (what came before is drained, not timed).
    func countAfter(_ seq: UInt64) { after.store(seq, ordering: .releasing) }

    /// Reads until `events` observations were counted (or `seconds` pass); returns their times.
    func collect(events: Int, seconds: Double) -> [Double] {
        let deadline = EventLoop.now() + seconds
        var buf = [UInt8](repeating: 0, count: 65536)
        var headDone = false
        while times.count < events && EventLoop.now() < deadline {
            let n = buf.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            let now = Date().timeIntervalSince1970
            pending += buf[0..<n]
            if !headDone {
                guard let i = (0..<max(0, pending.count - 3)).first(where: { pending[$0] == 13 && pending[$0 + 1] == 10 && pending[$0 + 2] == 13 && pending[$0 + 3] == 10 }) else { continue }
                pending.removeFirst(i + 4)
                headDone = true
            }
            while pending.count >= 2 {
                var len = Int(pending[1] & 0x7F), off = 2
                if len == 126 { guard pending.count >= 4 else { break }; len = Int(pending[2]) << 8 | Int(pending[3]); off = 4 }
                if len == 127 { guard pending.count >= 10 else { break }; len = pending[2..<10].reduce(0) { $0 << 8 | Int($1) }; off = 10 }
                guard pending.count >= off + len else { break }
                let payload = Array(pending[off..<(off + len)])
                pending.removeFirst(off + len)
                guard let v = try? JSONParser.parse(payload), v["type"]?.stringValue == "observation",
                      let g = v["global_seq"]?.numberValue, UInt64(g) > after.load(ordering: .acquiring),
                      let c = v["committed_at_us"]?.numberValue, c > 0 else { continue }
                times.append(now - c / 1e6)
            }
        }
        Sys.close(fd)
        return times
    }
}

import Synchronization
