import Foundation
import GunnCore

/// The LLM adapter's JSON config: the agents it hosts and the settings of its per-endpoint
/// breakers. Strict like the supervisor's: an unknown key or a bad value is CONFIG_INVALID naming
/// the key (with the agent's index).
public struct AdapterConfig: Sendable, Equatable {
    public enum Backend: String, Sendable, CaseIterable { case dummy, openai, ollama }

    /// Where an HTTP backend lives: `http://host:port`, or `https://host[:port]` (TLS, port 443 by default).
    public struct Endpoint: Sendable, Equatable, Hashable, CustomStringConvertible {
        public var host: String
        public var port: UInt16
        public var tls = false
        public init(host: String, port: UInt16, tls: Bool = false) { self.host = host; self.port = port; self.tls = tls }
        public var description: String { "\(tls ? "https" : "http")://\(host):\(port)" }

        public static func parse(_ s: String) throws(GunnError) -> Endpoint {
            let tls = s.hasPrefix("https://")
            guard tls || s.hasPrefix("http://") else { throw GunnError(.configInvalid, "endpoint \(s) must start with http:// or https://") }
            var rest = Substring(s.dropFirst(tls ? "https://".count : "http://".count))
            if rest.hasSuffix("/") { rest = rest.dropLast() }
            guard !rest.contains("/") else { throw GunnError(.configInvalid, "endpoint \(s) must be http(s)://HOST:PORT, without a path") }
            var host = String(rest), port: UInt16 = tls ? 443 : 0
            if let colon = rest.lastIndex(of: ":") {
                guard let p = UInt16(rest[rest.index(after: colon)...]), p > 0 else { throw GunnError(.configInvalid, "endpoint \(s) must be http(s)://HOST:PORT") }
                host = String(rest[..<colon]); port = p
            }
            guard port > 0 else { throw GunnError(.configInvalid, "endpoint \(s) must be http://HOST:PORT") }
            guard !host.isEmpty else { throw GunnError(.configInvalid, "endpoint \(s) has no host") }
            return Endpoint(host: host, port: port, tls: tls)
        }
    }

    public struct Agent: Sendable, Equatable {
        public var id: String
        public var persona = "You are a character in a shared world. Speak in one short sentence."
        public var backend: Backend = .dummy
        public var model = ""
        public var endpoint: Endpoint?
        public var temperature = 0.7
        public var maxTokens = 32
        public var tokenBudget: Int?
        public var deadlineMs: Int?
        /// Registration: how its generations are interrupted.
        public var interrupt = "always"
        public var stalenessThreshold = 0
        public var debounceMs: Double = 0
        /// The registration's view radius (nil: the whole world).
        public var distanceLimit: Double?
        public var spawn: [Double] = [0, 0]
        /// Speaks once registered (the first turn), and again after each of its turns when `repeat`.
        public var start = false
        public var `repeat` = false
        /// Speech of these agents ("*": anyone) starts a turn when it is committed...
        public var respondTo: [String] = []
        /// ...or already when they begin to speak (their first relayed token).
        public var interject = false
        /// Committed utterances at most.
        public var maxTurns = 1
        /// Regenerations per turn after a cancellation or STALE_CONTEXT.
        public var maxRetries = 3
        public var seed: UInt64 = 0
        /// Dummy backend: scripted lines (attempt n of the agent says `lines[n % count]`) and token pacing.
        public var lines: [String] = []
        public var tokenIntervalMs: [Double] = [20, 30]
        /// Extra top-level fields of an HTTP request body (e.g. `{"min_tokens": 40}` for llama-cpp-python).
        public var requestExtra: JSONObject = [:]
        public var stallMs: Double = 30_000
        /// An HTTP endpoint that has not accepted the TCP connection after this long: LLM_SERVICE_ERROR.
        public var connectTimeoutMs: Double = HTTPStream.Request.defaultConnectTimeoutSeconds * 1000
        /// For an https endpoint: trust the certificates in this PEM file instead of the system's roots.
        public var caFile: String?
        public init(id: String) { self.id = id }
    }

    /// The circuit breaker of every endpoint: a call fails (refused, HTTP error, malformed stream,
    /// stall) or is slow (its first token later than `slowFirstTokenMs`).
    public struct Breaker: Sendable, Equatable {
        public var slowFirstTokenMs: Double = 5000
        public var consecutiveFailures = 3
        public var openMs: Double = 2000
        public var openMaxMs: Double = 30_000
        public init() {}
    }

    public var agents: [Agent] = []
    public var breaker = Breaker()
    public init() {}

    static let topKeys: Set<String> = ["agents", "breaker"]
    static let agentKeys: Set<String> = [
        "id", "persona", "backend", "model", "endpoint", "temperature", "max_tokens", "token_budget", "deadline_ms",
        "interrupt", "staleness_threshold", "debounce_ms", "distance_limit", "spawn", "start", "repeat", "respond_to", "interject",
        "max_turns", "max_retries", "seed", "lines", "token_interval_ms", "request_extra", "stall_ms", "connect_timeout_ms", "ca_file",
    ]
    static let breakerKeys: Set<String> = ["slow_first_token_ms", "consecutive_failures", "open_ms", "open_max_ms"]

    public static func parse(_ bytes: [UInt8]) throws(GunnError) -> AdapterConfig {
        guard bytes.count <= Limits.maxConfigBytes else {
            throw GunnError(.configInvalid, "the adapter config is \(bytes.count) bytes, over the limit of \(Limits.maxConfigBytes)")
        }
        let json: JSONValue
        do { json = try JSONParser.parse(bytes) } catch { throw GunnError(.configInvalid, "the adapter config is not valid JSON: \(error)") }
        guard case .object(let top) = json else { throw GunnError(.configInvalid, "the adapter config must be a JSON object") }
        var c = AdapterConfig()
        for (key, v) in top {
            guard topKeys.contains(key) else { throw GunnError(.configInvalid, "unknown key \"\(key)\" (known: \(topKeys.sorted().joined(separator: ", ")))") }
            switch key {
            case "agents":
                guard case .array(let list) = v, !list.isEmpty else { throw GunnError(.configInvalid, "\"agents\" must be a non-empty array") }
                for (i, a) in list.enumerated() { c.agents.append(try agent(a, "agents[\(i)]")) }
            default:
                guard case .object(let b) = v else { throw GunnError(.configInvalid, "\"breaker\" must be an object") }
                for (k, bv) in b {
                    guard breakerKeys.contains(k) else { throw GunnError(.configInvalid, "unknown key \"breaker.\(k)\" (known: \(breakerKeys.sorted().joined(separator: ", ")))") }
                    let key = "breaker.\(k)"
                    switch k {
                    case "slow_first_token_ms": c.breaker.slowFirstTokenMs = try number(bv, key, Limits.durationMs)
                    case "consecutive_failures": c.breaker.consecutiveFailures = try integer(bv, key, 1...Limits.maxConsecutiveFailures)
                    case "open_ms": c.breaker.openMs = try number(bv, key, Limits.durationMs)
                    default: c.breaker.openMaxMs = try number(bv, key, Limits.durationMs)
                    }
                }
            }
        }
        guard c.breaker.openMaxMs >= c.breaker.openMs else {
            throw GunnError(.configInvalid, "breaker.open_max_ms (\(c.breaker.openMaxMs)) must be ≥ breaker.open_ms (\(c.breaker.openMs))")
        }
        var seen = Set<String>()
        for a in c.agents {
            guard seen.insert(a.id).inserted else { throw GunnError(.configInvalid, "agent id \"\(a.id)\" appears twice") }
        }
        return c
    }

    static func agent(_ v: JSONValue, _ at: String) throws(GunnError) -> Agent {
        guard case .object(let o) = v else { throw GunnError(.configInvalid, "\(at) must be an object") }
        guard case .string(let id)? = o["id"], AgentID(id).isValid else { throw GunnError(.configInvalid, "\(at).id must be a valid agent id") }
        var a = Agent(id: id)
        for (k, x) in o {
            let key = "\(at).\(k)"
            guard agentKeys.contains(k) else { throw GunnError(.configInvalid, "unknown key \"\(key)\" (known: \(agentKeys.sorted().joined(separator: ", ")))") }
            switch k {
            case "id": break
            case "persona": a.persona = try string(x, key, maxBytes: Limits.maxTextBytes)
            case "backend":
                guard let b = Backend(rawValue: try string(x, key, maxBytes: Limits.maxNameBytes)) else {
                    throw GunnError(.configInvalid, "\(key) must be one of \(Backend.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                a.backend = b
            case "model": a.model = try string(x, key, maxBytes: Limits.maxNameBytes)
            case "endpoint": a.endpoint = try Endpoint.parse(try string(x, key, maxBytes: Limits.maxNameBytes))
            case "temperature": a.temperature = try number(x, key, 0...Limits.maxTemperature)
            case "max_tokens": a.maxTokens = try integer(x, key, 1...Limits.maxTokens)
            case "token_budget": a.tokenBudget = try integer(x, key, 1...Limits.maxTokenBudget)
            case "deadline_ms": a.deadlineMs = try integer(x, key, 1...Limits.maxDeadlineMs)
            case "interrupt":
                let s = try string(x, key, maxBytes: Limits.maxNameBytes)
                guard InterruptPolicy(rawValue: s) != nil else { throw GunnError(.configInvalid, "\(key) must be \"always\" or \"only_conflict\"") }
                a.interrupt = s
            case "staleness_threshold": a.stalenessThreshold = try integer(x, key, 0...Limits.maxStalenessThreshold)
            case "debounce_ms": a.debounceMs = try number(x, key, Limits.durationMs)
            case "distance_limit": a.distanceLimit = try number(x, key, 0...1e12)
            case "spawn":
                guard case .array(let p) = x, p.count == 2 || p.count == 3,
                      p.allSatisfy({ $0.numberValue.map { $0.isFinite && abs($0) <= Limits.maxCoordinate } == true }) else {
                    throw GunnError(.configInvalid, "\(key) must be [x, y] or [x, y, z], each within ±\(Int(Limits.maxCoordinate))")
                }
                a.spawn = p.compactMap(\.numberValue)
            case "start": a.start = try bool(x, key)
            case "repeat": a.repeat = try bool(x, key)
            case "respond_to": a.respondTo = try strings(x, key, maxCount: Limits.maxListCount, maxBytes: Limits.maxNameBytes)
            case "interject": a.interject = try bool(x, key)
            case "max_turns": a.maxTurns = try integer(x, key, 0...Limits.maxTurns)
            case "max_retries": a.maxRetries = try integer(x, key, 0...Limits.maxRetries)
            case "seed": a.seed = UInt64(try integer(x, key, 0...Limits.maxSeed))
            case "lines": a.lines = try strings(x, key, maxCount: Limits.maxListCount, maxBytes: Limits.maxTextBytes)
            case "token_interval_ms":
                guard case .array(let p) = x, p.count == 2, let lo = p[0].numberValue, let hi = p[1].numberValue, lo >= 0, hi >= lo, hi < 60_000 else {
                    throw GunnError(.configInvalid, "\(key) must be [min, max] milliseconds with 0 ≤ min ≤ max")
                }
                a.tokenIntervalMs = [lo, hi]
            case "request_extra":
                guard case .object(let e) = x else { throw GunnError(.configInvalid, "\(key) must be an object") }
                a.requestExtra = e
            case "ca_file": a.caFile = try string(x, key, maxBytes: Int(PATH_MAX))
            case "connect_timeout_ms": a.connectTimeoutMs = try number(x, key, 1...Limits.maxConnectTimeoutMs)
            default: a.stallMs = try number(x, key, 1...Limits.durationMs.upperBound)
            }
        }
        if a.backend != .dummy && a.endpoint == nil { throw GunnError(.configInvalid, "\(at).endpoint is required for backend \(a.backend.rawValue)") }
        return a
    }

    static func string(_ v: JSONValue, _ key: String, maxBytes: Int) throws(GunnError) -> String {
        guard case .string(let s) = v else { throw GunnError(.configInvalid, "\(key) must be a string") }
        guard s.utf8.count <= maxBytes else { throw GunnError(.configInvalid, "\(key) is longer than \(maxBytes) bytes") }
        return s
    }
    static func strings(_ v: JSONValue, _ key: String, maxCount: Int, maxBytes: Int) throws(GunnError) -> [String] {
        guard case .array(let a) = v else { throw GunnError(.configInvalid, "\(key) must be an array of strings") }
        guard a.count <= maxCount else { throw GunnError(.configInvalid, "\(key) has more than \(maxCount) entries") }
        var out: [String] = []
        for x in a {
            guard case .string(let s) = x else { throw GunnError(.configInvalid, "\(key) must be an array of strings") }
            guard s.utf8.count <= maxBytes else { throw GunnError(.configInvalid, "\(key) has an entry longer than \(maxBytes) bytes") }
            out.append(s)
        }
        return out
    }
    static func bool(_ v: JSONValue, _ key: String) throws(GunnError) -> Bool {
        guard case .bool(let b) = v else { throw GunnError(.configInvalid, "\(key) must be true or false") }
        return b
    }
    static func number(_ v: JSONValue, _ key: String, _ range: ClosedRange<Double>) throws(GunnError) -> Double {
        guard case .number(let n) = v, n.isFinite, range.contains(n) else {
            throw GunnError(.configInvalid, "\(key) must be a number in \(Self.text(range.lowerBound))…\(Self.text(range.upperBound))")
        }
        return n
    }
    /// A whole number in `range`: a fraction, a string or anything out of range is refused (never
    /// rounded or clamped), so every later conversion (to UInt32 on the wire, say) is exact.
    static func integer(_ v: JSONValue, _ key: String, _ range: ClosedRange<Int>) throws(GunnError) -> Int {
        guard case .number(let n) = v, n.isFinite, n.rounded(.towardZero) == n, n >= Double(range.lowerBound), n <= Double(range.upperBound) else {
            throw GunnError(.configInvalid, "\(key) must be an integer in \(range.lowerBound)…\(range.upperBound)")
        }
        return Int(n)
    }
    static func text(_ d: Double) -> String { d == d.rounded() && abs(d) < 1e15 ? String(Int(d)) : String(d) }
}

extension AdapterConfig {
    /// The bounds of every setting: a value outside them is CONFIG_INVALID naming its key. Each
    /// bound keeps the value exact in every later conversion (the wire's UInt32 fields, a
    /// Double's 53-bit integers, timers) and far above any sensible use.
    public enum Limits {
        public static let maxTokens = 100_000
        public static let maxTokenBudget = 1_000_000
        /// One day; the wire field is a UInt32.
        public static let maxDeadlineMs = 86_400_000
        public static let maxStalenessThreshold = 1 << 30
        public static let maxTurns = 1_000_000
        public static let maxRetries = 1000
        /// 2^53: every integer up to it is exact in a JSON number.
        public static let maxSeed = 1 << 53
        public static let maxTemperature = 2.0
        /// Durations (stall, debounce, breaker timings): 0 to one day.
        public static let durationMs: ClosedRange<Double> = 0...86_400_000
        public static let maxConnectTimeoutMs = 600_000.0
        public static let maxConsecutiveFailures = 1000
        public static let maxCoordinate = 1e9
        /// `persona`, each of `lines`.
        public static let maxTextBytes = 64 << 10
        /// `model`, `endpoint`, each of `respond_to`.
        public static let maxNameBytes = 1024
        /// Entries of `lines` and `respond_to`.
        public static let maxListCount = 1000
        /// The config file itself.
        public static let maxConfigBytes = 4 << 20
    }
}
