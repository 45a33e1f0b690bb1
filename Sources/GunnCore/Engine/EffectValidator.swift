/// What a validator may look at: the world, the agent's registration, its cooldown clock, and the
/// engine's limits. Read-only.
public struct ValidationContext: Sendable {
    public let world: WorldState
    public let agent: AgentRegistration
    public let simTime: SimTime
    public let lastActionSimTime: [IntentKind: SimTime]
    public let limits: ValidationLimits
    public let reducers: ReducerRegistry
}

/// Limits the default validator enforces.
public struct ValidationLimits: Hashable, Sendable {
    /// Largest canonical intent payload, in bytes.
    public var maxPayloadBytes: Int = 64 << 10
    /// Longest Speak text, in Unicode scalars.
    public var maxSpeakScalars: Int = 4000
    /// Farthest an Interact target may be from the actor.
    public var interactRange: Double = 5
    /// Minimum sim-time seconds between two intents of a kind by one agent.
    public var cooldownSeconds: [IntentKind: Double] = [:]

    public init() {}
}

/// Decides whether an intent may become an effect (step 6 of the pipeline). Refusals are
/// INTENT_VALIDATION_FAILED (or FORBIDDEN for a missing permission, INVALID_INTENT for a
/// malformed payload).
public protocol EffectValidator: Sendable {
    func validate(_ intent: Intent, context: ValidationContext) -> GunnError?
}

/// Permissions, per-kind cooldowns, payload size and the world's constraints: a Move needs a mover
/// that is an entity and finite 2D or 3D coordinates; an Interact a target entity in range; a
/// Speak non-empty text within limits; a Custom intent a registered effect kind.
public struct DefaultEffectValidator: EffectValidator {
    public init() {}

    public func validate(_ intent: Intent, context: ValidationContext) -> GunnError? {
        let agent = context.agent
        guard agent.permissions.contains(AgentRegistration.submitPermission) else {
            return GunnError(.forbidden, "agent \(intent.agentID) lacks permission \(AgentRegistration.submitPermission)")
        }
        guard agent.permissions.contains(intent.kind.permission) else {
            return GunnError(.forbidden, "agent \(intent.agentID) lacks permission \(intent.kind.permission)")
        }
        if let cooldown = context.limits.cooldownSeconds[intent.kind], let last = context.lastActionSimTime[intent.kind],
           context.simTime < last + cooldown {
            let waitMs = UInt64(((last + cooldown - context.simTime) * 1000).rounded(.up))
            return GunnError(.intentValidationFailed, "\(intent.kind.rawValue) is cooling down for \(waitMs) ms more", retryAfterMs: waitMs)
        }
        let size = CanonicalJSON.encode(intent.payload).count
        guard size <= context.limits.maxPayloadBytes else {
            return GunnError(.intentValidationFailed, "payload of \(size) bytes exceeds the limit of \(context.limits.maxPayloadBytes)")
        }
        switch intent.kind {
        case .move:
            guard context.world.entities[intent.agentID.rawValue] != nil else {
                return GunnError(.intentValidationFailed, "Move: agent \(intent.agentID) is not an entity of the world")
            }
            guard let to = intent.payload["to"], Position(json: to) != nil else {
                return GunnError(.intentValidationFailed, "Move needs \"to\": [x, y] or [x, y, z] of finite numbers")
            }
        case .interact:
            guard case .string(let target)? = intent.payload["target"] else {
                return GunnError(.intentValidationFailed, "Interact needs a string \"target\"")
            }
            guard context.world.entities[target] != nil else {
                return GunnError(.intentValidationFailed, "Interact: no entity \"\(target)\"")
            }
            if let here = context.world.positions[intent.agentID.rawValue], let there = context.world.positions[target] {
                let d = here.distance(to: there)
                guard d <= context.limits.interactRange else {
                    return GunnError(.intentValidationFailed, "Interact: \"\(target)\" is \(d) away, beyond the range of \(context.limits.interactRange)")
                }
            } else {
                return GunnError(.intentValidationFailed, "Interact: actor and target both need a position")
            }
        case .speak:
            guard case .string(let text)? = intent.payload["text"], !text.isEmpty else {
                return GunnError(.intentValidationFailed, "Speak needs a non-empty string \"text\"")
            }
            let n = text.unicodeScalars.count
            guard n <= context.limits.maxSpeakScalars else {
                return GunnError(.intentValidationFailed, "Speak text of \(n) characters exceeds the limit of \(context.limits.maxSpeakScalars)")
            }
        case .custom:
            guard case .string(let kind)? = intent.payload["kind"] else {
                return GunnError(.intentValidationFailed, "Custom intent needs a string \"kind\" naming its effect kind")
            }
            // A kind the agent's engine body accepts is an engine command (EngineBodies).
            let accepted: Bool
            let body = context.world.entities[intent.agentID.rawValue]
            if case .string? = body?["engine"], case .array(let kinds)? = body?["engine_commands"] { accepted = kinds.contains(.string(kind)) } else { accepted = false }
            guard accepted || context.reducers.knows(kind) else {
                return GunnError(.unknownEffectKind, "Custom intent names effect kind \"\(kind)\", which has no reducer")
            }
        }
        return nil
    }
}
