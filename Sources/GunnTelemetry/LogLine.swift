import Foundation
import GunnCore

/// One structured log line: a JSON object with `ts` (wall time, for display only), `level`,
/// `process`, `event` and the event's fields (`global_seq`, `view_seq`, `agent_id`, `req_id`,
/// `latency_ms` where they apply). Durations are measured by the caller on a monotonic clock;
/// the wall time here is never used for one. Every line passes through the `Redactor`.
public struct LogLine: Sendable {
    public enum Level: String, Sendable, CaseIterable, Comparable {
        case debug, info, warn, error
        public static func < (a: Level, b: Level) -> Bool { allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)! }
    }

    public var level: Level
    public var process: String
    public var event: String
    public var fields: JSONObject

    public init(_ level: Level, process: String, event: String, _ fields: JSONObject = JSONObject()) {
        self.level = level; self.process = process; self.event = event; self.fields = fields
    }

    /// The line's text (no newline), redacted; `wallTime` is seconds since 1970.
    public func render(wallTime: Double, redactor: Redactor = Redactor()) -> String {
        var o = fields
        o["ts"] = .string(Self.iso8601(wallTime))
        o["level"] = .string(level.rawValue)
        o["process"] = .string(process)
        o["event"] = .string(event)
        return redactor.redact(CanonicalJSON.encodeString(.object(o)))
    }

    /// An error as a log line: its code, its name, and a message that starts with both, as
    /// docs/errors.md writes them (`CONFIG_INVALID (7001): …`).
    public static func failure(process: String, event: String, _ e: GunnError) -> LogLine {
        LogLine(.error, process: process, event: event, ["code": .number(Double(e.code.code)), "name": .string(e.code.name),
                                                         "message": .string("\(e.code.name) (\(e.code.code)): \(e.message)")])
    }

    /// `2026-12-01T20:30:05.123Z`.
    static func iso8601(_ t: Double) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: Date(timeIntervalSince1970: t))
    }
}
