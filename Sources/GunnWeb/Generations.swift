import Foundation
import GunnAuth
import GunnClient
import GunnCore
import GunnHTTP
import GunnIO
import GunnWire
import Synchronization

/// External LLM agents: an agent whose model runs in the user's own process begins a generation
/// (its cancel token: the view it decided on), streams its tokens (relayed as partial speech to the
/// agents that see it), and reports when it halted — the same interruption semantics as
/// gunn-adapter-llm. The stream of the agent receives a `cancel` message the moment what it is
/// generating goes stale (`reason`: `stale_due_to:N`); it then stops and reports halted with
/// `cancelled: true`, and the orchestrator logs the cancellation.
extension WebAdapter {
    /// What the tokens and halted calls check first: the body against `schema`, the path's
    /// req_id, the token's act right for the agent, and that the agent is this adapter's.
    func generationCall(_ req: HTTPRequest, _ schema: String) -> Result<(String, String, JSONValue), Refusal> {
        let agent = req.params["agent_id"] ?? "", reqID = req.params["req_id"] ?? ""
        let body: JSONValue
        switch checkedBody(req, schema) { case .success(let b): body = b; case .failure(let r): return .failure(r) }
        guard SchemaCheck.matches(reqID, Self.reqIDPattern) else {
            return .failure(Refusal(response: .error(.invalidField, "req_id does not match \(Self.reqIDPattern)")))
        }
        do { _ = try authorize(req, .act, agent: agent) } catch { return .failure(Refusal(response: Self.answer(error))) }
        guard owns(agent) else { return .failure(Refusal(response: .error(.invalidAgentID, "agent \(agent) is not registered here"))) }
        return .success((agent, reqID, body))
    }

    func beginGeneration(_ req: HTTPRequest) async -> HTTPResponse {
        let agent = req.params["agent_id"] ?? ""
        let body: JSONValue
        switch checkedBody(req, "Generation") { case .success(let b): body = b; case .failure(let r): return r.response }
        do { _ = try authorize(req, .act, agent: agent) } catch { return Self.answer(error) }
        guard await ensureRegistered(agent) else { return .error(.invalidAgentID, "agent \(agent) is not registered here") }
        let reqID = body["req_id"]?.stringValue ?? ""
        do {
            let token = try await client.beginGeneration(AgentID(agent), reqID: ReqID(reqID),
                                                         deadlineMs: UInt32(body["deadline_ms"]?.numberValue ?? 0),
                                                         tokenBudget: UInt32(body["token_budget"]?.numberValue ?? 0))
            setGeneration(agent, token.reqID)
            return .json(["agent_id": .string(agent), "req_id": .string(token.reqID), "context_seq": .number(Double(token.contextSeq)),
                          "context_digest": .string(token.contextDigest)], status: 201)
        } catch {
            return Self.failure(error)
        }
    }

    /// A token of a live generation: relayed to the agents that see the speaker (a token for a
    /// generation that is no longer live is refused by the orchestrator and dropped: partial speech
    /// is a preview; the committed Speak is what counts).
    func postToken(_ req: HTTPRequest) async -> HTTPResponse {
        let agent: String, reqID: String, body: JSONValue
        switch generationCall(req, "Token") { case .success(let c): (agent, reqID, body) = c; case .failure(let r): return r.response }
        guard isLive(agent, reqID) else { return .error(.generationCancelled, "generation \(reqID) of \(agent) is not live (never begun here, halted, or cancelled)") }
        let index = UInt32(body["index"]?.numberValue ?? 0), text = body["text"]?.stringValue ?? ""
        do { try await client.relayToken(AgentID(agent), reqID: ReqID(reqID), index: index, text: text) } catch {
            return .error(.adapterUnavailable, "\(error)", retryAfterMs: 500)
        }
        // The orchestrator relays to other connections only: this adapter's own agents that see
        // the speaker get the token here.
        hub.relayLocally(speaker: agent, reqID: reqID, index: index, text: text)
        return .json(["status": "accepted"], status: 202)
    }

    func halted(_ req: HTTPRequest) async -> HTTPResponse {
        let agent: String, reqID: String, body: JSONValue
        switch generationCall(req, "Halted") { case .success(let c): (agent, reqID, body) = c; case .failure(let r): return r.response }
        do {
            try await client.endGeneration(ReqID(reqID), agent: AgentID(agent), tokensEmitted: UInt32(body["tokens_emitted"]?.numberValue ?? 0),
                                           haltLatencyUs: UInt64(body["halt_latency_us"]?.numberValue ?? 0), cancelled: body["cancelled"]?.boolValue ?? false)
            if isLive(agent, reqID) { setGeneration(agent, nil) }
            return .json(["status": "halted"])
        } catch {
            return Self.failure(error)
        }
    }
}

extension StreamHub {
    /// Starts the one reader of GunnClient's token queue (tokens of speakers on other connections),
    /// which hands each chunk to the streams of this adapter's agents that see the speaker.
    func ensureTokenForwarder() {
        let start = tokenForwarderStarted.exchange(true, ordering: .acquiringAndReleasing) == false
        guard start else { return }
        Task { [self] in
            while let t = await client.nextTokenChunk() {
                relayLocally(speaker: t.agentID, reqID: t.reqID, index: t.index, text: t.text)
            }
        }
    }

    /// A token of `speaker` to every subscribed agent (other than the speaker) whose view holds it.
    func relayLocally(speaker: String, reqID: String, index: UInt32, text: String) {
        heard?(speaker, reqID, index, text)
        for listener in subscribedAgents() where listener != speaker {
            guard let (_, doc) = client.view(of: AgentID(listener)), doc["entities"]?[speaker] != nil else { continue }
            let m = Self.encode(["type": "token", "agent_id": .string(listener), "speaker": .string(speaker), "req_id": .string(reqID),
                                 "index": .number(Double(index)), "text": .string(text)])
            send(m, to: listener)
        }
    }
}

/// The live generation of each agent this adapter hosts (the orchestrator allows one per agent,
/// so the table is bounded by the agents): begun here, retired by halted or by a cancellation.
final class GenerationsBox: Sendable {
    private let live = Mutex<[String: String]>([:])
    func set(_ agent: String, _ reqID: String?) { live.withLock { $0[agent] = reqID } }
    func isLive(_ agent: String, _ reqID: String) -> Bool { live.withLock { $0[agent] == reqID } }
    func cancelled(_ agent: String, _ reqID: String) { live.withLock { if $0[agent] == reqID { $0[agent] = nil } } }
}
