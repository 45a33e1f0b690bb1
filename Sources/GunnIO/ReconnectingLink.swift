import GunnCore
import GunnWire
import Synchronization

/// A client link that stays connected: it reconnects with `Backoff` (first retry at once, then
/// exponential with jitter and a cap), and a `CircuitBreaker` guards it — while the breaker is
/// open, `send` fails fast with ADAPTER_UNAVAILABLE and a `retry_after_ms` instead of waiting.
/// Every breaker transition is kept for the host to log and report.
public final class ReconnectingLink: Sendable {
    public let path: String
    public let loop: EventLoop
    let hello: Hello
    let options: ConnectionOptions
    fileprivate let state: Mutex<LinkState>

    struct LinkState: Sendable {
        var connection: FramedConnection?
        var breaker: CircuitBreaker
        var backoff: Backoff
        var transitions: [BreakerTransition] = []
        var connects = 0
    }

    public init(path: String, loop: EventLoop, hello: Hello, options: ConnectionOptions = ConnectionOptions(),
                breaker: CircuitBreakerConfig = CircuitBreakerConfig(), backoff: Backoff = Backoff(), seed: UInt64 = 0) {
        self.path = path; self.loop = loop; self.hello = hello; self.options = options
        self.state = Mutex(LinkState(breaker: CircuitBreaker(name: path, config: breaker, seed: seed), backoff: backoff))
    }

    public var breakerState: BreakerState { state.withLock { $0.breaker.state } }
    public var transitions: [BreakerTransition] { state.withLock { $0.transitions } }
    public var connects: Int { state.withLock { $0.connects } }

    /// The open connection, connecting (through the breaker) if there is none.
    public func connection() async throws -> FramedConnection {
        if let c = state.withLock({ $0.connection }), c.closeReason == nil { return c }
        let now = EventLoop.now()
        let (decision, events) = state.withLock { $0.breaker.acquire(at: now) }
        state.withLock { $0.transitions += events }
        guard case .allowed(let permit) = decision else {
            if case .rejected(let ms) = decision {
                throw ConnectionError(.adapterUnavailable, "link to \(path) is failing fast (breaker \(breakerState.rawValue)); retry after \(ms) ms")
            }
            throw ConnectionError(.internalError, "breaker gave no decision")
        }
        do {
            let c = try await FramedConnection.connect(path: path, loop: loop, hello: hello, options: options)
            state.withLock {
                $0.transitions += $0.breaker.record(permit, success: true, at: EventLoop.now())
                $0.backoff.reset()
                $0.connection = c
                $0.connects += 1
            }
            return c
        } catch {
            state.withLock { $0.transitions += $0.breaker.record(permit, success: false, at: EventLoop.now()) }
            throw error
        }
    }

    /// Connects, retrying with backoff until `deadlineSeconds` pass or the breaker refuses.
    public func connectWithRetry(deadlineSeconds: Double) async throws -> FramedConnection {
        let until = EventLoop.now() + deadlineSeconds
        while true {
            do { return try await connection() } catch let e as ConnectionError {
                let delay = state.withLock { $0.backoff.next() }
                if EventLoop.now() + delay > until { throw e }
                try await Task.sleep(nanoseconds: UInt64(delay * 1e9))
            }
        }
    }

    /// Sends on the current connection (connecting first if needed).
    public func send(_ body: Frame.Body, id: UInt64 = 0) async throws {
        let c = try await connection()
        try await c.send(body, id: id)
    }
}

extension ReconnectingLink {
    /// Manual breaker control (gunnctl `breaker open|close|reset`): hold it open or closed, or
    /// release it to closed with an empty window. Returns the state after the action.
    @discardableResult
    public func control(_ action: BreakerAction) -> BreakerState {
        let now = EventLoop.now()
        return state.withLock { s in
            switch action {
            case .open: s.transitions += s.breaker.force(.open, at: now)
            case .close: s.transitions += s.breaker.force(.closed, at: now)
            case .reset: s.transitions += s.breaker.release(at: now)
            }
            return s.breaker.state
        }
    }
}

public enum BreakerAction: String, Sendable, CaseIterable { case open, close, reset }
