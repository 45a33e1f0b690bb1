import Foundation
import Glibc
import GunnIO

/// The bare baseline for gunn-bench wire: the same socket type with plain blocking read/write and
/// no framing, protocol, loop or concurrency.
enum RawBaseline {
    static func serve(mode: String, path: String, size: Int, count: Int) {
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() { raw[i] = b }
        }
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        listen(fd, 4)
        FileHandle.standardOutput.write(Data("ready\n".utf8))
        let c = accept(fd, nil, nil)
        var buf = [UInt8](repeating: 0, count: max(size, 1 << 16))
        func readExactly(_ n: Int) -> Bool {
            var got = 0
            while got < n {
                let r = buf.withUnsafeMutableBytes { read(c, $0.baseAddress! + got, n - got) }
                if r <= 0 { return false }
                got += r
            }
            return true
        }
        if mode == "raw-echo" {
            while readExactly(size) { _ = buf.withUnsafeBytes { write(c, $0.baseAddress, size) } }
        } else {
            var total = 0
            let want = size * count
            while total < want {
                let r = buf.withUnsafeMutableBytes { read(c, $0.baseAddress, min($0.count, want - total)) }
                if r <= 0 { break }
                total += r
            }
            var one: UInt8 = 1
            _ = write(c, &one, 1)
            _ = read(c, &one, 1)
        }
        close(c)
        close(fd)
        unlink(path)
    }
}
