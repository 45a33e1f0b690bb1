import Foundation
import GunnClient
import GunnCore
import GunnLLM
import GunnWire
import Synchronization

/// The LLM adapter: hosts the configured agents on one connection to the orchestrator. Each agent
/// keeps its view (GunnClient applies the deltas), hears the others' committed speech and partial
/// speech, and takes turns: it asks for a generation (a cancel token bound to its view), streams
/// tokens from its backend while relaying them, and submits a Speak with the token's context_seq.
/// A Cancel halts the stream at once (the HTTP connection is closed) and is answered with Halted;
/// a cancelled or STALE_CONTEXT attempt is regenerated against the fresh view, `max_retries` times
/// per turn. Everything it does is written as one JSON line to `events`.
public final class LLMAdapter: Sendable {
    public let config: AdapterConfig
    let client: GunnClient
    let breakers: EndpointBreakers
    let events: @Sendable (JSONValue) -> Void
    let agents: [LLMAgent]
    /// Distinguishes this process's req_ids from an earlier run's (the log keeps those).
    let runID: String

    public init(config: AdapterConfig, client: GunnClient, runID: String, events: @escaping @Sendable (JSONValue) -> Void) {
        self.config = config
        self.client = client
        self.events = events
        self.runID = runID
        let breakers = EndpointBreakers(config.breaker) { endpoint, t in
            events(["event": "breaker", "endpoint": .string(endpoint), "from": .string(t.from.rawValue), "to": .string(t.to.rawValue), "reason": .string(t.reason)])
        }
        self.breakers = breakers
        let hub = TokenHub()
        agents = config.agents.map { a in
            LLMAgent(config: a, client: client, backend: LLMAdapter.backend(for: a, breakers: breakers), runID: runID, hub: hub, events: events)
        }
        hub.set(agents)
        self.hub = hub
    }

    let hub: TokenHub

    static func backend(for a: AdapterConfig.Agent, breakers: EndpointBreakers) -> any LLMBackend {
        switch a.backend {
        case .dummy:
            return DummyBackend(minIntervalMs: a.tokenIntervalMs[0], maxIntervalMs: a.tokenIntervalMs[1], lines: a.lines)
        case .openai, .ollama:
            let e = a.endpoint!
            var h = HTTPBackend(host: e.host, port: e.port, format: a.backend == .openai ? .openAISSE : .ollamaNDJSON)
            h.extraBody = a.requestExtra
            h.stallSeconds = a.stallMs / 1000
            h.connectTimeoutSeconds = a.connectTimeoutMs / 1000
            h.tls = e.tls
            h.caFile = a.caFile
            return GuardedBackend(h, breakers: breakers)
        }
    }

    /// Registers every agent (retrying while the orchestrator is not there yet), then runs until
    /// the connection is closed for good.
    public func run() async {
        for a in agents { await a.register() }
        await withTaskGroup(of: Void.self) { group in
            for a in agents {
                group.addTask { await a.observeLoop() }
                group.addTask { await a.cancelLoop() }
                group.addTask { await a.kickOff() }
            }
            // Partial speech of agents on other connections.
            group.addTask {
                while let t = await self.client.nextTokenChunk() { await self.hub.heard(t) }
            }
        }
    }
}

/// Partial speech inside the adapter: tokens relayed by the orchestrator (other connections'
/// agents) and tokens of this adapter's own agents (the orchestrator does not send a connection
/// its own tokens back) reach the agents here that may interject.
final class TokenHub: Sendable {
    private let agents = Mutex<[LLMAgent]>([])

    func set(_ list: [LLMAgent]) { agents.withLock { $0 = list } }

    /// A relayed token: at the first one of a generation, the agents that see the speaker and
    /// interject on it start a turn.
    func heard(_ t: TokenChunk) async {
        if t.index == 0 { await began(t.agentID, req: t.reqID) }
    }

    func began(_ speaker: String, req: String) async {
        for a in agents.withLock({ $0 }) where a.id.rawValue != speaker { await a.partialSpeech(from: speaker, req: req) }
    }

    /// The first token of one of this adapter's own agents.
    func local(from speaker: String, req: String) {
        Task { await began(speaker, req: req) }
    }
}

/// One hosted agent.
actor LLMAgent {
    let config: AdapterConfig.Agent
    let id: AgentID
    let client: GunnClient
    let backend: any LLMBackend
    let runID: String
    let events: @Sendable (JSONValue) -> Void
    /// The live generation, reachable without entering the actor: a Cancel halts it at once.
    let live = Mutex<(req: ReqID, generation: Generation)?>(nil)
    let hub: TokenHub

    /// Speech heard, in the order of the log.
    var transcript: [(seq: Int, speaker: String, text: String)] = []
    var lastHeard: [String: Int] = [:]
    var turnsDone = 0
    var attempts = 0
    var busy = false
    var pending = false

    init(config: AdapterConfig.Agent, client: GunnClient, backend: any LLMBackend, runID: String, hub: TokenHub, events: @escaping @Sendable (JSONValue) -> Void) {
        self.hub = hub
        self.config = config
        self.id = AgentID(config.id)
        self.client = client
        self.backend = backend
        self.runID = runID
        self.events = events
    }

    func emit(_ event: String, _ fields: JSONObject) {
        var o = fields
        o["event"] = .string(event)
        o["agent"] = .string(id.rawValue)
        events(.object(o))
    }

    var registration: JSONValue {
        var o: JSONObject = ["agent_id": .string(id.rawValue), "spawn": .array(config.spawn.map { .number($0) }),
                             "staleness_threshold": .number(Double(config.stalenessThreshold)),
                             "interrupt": .string(config.interrupt), "debounce_ms": .number(config.debounceMs)]
        if let d = config.distanceLimit { o["distance_limit"] = .number(d) }
        return .object(o)
    }

    func register() async {
        var delay = 0.05
        while true {
            do {
                try await client.register(registration)
                emit("registered", [:])
                scanView(history: true)
                return
            } catch {
                emit("error", ["during": "register", "error": .string("\(error)")])
                try? await Task.sleep(nanoseconds: UInt64(delay * 1e9))
                delay = min(2, delay * 2)
            }
        }
    }

    func kickOff() async {
        if config.start { trigger(because: "start") }
    }

    // MARK: - Hearing

    func observeLoop() async {
        while await client.nextObservation(for: id) != nil { scanView() }
    }

    /// New speech in the view (an entity's `last_speech` with a later global_seq), in log order.
    /// `history`: what the view already held when the agent registered (a world resumed from its
    /// log) joins the transcript but starts no turn.
    func scanView(history: Bool = false) {
        guard let view = client.view(of: id)?.doc, case .object(let entities)? = view["entities"] else { return }
        var fresh: [(seq: Int, speaker: String, text: String)] = []
        for (eid, e) in entities {
            guard case .object(let speech)? = e["last_speech"], let seq = speech["global_seq"]?.int64Value, case .string(let text)? = speech["text"] else { continue }
            if Int(seq) > lastHeard[eid, default: 0] {
                lastHeard[eid] = Int(seq)
                fresh.append((Int(seq), eid, text))
            }
        }
        for s in fresh.sorted(by: { $0.seq < $1.seq }) {
            transcript.append(s)
            if transcript.count > 64 { transcript.removeFirst() }
            guard s.speaker != id.rawValue, !history else { continue }
            emit("heard", ["speaker": .string(s.speaker), "global_seq": .number(Double(s.seq)), "text": .string(s.text)])
            if respondsTo(s.speaker) { trigger(because: "\(s.speaker) said something (global_seq \(s.seq))") }
        }
    }

    func respondsTo(_ speaker: String) -> Bool { config.respondTo.contains(speaker) || config.respondTo.contains("*") }

    /// The first token of someone's generation: an interjecting agent that sees them starts a turn.
    func partialSpeech(from speaker: String, req: String) {
        guard config.interject, turnsDone < config.maxTurns, respondsTo(speaker), sees(speaker) else { return }
        emit("hearing", ["speaker": .string(speaker), "req_id": .string(req)])
        trigger(because: "\(speaker) began to speak")
    }

    func sees(_ entity: String) -> Bool { client.view(of: id)?.doc["entities"]?[entity] != nil }

    // MARK: - Turns

    func trigger(because why: String) {
        guard turnsDone < config.maxTurns else { return }
        if busy { pending = true; return }
        busy = true
        Task { await self.takeTurn(why) }
    }

    func takeTurn(_ why: String) async {
        let turn = turnsDone
        emit("turn", ["turn": .number(Double(turn)), "why": .string(why)])
        var retry = 0
        var backoff = Backoff(baseSeconds: 0.2, capSeconds: 5)
        attemptLoop: while retry <= config.maxRetries {
            let req = ReqID("\(id)-\(runID)-t\(turn)-a\(retry)")
            let outcome = await attempt(req, turn: turn, retry: retry)
            switch outcome {
            case .spoke:
                turnsDone += 1
                break attemptLoop
            case .regenerate(let after):
                retry += 1
                if let seq = after { await waitForView(atLeast: seq) }
            case .backOff(let ms):
                retry += 1
                try? await Task.sleep(nanoseconds: RetryDelay.nanoseconds(retryAfterMs: ms, fallbackSeconds: backoff.next()))
            case .giveUp:
                break attemptLoop
            }
            if retry > config.maxRetries { emit("gave_up", ["turn": .number(Double(turn)), "attempts": .number(Double(retry))]) }
        }
        busy = false
        if turnsDone < config.maxTurns && (pending || config.repeat) {
            pending = false
            trigger(because: config.repeat ? "repeat" : "heard more while speaking")
        }
        pending = false
    }

    enum Outcome { case spoke, regenerate(afterSeq: UInt64?), backOff(retryAfterMs: UInt64?), giveUp }

    /// Waits (briefly) until the view reflects the effect that made the last attempt stale.
    func waitForView(atLeast seq: UInt64) async {
        for _ in 0..<500 {
            if (client.viewGlobalSeq(of: id) ?? 0) >= seq { break }
            try? await Task.sleep(nanoseconds: 2_000_000)
        }
        scanView()
    }

    var messages: [(role: String, content: String)] {
        let heard = transcript.suffix(12).map { "\($0.speaker): \($0.text)" }.joined(separator: "\n")
        let user = (heard.isEmpty ? "Nobody has spoken yet." : "The conversation so far:\n" + heard) + "\nSay your next line as \(id.rawValue), in one short sentence."
        return [("system", config.persona), ("user", user)]
    }

    func attempt(_ req: ReqID, turn: Int, retry: Int) async -> Outcome {
        let token: CancelTokenMessage
        do {
            // Exact: AdapterConfig bounds both far below UInt32.max (AdapterConfig.Limits).
            token = try await client.beginGeneration(id, reqID: req, deadlineMs: UInt32(config.deadlineMs ?? 0),
                                                     tokenBudget: UInt32(config.tokenBudget ?? 0))
        } catch let e as GunnError {
            emit("error", ["during": "begin_generation", "req_id": .string(req.rawValue), "code": .string(e.code.name), "error": .string(e.message)])
            return .backOff(retryAfterMs: e.retryAfterMs)
        } catch {
            emit("error", ["during": "begin_generation", "req_id": .string(req.rawValue), "error": .string("\(error)")])
            return .backOff(retryAfterMs: nil)
        }
        emit("generating", ["req_id": .string(req.rawValue), "turn": .number(Double(turn)), "retry": .number(Double(retry)), "context_seq": .number(Double(token.contextSeq))])
        var params = GenerationParams(messages: messages)
        params.model = config.model
        params.temperature = config.temperature
        params.maxTokens = config.maxTokens
        params.tokenBudget = config.tokenBudget
        params.deadlineMs = config.deadlineMs.map(Double.init)
        params.seed = config.seed &+ UInt64(attempts)
        attempts += 1
        let (end, tokens, text) = await run(req, params)
        switch end {
        case .cancelled(let reason):
            // Halted was sent by the cancel path the moment the stream closed.
            var after: UInt64?
            if reason.hasPrefix("stale_due_to:") { after = UInt64(reason.dropFirst("stale_due_to:".count)) }
            emit("regenerating", ["req_id": .string(req.rawValue), "reason": .string(reason), "tokens_discarded": .number(Double(tokens))])
            return .regenerate(afterSeq: after)
        case .failed(let e):
            client.postHalted(req, agent: id, tokensEmitted: UInt32(clamping: tokens), haltLatencyUs: 0, cancelled: false)
            emit("error", ["during": "generation", "req_id": .string(req.rawValue), "code": .string(e.code.name), "error": .string(e.message),
                           "tokens": .number(Double(tokens))])
            if e.code == .llmServiceError { return .backOff(retryAfterMs: e.retryAfterMs) }
            return .giveUp // deadline or budget: the turn is over
        case .completed:
            // The generation is over (its token retired), then the Speak is judged by its context.
            client.postHalted(req, agent: id, tokensEmitted: UInt32(clamping: tokens), haltLatencyUs: 0, cancelled: false)
            let line = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !line.isEmpty else {
                emit("error", ["during": "generation", "req_id": .string(req.rawValue), "error": "the backend produced no text"])
                return .backOff(retryAfterMs: nil)
            }
            let intent = Intent(kind: .speak, payload: ["text": .string(String(line.unicodeScalars.prefix(4000)))], contextSeq: token.contextSeq, reqID: req, agentID: id)
            do {
                switch try await client.submit(intent) {
                case .committed(let effect):
                    emit("spoke", ["req_id": .string(req.rawValue), "global_seq": .number(Double(effect.globalSeq)), "text": .string(line),
                                   "tokens": .number(Double(tokens))])
                    return .spoke
                case .rejected(let e) where e.code == .staleContext:
                    emit("stale", ["req_id": .string(req.rawValue), "error": .string(e.message)])
                    return .regenerate(afterSeq: nil)
                case .rejected(let e):
                    emit("error", ["during": "submit", "req_id": .string(req.rawValue), "code": .string(e.code.name), "error": .string(e.message)])
                    return e.retryAfterMs != nil ? .backOff(retryAfterMs: e.retryAfterMs) : .giveUp
                }
            } catch {
                emit("error", ["during": "submit", "req_id": .string(req.rawValue), "error": .string("\(error)")])
                return .backOff(retryAfterMs: nil)
            }
        }
    }

    /// Streams one generation to its end, relaying each token as it comes.
    func run(_ req: ReqID, _ params: GenerationParams) async -> (GenerationEnd, Int, String) {
        let client = self.client, id = self.id, hub = self.hub
        let index = Atomic<UInt32>(0)
        return await withCheckedContinuation { (k: CheckedContinuation<(GenerationEnd, Int, String), Never>) in
            let box = Mutex<Generation?>(nil)
            let g = Generation(onToken: { text in
                let i = index.add(1, ordering: .relaxed).oldValue
                client.postToken(id, reqID: req, index: i, text: text)
                if i == 0 { hub.local(from: id.rawValue, req: req.rawValue) } // this adapter's own agents may interject
            }, onEnd: { [self] end, tokens in
                live.withLock { if $0?.req == req { $0 = nil } }
                let text = box.withLock { $0?.text } ?? ""
                k.resume(returning: (end, tokens, text))
            })
            box.withLock { $0 = g }
            live.withLock { $0 = (req, g) }
            g.start(backend, params)
        }
    }

    // MARK: - Cancels

    func cancelLoop() async {
        while let c = await client.nextCancel(for: id) { halt(c) }
    }

    /// A Cancel from the orchestrator: the stream is closed now, and Halted says how many tokens
    /// were emitted and how long the halt took since the orchestrator issued the Cancel.
    nonisolated func halt(_ c: Cancel) {
        let received = Date().timeIntervalSince1970
        guard let g = live.withLock({ l -> Generation? in
            guard let l, l.req.rawValue == c.reqID else { return nil }
            return l.generation
        }), g.cancel(reason: c.reason) else { return } // already over: its Halted goes out with the Speak
        let now = Date().timeIntervalSince1970
        let since = c.issuedAtMicros > 0 ? Double(c.issuedAtMicros) / 1e6 : received
        let latency = UInt64(max(0, now - since) * 1e6)
        let tokens = g.tokensEmitted
        client.postHalted(ReqID(c.reqID), agent: id, tokensEmitted: UInt32(clamping: tokens), haltLatencyUs: latency, cancelled: true)
        events(["event": "cancelled", "agent": .string(id.rawValue), "req_id": .string(c.reqID), "reason": .string(c.reason),
                "tokens_discarded": .number(Double(tokens)), "halt_latency_us": .number(Double(latency))])
    }
}
