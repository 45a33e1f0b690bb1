/// Settings of a circuit breaker. Every threshold and duration is explicit.
public struct CircuitBreakerConfig: Sendable {
    public enum Window: Sendable, Equatable {
        /// The last `calls` outcomes.
        case count(calls: Int)
        /// Outcomes of the last `seconds`, kept in one-second buckets.
        case time(seconds: Int)
    }

    public var window: Window = .count(calls: 20)
    /// No rate-based opening before this many calls are in the window.
    public var minimumCalls: Int = 10
    /// Open when failures / calls in the window reach this.
    public var failureRateThreshold: Double = 0.5
    /// Open after this many failures in a row, whatever the window says.
    public var consecutiveFailuresThreshold: Int = 5
    /// A call slower than this counts as slow...
    public var slowCallSeconds: Double = 5
    /// ...and the breaker opens when slow calls / calls in the window reach this.
    public var slowCallRateThreshold: Double = 1.0
    /// The first open lasts `openBaseSeconds`, each reopening from half-open `openMultiplier`
    /// times longer, up to `openMaxSeconds`, with ± `openJitter` (a fraction) from the seeded generator.
    public var openBaseSeconds: Double = 1
    public var openMultiplier: Double = 2
    public var openMaxSeconds: Double = 60
    public var openJitter: Double = 0.2
    /// Probes let through when half-open; all must succeed to close.
    public var halfOpenProbes: Int = 3
    /// A probe not reported within this counts as failed.
    public var probeDeadlineSeconds: Double = 5

    public init() {}
}

/// The state of a breaker.
public enum BreakerState: String, Sendable, Equatable {
    case closed, open, halfOpen = "half_open"
}

/// A state change, reported to the host (which logs it and counts it).
public struct BreakerTransition: Sendable, Equatable {
    public let from: BreakerState
    public let to: BreakerState
    public let reason: String
    public let at: Double
}

/// Guards a link or an external service: after repeated failures it opens and calls fail fast
/// with ADAPTER_UNAVAILABLE and a retry-after; after the open duration it lets a few probes through
/// and closes only if they all succeed. A pure state machine: time comes in as an argument and
/// jitter from a seeded generator, so every transition is testable without sleeping.
public struct CircuitBreaker: Sendable {
    public let name: String
    public let config: CircuitBreakerConfig
    public private(set) var state: BreakerState = .closed
    /// Incremented on every transition; permits from an older generation are ignored.
    public private(set) var generation: UInt64 = 0
    public private(set) var consecutiveFailures = 0
    public private(set) var transitions: [BreakerState: Int] = [:]
    private var openUntil: Double = 0
    private var openCount = 0 // consecutive opens without a close: drives the exponential duration
    private var forced: BreakerState?
    private var rng: SplitMix64
    // Window.
    private var ring: [Outcome] = []
    private var ringHead = 0
    private var buckets: [(second: Int64, calls: Int, failures: Int, slow: Int)] = []
    // Half-open probes: permit id -> deadline.
    private var probes: [UInt64: Double] = [:]
    private var probeSuccesses = 0
    private var nextPermitID: UInt64 = 1

    enum Outcome: Sendable { case success, failure, slowSuccess }

    /// What `acquire` grants: report its result with `record`.
    public struct Permit: Sendable, Equatable {
        public let id: UInt64
        public let generation: UInt64
        public let startedAt: Double
    }

    public enum Decision: Sendable, Equatable {
        case allowed(Permit)
        /// Fail fast; retry after this many milliseconds.
        case rejected(retryAfterMs: UInt64)
    }

    public init(name: String, config: CircuitBreakerConfig = CircuitBreakerConfig(), seed: UInt64 = 0) {
        self.name = name
        self.config = config
        self.rng = SplitMix64(seed: seed)
    }

    /// Asks to make a call at `now`.
    public mutating func acquire(at now: Double) -> (Decision, [BreakerTransition]) {
        var events: [BreakerTransition] = []
        expireProbes(at: now, &events)
        if let forced {
            if forced == .open { return (.rejected(retryAfterMs: 1000), events) }
            return (.allowed(permit(at: now)), events)
        }
        switch state {
        case .closed:
            return (.allowed(permit(at: now)), events)
        case .open:
            if now >= openUntil {
                transition(to: .halfOpen, "open duration elapsed", at: now, &events)
                return grantProbe(at: now, events)
            }
            return (.rejected(retryAfterMs: UInt64(((openUntil - now) * 1000).rounded(.up))), events)
        case .halfOpen:
            return grantProbe(at: now, events)
        }
    }

    private mutating func grantProbe(at now: Double, _ events: [BreakerTransition]) -> (Decision, [BreakerTransition]) {
        guard probes.count + probeSuccesses < config.halfOpenProbes else {
            return (.rejected(retryAfterMs: UInt64((config.probeDeadlineSeconds * 1000).rounded(.up))), events)
        }
        let p = permit(at: now)
        probes[p.id] = now + config.probeDeadlineSeconds
        return (.allowed(p), events)
    }

    private mutating func permit(at now: Double) -> Permit {
        defer { nextPermitID += 1 }
        return Permit(id: nextPermitID, generation: generation, startedAt: now)
    }

    /// Reports how a permitted call ended. A result from an older generation changes nothing.
    /// `elapsed` is the duration judged by the slow-call rule (e.g. a stream's time to first
    /// token); by default the whole call, `now - startedAt`.
    public mutating func record(_ permit: Permit, success: Bool, at now: Double, elapsed: Double? = nil) -> [BreakerTransition] {
        var events: [BreakerTransition] = []
        guard permit.generation == generation, forced == nil else { return events }
        expireProbes(at: now, &events)
        guard permit.generation == generation else { return events }
        let slow = (elapsed ?? (now - permit.startedAt)) > config.slowCallSeconds
        switch state {
        case .closed:
            let outcome: Outcome = success ? (slow ? .slowSuccess : .success) : .failure
            push(outcome, at: now)
            consecutiveFailures = success ? 0 : consecutiveFailures + 1
            if let reason = openReason(at: now) { open(reason, at: now, &events) }
        case .halfOpen:
            guard probes.removeValue(forKey: permit.id) != nil else { return events }
            if success && !slow {
                probeSuccesses += 1
                if probeSuccesses >= config.halfOpenProbes {
                    openCount = 0
                    transition(to: .closed, "\(config.halfOpenProbes) probes succeeded", at: now, &events)
                }
            } else {
                open(success ? "a probe was slow" : "a probe failed", at: now, &events)
            }
        case .open:
            break
        }
        return events
    }

    /// Manual control: hold the breaker open or closed until `release`.
    public mutating func force(_ s: BreakerState, at now: Double) -> [BreakerTransition] {
        var events: [BreakerTransition] = []
        forced = s
        if state != s { transition(to: s, "forced \(s.rawValue)", at: now, &events) }
        if s == .open { openUntil = .infinity }
        return events
    }

    /// Ends manual control and starts closed with an empty window.
    public mutating func release(at now: Double) -> [BreakerTransition] {
        var events: [BreakerTransition] = []
        forced = nil
        openCount = 0
        if state != .closed { transition(to: .closed, "released from manual control", at: now, &events) }
        return events
    }

    /// Failures, calls and slow calls now in the window.
    public func windowCounts(at now: Double) -> (calls: Int, failures: Int, slow: Int) {
        switch config.window {
        case .count:
            return (ring.count, ring.filter { $0 == .failure }.count, ring.filter { $0 == .slowSuccess }.count)
        case .time(let seconds):
            let oldest = Int64(now.rounded(.down)) - Int64(seconds) + 1
            var c = 0, f = 0, s = 0
            for b in buckets where b.second >= oldest { c += b.calls; f += b.failures; s += b.slow }
            return (c, f, s)
        }
    }

    private func openReason(at now: Double) -> String? {
        if consecutiveFailures >= config.consecutiveFailuresThreshold { return "\(consecutiveFailures) consecutive failures" }
        let (calls, failures, slow) = windowCounts(at: now)
        guard calls >= config.minimumCalls, calls > 0 else { return nil }
        if Double(failures) / Double(calls) >= config.failureRateThreshold { return "failure rate \(failures)/\(calls)" }
        if Double(slow) / Double(calls) >= config.slowCallRateThreshold { return "slow-call rate \(slow)/\(calls)" }
        return nil
    }

    private mutating func push(_ o: Outcome, at now: Double) {
        switch config.window {
        case .count(let n):
            if ring.count < n { ring.append(o) } else { ring[ringHead] = o; ringHead = (ringHead + 1) % n }
        case .time(let seconds):
            let sec = Int64(now.rounded(.down))
            if buckets.last?.second != sec { buckets.append((sec, 0, 0, 0)) }
            buckets[buckets.count - 1].calls += 1
            if o == .failure { buckets[buckets.count - 1].failures += 1 }
            if o == .slowSuccess { buckets[buckets.count - 1].slow += 1 }
            buckets.removeAll { $0.second <= sec - Int64(seconds) }
        }
    }

    private mutating func open(_ reason: String, at now: Double, _ events: inout [BreakerTransition]) {
        let base = min(config.openMaxSeconds, config.openBaseSeconds * pow2(config.openMultiplier, openCount))
        let jitter = 1 + config.openJitter * (rng.nextUnitDouble() * 2 - 1)
        openUntil = now + min(config.openMaxSeconds, base * jitter)
        openCount += 1
        transition(to: .open, reason, at: now, &events)
    }

    private func pow2(_ m: Double, _ n: Int) -> Double {
        var r = 1.0
        for _ in 0..<min(n, 64) { r *= m }
        return r
    }

    private mutating func expireProbes(at now: Double, _ events: inout [BreakerTransition]) {
        guard state == .halfOpen, forced == nil, probes.values.contains(where: { $0 <= now }) else { return }
        open("a probe passed its deadline", at: now, &events)
    }

    private mutating func transition(to s: BreakerState, _ reason: String, at now: Double, _ events: inout [BreakerTransition]) {
        let from = state
        state = s
        generation += 1
        transitions[s, default: 0] += 1
        probes.removeAll()
        probeSuccesses = 0
        if s == .closed {
            ring.removeAll(); ringHead = 0; buckets.removeAll(); consecutiveFailures = 0
        }
        events.append(BreakerTransition(from: from, to: s, reason: reason, at: now))
    }

    /// The error a rejected call reports.
    public func rejection(retryAfterMs: UInt64) -> GunnError {
        GunnError(.adapterUnavailable, "circuit breaker \(name) is \(state.rawValue)", retryAfterMs: retryAfterMs)
    }
}
