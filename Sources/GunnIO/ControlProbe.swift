import Foundation
import GunnCore
import GunnWire
import Synchronization

/// Asks one process's socket whether it answers, within a deadline: a handshake, and optionally
/// one request. A wedged process (stopped, or looping without serving its socket) costs the caller
/// the deadline and no more, so a status or metrics call can ask every process at once and report
/// each one.
public struct ControlProbe: Sendable {
    public let path: String
    public let loop: EventLoop
    public let hello: Hello
    public let deadlineMs: Double

    public init(path: String, loop: EventLoop, hello: Hello, deadlineMs: Double) {
        self.path = path; self.loop = loop; self.hello = hello; self.deadlineMs = deadlineMs
    }

    public enum Outcome: Sendable {
        /// Nothing listens there, or the connection was refused.
        case absent
        /// Connected, but no Welcome (or no reply to the request) within the deadline.
        case notAnswering
        /// Answered; the reply to the request, if one was sent and it came in time.
        case answered(Frame.Body?)
    }

    /// The handshake, then `request` (if any) and its reply, all within `deadlineMs` in total.
    public func run(request: Frame.Body? = nil) async -> Outcome {
        let start = DispatchTime.now().uptimeNanoseconds
        var options = ConnectionOptions()
        options.handshakeTimeoutMs = deadlineMs
        let c: FramedConnection
        do { c = try await FramedConnection.connect(path: path, loop: loop, hello: hello, options: options) } catch {
            switch (error as? ConnectionError)?.code {
            // What the handshake timer reports: connected, and no Welcome in time.
            case .handshakeRequired?: return .notAnswering
            // No socket, refused, backlog full, or closed without a word.
            case .adapterUnavailable?, nil: return .absent
            // A coded refusal of our Hello: the process is there and answering.
            default: return .answered(nil)
            }
        }
        defer { c.close() }
        guard let request else { return .answered(nil) }
        let spentMs = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
        let leftMs = max(1, deadlineMs - spentMs)
        // The deadline closes the connection, which ends the receive below.
        let expired = Flag()
        let timer = Task {
            try? await Task.sleep(nanoseconds: UInt64(leftMs * 1e6))
            guard !Task.isCancelled else { return }
            expired.set()
            c.close()
        }
        defer { timer.cancel() }
        if (try? await c.send(request, id: 1)) != nil {
            while let f = await c.receive() {
                guard f.id == 1, let body = f.body else { continue }
                return .answered(body)
            }
        }
        return expired.isSet ? .notAnswering : .answered(nil)
    }
}

/// A flag set once, from any thread.
public final class Flag: Sendable {
    private let value = Mutex(false)
    public init() {}
    public func set() { value.withLock { $0 = true } }
    public var isSet: Bool { value.withLock { $0 } }
}

/// Deadlines for work that cannot be cancelled from outside (a request whose reply may never come).
public enum Deadline {
    /// `body`'s answer, or nil when it takes more than `seconds`: then it goes on, and its answer
    /// is dropped. Callers bound how many they start (one at a time, or one per request).
    public static func within<T: Sendable>(_ seconds: Double, _ body: @escaping @Sendable () async -> T?) async -> T? {
        let once = Once<T>()
        return await withCheckedContinuation { (c: CheckedContinuation<T?, Never>) in
            once.waiter.withLock { $0 = c }
            Task { let v = await body(); once.resume(v) }
            Task { try? await Task.sleep(nanoseconds: UInt64(max(0, seconds) * 1e9)); once.resume(nil) }
        }
    }

    /// A continuation resumed by whichever comes first.
    final class Once<T: Sendable>: Sendable {
        let waiter = Mutex<CheckedContinuation<T?, Never>?>(nil)
        func resume(_ v: T?) { waiter.withLock { $0.take() }?.resume(returning: v) }
    }
}

/// At most `limit` at once: what enters past it is refused, and what entered leaves once.
public final class Admission: Sendable {
    public let limit: Int
    private let inside = Mutex(0)
    public init(limit: Int) { self.limit = limit }
    public func enter() -> Bool { inside.withLock { n in guard n < limit else { return false }; n += 1; return true } }
    public func leave() { inside.withLock { $0 = max(0, $0 - 1) } }
}
