import CGunnSys
import Foundation
import Glibc

/// SIGTERM/SIGINT for gunn's processes: a handler that only writes the signal number to a pipe
/// (async-signal-safe), and a thread that reads the pipe. Works whichever thread the kernel
/// delivers the signal to.
public enum TerminationSignals {
    /// Installs the handlers now (so a signal arriving before `wait` is not lost) — call early.
    public static func install() -> TerminationWaiter { TerminationWaiter() }
}

/// Signal handlers installed at creation; `wait()` returns the first termination signal.
public final class TerminationWaiter: Sendable {
    let readFD: Int32

    init() {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { fatalError("pipe failed: errno \(errno)") }
        readFD = fds[0]
        guard gunn_install_termination_pipe(fds[1]) == 0 else { fatalError("sigaction failed: errno \(errno)") }
    }

    public func wait() async -> Int32 {
        let fd = readFD
        return await withCheckedContinuation { (c: CheckedContinuation<Int32, Never>) in
            Thread.detachNewThread {
                var b: UInt8 = 0
                while true {
                    let n = read(fd, &b, 1)
                    if n == 1 { break }
                    if n < 0 && errno == EINTR { continue }
                    break
                }
                c.resume(returning: Int32(b))
            }
        }
    }
}
