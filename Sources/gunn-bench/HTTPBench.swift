import Foundation
import Glibc
import GunnCore
import GunnIO
import GunnHTTP

/// `gunn-bench http`: GunnHTTP beside nginx, measured by wrk in the same run — requests/s and
/// latency p50/p99 for the same small JSON body on keep-alive connections — and a WebSocket echo
/// round trip beside a bare TCP echo of the same bytes.
///   --seconds S (5)  --connections C (32)  --threads T (1: wrk threads; GunnHTTP loops and nginx
///   workers are run at 1 and at 2)  --rounds N (10000 WebSocket round trips)
enum HTTPBench {
    struct WrkRow: Codable { var server: String; var workers: Int; var requestsPerSecond: Double; var p50Micros: Double; var p99Micros: Double; var errors: String }
    struct Figures: Codable {
        var wrk: [WrkRow]
        var ratioToNginx: [String: Double]
        var wsP50Micros: Double, wsP99Micros: Double, tcpP50Micros: Double, tcpP99Micros: Double
        var wsRatioP50: Double, wsRatioP99: Double
        var skipped: [String]
    }

    static let body = "{\"ok\":true}"

    static func run(arguments: [String]) async throws -> Figures {
        func value(_ name: String, _ d: Int) -> Int {
            guard let i = arguments.firstIndex(of: name), i + 1 < arguments.count else { return d }
            return Int(arguments[i + 1]) ?? d
        }
        let seconds = value("--seconds", 5), connections = value("--connections", 32), wrkThreads = value("--threads", 1)
        let rounds = value("--rounds", 10_000)
        var rows: [WrkRow] = []
        var skipped: [String] = []
        var ratios: [String: Double] = [:]
        let haveWrk = FileManager.default.isExecutableFile(atPath: "/usr/bin/wrk")
        let haveNginx = FileManager.default.isExecutableFile(atPath: "/usr/sbin/nginx")
        if !haveWrk { skipped.append("wrk (Debian wrk) is not installed: ops/setup --test") }
        if !haveNginx { skipped.append("nginx (Debian nginx-light) is not installed: ops/setup --test") }
        print("== http: wrk -t\(wrkThreads) -c\(connections) -d\(seconds)s, body \(body) (keep-alive)")
        if haveWrk {
            for workers in [1, 2] {
                var router = Router()
                router.get("/") { _ in HTTPResponse(status: 200, headers: [("Content-Type", "application/json")], body: Array(body.utf8)) }
                var config = HTTPServerConfiguration()
                config.threads = workers
                let server = try HTTPServer(configuration: config, router: router)
                let measured = Result { try wrk(port: server.port, seconds: seconds, connections: connections, threads: wrkThreads) }
                await server.stop()
                var g = try measured.get()
                g.server = "gunn"; g.workers = workers
                rows.append(g)
                if haveNginx {
                    var n = try nginx(workers: workers) { port in try wrk(port: port, seconds: seconds, connections: connections, threads: wrkThreads) }
                    n.server = "nginx"; n.workers = workers
                    rows.append(n)
                    ratios["\(workers)"] = g.requestsPerSecond / max(1, n.requestsPerSecond)
                }
            }
            print("  server  workers  requests/s   p50 µs   p99 µs  errors")
            for r in rows {
                print("  " + [r.server.padding(toLength: 6, withPad: " ", startingAt: 0), String(format: "%7d", r.workers), String(format: "%11.0f", r.requestsPerSecond),
                              String(format: "%8.0f", r.p50Micros), String(format: "%8.0f", r.p99Micros), "  " + r.errors].joined(separator: "  "))
            }
            for (w, ratio) in ratios.sorted(by: { $0.key < $1.key }) { print(String(format: "  gunn/nginx requests/s at %@ worker(s): %.2f (aim ≥ 0.50)", w, ratio)) }
        }

        // WebSocket echo round trip beside a bare TCP echo.
        let (ws50, ws99) = try webSocketRoundTrips(rounds: rounds)
        let (tcp50, tcp99) = try tcpRoundTrips(rounds: rounds)
        print(String(format: "== websocket echo, 32-byte messages, %d round trips: p50 %.1f µs, p99 %.1f µs; bare TCP echo p50 %.1f µs, p99 %.1f µs; ratio p50 %.2f, p99 %.2f (aim ≤ 2)",
                     rounds, ws50, ws99, tcp50, tcp99, ws50 / tcp50, ws99 / tcp99))
        for s in skipped { print("  skipped: \(s)") }
        return Figures(wrk: rows, ratioToNginx: ratios, wsP50Micros: ws50, wsP99Micros: ws99, tcpP50Micros: tcp50, tcpP99Micros: tcp99,
                       wsRatioP50: ws50 / tcp50, wsRatioP99: ws99 / tcp99, skipped: skipped)
    }

    static func wrk(port: UInt16, seconds: Int, connections: Int, threads: Int) throws -> WrkRow {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/wrk")
        p.arguments = ["-t\(threads)", "-c\(connections)", "-d\(seconds)s", "--latency", "http://127.0.0.1:\(port)/"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        var row = WrkRow(server: "", workers: 0, requestsPerSecond: 0, p50Micros: 0, p99Micros: 0, errors: "")
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            if f.first == "Requests/sec:", f.count > 1 { row.requestsPerSecond = Double(f[1]) ?? 0 }
            if f.first == "50%", f.count > 1 { row.p50Micros = micros(String(f[1])) }
            if f.first == "99%", f.count > 1 { row.p99Micros = micros(String(f[1])) }
            if line.contains("Socket errors") || line.contains("Non-2xx") { row.errors += line.trimmingCharacters(in: .whitespaces) + " " }
        }
        if row.requestsPerSecond == 0 { row.errors += "wrk: " + text.suffix(300) }
        return row
    }

    static func micros(_ s: String) -> Double {
        for (unit, scale) in [("us", 1.0), ("ms", 1000.0), ("s", 1e6)] where s.hasSuffix(unit) {
            return (Double(s.dropLast(unit.count)) ?? 0) * scale
        }
        return 0
    }

    /// nginx serving the same body with `return 200`, in a directory of its own, for `body`.
    static func nginx<R>(workers: Int, _ body: (UInt16) throws -> R) throws -> R {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-bench-nginx-\(getpid())").path
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir + "/logs", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A free port: bind 0, read it, close (nginx binds it a moment later).
        let (fd, port) = try Sys.listenTCP(host: "127.0.0.1", port: 0)
        Sys.close(fd)
        let conf = """
        daemon off; pid \(dir)/nginx.pid; worker_processes \(workers); error_log stderr;
        events { worker_connections 1024; }
        http {
          access_log off;
          client_body_temp_path \(dir)/body; proxy_temp_path \(dir)/proxy; fastcgi_temp_path \(dir)/fastcgi;
          uwsgi_temp_path \(dir)/uwsgi; scgi_temp_path \(dir)/scgi;
          keepalive_requests 1000000;
          server { listen 127.0.0.1:\(port); location / { default_type application/json; return 200 '\(HTTPBench.body)'; } }
        }
        """
        try conf.write(toFile: dir + "/nginx.conf", atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/nginx")
        p.arguments = ["-p", dir + "/", "-c", dir + "/nginx.conf", "-e", "stderr"]
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { p.terminate(); p.waitUntilExit() }
        // Wait until it answers.
        for _ in 0..<200 {
            if (try? RawTCP.connect(port: port)).map({ Sys.close($0); return true }) == true { break }
            usleep(20_000)
        }
        return try body(port)
    }

    static func webSocketRoundTrips(rounds: Int) throws -> (Double, Double) {
        var router = Router()
        router.webSocket("/", WebSocketEndpoint { ws, _ in ws.onMessage = { m in ws.send(m.isText ? .text : .binary, m.bytes) } })
        let server = try HTTPServer(configuration: HTTPServerConfiguration(), router: router)
        defer { let s = server; let done = DispatchSemaphore(value: 0); Task { await s.stop(); done.signal() }; done.wait() }
        let fd = try RawTCP.connect(port: server.port)
        defer { Sys.close(fd) }
        try RawTCP.sendAll(fd, Array("GET / HTTP/1.1\r\nHost: b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".utf8))
        var head: [UInt8] = []
        while !(head.count >= 4 && Array(head.suffix(4)) == [13, 10, 13, 10]) {
            var b: UInt8 = 0
            guard Glibc.recv(fd, &b, 1, 0) == 1 else { throw HTTPServerError("websocket handshake failed") }
            head.append(b)
        }
        let payload = [UInt8](repeating: 0x61, count: 32)
        let mask: [UInt8] = [1, 2, 3, 4]
        let frame: [UInt8] = [0x82, 0x80 | 32] + mask + payload.enumerated().map { $0.element ^ mask[$0.offset & 3] }
        return try RawTCP.roundTrips(fd, frame, replyBytes: 34, rounds: rounds)
    }

    /// A bare echo: one thread, blocking reads and writes of the same 34 bytes per message.
    static func tcpRoundTrips(rounds: Int) throws -> (Double, Double) {
        let (lfd, port) = try Sys.listenTCP(host: "127.0.0.1", port: 0)
        try Sys.setNonBlocking(lfd, false)
        let echo = Thread {
            let c = Glibc.accept(lfd, nil, nil)
            guard c >= 0 else { return }
            var one: Int32 = 1
            setsockopt(c, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(4))
            var buf = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = buf.withUnsafeMutableBytes { Glibc.recv(c, $0.baseAddress, $0.count, 0) }
                if n <= 0 { break }
                _ = buf.withUnsafeBytes { Glibc.send(c, $0.baseAddress, n, Int32(MSG_NOSIGNAL)) }
            }
            Glibc.close(c)
        }
        echo.start()
        defer { Sys.close(lfd) }
        let fd = try RawTCP.connect(port: port)
        defer { Sys.close(fd) }
        return try RawTCP.roundTrips(fd, [UInt8](repeating: 0x61, count: 34), replyBytes: 34, rounds: rounds)
    }
}

/// Blocking TCP for the benchmark's own clients.
enum RawTCP {
    /// Sends `message` and waits for `replyBytes` back, `rounds` times after 200 warm-up rounds;
    /// the p50 and p99 round trip in microseconds.
    static func roundTrips(_ fd: Int32, _ message: [UInt8], replyBytes: Int, rounds: Int) throws -> (Double, Double) {
        var reply = [UInt8](repeating: 0, count: replyBytes)
        var times: [Double] = []
        times.reserveCapacity(rounds)
        for i in 0..<(rounds + 200) {
            let t0 = EventLoop.now()
            try sendAll(fd, message)
            try recvExactly(fd, &reply)
            if i >= 200 { times.append(EventLoop.now() - t0) }
        }
        return (BenchSupport.percentileMicros(times, 50), BenchSupport.percentileMicros(times, 99))
    }

    static func connect(port: UInt16) throws -> Int32 {
        guard case .success(let addrs) = Sys.resolveStream(host: "127.0.0.1", port: port), let a = addrs.first else { throw HTTPServerError("resolve") }
        let fd = try Sys.socket(for: a)
        try Sys.setNonBlocking(fd, false)
        do { _ = try Sys.connect(fd, to: a) } catch { Sys.close(fd); throw error }
        try? Sys.setNoDelay(fd)
        return fd
    }
    static func sendAll(_ fd: Int32, _ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { throw HTTPServerError("send failed") }
            off += n
        }
    }
    static func recvExactly(_ fd: Int32, _ buf: inout [UInt8]) throws {
        var off = 0
        let count = buf.count
        while off < count {
            let n = buf.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress! + off, count - off, 0) }
            if n <= 0 { throw HTTPServerError("recv failed") }
            off += n
        }
    }
}
