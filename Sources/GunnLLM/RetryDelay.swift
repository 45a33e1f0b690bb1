/// How long an agent waits before its next attempt: the retry-after it was given (by the
/// orchestrator or its endpoint's breaker), else its backoff's delay — at most `maxSeconds`, so a
/// huge or garbage `retry_after_ms` from a peer can neither trap the conversion to nanoseconds nor
/// park the agent for longer than any setting of its own could.
public enum RetryDelay {
    /// One day: the longest breaker timing a config may set (`AdapterConfig.Limits.durationMs`).
    public static let maxSeconds = AdapterConfig.Limits.durationMs.upperBound / 1000

    public static func nanoseconds(retryAfterMs: UInt64?, fallbackSeconds: Double) -> UInt64 {
        let seconds = retryAfterMs.map { Double($0) / 1000 } ?? fallbackSeconds
        let bounded = seconds.isFinite ? min(max(0, seconds), maxSeconds) : maxSeconds
        return UInt64(bounded * 1e9)
    }
}
