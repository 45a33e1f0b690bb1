/// A token bucket: `capacity` tokens, refilled continuously at `refillPerSecond`. O(1) per check;
/// time comes from the caller (host time), never from a clock.
public struct TokenBucket: Hashable, Sendable {
    public let capacity: Double
    public let refillPerSecond: Double
    public private(set) var tokens: Double
    private var updatedAt: HostTime?

    public init(capacity: Double, refillPerSecond: Double) {
        precondition(capacity >= 1 && refillPerSecond > 0, "a bucket needs capacity >= 1 and a positive rate")
        self.capacity = capacity
        self.refillPerSecond = refillPerSecond
        self.tokens = capacity
    }

    mutating func refill(at now: HostTime) {
        if let updatedAt, now > updatedAt {
            tokens = min(capacity, tokens + (now - updatedAt) * refillPerSecond)
        }
        if updatedAt == nil || now > updatedAt! { updatedAt = now }
    }

    /// Takes one token if there is one; otherwise returns the milliseconds until there will be.
    public mutating func take(at now: HostTime) -> UInt64? {
        refill(at: now)
        if tokens >= 1 {
            tokens -= 1
            return nil
        }
        return UInt64(((1 - tokens) / refillPerSecond * 1000).rounded(.up))
    }

    /// Gives a token back (the check after this one refused the request, so it cost nothing).
    public mutating func refund() { tokens = min(capacity, tokens + 1) }
}
