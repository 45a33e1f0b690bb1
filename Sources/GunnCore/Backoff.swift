/// Reconnect delays: the first retry at once, then exponential from `baseSeconds` with ±`jitter`
/// (a fraction, from the seeded generator) up to `capSeconds`; `reset()` after a success.
public struct Backoff: Sendable {
    public let baseSeconds: Double
    public let multiplier: Double
    public let capSeconds: Double
    public let jitter: Double
    public private(set) var attempt = 0
    private var rng: SplitMix64

    public init(baseSeconds: Double = 0.05, multiplier: Double = 2, capSeconds: Double = 5, jitter: Double = 0.2, seed: UInt64 = 0) {
        self.baseSeconds = baseSeconds; self.multiplier = multiplier; self.capSeconds = capSeconds; self.jitter = jitter
        self.rng = SplitMix64(seed: seed)
    }

    /// The delay before the next attempt.
    public mutating func next() -> Double {
        defer { attempt += 1 }
        guard attempt > 0 else { return 0 }
        var d = baseSeconds
        for _ in 1..<min(attempt, 64) { d = min(capSeconds, d * multiplier) }
        let j = 1 + jitter * (rng.nextUnitDouble() * 2 - 1)
        return min(capSeconds, d * j)
    }

    public mutating func reset() { attempt = 0 }
}
