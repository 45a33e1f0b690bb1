import Foundation
import Glibc
import GunnCore
import GunnIO
import GunnWire

/// `gunn-bench wire`: frame codec rates, and over a Unix socket to a second process the round trip
/// and one-way throughput of small frames, each beside a bare read/write baseline on the same
/// socket type measured in the same run.
enum WireBench {
    struct Figures: Codable {
        var frameBytes: Int
        var encodePerSecond: Double, decodePerSecond: Double, decodeMBps: Double
        var rttP50Micros: Double, rttP99Micros: Double, bareRttP50Micros: Double, bareRttP99Micros: Double
        var oneWayFramesPerSecond: Double, oneWayMBps: Double, oneWaySingleFramesPerSecond: Double, bareOneWayPerSecond: Double
    }

    static func run(arguments: [String]) async throws -> Figures {
        let frame = Frame(id: 12345, epoch: 1, .emit(JSONPayload(Array(#"{"kind":"Speak","text":"hi there"}"#.utf8))))
        let encoded = FrameCodec.encode(frame)
        let clock = ContinuousClock()
        // Codec.
        let n = 1_000_000
        var sink = 0
        let e0 = clock.now
        for i in 0..<n { var f = frame; f.id = UInt64(i); sink &+= FrameCodec.encode(f).count }
        let encodeRate = Double(n) / EngineBench.seconds(clock.now - e0)
        var stream: [UInt8] = []
        stream.reserveCapacity(encoded.count * n)
        for _ in 0..<n { stream += encoded }
        var decoder = FrameDecoder()
        let d0 = clock.now
        decoder.append(stream)
        var decoded = 0
        while let _ = try decoder.next() { decoded += 1 }
        let decodeSeconds = EngineBench.seconds(clock.now - d0)
        precondition(decoded == n && sink > 0)

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gunn-bench-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let loop = try EventLoop(name: "bench-io")

        progress("codec done")
        // Round trip, gunn.
        let rounds = 20_000
        let echoPath = dir.appendingPathComponent("echo.sock").path
        let (echo, echoIn) = try BenchSupport.launch("gunn-wire-peer", ["echo", echoPath])
        let conn = try await FramedConnection.connect(path: echoPath, loop: loop, hello: Hello(protocolMajor: 1, protocolMinor: 0, role: "bench"))
        var rtt: [Double] = []
        for i in 0..<rounds {
            let t = clock.now
            try await conn.send(frame.body!, id: UInt64(i + 1))
            _ = await conn.receive()
            if i >= 1000 { rtt.append(EngineBench.seconds(clock.now - t)) }
        }
        conn.close()
        try echoIn.fileHandleForWriting.close(); echo.waitUntilExit()

        progress("gunn round trips done")
        // Round trip, bare.
        let rawPath = dir.appendingPathComponent("raw.sock").path
        let (raw, _) = try BenchSupport.launch("gunn-wire-peer", ["raw-echo", rawPath, String(encoded.count)])
        let fd = try rawConnect(rawPath)
        var bare: [Double] = []
        var buf = [UInt8](repeating: 0, count: encoded.count)
        for i in 0..<rounds {
            let t = clock.now
            _ = encoded.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            var got = 0
            while got < encoded.count { got += buf.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, encoded.count - got) } }
            if i >= 1000 { bare.append(EngineBench.seconds(clock.now - t)) }
        }
        close(fd); raw.waitUntilExit()

        progress("bare round trips done")
        // One way, gunn: N frames, then a request whose answer says how many arrived.
        let count = 200_000
        let sinkPath = dir.appendingPathComponent("sink.sock").path
        let (sinkPeer, sinkIn) = try BenchSupport.launch("gunn-wire-peer", ["sink", sinkPath])
        var options = ConnectionOptions()
        options.maxOutboundFrames = 4096
        let sc = try await FramedConnection.connect(path: sinkPath, loop: loop, hello: Hello(protocolMajor: 1, protocolMinor: 0, role: "bench"), options: options)
        // Frame by frame (one hop onto the I/O loop per frame)...
        let single = count / 4
        let s0 = clock.now
        for _ in 0..<single { try await sc.send(frame.body!) }
        try await sc.send(.submitIntent(JSONPayload([1])), id: 1)
        _ = await sc.receive()
        let singleSeconds = EngineBench.seconds(clock.now - s0)
        // ...and in batches of 256 (one hop per batch, writes coalesced).
        let batch = [Frame.Body](repeating: frame.body!, count: 256)
        let m0 = clock.now
        for _ in 0..<(count / 256) { try await sc.send(contentsOf: batch) }
        try await sc.send(.submitIntent(JSONPayload([1])), id: 2)
        _ = await sc.receive()
        let oneWaySeconds = EngineBench.seconds(clock.now - m0)
        let batchedCount = (count / 256) * 256
        sc.close()
        try sinkIn.fileHandleForWriting.close(); sinkPeer.waitUntilExit()

        progress("gunn one-way done")
        // One way, bare.
        let rawSinkPath = dir.appendingPathComponent("rawsink.sock").path
        let (rawSink, _) = try BenchSupport.launch("gunn-wire-peer", ["raw-sink", rawSinkPath, String(encoded.count), String(count)])
        let sfd = try rawConnect(rawSinkPath)
        let b0 = clock.now
        for _ in 0..<count { _ = encoded.withUnsafeBytes { write(sfd, $0.baseAddress, $0.count) } }
        var one: UInt8 = 0
        _ = read(sfd, &one, 1)
        let bareOneWay = Double(count) / EngineBench.seconds(clock.now - b0)
        _ = write(sfd, &one, 1)
        close(sfd); rawSink.waitUntilExit()

        let f = Figures(frameBytes: encoded.count, encodePerSecond: encodeRate, decodePerSecond: Double(n) / decodeSeconds,
                        decodeMBps: Double(stream.count) / decodeSeconds / 1e6,
                        rttP50Micros: BenchSupport.percentileMicros(rtt, 50), rttP99Micros: BenchSupport.percentileMicros(rtt, 99),
                        bareRttP50Micros: BenchSupport.percentileMicros(bare, 50), bareRttP99Micros: BenchSupport.percentileMicros(bare, 99),
                        oneWayFramesPerSecond: Double(batchedCount) / oneWaySeconds, oneWayMBps: Double(batchedCount * encoded.count) / oneWaySeconds / 1e6,
                        oneWaySingleFramesPerSecond: Double(single) / singleSeconds,
                        bareOneWayPerSecond: bareOneWay)
        print("wire: frames of \(f.frameBytes) bytes (length prefix included)")
        print(String(format: "  codec: encode %.0f frames/s, decode %.0f frames/s (%.0f MB/s)", f.encodePerSecond, f.decodePerSecond, f.decodeMBps))
        print(String(format: "  round trip over a Unix socket to another process: p50 %.1f us  p99 %.1f us   bare read/write p50 %.1f us  p99 %.1f us   ratio p50 %.2fx",
                     f.rttP50Micros, f.rttP99Micros, f.bareRttP50Micros, f.bareRttP99Micros, f.rttP50Micros / f.bareRttP50Micros))
        print(String(format: "  one way, batches of 256: %.0f frames/s (%.1f MB/s)   one send() per frame: %.0f frames/s   bare write() per message %.0f /s   ratio (batched) %.2fx",
                     f.oneWayFramesPerSecond, f.oneWayMBps, f.oneWaySingleFramesPerSecond, f.bareOneWayPerSecond, f.oneWayFramesPerSecond / f.bareOneWayPerSecond))
        loop.shutdown()
        return f
    }

    static func progress(_ s: String) { FileHandle.standardError.write(Data("  [wire] \(s)\n".utf8)) }

    static func rawConnect(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in path.utf8.enumerated() { raw[i] = b } }
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard r == 0 else { throw Errno(code: errno, call: "connect") }
        return fd
    }
}
