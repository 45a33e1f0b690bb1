import Foundation
import Glibc
import XCTest
@testable import GunnIO
@testable import GunnWire
import GunnCore

/// A `gunn-wire-peer` process serving a socket in a fresh directory.
final class PeerProcess {
    let process = Process()
    let stdin = Pipe()
    let path: String
    let dir: URL

    init(mode: String = "echo", heartbeatMs: Int = 1000) throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-io-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        path = dir.appendingPathComponent("peer.sock").path
        let binary = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/debug/gunn-wire-peer")
        process.executableURL = binary
        process.arguments = [mode, path, "--heartbeat-ms", String(heartbeatMs)]
        let out = Pipe()
        process.standardOutput = out
        process.standardInput = stdin
        try process.run()
        // Wait for "ready" (bounded: a peer that never gets ready fails the test, it does not hang it).
        let ready = out.fileHandleForReading.availableData
        guard String(decoding: ready, as: UTF8.self).contains("ready") else {
            throw ConnectionError(.internalError, "gunn-wire-peer did not get ready: \(String(decoding: ready, as: UTF8.self))")
        }
    }

    func stop() {
        try? stdin.fileHandleForWriting.close()
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: dir)
    }
}

/// A deliberately naive blocking client for sending hostile bytes; reads time out after 5 s so a
/// broken server fails the test instead of hanging it.
struct RawClient {
    let fd: Int32

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let r: Int32 = try Sys.withAddress(path) { Glibc.connect(fd, $0, $1) }
        guard r == 0 else { throw Errno(code: errno, call: "connect") }
    }

    func write(_ bytes: [UInt8]) { _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }

    func send(_ frame: Frame) { write(FrameCodec.encode(frame)) }

    /// Frames until the server closes (or 5 s pass without a byte).
    func readUntilClosed() -> (frames: [Frame], closed: Bool) {
        var decoder = FrameDecoder()
        var frames: [Frame] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return (frames, true) }
            if n < 0 { return (frames, false) }
            decoder.append(Array(buf[0..<n]))
            while let f = try? decoder.next() { frames.append(f) }
        }
    }

    /// Reads frames until one matches, or the connection closes.
    func readFrame(where match: (Frame) -> Bool) -> Frame? {
        var decoder = FrameDecoder()
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return nil }
            decoder.append(Array(buf[0..<n]))
            while let f = try? decoder.next() { if match(f) { return f } }
        }
    }

    func close() { Glibc.close(fd) }
}

func hello(_ name: String = "test", major: UInt32 = ProtocolVersion.major) -> Hello {
    Hello(protocolMajor: major, protocolMinor: 0, role: "agent", worldID: "w", clientName: name)
}

extension Frame {
    var errorCode: Int? { if case .error(let e)? = body { return Int(e.code) } else { return nil } }
}
