import GunnCore
import GunnWire

/// The views a client holds for its agents, checked at every step: a delta applies only on top of
/// the view it follows, and the view it produces must have the digest the orchestrator computed
/// for it. A delta that does not apply or lands on another digest leaves the held view as it was
/// and asks for a resynchronisation (one whole view), counted. Pure: GunnClient keeps one under
/// its lock; the host simulation drives the same code.
public struct HeldViews: Sendable {
    public struct Held: Sendable, Equatable {
        public var seq: ViewSeq
        public var doc: JSONValue
        /// The last effect the view reflects, and the view's digest: sent on re-registration so
        /// the orchestrator can resume the stream with one delta.
        public var globalSeq: GlobalSeq
        public var digest: String
    }

    /// What became of a frame.
    public enum Outcome: Sendable, Equatable {
        case applied
        /// Older than the held view (already reflected), or for an agent without a held view.
        case ignored
        /// The delta did not apply or its digest differs: fetch a whole view.
        case resync(String)
    }

    public private(set) var views: [AgentID: Held] = [:]
    /// Deltas refused for a digest mismatch or a patch that did not apply.
    public private(set) var mismatches = 0
    /// Re-registrations the orchestrator answered with a delta from the held view.
    public private(set) var resumedWithDelta = 0

    public init() {}

    public static func digest(_ doc: JSONValue) -> String { HashChain.checksum(previous: nil, canonicalEffect: CanonicalJSON.encode(doc)) }

    /// A whole view (after a registration, or a resync): replaces the held one. The orchestrator
    /// answers both from its durable state at the agent's current view_seq, so no delta already
    /// applied here is newer.
    @discardableResult
    public mutating func whole(_ v: ViewSnapshot) -> Outcome {
        let agent = AgentID(v.agentID)
        guard let doc = try? JSONParser.parse(v.view) else {
            mismatches += 1
            return .resync("the whole view of \(agent) is not JSON")
        }
        return accept(agent, doc, seq: v.viewSeq, globalSeq: v.globalSeq, digest: v.contextDigest, "the whole view")
    }

    /// A delta. `resume` marks the one answering a re-registration: it follows the held view
    /// whatever its view_seq (a restarted orchestrator numbers views afresh).
    @discardableResult
    public mutating func delta(_ o: Observation, resume: Bool) -> Outcome {
        let agent = AgentID(o.agentID)
        guard let held = views[agent] else { return .ignored }
        if !resume && o.viewSeq <= held.seq { return .ignored }
        guard let patch = try? JSONPatch(json: JSONParser.parse(o.patches)), let next = try? patch.apply(to: held.doc) else {
            mismatches += 1
            return .resync("the delta to view_seq \(o.viewSeq) of \(agent) does not apply to view_seq \(held.seq)")
        }
        let outcome = accept(agent, next, seq: o.viewSeq, globalSeq: o.globalSeq, digest: o.contextDigest, "the delta")
        if resume && outcome == .applied { resumedWithDelta += 1 }
        return outcome
    }

    /// Holds `doc` as the agent's view when its digest is the one the orchestrator computed.
    private mutating func accept(_ agent: AgentID, _ doc: JSONValue, seq: ViewSeq, globalSeq: GlobalSeq, digest expected: String,
                                 _ what: String) -> Outcome {
        let digest = Self.digest(doc)
        guard digest == expected else {
            mismatches += 1
            return .resync("\(what) to view_seq \(seq) of \(agent) gives digest \(digest.prefix(12)), not \(expected.prefix(12))")
        }
        views[agent] = Held(seq: seq, doc: doc, globalSeq: globalSeq, digest: digest)
        return .applied
    }

    /// The registration to send again after a reconnect, with the marks of the held view.
    public func reRegistration(_ agent: AgentID, _ json: JSONValue) -> RegisterAgent {
        var r = RegisterAgent(agentID: agent.rawValue, json: json)
        if let h = views[agent] { r.resumeGlobalSeq = h.globalSeq; r.resumeDigest = h.digest; r.resumeViewSeq = h.seq }
        return r
    }
}

extension RegisterAgent {
    public init(agentID: String, json: JSONValue) {
        self.init()
        self.agentID = agentID
        registration = CanonicalJSON.encode(json)
    }
}
