import GunnCore

/// One child's restart bookkeeping as a plain state machine: an unplanned exit goes in, the delay
/// before the next start (or the verdict that the child failed) comes out. No clock, no process:
/// the supervisor passes the time in.
///
/// Two limits, either of which fails the child: more than `maxRestarts` exits within `maxSeconds`
/// (a crash loop), and more than `maxRestarts` starts in a row that never became ready (a child
/// that misses its readiness deadline is killed; however slowly those attempts go by, the window
/// alone would never fill). The backoff resets only once the child stayed *ready* for
/// `stableSeconds`: time spent starting is not stability.
public struct RestartIntensity: Sendable {
    public let maxRestarts: Int
    public let maxSeconds: Double
    public let stableSeconds: Double
    private(set) var backoff: Backoff
    /// Unplanned exits within the last `maxSeconds`, oldest first (at most `maxRestarts + 1`).
    private(set) var exitTimes: [Double] = []
    /// Starts since the child was last ready that ended before it became ready.
    public private(set) var failedStarts = 0
    /// When the child last became ready; nil while it is starting or down.
    private(set) var readyAt: Double?

    public enum Decision: Sendable, Equatable {
        /// Start it again after this many seconds.
        case restart(afterSeconds: Double)
        /// The intensity is exhausted: stop everything (CHILD_FAILED, with this reason).
        case exhausted(reason: String)
    }

    public init(maxRestarts: Int, maxSeconds: Double, stableSeconds: Double, backoff: Backoff) {
        self.maxRestarts = maxRestarts; self.maxSeconds = maxSeconds; self.stableSeconds = stableSeconds
        self.backoff = backoff
    }

    /// The child answered its readiness check (or, without a socket, was spawned).
    public mutating func becameReady(at now: Double) {
        readyAt = now
        failedStarts = 0
    }

    /// An exit the supervisor did not cause (a crash, or a kill for missing the readiness deadline).
    public mutating func unplannedExit(at now: Double) -> Decision {
        defer { readyAt = nil }
        exitTimes.append(now)
        exitTimes.removeAll { $0 < now - maxSeconds }
        if exitTimes.count > maxRestarts + 1 { exitTimes.removeFirst(exitTimes.count - maxRestarts - 1) }
        if readyAt == nil { failedStarts += 1 }
        if exitTimes.count > maxRestarts {
            return .exhausted(reason: "exited \(exitTimes.count) times within \(maxSeconds) s (max_restarts \(maxRestarts))")
        }
        if failedStarts > maxRestarts {
            return .exhausted(reason: "failed to become ready \(failedStarts) times in a row (max_restarts \(maxRestarts))")
        }
        if let readyAt, now - readyAt >= stableSeconds { backoff.reset() }
        return .restart(afterSeconds: backoff.next())
    }

    /// An exit the supervisor caused (restart command, rest_for_one): restarted at once, not counted.
    public mutating func plannedExit() { readyAt = nil }
}
