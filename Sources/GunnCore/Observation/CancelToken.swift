/// Issued when an agent starts generating: bound to the view it is generating from. The engine
/// cancels it when what the agent then observes makes that view stale (per its interrupt policy,
/// staleness threshold and debounce), when its deadline passes, or when it spends its token budget.
public struct CancelToken: Hashable, Sendable {
    public let agentID: AgentID
    public let reqID: ReqID
    public let contextSeq: ViewSeq
    public let contextDigest: String
    public let issuedAt: HostTime
    public let deadlineAt: HostTime?
    public let tokenBudget: Int?
}

/// Asking for a cancel token: what the generation is about and what bounds it.
public struct GenerationRequest: Hashable, Sendable {
    public var agentID: AgentID
    public var reqID: ReqID
    public var deadlineMs: Double?
    public var tokenBudget: Int?
    /// Entities the generation is about (conversation partner, Interact target): with the
    /// `only_conflict` policy, only effects touching these or the agent itself interrupt it.
    public var focus: [String]

    public init(agentID: AgentID, reqID: ReqID, deadlineMs: Double? = nil, tokenBudget: Int? = nil, focus: [String] = []) {
        self.agentID = agentID; self.reqID = reqID; self.deadlineMs = deadlineMs; self.tokenBudget = tokenBudget; self.focus = focus
    }
}

/// A token's live state inside the engine.
struct ActiveGeneration: Sendable {
    var token: CancelToken
    var focus: Set<String>
    /// Observed effects that counted toward staleness since the token was issued.
    var staleCount = 0
    var tokensEmitted = 0
}
