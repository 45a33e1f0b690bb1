import Glibc
import Foundation
import Synchronization

/// A single-threaded I/O loop over `poll(2)`: descriptors with read/write interest, timers, and
/// tasks handed in from other threads. Everything registered runs on the loop's own thread, so
/// connection state needs no locks; blocking never happens on Swift's cooperative pool.
///
/// Chosen over epoll because a gunn process holds tens of connections, where poll's per-call scan
/// costs less than epoll's extra system calls, and over Dispatch sources because one thread per
/// process keeps frame order and timer order trivially deterministic.
///
/// `@unchecked Sendable` is safe: the mutable members (`registrations`, `timers`, `nextTimerID`)
/// are read and written only on the loop thread (checked by `assertInLoop` on every entry point
/// that touches them); the only cross-thread entry, `execute`, goes through a `Mutex`-protected
/// queue and a wake-up eventfd.
public final class EventLoop: @unchecked Sendable {
    struct Registration {
        var events: Int16
        var handler: (Int16) -> Void
    }
    struct Timer { let deadline: Double; let id: UInt64; let task: () -> Void }

    private let incoming = Mutex<[@Sendable () -> Void]>([])
    private let wakeFD: Int32
    private var registrations: [Int32: Registration] = [:]
    private var timers: [Timer] = [] // kept sorted by (deadline, id)
    private var nextTimerID: UInt64 = 1
    private let running = Atomic<Bool>(true)
    /// Callers of `waitUntilStopped`, resumed when the loop thread leaves `run` (nil once it has).
    private let stopWaiters = Mutex<[CheckedContinuation<Void, Never>]?>([])
    private let loopThreadID = Mutex<pthread_t?>(nil)
    private var thread: Thread?

    public init(name: String = "gunn-io") throws(Errno) {
        wakeFD = try Sys.eventFD()
        let t = Thread { [unowned self] in self.run() }
        t.name = name
        thread = t
        t.start()
    }

    deinit { Sys.close(wakeFD) }

    /// Monotonic seconds.
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    public var inLoop: Bool { loopThreadID.withLock { $0.map { pthread_equal($0, pthread_self()) != 0 } ?? false } }

    func assertInLoop() { precondition(inLoop, "EventLoop state touched off its thread") }

    /// Runs `task` on the loop thread, soon.
    public func execute(_ task: @escaping @Sendable () -> Void) {
        incoming.withLock { $0.append(task) }
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD, &one, 8)
    }

    /// Runs `body` on the loop and returns its result to an async caller.
    public func submit<R: Sendable>(_ body: @escaping @Sendable () -> R) async -> R {
        await withCheckedContinuation { c in execute { c.resume(returning: body()) } }
    }

    public func register(_ fd: Int32, events: Int16, _ handler: @escaping (Int16) -> Void) {
        assertInLoop()
        registrations[fd] = Registration(events: events, handler: handler)
    }

    public func setEvents(_ fd: Int32, _ events: Int16) {
        assertInLoop()
        registrations[fd]?.events = events
    }

    public func deregister(_ fd: Int32) {
        assertInLoop()
        registrations[fd] = nil
    }

    @discardableResult
    public func schedule(after seconds: Double, _ task: @escaping () -> Void) -> UInt64 {
        assertInLoop()
        let id = nextTimerID
        nextTimerID += 1
        let t = Timer(deadline: EventLoop.now() + max(0, seconds), id: id, task: task)
        let i = timers.firstIndex { ($0.deadline, $0.id) > (t.deadline, t.id) } ?? timers.count
        timers.insert(t, at: i)
        return id
    }

    public func cancelTimer(_ id: UInt64) {
        assertInLoop()
        timers.removeAll { $0.id == id }
    }

    /// Stops the loop after the current iteration.
    public func shutdown() {
        running.store(false, ordering: .releasing)
        execute {}
    }

    /// Returns once the loop thread has left its loop (after `shutdown`). Never call it on the loop.
    public func waitUntilStopped() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let done = stopWaiters.withLock { w -> Bool in
                guard w != nil else { return true }
                w!.append(c)
                return false
            }
            if done { c.resume() }
        }
    }

    private func run() {
        loopThreadID.withLock { $0 = pthread_self() }
        var fds: [pollfd] = []
        var buf: UInt64 = 0
        while running.load(ordering: .acquiring) {
            fds.removeAll(keepingCapacity: true)
            fds.append(pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0))
            for (fd, r) in registrations where r.events != 0 { fds.append(pollfd(fd: fd, events: r.events, revents: 0)) }
            var timeoutMs: Int32 = -1
            if let first = timers.first {
                timeoutMs = Int32(max(0, min(60_000, ((first.deadline - EventLoop.now()) * 1000).rounded(.up))))
            }
            let n = fds.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), timeoutMs) }
            if n < 0 && errno != EINTR { fatalError("poll failed: errno \(errno)") }
            if n > 0 {
                if fds[0].revents != 0 { _ = Glibc.read(wakeFD, &buf, 8) }
                for p in fds.dropFirst() where p.revents != 0 {
                    // A handler may have deregistered this descriptor (or another) meanwhile.
                    if let r = registrations[p.fd] { r.handler(p.revents) }
                }
            }
            let tasks = incoming.withLock { q -> [@Sendable () -> Void] in
                let t = q
                q.removeAll(keepingCapacity: true)
                return t
            }
            for t in tasks { t() }
            let now = EventLoop.now()
            while let first = timers.first, first.deadline <= now {
                timers.removeFirst()
                first.task()
            }
        }
        // Timers and handlers left behind hold their owners: dropped, so nothing is kept alive.
        timers.removeAll()
        registrations.removeAll()
        for c in stopWaiters.withLock({ w -> [CheckedContinuation<Void, Never>] in let all = w ?? []; w = nil; return all }) { c.resume() }
    }
}
