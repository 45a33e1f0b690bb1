import Foundation
import Glibc
import XCTest
import GunnCore
import GunnIO
@testable import GunnHTTP

enum TestPaths {
    static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static func tempDir(_ name: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-\(name)-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }
}

/// The echo server the conformance and hostile-client tests talk to: `/` and `/echo` echo every
/// WebSocket message back as it came; `/hello` answers a small JSON body; `/upload` answers the
/// body's length and SHA-256; `/slow/:ms` answers after a delay (from another thread);
/// `/stream/:n` streams n chunks; `/events/:n` sends n server-sent events.
func makeTestRouter(maxMessage: Int = 20 << 20) -> Router {
    var r = Router()
    var options = WebSocketOptions()
    options.maxMessageBytes = maxMessage
    let echo = WebSocketEndpoint(subprotocols: ["gunn.test.v1"], options: options) { ws, _ in
        ws.onMessage = { m in ws.send(m.isText ? .text : .binary, m.bytes) }
    }
    r.webSocket("/", echo)
    r.webSocket("/echo", echo)
    r.webSocket("/origin-checked", WebSocketEndpoint(checkOrigin: { $0 == "http://allowed.example" }) { ws, _ in
        ws.onMessage = { m in ws.send(m.isText ? .text : .binary, m.bytes) }
    })
    r.get("/hello") { _ in .json(.object(JSONObject(["ok": .bool(true)]))) }
    r.get("/items/:id") { req in
        guard let id = req.param("id", as: Int.self) else { return .error(.invalidField, "id must be an integer") }
        return .json(.object(JSONObject(["id": .number(Double(id)), "q": req.query("q").map { .string($0) } ?? .null])))
    }
    r.on("POST", "/upload", respond: { req in
        .json(.object(JSONObject(["bytes": .number(Double(req.body.count)), "sha256": .string(SHA256Hex.of(req.body)),
                                  "trailers": .number(Double(req.trailers.count))])))
    })
    r.json("PUT", "/json") { _, body in (200, .object(JSONObject(["echo": body]))) }
    r.on("GET", "/slow/:ms") { req, res in
        let ms = req.param("ms", as: Int.self) ?? 100
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(ms)) { res.respond(.text("slow \(ms)")) }
    }
    r.get("/big/:n") { req in HTTPResponse(status: 200, headers: [("Content-Type", "application/octet-stream")], body: Array(repeating: 0x61, count: req.param("n", as: Int.self) ?? 0)) }
    r.on("GET", "/stream/:n") { req, res in
        let n = req.param("n", as: Int.self) ?? 3
        let s = res.stream(headers: [("Content-Type", "text/plain")])
        for i in 0..<n { s.write("chunk \(i)\n") }
        s.finish()
    }
    r.on("GET", "/events/:n") { req, res in
        let n = req.param("n", as: Int.self) ?? 3
        let sse = res.eventStream()
        for i in 0..<n { sse.send(data: "{\"i\":\(i)}", event: "tick", id: String(i)) }
        sse.finish()
    }
    return r
}

import GunnCrypto
enum SHA256Hex { static func of(_ b: [UInt8]) -> String { SHA256.hash(b).hex } }

/// A blocking TCP client with a receive timeout, for speaking raw bytes to the server.
final class RawClient {
    let fd: Int32
    init(port: UInt16, timeout: Double = 10) throws {
        guard case .success(let addrs) = Sys.resolveStream(host: "127.0.0.1", port: port), let a = addrs.first else { throw HTTPServerError("resolve") }
        fd = try Sys.socket(for: a)
        try Sys.setNonBlocking(fd, false)
        _ = try Sys.connect(fd, to: a)
        try Sys.setIOTimeout(fd, seconds: timeout)
    }
    deinit { Sys.close(fd) }

    func send(_ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            guard let n = try bytes.withUnsafeBytes({ (b) throws(Errno) -> Int? in try Sys.write(fd, UnsafeRawBufferPointer(rebasing: b[off...])) }) else {
                throw HTTPServerError("send timed out")
            }
            off += n
        }
    }
    func send(_ text: String) throws { try send(Array(text.utf8)) }

    /// Reads until the peer closes (or the timeout passes); returns what arrived and whether it closed.
    func readToEnd(limit: Int = 64 << 20) -> (bytes: [UInt8], closed: Bool) {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while out.count < limit {
            let r = buf.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
            if r > 0 { out += buf[0..<r]; continue }
            return (out, r == 0 || (r < 0 && errno == ECONNRESET))
        }
        return (out, false)
    }

    /// Reads until `bytes` holds `count` bytes or the stream ends.
    func read(atLeast count: Int, into out: inout [UInt8]) -> Bool {
        var buf = [UInt8](repeating: 0, count: 65536)
        while out.count < count {
            let r = buf.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
            if r <= 0 { return false }
            out += buf[0..<r]
        }
        return true
    }

    /// Reads one HTTP response (Content-Length or chunked body) from `pending` + the socket.
    func readResponse(_ pending: inout [UInt8], head isHead: Bool = false) -> (status: Int, headers: [String: String], body: [UInt8])? {
        var buf = [UInt8](repeating: 0, count: 65536)
        func more() -> Bool {
            let r = buf.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
            if r <= 0 { return false }
            pending += buf[0..<r]
            return true
        }
        func find(_ needle: [UInt8], from: Int = 0) -> Int? {
            guard pending.count >= needle.count + from else { return nil }
            for i in from...(pending.count - needle.count) where pending[i] == needle[0] && Array(pending[i..<(i + needle.count)]) == needle { return i }
            return nil
        }
        var headEnd: Int?
        while true {
            headEnd = find([13, 10, 13, 10])
            if headEnd != nil { break }
            if !more() { return nil }
        }
        let head = String(decoding: pending[0..<headEnd!], as: UTF8.self)
        var lines = head.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ")
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else { return nil }
        var headers: [String: String] = [:]
        for l in lines { if let c = l.firstIndex(of: ":") { headers[l[..<c].lowercased()] = l[l.index(after: c)...].trimmingCharacters(in: .whitespaces) } }
        pending.removeFirst(headEnd! + 4)
        if status < 200 { return (status, headers, []) }
        if isHead || status == 204 || status == 304 { return (status, headers, []) }
        if let cl = headers["content-length"].flatMap(Int.init) {
            while pending.count < cl { if !more() { return nil } }
            let body = Array(pending[0..<cl])
            pending.removeFirst(cl)
            return (status, headers, body)
        }
        if headers["transfer-encoding"] == "chunked" {
            var body: [UInt8] = []
            while true {
                var lineEnd = find([13, 10])
                while lineEnd == nil { if !more() { return nil }; lineEnd = find([13, 10]) }
                let size = Int(String(decoding: pending[0..<lineEnd!], as: UTF8.self), radix: 16) ?? -1
                pending.removeFirst(lineEnd! + 2)
                if size < 0 { return nil }
                while pending.count < size + 2 { if !more() { return nil } }
                body += pending[0..<size]
                pending.removeFirst(size + 2)
                if size == 0 { return (status, headers, body) }
            }
        }
        return (status, headers, [])
    }
}

/// A masked client frame.
func clientFrame(_ opcode: UInt8, _ payload: [UInt8], fin: Bool = true, mask: [UInt8]? = [0x11, 0x22, 0x33, 0x44], rsv: UInt8 = 0) -> [UInt8] {
    var out: [UInt8] = [(fin ? 0x80 : 0) | rsv << 4 | opcode]
    let m: UInt8 = mask == nil ? 0 : 0x80
    if payload.count < 126 { out.append(m | UInt8(payload.count)) }
    else if payload.count <= 0xFFFF { out += [m | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)] }
    else { out.append(m | 127); for s in stride(from: 56, through: 0, by: -8) { out.append(UInt8((UInt64(payload.count) >> UInt64(s)) & 0xFF)) } }
    if let mask { out += mask; out += payload.enumerated().map { $0.element ^ mask[$0.offset & 3] } } else { out += payload }
    return out
}

let upgradeRequest = "GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

/// Runs a program to its end; its exit status and output (stdout and stderr together).
@discardableResult
func runProgram(_ path: String, _ args: [String], cwd: String? = nil, env: [String: String]? = nil, input: [UInt8]? = nil) throws -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    if let env { p.environment = ProcessInfo.processInfo.environment.merging(env) { $1 } }
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    let inPipe = Pipe()
    p.standardInput = input == nil ? FileHandle.nullDevice : inPipe
    try p.run()
    if let input { inPipe.fileHandleForWriting.write(Data(input)); try? inPipe.fileHandleForWriting.close() }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Waits (polling, with a deadline that fails the test) until `condition` holds: waiting for an
/// event the test cannot be told about directly, never a timing assertion.
func waitUntil(_ what: String, timeout: Double = 20, file: StaticString = #filePath, line: UInt = #line, _ condition: () -> Bool) {
    let end = EventLoop.now() + timeout
    while !condition() {
        if EventLoop.now() > end { XCTFail("timed out waiting for \(what)", file: file, line: line); return }
        usleep(10_000)
    }
}

/// A well-behaved client on a connection of its own: GET /hello answered 200 with its JSON.
func assertServed(_ port: UInt16, file: StaticString = #filePath, line: UInt = #line) {
    do {
        let c = try RawClient(port: port)
        try c.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        var pending: [UInt8] = []
        let r = c.readResponse(&pending)
        XCTAssertEqual(r?.status, 200, "the well-behaved client was not served", file: file, line: line)
        XCTAssertEqual(r.map { String(decoding: $0.body, as: UTF8.self) }, "{\"ok\":true}", file: file, line: line)
    } catch {
        XCTFail("the well-behaved client failed: \(error)", file: file, line: line)
    }
}

/// The JSON error body's code.
func errorCode(_ body: [UInt8]) -> Int? {
    guard let v = try? JSONParser.parse(body), let c = v["code"]?.numberValue else { return nil }
    return Int(c)
}

/// Hands a client and bytes to a sending thread. `@unchecked Sendable` is safe: the test thread only
/// reads from the socket while the sender only writes to it, and the bytes are never mutated.
struct SendBox: @unchecked Sendable {
    let client: RawClient
    let bytes: [UInt8]
}
