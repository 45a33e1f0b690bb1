import Foundation
import Glibc
import GunnCore
import GunnTelemetry

/// Starting and watching child processes: posix_spawn into a process group of its own, output
/// through a pipe into a size-rotated log file, pid files with start times for finding strays.
enum Spawn {
    struct Failure: Error, CustomStringConvertible { let description: String }

    /// Spawns `path args` with stdin from /dev/null and stdout+stderr into `outputFD`, in a new
    /// process group (pgid = its pid), with default signal dispositions and an empty mask.
    static func start(path: String, args: [String], environment: [String: String], outputFD: Int32) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, outputFD, 1)
        posix_spawn_file_actions_adddup2(&actions, outputFD, 2)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGTERM, SIGINT, SIGPIPE, SIGCHLD, SIGHUP] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setpgroup(&attr, 0)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv = ([path] + args).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attr, argv, envp)
        guard rc == 0 else { throw Failure(description: "cannot start \(path): \(String(cString: strerror(rc)))") }
        return pid
    }

    /// The executable for a child: a path with a slash as given; a bare name next to this
    /// process's own executable, then on PATH.
    static func resolve(_ executable: String, environment: [String: String]) -> String? {
        if executable.contains("/") { return access(executable, X_OK) == 0 ? executable : nil }
        var dirs: [String] = []
        if let own = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            dirs.append((own as NSString).deletingLastPathComponent)
        }
        dirs += (environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").map(String.init)
        for d in dirs {
            let p = d + "/" + executable
            if access(p, X_OK) == 0 { return p }
        }
        return nil
    }

    /// A process's start time in clock ticks since boot (/proc/PID/stat field 22), nil if it is gone.
    static func startTime(of pid: pid_t) -> UInt64? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        // Fields after the command name, which may itself contain spaces and parentheses.
        let rest = text[text.index(after: close)...].split(separator: " ")
        // rest[0] is field 3 (state); field 22 is rest[19].
        guard rest.count > 19 else { return nil }
        return UInt64(rest[19])
    }

    /// The state letter of a process (R, S, Z, ...), nil if it is gone.
    static func state(of pid: pid_t) -> Character? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        return text[text.index(after: close)...].split(separator: " ").first?.first
    }
}

/// Copies a child's output pipe into `logs/<name>.log`, rotating by size (`.1` … `.keep`).
/// Every line passes through the redactor on the way. A JSON object line keeps its fields and
/// gets the log line's `ts`, `level` and `process` where it lacks them (the LLM adapter's event
/// lines); any other line (a panic message, a library's print) is wrapped into one (`event:
/// "output"`), so the file is JSON lines throughout. A line longer than `maxLineBytes` keeps its
/// first part, cut at the last space before the bound and marked `"truncated": true`; the rest of it,
/// up to its newline, is dropped (never written in pieces, where a secret cut in two would no
/// longer be recognised).
final class LogPump: Sendable {
    let readFD: Int32
    let path: String
    let maxBytes: Int
    let keep: Int
    let process: String
    static let maxLineBytes = 16 * 1024

    init(readFD: Int32, path: String, maxBytes: Int, keep: Int, process: String) {
        self.readFD = readFD; self.path = path; self.maxBytes = maxBytes; self.keep = keep; self.process = process
    }

    /// One line of the child's output (no newline) as the line written to the file (with one).
    static func logLine(_ raw: ArraySlice<UInt8>, process: String, redactor: Redactor, truncated: Bool = false) -> [UInt8] {
        let text = String(decoding: raw, as: UTF8.self)
        if truncated {
            let line = LogLine(.info, process: process, event: "output", ["message": .string(text), "truncated": true])
            return Array((line.render(wallTime: Date().timeIntervalSince1970, redactor: redactor) + "\n").utf8)
        }
        if raw.first == UInt8(ascii: "{"), case .object(var o)? = try? JSONParser.parse(Array(raw)) {
            if o["ts"] != nil && o["level"] != nil && o["process"] != nil && o["event"] != nil { return Array((redactor.redact(text) + "\n").utf8) }
            let event = o["event"]?.stringValue ?? "output"
            let level = o["level"]?.stringValue.flatMap(LogLine.Level.init(rawValue:)) ?? .info
            for k in ["ts", "level", "process", "event"] { o[k] = nil }
            let line = LogLine(level, process: process, event: event, o)
            return Array((line.render(wallTime: Date().timeIntervalSince1970, redactor: redactor) + "\n").utf8)
        }
        let line = LogLine(.info, process: process, event: "output", ["message": .string(text)])
        return Array((line.render(wallTime: Date().timeIntervalSince1970, redactor: redactor) + "\n").utf8)
    }

    /// Runs on its own thread until the pipe's write ends are all closed (the child exited).
    func start() {
        let t = Thread { [self] in run() }
        t.name = "log " + (path as NSString).lastPathComponent
        t.start()
    }

    /// Runs on the caller's thread until the pipe ends (for tests).
    func runUntilEnd() { run() }

    private func run() {
        var fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        var size = Int(lseek(fd, 0, SEEK_END))
        var buf = [UInt8](repeating: 0, count: 16 * 1024)
        let redactor = Redactor()
        var pending: [UInt8] = []
        var ended = false
        var dropping = false // inside the rest of a line already truncated
        while !ended {
            let n = buf.withUnsafeMutableBytes { read(readFD, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { ended = true } else { pending += buf[0..<n] }
            // Whole lines (and, at the end, what is left; a line past the bound is cut).
            var out: [UInt8] = []
            var start = 0
            while start < pending.count {
                if dropping {
                    guard let nl = pending[start...].firstIndex(of: 10) else { start = pending.count; break }
                    start = nl + 1
                    dropping = false
                } else if let nl = pending[start...].firstIndex(of: 10), nl - start <= Self.maxLineBytes {
                    out += Self.logLine(pending[start..<nl], process: process, redactor: redactor)
                    start = nl + 1
                } else if pending.count - start > Self.maxLineBytes {
                    let limit = start + Self.maxLineBytes
                    let cut = pending[start..<limit].lastIndex(of: 32) ?? limit
                    out += Self.logLine(pending[start..<cut], process: process, redactor: redactor, truncated: true)
                    start = limit
                    dropping = true
                } else if ended {
                    out += Self.logLine(pending[start...], process: process, redactor: redactor)
                    start = pending.count
                } else {
                    break
                }
            }
            pending.removeFirst(start)
            var chunk = out[...]
            while !chunk.isEmpty {
                let room = maxBytes - size
                var take = chunk.count
                if take > room {
                    // Fill the file up to its limit, cutting after a newline where there is one.
                    let limit = chunk.startIndex + max(0, room)
                    if let nl = chunk[chunk.startIndex..<limit].lastIndex(of: 10) { take = nl - chunk.startIndex + 1 }
                    else { take = size == 0 ? min(chunk.count, maxBytes) : 0 }
                }
                if take > 0 {
                    writeAll(fd, chunk.prefix(take))
                    size += take
                    chunk = chunk.dropFirst(take)
                }
                if !chunk.isEmpty {
                    close(fd)
                    rotate()
                    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0o644)
                    size = 0
                }
            }
        }
        close(fd)
        close(readFD)
    }

    private func writeAll(_ fd: Int32, _ bytes: ArraySlice<UInt8>) {
        var off = 0
        bytes.withUnsafeBytes { p in
            while off < p.count {
                let w = write(fd, p.baseAddress! + off, p.count - off)
                if w < 0 && errno == EINTR { continue }
                if w <= 0 { return }
                off += w
            }
        }
    }

    private func rotate() {
        guard keep > 0 else { unlink(path); return }
        unlink("\(path).\(keep)")
        if keep > 1 {
            for i in stride(from: keep - 1, through: 1, by: -1) { rename("\(path).\(i)", "\(path).\(i + 1)") }
        }
        rename(path, "\(path).1")
    }
}
