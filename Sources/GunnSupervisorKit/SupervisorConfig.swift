import Foundation
import GunnCore
import GunnTelemetry

/// The supervisor's one JSON config (`ops/gunn.json` by default). Unknown keys and bad values are
/// refused with a message naming the key; `GUNN_*` environment variables override a few top-level
/// values (`GUNN_WORLD_ID`, `GUNN_WORLD_SEED`, `GUNN_DURABILITY`, `GUNN_STRATEGY`,
/// `GUNN_MAX_RESTARTS`, `GUNN_MAX_SECONDS`); `GUNN_FEATURES` is checked here, before any child
/// starts (the children inherit it).
public struct SupervisorConfig: Sendable, Equatable {
    public enum Restart: String, Sendable, CaseIterable { case permanent, transient, temporary }
    public enum Strategy: String, Sendable, CaseIterable { case oneForOne = "one_for_one", restForOne = "rest_for_one" }

    public struct Child: Sendable, Equatable {
        public var name: String
        /// A bare name is looked up next to the supervisor's own executable, then on PATH.
        public var executable: String
        /// `{home}`, `{world_id}`, `{world_seed}`, `{durability}` and `{config_dir}` are replaced.
        public var args: [String] = []
        public var restart: Restart = .permanent
        public var dependsOn: [String] = []
        public var shutdownTimeoutMs: Int = 5000
        /// A socket under the home that must answer a handshake before the child counts as ready
        /// (and before the children that depend on it start); none: ready once spawned.
        public var socket: String?
    }

    public var worldID = "world"
    public var worldSeed: UInt64 = 0
    public var durability = "full"
    public var strategy: Strategy = .oneForOne
    /// Intensity: more than `maxRestarts` restarts of one child within `maxSeconds` stops everything.
    public var maxRestarts = 5
    public var maxSeconds: Double = 30
    public var backoffBaseMs: Double = 100
    public var backoffCapMs: Double = 5000
    /// A child up this long has its backoff reset.
    public var stableSeconds: Double = 10
    public var readyTimeoutMs: Double = 10_000
    /// How long a status call waits for each child's handshake (all children at once) before
    /// showing it `not_answering`; well inside gunnctl's default deadline.
    public var statusProbeMs: Double = 1000
    /// `features` (a GUNN_FEATURES list), parsed strictly; GUNN_FEATURES overrides it. The children
    /// get it in their GUNN_FEATURES.
    public var features = Features(Features.defaults)
    /// The least level a process writes to its log (debug, info, warn, error); GUNN_LOG_LEVEL
    /// overrides it, and the children get it in theirs.
    public var logLevel = LogLine.Level.info
    /// The profile applied (`--profile`), if any.
    public var profile: String?
    public var logMaxBytes = 1 << 20
    public var logKeep = 3
    public var children: [Child] = []
    /// The absolute directory of the config file (not a key: set by whoever read the file), for
    /// `{config_dir}` in args — e.g. an adapter's own config next to this one.
    public var configDir = "."

    public init() {}

    static let topKeys: Set<String> = ["world_id", "world_seed", "durability", "strategy", "max_restarts", "max_seconds", "backoff_base_ms",
                                       "backoff_cap_ms", "stable_seconds", "ready_timeout_ms", "status_probe_ms", "log_max_bytes", "log_keep",
                                       "features", "log_level", "children"]
    static let childKeys: Set<String> = ["name", "executable", "args", "restart", "depends_on", "shutdown_timeout_ms", "socket"]

    /// A profile's values (one entry of ops/profiles.json) over the config's: the profile wins
    /// where both set a key, the environment over both. A profile holds top-level keys only.
    public static func profile(_ name: String, from bytes: [UInt8]) throws(GunnError) -> JSONObject {
        let json: JSONValue
        do { json = try JSONParser.parse(bytes) } catch { throw GunnError(.configInvalid, "the profiles file is not valid JSON: \(error)") }
        guard case .object(let all) = json else { throw GunnError(.configInvalid, "the profiles file must be a JSON object of profiles") }
        guard case .object(let p)? = all[name] else {
            throw GunnError(.configInvalid, "no profile \"\(name)\" (profiles: \(all.map(\.key).sorted().joined(separator: ", ")))")
        }
        for (k, _) in p where !topKeys.contains(k) || k == "children" {
            throw GunnError(.configInvalid, "profile \"\(name)\": unknown key \"\(k)\" (a profile sets top-level keys other than children)")
        }
        return p
    }

    /// Parses and validates; every refusal is CONFIG_INVALID naming the key.
    public static func parse(_ bytes: [UInt8], environment: [String: String] = [:], profile: (name: String, values: JSONObject)? = nil) throws(GunnError) -> SupervisorConfig {
        let json: JSONValue
        do { json = try JSONParser.parse(bytes) } catch { throw GunnError(.configInvalid, "the config is not valid JSON: \(error)") }
        guard case .object(var top) = json else { throw GunnError(.configInvalid, "the config must be a JSON object") }
        if let profile { for (k, v) in profile.values { top[k] = v } }
        var c = SupervisorConfig()
        c.profile = profile?.name
        for (k, v) in top {
            let key = k
            guard topKeys.contains(key) else {
                throw GunnError(.configInvalid, "unknown key \"\(key)\" (known: \(topKeys.sorted().joined(separator: ", ")))")
            }
            switch key {
            case "world_id": c.worldID = try string(v, key)
            case "world_seed": c.worldSeed = UInt64(try integer(v, key, Limits.worldSeed))
            case "durability": c.durability = try choice(v, key, ["full", "normal"])
            case "strategy": c.strategy = Strategy(rawValue: try choice(v, key, Strategy.allCases.map(\.rawValue)))!
            case "max_restarts": c.maxRestarts = Int(try integer(v, key, Limits.maxRestarts))
            case "max_seconds": c.maxSeconds = try number(v, key, Limits.seconds)
            case "backoff_base_ms": c.backoffBaseMs = try number(v, key, Limits.milliseconds)
            case "backoff_cap_ms": c.backoffCapMs = try number(v, key, Limits.milliseconds)
            case "stable_seconds": c.stableSeconds = try number(v, key, Limits.stableSeconds)
            case "ready_timeout_ms": c.readyTimeoutMs = try number(v, key, Limits.positiveMilliseconds)
            case "status_probe_ms": c.statusProbeMs = try number(v, key, Limits.statusProbeMs)
            case "log_max_bytes": c.logMaxBytes = Int(try integer(v, key, Limits.logMaxBytes))
            case "log_keep": c.logKeep = Int(try integer(v, key, Limits.logKeep))
            case "features": c.features = try Features.parse(try string(v, key))
            case "log_level": c.logLevel = LogLine.Level(rawValue: try choice(v, key, LogLine.Level.allCases.map(\.rawValue)))!
            case "children":
                guard case .array(let items) = v else { throw GunnError(.configInvalid, "\"children\" must be an array") }
                c.children = try items.enumerated().map { i, item throws(GunnError) in try child(item, "children[\(i)]") }
            default: break
            }
        }
        if let v = environment["GUNN_WORLD_ID"] { c.worldID = v }
        if let v = environment["GUNN_FEATURES"] { c.features = try Features.parse(v) }
        if let v = environment["GUNN_LOG_LEVEL"] {
            guard let l = LogLine.Level(rawValue: v) else {
                throw GunnError(.configInvalid, "GUNN_LOG_LEVEL must be one of debug, info, warn, error, got \"\(v)\"")
            }
            c.logLevel = l
        }
        if let v = environment["GUNN_WORLD_SEED"] {
            // The whole 64-bit range: a decimal string is exact where a JSON number is not.
            guard !v.isEmpty, v.count <= 20, v.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let n = UInt64(v) else {
                throw GunnError(.configInvalid, "GUNN_WORLD_SEED must be a decimal integer 0…\(UInt64.max), got \"\(v)\"")
            }
            c.worldSeed = n
        }
        if let v = environment["GUNN_DURABILITY"] {
            guard ["full", "normal"].contains(v) else { throw GunnError(.configInvalid, "GUNN_DURABILITY must be full or normal, got \"\(v)\"") }
            c.durability = v
        }
        if let v = environment["GUNN_STRATEGY"] {
            guard let s = Strategy(rawValue: v) else {
                throw GunnError(.configInvalid, "GUNN_STRATEGY must be one_for_one or rest_for_one, got \"\(v)\"")
            }
            c.strategy = s
        }
        if let v = environment["GUNN_MAX_RESTARTS"] {
            c.maxRestarts = Int(try integer(try environmentNumber(v, "GUNN_MAX_RESTARTS"), "GUNN_MAX_RESTARTS", Limits.maxRestarts))
        }
        if let v = environment["GUNN_MAX_SECONDS"] {
            c.maxSeconds = try number(try environmentNumber(v, "GUNN_MAX_SECONDS"), "GUNN_MAX_SECONDS", Limits.seconds)
        }
        try c.validate()
        return c
    }

    /// Names unique and well formed, dependencies known and acyclic.
    func validate() throws(GunnError) {
        guard !children.isEmpty else { throw GunnError(.configInvalid, "\"children\" is empty: nothing to supervise") }
        var seen: Set<String> = []
        for ch in children {
            guard AgentID(ch.name).isValid else { throw GunnError(.configInvalid, "child name \"\(ch.name)\" is not a valid identifier") }
            guard seen.insert(ch.name).inserted else { throw GunnError(.configInvalid, "child name \"\(ch.name)\" appears twice") }
        }
        for ch in children {
            for d in ch.dependsOn where !seen.contains(d) {
                throw GunnError(.configInvalid, "\(ch.name).depends_on names \"\(d)\", which is not a child")
            }
        }
        _ = try startOrder()
    }

    /// Children in dependency order (stable: config order among the ready ones).
    public func startOrder() throws(GunnError) -> [Child] {
        var done: Set<String> = []
        var out: [Child] = []
        while out.count < children.count {
            guard let next = children.first(where: { !done.contains($0.name) && $0.dependsOn.allSatisfy(done.contains) }) else {
                let left = children.filter { !done.contains($0.name) }.map(\.name)
                throw GunnError(.configInvalid, "depends_on has a cycle among \(left.joined(separator: ", "))")
            }
            done.insert(next.name)
            out.append(next)
        }
        return out
    }

    /// The children that depend on `name`, directly or not.
    public func dependents(of name: String) -> Set<String> {
        var out: Set<String> = []
        var changed = true
        while changed {
            changed = false
            for ch in children where !out.contains(ch.name) && ch.dependsOn.contains(where: { $0 == name || out.contains($0) }) {
                out.insert(ch.name)
                changed = true
            }
        }
        return out
    }

    static func child(_ v: JSONValue, _ at: String) throws(GunnError) -> Child {
        guard case .object(let o) = v else { throw GunnError(.configInvalid, "\(at) must be an object") }
        for k in o.sortedKeys where !childKeys.contains(k) {
            throw GunnError(.configInvalid, "unknown key \"\(at).\(k)\" (known: \(childKeys.sorted().joined(separator: ", ")))")
        }
        guard let name = o["name"] else { throw GunnError(.configInvalid, "\(at).name is required") }
        guard let exe = o["executable"] else { throw GunnError(.configInvalid, "\(at).executable is required") }
        var c = Child(name: try string(name, "\(at).name"), executable: try string(exe, "\(at).executable"))
        if let a = o["args"] {
            guard case .array(let items) = a else { throw GunnError(.configInvalid, "\(at).args must be an array of strings") }
            c.args = try items.map { x throws(GunnError) in try string(x, "\(at).args") }
        }
        if let r = o["restart"] { c.restart = Restart(rawValue: try choice(r, "\(at).restart", Restart.allCases.map(\.rawValue)))! }
        if let d = o["depends_on"] {
            guard case .array(let items) = d else { throw GunnError(.configInvalid, "\(at).depends_on must be an array of child names") }
            c.dependsOn = try items.map { x throws(GunnError) in try string(x, "\(at).depends_on") }
        }
        if let t = o["shutdown_timeout_ms"] { c.shutdownTimeoutMs = Int(try integer(t, "\(at).shutdown_timeout_ms", Limits.milliseconds)) }
        if let s = o["socket"] { c.socket = try string(s, "\(at).socket") }
        return c
    }

    static func string(_ v: JSONValue, _ key: String) throws(GunnError) -> String {
        guard case .string(let s) = v, !s.isEmpty else { throw GunnError(.configInvalid, "\"\(key)\" must be a non-empty string") }
        return s
    }

    /// The bounds of every number in the config: a value outside is refused, never clamped, and
    /// never reaches a conversion that could trap (`UInt64(1e20)`, `Int(.nan)`).
    public enum Limits {
        /// JSON numbers are exact integers up to 2^53 − 1; a larger seed would silently change.
        public static let worldSeed: ClosedRange<Double> = 0...9_007_199_254_740_991
        public static let maxRestarts: ClosedRange<Double> = 0...10_000
        /// Up to a day.
        public static let seconds: ClosedRange<Double> = 0.001...86_400
        public static let stableSeconds: ClosedRange<Double> = 0...86_400
        /// Up to an hour.
        public static let milliseconds: ClosedRange<Double> = 0...3_600_000
        public static let positiveMilliseconds: ClosedRange<Double> = 1...3_600_000
        public static let statusProbeMs: ClosedRange<Double> = 1...60_000
        /// 1 KiB … 1 TiB.
        public static let logMaxBytes: ClosedRange<Double> = 1024...1_099_511_627_776
        public static let logKeep: ClosedRange<Double> = 0...1000
    }

    /// A finite number within `range`.
    static func number(_ v: JSONValue, _ key: String, _ range: ClosedRange<Double>) throws(GunnError) -> Double {
        guard case .number(let d) = v, d.isFinite, range.contains(d) else {
            let bounds = "from \(show(range.lowerBound)) to \(show(range.upperBound))"
            throw GunnError(.configInvalid, "\"\(key)\" must be a number \(bounds), got \(shown(v))")
        }
        return d
    }

    /// An integral number within `range` (whose bounds are exact integers, so the conversions of
    /// the caller cannot trap).
    static func integer(_ v: JSONValue, _ key: String, _ range: ClosedRange<Double>) throws(GunnError) -> Double {
        guard case .number(let d) = v, d.isFinite, d.rounded(.towardZero) == d, range.contains(d) else {
            let bounds = "from \(show(range.lowerBound)) to \(show(range.upperBound))"
            throw GunnError(.configInvalid, "\"\(key)\" must be an integer \(bounds), got \(shown(v))")
        }
        return d
    }

    /// A GUNN_* override read as a JSON number, nothing around it (so "nan", "inf", "0x10", "+5" and
    /// " 5" are refused).
    static func environmentNumber(_ text: String, _ key: String) throws(GunnError) -> JSONValue {
        let numeric = text.utf8.allSatisfy { (0x30...0x39).contains($0) || [UInt8(ascii: "-"), UInt8(ascii: "+"), UInt8(ascii: "."),
                                                                          UInt8(ascii: "e"), UInt8(ascii: "E")].contains($0) }
        guard numeric, text.utf8.count <= 64, let v = try? JSONParser.parse(Array(text.utf8)), case .number = v else {
            throw GunnError(.configInvalid, "\(key) must be a decimal number, got \"\(text.prefix(64))\"")
        }
        return v
    }

    static func show(_ d: Double) -> String { d.rounded() == d && abs(d) < 1e16 ? String(Int64(d)) : "\(d)" }

    static func shown(_ v: JSONValue) -> String {
        let text = CanonicalJSON.encodeString(v)
        return text.count > 40 ? String(text.prefix(40)) + "…" : text
    }

    static func choice(_ v: JSONValue, _ key: String, _ allowed: [String]) throws(GunnError) -> String {
        guard case .string(let s) = v, allowed.contains(s) else {
            throw GunnError(.configInvalid, "\"\(key)\" must be one of \(allowed.joined(separator: ", "))")
        }
        return s
    }
}
