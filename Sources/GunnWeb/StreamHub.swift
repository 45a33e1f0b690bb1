import Foundation
import Synchronization
import GunnClient
import GunnCore
import GunnWire
import GunnHTTP

/// Fans each hosted agent's observations and cancellations out to the streams (WebSocket, SSE)
/// that watch it. One forwarder per agent reads GunnClient's queue (its queues take one reader),
/// keeps the newest `window` observations for resuming, and sends each one to every subscriber
/// whose view it continues.
final class StreamHub: Sendable {
    let client: GunnClient
    let window: Int

    /// A subscriber's way out: sends one text message, false once its stream is gone.
    typealias Sink = @Sendable (String) -> Bool

    struct Subscriber {
        let sink: Sink
        var lastSeq: UInt64
    }
    /// A point a stream may resume from: the view after an observation (with that observation's
    /// message), or the view the forwarder started from (no message).
    struct Recent {
        let viewSeq: UInt64
        let digest: String
        let message: String?
    }
    struct State {
        var forwarders: Set<String> = []
        var subscribers: [String: [UInt64: Subscriber]] = [:]
        var recent: [String: [Recent]] = [:]
        var nextID: UInt64 = 1
        var delivered = 0
    }
    private let state = Mutex(State())
    let tokenForwarderStarted = Atomic<Bool>(false)
    /// Told of every cancellation (the adapter retires the generation: its tokens are refused after).
    let onCancel: (@Sendable (String, String) -> Void)?
    /// Told of every partial token heard (speaker, req_id, index, text): the dashboard's bubbles.
    let heard: (@Sendable (String, String, UInt32, String) -> Void)?

    init(client: GunnClient, window: Int, heard: (@Sendable (String, String, UInt32, String) -> Void)? = nil,
         onCancel: (@Sendable (String, String) -> Void)? = nil) {
        self.client = client
        self.onCancel = onCancel
        self.heard = heard
        self.window = max(1, window)
    }

    /// Starts the agent's forwarders once.
    func ensureForwarder(_ agent: String) {
        let start = state.withLock { s -> Bool in s.forwarders.insert(agent).inserted }
        guard start else { return }
        sendViewToWaiting(agent)
        Task { [self] in
            while let o = await client.nextObservation(for: AgentID(agent)) { deliver(o) }
        }
        Task { [self] in
            while let c = await client.nextCancel(for: AgentID(agent)) {
                onCancel?(agent, c.reqID)
                let m = Self.encode(["type": "cancel", "agent_id": .string(agent), "req_id": .string(c.reqID),
                                     "reason": .string(c.reason), "code": .number(Double(c.code))])
                state.withLock { s in s.subscribers[agent] = (s.subscribers[agent] ?? [:]).filter { $0.value.sink(m) } }
            }
        }
    }

    static func encode(_ members: [String: JSONValue]) -> String { CanonicalJSON.encodeString(.object(JSONObject(members))) }

    /// A stream's `error` message.
    static func errorMessage(_ e: GunnError) -> String {
        encode(["type": "error", "code": .number(Double(e.code.code)), "name": .string(e.code.name), "message": .string(e.message)])
    }

    /// Sends a refusal of the stream, then closes it with its code: 4401 (token refused), 4429
    /// (a cap), 4403 (anything else).
    static func refuse(_ ws: WebSocket, _ e: GunnError) {
        ws.send(text: errorMessage(e))
        ws.close(code: e.code == .unauthorized ? 4401 : e.code == .quotaExceeded || e.code == .tooManyConnections ? 4429 : 4403, reason: e.code.name)
    }

    static func observationMessage(_ o: Observation) -> String {
        let patches = (try? JSONParser.parse(o.patches)) ?? .array([])
        return encode(["type": "observation", "agent_id": .string(o.agentID), "view_seq": .number(Double(o.viewSeq)),
                       "global_seq": .number(Double(o.globalSeq)), "context_digest": .string(o.contextDigest), "patches": patches,
                       "committed_at_us": .number(Double(o.committedAtMicros))])
    }

    private func deliver(_ o: Observation) {
        // A whole view that replaced the held one (a resync, a resumed stream after a restart:
        // its view_seq may even go back): every stream starts again from it, as a view message,
        // and it is the only resume point, since the deltas before it followed another view.
        if GunnClient.isWholeView(o), let v = (try? JSONParser.parse(o.patches))?.arrayValue?.first?["value"] { // parsed once
            let m = Self.encode(["type": "view", "agent_id": .string(o.agentID), "view_seq": .number(Double(o.viewSeq)),
                                 "global_seq": .number(Double(o.globalSeq)), "context_digest": .string(o.contextDigest), "view": v])
            state.withLock { s in
                s.recent[o.agentID] = [Recent(viewSeq: o.viewSeq, digest: o.contextDigest, message: nil)]
                guard var subs = s.subscribers[o.agentID] else { return }
                for (id, sub) in subs {
                    if sub.sink(m) { subs[id]?.lastSeq = o.viewSeq; s.delivered += 1 } else { subs[id] = nil }
                }
                s.subscribers[o.agentID] = subs
            }
            return
        }
        let m = Self.observationMessage(o)
        state.withLock { s in
            var r = s.recent[o.agentID] ?? []
            r.append(Recent(viewSeq: o.viewSeq, digest: o.contextDigest, message: m))
            if r.count > window { r.removeFirst(r.count - window) }
            s.recent[o.agentID] = r
            guard var subs = s.subscribers[o.agentID] else { return }
            for (id, sub) in subs where o.viewSeq > sub.lastSeq {
                if sub.sink(m) { subs[id]?.lastSeq = o.viewSeq; s.delivered += 1 } else { subs[id] = nil }
            }
            s.subscribers[o.agentID] = subs
        }
    }

    /// Subscribes a stream to `agent`: it is sent a `subscribed` message saying how it starts,
    /// then either the observations after its held view (`resume`: view_seq and digest, when the
    /// recent window still holds that point; start "delta") or the whole current view (start
    /// "view"), then every later observation. Returns the subscription id and the start.
    func subscribe(_ agent: String, resume: (UInt64, String)?, _ sink: @escaping Sink) -> (UInt64, String) {
        state.withLock { s in
            let id = s.nextID
            s.nextID += 1
            let recent = s.recent[agent] ?? []
            func started(_ how: String) {
                _ = sink(Self.encode(["type": "subscribed", "agent_id": .string(agent), "start": .string(how)]))
            }
            if let (seq, digest) = resume, let i = recent.firstIndex(where: { $0.viewSeq == seq && $0.digest == digest }) {
                started("delta")
                var last = seq
                for r in recent[(i + 1)...] {
                    if let m = r.message { _ = sink(m) }
                    last = r.viewSeq
                }
                s.subscribers[agent, default: [:]][id] = Subscriber(sink: sink, lastSeq: last)
                return (id, "delta")
            }
            if let (seq, doc) = client.view(of: AgentID(agent)) {
                let digest = HeldViews.digest(doc)
                if let (rs, rd) = resume, rs == seq, rd == digest {
                    // Already current: nothing to send.
                    started("delta")
                    s.subscribers[agent, default: [:]][id] = Subscriber(sink: sink, lastSeq: seq)
                    return (id, "delta")
                }
                started("view")
                _ = sink(Self.encode(["type": "view", "agent_id": .string(agent), "view_seq": .number(Double(seq)),
                                      "global_seq": .number(Double(client.viewGlobalSeq(of: AgentID(agent)) ?? 0)),
                                      "context_digest": .string(digest), "view": doc]))
                s.subscribers[agent, default: [:]][id] = Subscriber(sink: sink, lastSeq: seq)
            } else {
                // Not registered in this process yet (just restarted): its view follows once it is.
                started("view")
                s.subscribers[agent, default: [:]][id] = Subscriber(sink: sink, lastSeq: 0)
            }
            return (id, "view")
        }
    }

    /// Subscribers that joined before the agent was registered in this process (right after a
    /// restart) get its whole view once it is.
    private func sendViewToWaiting(_ agent: String) {
        guard let (seq, doc) = client.view(of: AgentID(agent)) else { return }
        // The view the forwarder starts from is the first resume point.
        state.withLock { s in if s.recent[agent] == nil { s.recent[agent] = [Recent(viewSeq: seq, digest: HeldViews.digest(doc), message: nil)] } }
        let m = Self.encode(["type": "view", "agent_id": .string(agent), "view_seq": .number(Double(seq)),
                             "global_seq": .number(Double(client.viewGlobalSeq(of: AgentID(agent)) ?? 0)),
                             "context_digest": .string(HeldViews.digest(doc)), "view": doc])
        state.withLock { s in
            guard var subs = s.subscribers[agent] else { return }
            for (id, sub) in subs where sub.lastSeq == 0 {
                if sub.sink(m) { subs[id]?.lastSeq = seq } else { subs[id] = nil }
            }
            s.subscribers[agent] = subs
        }
    }

    /// The agents with at least one subscribed stream.
    func subscribedAgents() -> [String] { state.withLock { s in s.subscribers.filter { !$0.value.isEmpty }.map(\.key) } }

    /// One message to every stream of `agent`.
    func send(_ m: String, to agent: String) {
        state.withLock { s in s.subscribers[agent] = (s.subscribers[agent] ?? [:]).filter { $0.value.sink(m) } }
    }

    func unsubscribe(_ agent: String, _ id: UInt64) {
        state.withLock { s in s.subscribers[agent]?[id] = nil }
    }

    var delivered: Int { state.withLock { $0.delivered } }
}
