import Foundation
import Synchronization
import GunnAuth
import GunnClient
import GunnCore
import GunnCrypto
import GunnHTTP
import GunnIO
import GunnOrchestratorServer
import GunnWire
import GunnTelemetry

/// Settings of the web adapter (docs/web.md). Every bound has a default.
public struct WebConfig: Sendable {
    public var worldID: String
    /// Requests per second one agent may make (a token bucket: `agentBurst` at once).
    public var agentRate: Double = 200
    public var agentBurst: Double = 400
    /// Requests per second one tenant may make, over all its agents.
    public var tenantRate: Double = 2000
    public var tenantBurst: Double = 4000
    /// Agents one tenant may register, and WebSocket/SSE streams it may hold open.
    public var maxAgentsPerTenant = 1000
    public var maxStreamsPerTenant = 256
    /// Recent observations kept per agent, for resuming a stream with deltas.
    public var resumeWindow = 256
    /// Refusals of a token for one of its own agents (a right it lacks, another tenant's agent,
    /// its rate limit) after which that agent is quarantined; 0 never quarantines.
    public var quarantineAfter = 50
    public init(worldID: String) { self.worldID = worldID }
}

/// `gunn-adapter-web`'s logic: an orchestrator client (one GunnClient connection for every agent
/// it hosts) serving REST, WebSocket and server-sent events to agents written in any language.
/// Tokens are checked on every request; tenants are kept apart here (the orchestrator sees one
/// connection), so every agent belongs to the tenant that registered it.
public final class WebAdapter: Sendable {
    public let config: WebConfig
    public let client: GunnClient
    public let auth: Authenticator
    let hub: StreamHub
    private let state = Mutex(State())
    private let agentsFile: String?

    struct State {
        /// agent → tenant and its registration (the JSON sent to the orchestrator).
        var owners: [String: (tenant: String, registration: JSONValue)] = [:]
        var agentBuckets: [String: TokenBucket] = [:]
        var tenantBuckets: [String: TokenBucket] = [:]
        var streamsByTenant: [String: Int] = [:]
        var refusals = 0
        /// Refusals counted towards quarantine, by agent (bounded: cleared past `maxCounted`).
        var violations: [String: Int] = [:]

    }
    static let maxCounted = 100_000
    let quarantine: QuarantineList?
    let contexts: ContextJournal
    let generationsBox: GenerationsBox
    private let persistLock = Mutex(())

    /// Retries of an intent without context_seq within this many later intents reuse its context.
    static let maxRememberedContexts = 100_000

    /// WebSocket and SSE streams open now, over every tenant.
    public var openStreams: Int { state.withLock { $0.streamsByTenant.values.reduce(0, +) } }
    /// Observations delivered to streams so far.
    public var delivered: Int { hub.delivered }

    /// `agentsFile` (data/web-agents.json) keeps agent → tenant across restarts.
    /// Spans of the intents submitted here (on with the `tracing` feature).
    let tracer: Tracer?

    /// Readiness asks of the orchestrator waiting at once.
    let readyProbes = Admission(limit: 16)

    /// The live dashboard at `/` (nil: not served).
    let dashboard: Dashboard?

    public init(config: WebConfig, client: GunnClient, auth: Authenticator, agentsFile: String? = nil, tracer: Tracer? = nil,
                dashboard: Dashboard? = nil) {
        self.config = config
        self.dashboard = dashboard
        self.tracer = tracer
        self.client = client
        self.auth = auth
        self.agentsFile = agentsFile
        quarantine = agentsFile.map { QuarantineList(dataDir: ($0 as NSString).deletingLastPathComponent) }
        let generationsBox = GenerationsBox()
        var heard: (@Sendable (String, String, UInt32, String) -> Void)?
        if let dashboard { heard = { speaker, req, index, text in dashboard.token(speaker: speaker, reqID: req, index: index, text: text) } }
        hub = StreamHub(client: client, window: config.resumeWindow, heard: heard) { agent, reqID in generationsBox.cancelled(agent, reqID) }
        self.generationsBox = generationsBox
        hub.ensureTokenForwarder()
        contexts = ContextJournal(path: agentsFile.map { ($0 as NSString).deletingLastPathComponent + "/web-contexts.jsonl" },
                                  capacity: Self.maxRememberedContexts)
        if let agentsFile, let data = FileManager.default.contents(atPath: agentsFile), let v = try? JSONParser.parse([UInt8](data)),
           let obj = v.objectValue {
            state.withLock { s in
                for (agent, entry) in obj {
                    if let t = entry["tenant"]?.stringValue, let r = entry["registration"] { s.owners[agent] = (t, r) }
                }
            }
        }
    }

    /// Registers again, after a restart of this process, every agent a tenant registered before,
    /// so their views and streams continue (the orchestrator keeps their entities).
    public func restoreAgents() async {
        let all = state.withLock { $0.owners }
        for (agent, entry) in all {
            // Right after a kill -9 the orchestrator may not have seen the old connection close yet
            // (FORBIDDEN: the agent is still owned): retried with backoff for up to 10 s.
            var backoff = Backoff(baseSeconds: 0.05, capSeconds: 1.0)
            let deadline = EventLoop.now() + 10
            while EventLoop.now() < deadline {
                do {
                    if try await client.register(entry.registration) != nil { hub.ensureForwarder(agent); break }
                } catch let e as GunnError where e.code != .forbidden && e.code != .adapterUnavailable {
                    log("cannot register \(agent) again: \(e)")
                    break
                } catch {
                    log("registering \(agent) again: \(error); retrying")
                }
                try? await Task.sleep(nanoseconds: UInt64(backoff.next() * 1e9))
            }
        }
    }

    /// An agent this adapter owns (data/web-agents.json) but has not registered in this process
    /// yet — right after a restart — is registered on first use.
    func ensureRegistered(_ agent: String) async -> Bool {
        if client.view(of: AgentID(agent)) != nil { return true }
        guard let registration = state.withLock({ $0.owners[agent]?.registration }) else { return false }
        do {
            guard try await client.register(registration) != nil else { return false }
        } catch {
            log("registering \(agent) on first use: \(error)")
            return false
        }
        hub.ensureForwarder(agent)
        return true
    }

    func log(_ line: String) { FileHandle.standardError.write(Data("gunn-adapter-web: \(line)\n".utf8)) }

    private func persistOwners() {
        guard let agentsFile else { return }
        // One writer at a time, so an older snapshot is never renamed over a newer one.
        persistLock.withLock { _ in writeOwners(agentsFile) }
    }

    private func writeOwners(_ agentsFile: String) {
        let doc = state.withLock { s -> JSONValue in
            var o = JSONObject()
            for (a, e) in s.owners { o[a] = .object(JSONObject(["tenant": .string(e.tenant), "registration": e.registration])) }
            return .object(o)
        }
        let tmp = agentsFile + ".tmp"
        if FileManager.default.createFile(atPath: tmp, contents: Data(CanonicalJSON.encode(doc)), attributes: [.posixPermissions: 0o600]) {
            _ = rename(tmp, agentsFile)
        }
    }

    // MARK: - checks every request goes through

    /// The token's claims, with the right and (when named) the agent checked, and the agent's and
    /// tenant's rate limits taken.
    func authorize(_ req: HTTPRequest, _ right: Right, agent: String? = nil) throws(GunnError) -> TokenClaims {
        var header = req.headers["authorization"]
        if header == nil, let t = req.query("access_token") { header = "Bearer " + t }
        let claims: TokenClaims
        do { claims = try auth.claims(authorization: header) } catch {
            state.withLock { $0.refusals += 1 }
            throw error
        }
        if let agent, !SchemaCheck.matches(agent, Self.agentIDPattern) {
            throw GunnError(.invalidAgentID, "agent ids match \(Self.agentIDPattern)")
        }
        if let agent, quarantine?.isQuarantined(agent) == true {
            throw GunnError(.agentQuarantined, "agent \(agent) is quarantined after repeated refusals; an operator releases it (gunnctl token release)")
        }
        do throws(GunnError) {
            try Authenticator.require(claims, right, agent: agent)
            if let agent {
                let owner = state.withLock { $0.owners[agent]?.tenant }
                if let owner, owner != claims.tenant {
                    throw GunnError(.tenantIsolationViolation, "agent \(agent) belongs to another tenant")
                }
            }
            try takeRate(tenant: claims.tenant, agent: agent)
        } catch {
            violation(claims, agent: agent, error)
            throw error
        }
        return claims
    }

    func takeRate(tenant: String, agent: String?) throws(GunnError) {
        let now = EventLoop.now()
        let wait = state.withLock { s -> UInt64? in
            // Buckets are kept for this tenant's own agents only, and both tables are bounded.
            let agent = agent.flatMap { s.owners[$0]?.tenant == tenant ? $0 : nil }
            if s.agentBuckets.count > Self.maxCounted { s.agentBuckets.removeAll() }
            if s.tenantBuckets.count > Self.maxCounted { s.tenantBuckets.removeAll() }
            var t = s.tenantBuckets[tenant] ?? TokenBucket(capacity: config.tenantBurst, refillPerSecond: config.tenantRate)
            if let w = t.take(at: now) { s.tenantBuckets[tenant] = t; return w }
            if let agent {
                var a = s.agentBuckets[agent] ?? TokenBucket(capacity: config.agentBurst, refillPerSecond: config.agentRate)
                if let w = a.take(at: now) { t.refund(); s.tenantBuckets[tenant] = t; s.agentBuckets[agent] = a; return w }
                s.agentBuckets[agent] = a
            }
            s.tenantBuckets[tenant] = t
            return nil
        }
        if let wait { throw GunnError(.quotaExceeded, "the rate limit of \(agent.map { "agent \($0)" } ?? "tenant \(tenant)") is reached", retryAfterMs: max(1, wait)) }
    }

    /// A request's view or registration answer.
    func viewBody(_ agent: String) -> JSONValue? {
        guard let (seq, doc) = client.view(of: AgentID(agent)) else { return nil }
        return .object(JSONObject([
            "agent_id": .string(agent), "view_seq": .number(Double(seq)),
            "global_seq": .number(Double(client.viewGlobalSeq(of: AgentID(agent)) ?? 0)),
            "context_digest": .string(HeldViews.digest(doc)), "view": doc,
        ]))
    }

    // MARK: - operations

    func register(_ req: HTTPRequest) async -> HTTPResponse {
        let body: JSONValue
        switch checkedBody(req, "Registration") { case .success(let b): body = b; case .failure(let r): return r.response }
        guard case .object(var obj) = body, let agent = obj["agent_id"]?.stringValue else { return .error(.invalidField, "the registration must be an object with agent_id") }
        let claims: TokenClaims
        do { claims = try authorize(req, .act, agent: agent) } catch { return Self.answer(error) }
        // The tenant is the token's, never the body's (the schema has no tenant field).
        obj["tenant"] = .string(claims.tenant)
        let registration = JSONValue.object(obj)
        do { _ = try WireJSON.registration(registration) } catch { return Self.answer(error) }
        // The agent is reserved for this tenant before the orchestrator is asked, so two tenants
        // registering one new id at once cannot both win; a failed registration gives it back.
        enum Admission { case fresh, again, taken, full }
        let admission = state.withLock { s -> Admission in
            if let o = s.owners[agent] { return o.tenant == claims.tenant ? .again : .taken }
            guard s.owners.values.filter({ $0.tenant == claims.tenant }).count < config.maxAgentsPerTenant else { return .full }
            s.owners[agent] = (claims.tenant, registration)
            return .fresh
        }
        switch admission {
        case .taken: return .error(.tenantIsolationViolation, "agent \(agent) belongs to another tenant")
        case .full: return .error(.quotaExceeded, "tenant \(claims.tenant) holds its maximum of \(config.maxAgentsPerTenant) agents", retryAfterMs: 60_000)
        case .fresh, .again: break
        }
        func refuse(_ r: HTTPResponse) -> HTTPResponse {
            if admission == .fresh { state.withLock { s in if s.owners[agent]?.tenant == claims.tenant { s.owners[agent] = nil } } }
            return r
        }
        do {
            guard try await client.register(registration) != nil else { return refuse(.error(.adapterUnavailable, "the orchestrator sent no view for \(agent)", retryAfterMs: 500)) }
        } catch {
            return refuse(Self.failure(error))
        }
        state.withLock { $0.owners[agent] = (claims.tenant, registration) }
        persistOwners()
        hub.ensureForwarder(agent)
        guard let v = viewBody(agent) else { return .error(.adapterUnavailable, "no view yet for \(agent)", retryAfterMs: 200) }
        return .json(v, status: 201)
    }

    func view(_ req: HTTPRequest) async -> HTTPResponse {
        let agent = req.params["agent_id"] ?? ""
        do { _ = try authorize(req, .observe, agent: agent) } catch { return Self.answer(error) }
        _ = await ensureRegistered(agent)
        guard state.withLock({ $0.owners[agent] != nil }), let v = viewBody(agent) else {
            return .error(.invalidAgentID, "agent \(agent) is not registered here")
        }
        return .json(v)
    }

    func submit(_ req: HTTPRequest) async -> HTTPResponse {
        let agent = req.params["agent_id"] ?? ""
        let body: JSONValue
        switch checkedBody(req, "Intent", code: .invalidIntent) { case .success(let b): body = b; case .failure(let r): return r.response }
        if let key = req.headers["idempotency-key"], !SchemaCheck.matches(key, Self.reqIDPattern) {
            return .error(.invalidField, "the Idempotency-Key header does not match \(Self.reqIDPattern)")
        }
        guard case .object(var obj) = body else { return .error(.invalidIntent, "the intent must be a JSON object") }
        do { _ = try authorize(req, .act, agent: agent) } catch { return Self.answer(error) }
        _ = await ensureRegistered(agent)
        guard state.withLock({ $0.owners[agent] != nil }), let (seq, _) = client.view(of: AgentID(agent)) else {
            return .error(.invalidAgentID, "agent \(agent) is not registered here")
        }
        let key = req.headers["idempotency-key"]
        switch (obj["req_id"]?.stringValue, key) {
        case (let r?, let k?) where r != k:
            return .error(.invalidField, "req_id and the Idempotency-Key header differ")
        case (nil, let k?):
            obj["req_id"] = .string(k)
        case (nil, nil):
            let random = (try? SecureRandom.bytes(count: 12)).map { Digest(bytes: $0).hex } ?? UUID().uuidString
            obj["req_id"] = .string("web-" + random)
            // An id made here is never retried: its context needs no journal.
            if obj["context_seq"] == nil { obj["context_seq"] = .number(Double(seq)) }
        default:
            break
        }
        if obj["context_seq"] == nil, let r = obj["req_id"]?.stringValue {
            obj["context_seq"] = .number(Double(contexts.context(agent: agent, req: r, current: seq)))
        }
        if let a = obj["agent_id"], a.stringValue != agent { return .error(.invalidIntent, "intent field \"agent_id\" must be the agent of the path") }
        obj["agent_id"] = .string(agent)
        let intent: Intent
        do { intent = try Intent(json: .object(obj)) } catch { return Self.answer(error) }
        // The request's traceparent header (if any) is the parent: this intent joins the caller's trace.
        let span = tracer?.start("web POST /v1/agents/{agent_id}/intents", parent: req.headers["traceparent"].flatMap(TraceContext.parse), kind: .server,
                                 sampleNew: true)
        let response: HTTPResponse
        do {
            switch try await client.submit(intent, traceparent: span?.context.header ?? "") {
            case .committed(let effect):
                response = .json(.object(JSONObject(["status": "committed", "req_id": .string(intent.reqID.rawValue), "effect": effect.json])))
            case .rejected(let e):
                response = .error(e)
            }
        } catch {
            response = Self.failure(error)
        }
        tracer?.end(span, ["agent_id": .string(agent), "req_id": .string(intent.reqID.rawValue), "http.response.status_code": .number(Double(response.status))],
                    error: response.status >= 400 ? "HTTP \(response.status)" : nil)
        return response
    }

    func emit(_ req: HTTPRequest) async -> HTTPResponse {
        let body: JSONValue
        switch checkedBody(req, "EffectDraft") { case .success(let b): body = b; case .failure(let r): return r.response }
        let claims: TokenClaims
        do { claims = try authorize(req, .emit) } catch { return Self.answer(error) }
        // An effect may not touch another tenant's agents: every agent id its payload names must be
        // unowned or this tenant's, and a JSONPatch (which can reach anything) needs admin.
        if body["kind"]?.stringValue == "JSONPatch" && !claims.rights.contains(.admin) {
            return .error(.forbidden, "a JSONPatch effect needs the admin right")
        }
        // A game engine's records come from the engine bridge, not from a web client.
        if let kind = body["kind"]?.stringValue, ["BodyUpdate", "EngineCommand", "EngineCommandResult", "EngineLink"].contains(kind) {
            return .error(.forbidden, "\(kind) effects come from gunn-adapter-unity (docs/engine.md)")
        }
        for key in ["agent_id", "id", "from", "to", "target", "entity_id", "source_id"] {
            let named = body["payload"]?[key]?.stringValue ?? (key == "source_id" ? body["source_id"]?.stringValue : nil)
            if let a = named, let owner = state.withLock({ $0.owners[a]?.tenant }), owner != claims.tenant {
                return .error(.tenantIsolationViolation, "the effect names agent \(a) of another tenant")
            }
        }
        let draft: EffectDraft
        do { draft = try WireJSON.draft(body) } catch { return Self.answer(error) }
        do {
            if let e = try await client.emit(draft) { return .error(e) }
            return .json(.object(JSONObject(["status": "accepted"])), status: 202)
        } catch {
            return Self.failure(error)
        }
    }

    /// Ready: the orchestrator answers its status within a second and every breaker it reports
    /// (its log link's) is closed.
    func ready() async -> HTTPResponse {
        // Cancelling a status request does not end its wait for the reply: a deadline does, and
        // at most `readyProbes.limit` asks that outlived theirs wait at once.
        let (client, probes) = (client, readyProbes)
        guard probes.enter() else { return .error(.adapterUnavailable, "the orchestrator has not answered the last readiness probes", retryAfterMs: 1000) }
        guard let status = await Deadline.within(1, { defer { probes.leave() }; return try? await client.status() }) else {
            return .error(.adapterUnavailable, "the orchestrator does not answer", retryAfterMs: 1000)
        }
        if let open = status.breakers.first(where: { $0.state != "closed" }) {
            return .error(.adapterUnavailable, "the orchestrator's \(open.name) breaker is \(open.state)", retryAfterMs: 1000)
        }
        return .json(.object(JSONObject(["status": "ready", "global_seq": .number(Double(status.headSeq))])))
    }

    // MARK: - streams

    /// A WebSocket or SSE stream opens for `agents` of one tenant, within its stream cap.
    func openStream(_ req: HTTPRequest) throws(GunnError) -> (TokenClaims, [String]) {
        var seen = Set<String>()
        let names = (req.query("agents") ?? "").split(separator: ",").map(String.init).filter { !$0.isEmpty && seen.insert($0).inserted }
        guard !names.isEmpty, names.count <= 64 else { throw GunnError(.invalidField, "query parameter \"agents\" must name 1 to 64 agents") }
        var claims: TokenClaims?
        for a in names {
            claims = try authorize(req, .observe, agent: a)
            guard state.withLock({ $0.owners[a] != nil }) else { throw GunnError(.invalidAgentID, "agent \(a) is not registered here") }
        }
        let c = claims!
        let ok = state.withLock { s -> Bool in
            let n = s.streamsByTenant[c.tenant, default: 0]
            guard n < config.maxStreamsPerTenant else { return false }
            s.streamsByTenant[c.tenant] = n + 1
            return true
        }
        guard ok else { throw GunnError(.quotaExceeded, "tenant \(c.tenant) holds its maximum of \(config.maxStreamsPerTenant) streams", retryAfterMs: 1000) }
        return (c, names)
    }

    func closeStream(tenant: String) {
        state.withLock { s in s.streamsByTenant[tenant] = max(0, s.streamsByTenant[tenant, default: 1] - 1) }
    }

    /// Resume marks from the query: `resume=AGENT:VIEW_SEQ:DIGEST,…`.
    static func resumeMarks(_ req: HTTPRequest) -> [String: (UInt64, String)] {
        var out: [String: (UInt64, String)] = [:]
        for item in (req.query("resume") ?? "").split(separator: ",") {
            // AGENT may itself hold ":": the last two fields are the view_seq and the digest.
            let p = item.split(separator: ":", omittingEmptySubsequences: false)
            if p.count >= 3, let seq = UInt64(p[p.count - 2]) { out[p[0..<(p.count - 2)].joined(separator: ":")] = (seq, String(p[p.count - 1])) }
        }
        return out
    }

    public var refusals: Int { state.withLock { $0.refusals } }

    /// Counts a refusal against the token's own agent (one the token names, or any of its tenant's
    /// for a `*` token that owns it); at `quarantineAfter` the agent is quarantined: the list under
    /// data/ and an `AgentQuarantined` record in the log. Refusals for agents the token does not
    /// cover count against nobody, so no one can quarantine someone else's agent.
    func violation(_ claims: TokenClaims, agent: String?, _ error: GunnError) {
        state.withLock { $0.refusals += 1 }
        // Only the tenant's own agent, and not for a rate limit (a client that overruns its own
        // quota is slowed, not quarantined).
        guard config.quarantineAfter > 0, error.code != .quotaExceeded, let agent, let quarantine, claims.covers(agent: agent),
              state.withLock({ $0.owners[agent]?.tenant }) == claims.tenant else { return }
        let reached = state.withLock { s -> Bool in
            if s.violations.count >= Self.maxCounted { s.violations.removeAll() }
            let n = s.violations[agent, default: 0] + 1
            s.violations[agent] = n >= config.quarantineAfter ? nil : n
            return n >= config.quarantineAfter
        }
        guard reached else { return }
        let reason = "\(config.quarantineAfter) refusals of token \(claims.id), the last \(error.code.name)"
        guard (try? quarantine.set(agent, reason: reason)) == true else { return }
        log("quarantined \(agent): \(reason)")
        let draft = EffectDraft(kind: "AgentQuarantined", payload: ["agent_id": .string(agent), "reason": .string(reason), "token_id": .string(claims.id)],
                                sourceID: "gunn-adapter-web")
        Task { [client] in _ = try? await client.emit(draft) }
    }

    /// The agents `tenant` registered through this adapter.
    func ownedAgents(of tenant: String) -> Set<String> {
        state.withLock { s in Set(s.owners.filter { $0.value.tenant == tenant }.keys) }
    }

    /// Whether `agent` is this adapter's (registered through it, now or before a restart).
    func owns(_ agent: String) -> Bool { state.withLock { $0.owners[agent] != nil } }

    func setGeneration(_ agent: String, _ reqID: String?) { generationsBox.set(agent, reqID) }
    func isLive(_ agent: String, _ reqID: String) -> Bool { generationsBox.isLive(agent, reqID) }

    /// A request body parsed as JSON and checked against `schema` of the served document, or the
    /// answer to send instead (400 INVALID_JSON, or `code` naming the field).
    func checkedBody(_ req: HTTPRequest, _ schema: String, code: ErrorCode = .invalidField) -> Result<JSONValue, Refusal> {
        do {
            let body = try req.json()
            try SchemaCheck(components: Self.schemas, code: code).check(body, ["$ref": .string("#/components/schemas/\(schema)")])
            return .success(body)
        } catch {
            return .failure(Refusal(response: Self.answer(error)))
        }
    }

    struct Refusal: Error { let response: HTTPResponse }

    /// The answer when a call to the orchestrator failed: its coded refusal, or (the connection
    /// is away) ADAPTER_UNAVAILABLE with a retry hint.
    static func failure(_ error: any Error) -> HTTPResponse {
        switch error {
        case let e as GunnError: return answer(e)
        case let e as ConnectionError: return .error(e.code, e.message, retryAfterMs: 500)
        default: return .error(.adapterUnavailable, "\(error)", retryAfterMs: 500)
        }
    }

    /// The answer to a refusal: the code's status from docs/errors.md, except WORLD_MISMATCH, which
    /// a token of another world gets as 403 (it is a credential refusal here, not a conflict).
    static func answer(_ e: GunnError) -> HTTPResponse {
        e.code == .worldMismatch ? .error(e, status: 403) : .error(e)
    }
}
