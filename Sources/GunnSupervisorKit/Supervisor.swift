import Foundation
import Glibc
import GunnCore
import GunnIO
import GunnWire
import GunnTelemetry
import Synchronization

/// gunn-supervisor's logic: starts the children of a `SupervisorConfig` in dependency order (each
/// after the ones it depends on are ready), restarts what dies with backoff and an intensity
/// limit, serves `run/supervisor.sock`, and stops everything in reverse order.
public final class Supervisor: Sendable {
    public let config: SupervisorConfig
    public let home: String
    let environment: [String: String]
    let loop: EventLoop
    let state: Mutex<State>
    /// The orchestrator's durable head at the last status probe: what this control socket's
    /// Welcome carries (the supervisor holds no log of its own).
    let lastSeenHead = Atomic<UInt64>(0)
    /// The supervisor's metrics: each child's state, restarts and resident memory.
    public let telemetry: Telemetry

    /// A child's state in the table. `notAnswering` is never stored: status shows it for a child
    /// that is `ready` in the table but did not answer its handshake within `status_probe_ms` (or,
    /// without a socket, whose process is stopped, e.g. by SIGSTOP).
    public enum ChildState: String, Sendable {
        case pending, starting, ready, backoff, stopping, stopped, exited, failed
        case notAnswering = "not_answering"
    }

    struct Child: Sendable {
        var spec: SupervisorConfig.Child
        var state: ChildState = .pending
        var pid: pid_t = 0
        var startedAt: Double = 0
        var restarts = 0
        var lastExit = "none"
        var lastExitStatus: Int32 = 0
        var intensity: RestartIntensity
        var restartAt: Double = 0
        /// Set when it was killed for missing its readiness deadline: its exit says so.
        var readinessMissed = false
        /// Set by a `stop` command: not restarted until `start`.
        var held = false
        /// Set when the supervisor itself stops it (restart command, rest_for_one): its exit is
        /// not counted against the intensity.
        var expectedExit = false
    }

    struct State: Sendable {
        var children: [Child] = []
        var commands: [(action: String, name: String)] = []
        var events: [String] = []
        var shuttingDown = false
        var failure: String?
    }

    public init(config: SupervisorConfig, home: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        self.config = config
        self.home = (home as NSString).standardizingPath.hasPrefix("/") ? (home as NSString).standardizingPath
            : FileManager.default.currentDirectoryPath + "/" + home
        self.environment = environment
        loop = try EventLoop(name: "supervisor-io")
        telemetry = Telemetry(process: "supervisor", features: config.features)
        let ordered = try config.startOrder()
        state = Mutex(State(children: ordered.enumerated().map { i, spec in
            let backoff = Backoff(baseSeconds: config.backoffBaseMs / 1000, capSeconds: config.backoffCapMs / 1000,
                                  seed: config.worldSeed &+ UInt64(i))
            return Child(spec: spec, intensity: RestartIntensity(maxRestarts: config.maxRestarts, maxSeconds: config.maxSeconds,
                                                                 stableSeconds: config.stableSeconds, backoff: backoff))
        }))
        telemetry.gauge("gunn_child_up", help: "1 while the child is ready, 0 otherwise", labels: ["child"]) { [unowned self] in
            childTable().map { ([$0.name], $0.state == .ready ? 1 : 0) }
        }
        telemetry.metrics.counter("gunn_child_restarts_total", help: "Restarts of each child since the supervisor started", labels: ["child"]) { [unowned self] in
            childTable().map { ([$0.name], Double($0.restarts)) }
        }
        telemetry.gauge("gunn_child_resident_memory_bytes", help: "Resident set size of each running child", labels: ["child"]) { [unowned self] in
            childTable().filter { $0.pid != 0 }.map { ([$0.name], Double(Sys.residentBytes(pid: $0.pid))) }
        }
    }

    static func now() -> Double { Date().timeIntervalSince1970 }

    /// What happened (starts, exits, restarts), newest last; also written to stderr.
    public var events: [String] { state.withLock { $0.events } }

    func note(_ line: String) {
        let stamped = "\(ISO8601DateFormatter().string(from: Date())) \(line)"
        state.withLock { s in
            s.events.append(stamped)
            if s.events.count > 500 { s.events.removeFirst(s.events.count - 500) }
        }
        telemetry.log(.info, "supervisor", ["message": .string(line)])
    }

    func childTable() -> [(name: String, state: ChildState, pid: pid_t, restarts: Int)] {
        state.withLock { $0.children.map { (name: $0.spec.name, state: $0.state, pid: $0.pid, restarts: $0.restarts) } }
    }

    // MARK: - Running

    /// Runs until SIGTERM/SIGINT (then stops everything, exit 0) or until a child exhausts its
    /// restart intensity (then stops everything, exit 1).
    public func run(termination: TerminationWaiter) async -> Int32 {
        for d in ["run", "logs", "data"] {
            try? FileManager.default.createDirectory(atPath: home + "/" + d, withIntermediateDirectories: true)
        }
        if let other = livePID(file: "supervisor") {
            note("another supervisor (pid \(other)) is running on \(home); not starting")
            return 1
        }
        reapStrays()
        writePIDFile("supervisor", getpid())
        var control: UnixSocketServer?
        do {
            control = try await UnixSocketServer(path: home + "/run/supervisor.sock", loop: loop) { [self] _ in
                var w = Welcome()
                w.role = "supervisor"
                w.latestGlobalSeq = lastSeenHead.load(ordering: .relaxed)
                return .success(w)
            } onConnection: { [self] conn in
                Task { await self.serveControl(conn) }
            }
        } catch {
            note("cannot serve \(home)/run/supervisor.sock: \(error)")
            return 1
        }
        let signalled = Mutex(false)
        Task {
            let sig = await termination.wait()
            signalled.withLock { $0 = true }
            self.note("signal \(sig): stopping")
        }
        note("started (pid \(getpid())) on \(home) with \(config.children.count) children, strategy \(config.strategy.rawValue)")
        while true {
            if signalled.withLock({ $0 }) { break }
            if state.withLock({ $0.failure }) != nil { break }
            reap()
            runCommands()
            startDue()
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
        await stopAll()
        await control?.stop()
        unlink(home + "/run/supervisor.sock")
        unlink(home + "/run/supervisor.pid")
        if let failure = state.withLock({ $0.failure }) {
            note(failure)
            return 1
        }
        note("stopped")
        return 0
    }

    /// Starts every child that is due: pending or out of backoff, with its dependencies ready.
    func startDue() {
        let now = Self.now()
        let due = state.withLock { s -> [Int] in
            guard !s.shuttingDown else { return [] }
            let ready = Set(s.children.filter { $0.state == .ready }.map(\.spec.name))
            return s.children.indices.filter { i in
                let c = s.children[i]
                guard !c.held, c.spec.dependsOn.allSatisfy(ready.contains) else { return false }
                return c.state == .pending || (c.state == .backoff && c.restartAt <= now)
            }
        }
        for i in due { spawn(i) }
    }

    func spawn(_ i: Int) {
        let spec = state.withLock { $0.children[i].spec }
        guard let path = Spawn.resolve(spec.executable, environment: environment) else {
            childExited(i, pid: 0, description: "cannot find executable \"\(spec.executable)\"", status: 127, signalled: false)
            return
        }
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        var env = environment
        env[Supervision.supervisorPIDVariable] = "\(getpid())"
        env["GUNN_HOME"] = home
        // Every child learns the world it serves, whatever its args say: gunn's executables read
        // these when no flag is given, so the log's durable header records the real seed.
        env["GUNN_WORLD_ID"] = config.worldID
        env["GUNN_WORLD_SEED"] = "\(config.worldSeed)"
        env["GUNN_DURABILITY"] = config.durability
        env["GUNN_FEATURES"] = config.features.list
        env["GUNN_LOG_LEVEL"] = config.logLevel.rawValue
        let args = spec.args.map(substitute)
        let pid: pid_t
        do { pid = try Spawn.start(path: path, args: args, environment: env, outputFD: fds[1]) } catch {
            close(fds[0]); close(fds[1])
            childExited(i, pid: 0, description: "\(error)", status: 127, signalled: false)
            return
        }
        close(fds[1])
        LogPump(readFD: fds[0], path: home + "/logs/\(spec.name).log", maxBytes: config.logMaxBytes, keep: config.logKeep, process: spec.name).start()
        writePIDFile(spec.name, pid)
        let now = Self.now()
        state.withLock {
            $0.children[i].pid = pid
            $0.children[i].state = spec.socket == nil ? .ready : .starting
            $0.children[i].startedAt = now
            $0.children[i].expectedExit = false
            $0.children[i].readinessMissed = false
            if spec.socket == nil { $0.children[i].intensity.becameReady(at: now) }
        }
        note("\(spec.name) started (pid \(pid))")
        if let socket = spec.socket { probeReady(i, pid: pid, path: home + "/" + socket) }
    }

    /// Ready when the child's socket answers a handshake; tried until the child exits or the
    /// ready timeout passes. Then it is killed (with its process group), and the exit counts as a
    /// failed start: backoff and intensity as for any other failure.
    func probeReady(_ i: Int, pid: pid_t, path: String) {
        let deadline = Self.now() + config.readyTimeoutMs / 1000
        let hello = Hello(protocolMajor: 1, protocolMinor: 0, role: "supervisor", worldID: config.worldID, clientName: "gunn-supervisor")
        Task {
            while Self.now() < deadline {
                guard state.withLock({ $0.children[i].pid == pid && $0.children[i].state == .starting }) else { return }
                // A child that accepts but never answers must not hold an attempt past the deadline.
                var options = ConnectionOptions()
                options.handshakeTimeoutMs = max(1, (deadline - Self.now()) * 1000)
                if let c = try? await FramedConnection.connect(path: path, loop: loop, hello: hello, options: options) {
                    c.close()
                    let name = state.withLock { s -> String? in
                        guard s.children[i].pid == pid, s.children[i].state == .starting else { return nil }
                        s.children[i].state = .ready
                        s.children[i].intensity.becameReady(at: Self.now())
                        return s.children[i].spec.name
                    }
                    if let name { note("\(name) ready") }
                    return
                }
                try? await Task.sleep(nanoseconds: 20_000_000)
            }
            let name = state.withLock { s -> String? in
                guard s.children[i].pid == pid, s.children[i].state == .starting else { return nil }
                s.children[i].readinessMissed = true
                return s.children[i].spec.name
            }
            guard let name else { return }
            note("\(name) not ready within \(Int(config.readyTimeoutMs)) ms; killing it")
            kill(-pid, SIGKILL)
            kill(pid, SIGKILL)
        }
    }

    /// Collects exited children (waitpid without blocking).
    func reap() {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            guard pid > 0 else { return }
            recordExit(pid, status)
        }
    }

    /// A child's wait status, reaped: its record and the note.
    func recordExit(_ pid: pid_t, _ status: Int32) {
        guard let i = state.withLock({ s in s.children.firstIndex { $0.pid == pid } }) else { return }
        let signalled = (status & 0x7f) != 0 && (status & 0x7f) != 0x7f
        let code = signalled ? status & 0x7f : (status >> 8) & 0xff
        childExited(i, pid: pid, description: signalled ? "killed by signal \(code)" : "exit status \(code)", status: code, signalled: signalled)
    }

    func childExited(_ i: Int, pid: pid_t, description: String, status: Int32, signalled: Bool) {
        let now = Self.now()
        var message = ""
        var dependents: [Int] = []
        state.withLock { s in
            var c = s.children[i]
            let name = c.spec.name
            let description = c.readinessMissed ? "not ready within \(Int(config.readyTimeoutMs)) ms (\(description))" : description
            c.readinessMissed = false
            c.pid = 0
            c.lastExit = description
            c.lastExitStatus = signalled ? -status : status
            unlink(home + "/run/\(name).pid")
            if s.shuttingDown || c.held {
                c.intensity.plannedExit()
                c.state = .stopped
                message = "\(name) stopped (\(description))"
                s.children[i] = c
                return
            }
            let abnormal = signalled || status != 0
            let restart: Bool
            switch c.spec.restart {
            case .permanent: restart = true
            case .transient: restart = abnormal
            case .temporary: restart = false
            }
            guard restart || c.expectedExit else {
                c.state = .exited
                message = "\(name) exited (\(description)); restart policy \(c.spec.restart.rawValue): not restarted"
                s.children[i] = c
                return
            }
            var delay = 0.0
            if c.expectedExit {
                c.intensity.plannedExit()
            } else {
                switch c.intensity.unplannedExit(at: now) {
                case .restart(let seconds): delay = seconds
                case .exhausted(let reason):
                    c.state = .failed
                    s.children[i] = c
                    s.failure = "\(ErrorCode.childFailed.name): child \(name) \(reason); last: \(description)"
                    message = "\(name) exited (\(description)); restart intensity exhausted"
                    return
                }
            }
            c.restarts += 1
            c.state = .backoff
            c.restartAt = now + delay
            s.children[i] = c
            message = "\(name) exited (\(description)); restart \(c.restarts) in \(Int(delay * 1000)) ms"
            if config.strategy == .restForOne {
                let names = config.dependents(of: name)
                dependents = s.children.indices.filter { names.contains(s.children[$0].spec.name) && s.children[$0].pid != 0 }
                for d in dependents { s.children[d].expectedExit = true }
            }
        }
        note(message)
        // rest_for_one: what depends on it goes down too and comes back after it is ready again.
        for d in dependents.reversed() {
            let (pid, timeout) = state.withLock { ($0.children[d].pid, $0.children[d].spec.shutdownTimeoutMs) }
            terminate(pid, timeoutMs: timeout)
        }
    }

    /// Control commands queued by the socket: restart, stop, start.
    func runCommands() {
        let commands = state.withLock { s -> [(String, String)] in defer { s.commands = [] }; return s.commands.map { ($0.action, $0.name) } }
        for (action, name) in commands {
            guard let i = state.withLock({ s in s.children.firstIndex { $0.spec.name == name } }) else { continue }
            let pid = state.withLock { $0.children[i].pid }
            switch action {
            case "restart":
                state.withLock { $0.children[i].expectedExit = true; $0.children[i].held = false }
                if pid != 0 { terminate(pid, timeoutMs: state.withLock { $0.children[i].spec.shutdownTimeoutMs }) }
                else { state.withLock { $0.children[i].state = .pending } }
                note("\(name) restart requested")
            case "stop":
                state.withLock { $0.children[i].held = true }
                if pid != 0 { terminate(pid, timeoutMs: state.withLock { $0.children[i].spec.shutdownTimeoutMs }) }
                else { state.withLock { $0.children[i].state = .stopped } }
                note("\(name) stop requested")
            case "start":
                state.withLock { s in
                    s.children[i].held = false
                    if s.children[i].pid == 0 { s.children[i].state = .pending }
                }
                note("\(name) start requested")
            default: break
            }
        }
    }

    /// SIGTERM, then SIGKILL to its process group after `timeoutMs`; reaped by the caller's loop
    /// (or here, when it exits in time).
    func terminate(_ pid: pid_t, timeoutMs: Int) {
        guard pid > 0 else { return }
        kill(pid, SIGTERM)
        // Waits on this very pid (not on /proc, which a process can leave before it is reaped),
        // so its exit is always recorded and noted here.
        let deadline = Self.now() + Double(timeoutMs) / 1000
        var status: Int32 = 0
        while Self.now() < deadline {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { return recordExit(pid, status) }
            if r < 0 && errno != EINTR { return reap() } // not our child any more: reaped already
            usleep(5_000)
        }
        note("pid \(pid) did not stop within \(timeoutMs) ms; SIGKILL to its process group")
        kill(-pid, SIGKILL)
        kill(pid, SIGKILL)
        var r: pid_t
        repeat { r = waitpid(pid, &status, 0) } while r < 0 && errno == EINTR
        if r == pid { recordExit(pid, status) }
    }

    /// Stops every child in reverse start order (the log writer, first started, stops last).
    func stopAll() async {
        state.withLock { $0.shuttingDown = true }
        let order = state.withLock { Array($0.children.indices.reversed()) }
        for i in order {
            let (pid, spec) = state.withLock { ($0.children[i].pid, $0.children[i].spec) }
            guard pid != 0 else { continue }
            state.withLock { $0.children[i].state = .stopping }
            terminate(pid, timeoutMs: spec.shutdownTimeoutMs)
            // Anything left in its group (a grandchild) goes too.
            kill(-pid, SIGKILL)
        }
        reap()
    }

    // MARK: - Pid files and strays

    func writePIDFile(_ name: String, _ pid: pid_t) {
        let start = Spawn.startTime(of: pid) ?? 0
        try? "\(pid) \(start)\n".write(toFile: home + "/run/\(name).pid", atomically: true, encoding: .utf8)
    }

    /// The pid in `run/<name>.pid` if that very process (same start time) still runs.
    func livePID(file name: String) -> pid_t? {
        guard let text = try? String(contentsOfFile: home + "/run/\(name).pid", encoding: .utf8) else { return nil }
        let parts = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard parts.count >= 2, let pid = pid_t(parts[0]), let start = UInt64(parts[1]), pid != getpid(),
              Spawn.startTime(of: pid) == start, Spawn.state(of: pid) != "Z" else { return nil }
        return pid
    }

    /// Children a previous supervisor left running (it was killed and they outlived it): killed
    /// with their process groups, found by pid file and start time (never a reused pid).
    func reapStrays() {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: home + "/run")) ?? []
        for f in files where f.hasSuffix(".pid") && f != "supervisor.pid" {
            let name = String(f.dropLast(4))
            if let pid = livePID(file: name) {
                note("killing stray \(name) (pid \(pid)) left by a previous supervisor")
                kill(-pid, SIGKILL)
                kill(pid, SIGKILL)
                for _ in 0..<200 { guard let st = Spawn.state(of: pid), st != "Z" else { break }; usleep(5_000) }
            }
            unlink(home + "/run/" + f)
        }
    }

    func substitute(_ arg: String) -> String {
        arg.replacingOccurrences(of: "{home}", with: home)
            .replacingOccurrences(of: "{world_id}", with: config.worldID)
            .replacingOccurrences(of: "{world_seed}", with: "\(config.worldSeed)")
            .replacingOccurrences(of: "{durability}", with: config.durability)
            .replacingOccurrences(of: "{config_dir}", with: config.configDir)
    }
}
