/// An agent's identifier. Wrapped so it cannot be swapped with a request id or an entity id by accident.
public struct AgentID: Hashable, Comparable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    public var description: String { rawValue }
    public static func < (a: AgentID, b: AgentID) -> Bool { a.rawValue.utf8.lexicographicallyPrecedes(b.rawValue.utf8) }

    /// 1 to 128 bytes of ASCII letters, digits, `-`, `_`, `.`, `:`: safe in paths, logs and URLs.
    public var isValid: Bool {
        let u = rawValue.utf8
        guard !u.isEmpty, u.count <= 128 else { return false }
        return u.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a)
                || b == UInt8(ascii: "-") || b == UInt8(ascii: "_") || b == UInt8(ascii: ".") || b == UInt8(ascii: ":")
        }
    }
}

/// A client-chosen request id; with the world and agent it keys idempotency.
public struct ReqID: Hashable, Comparable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }
    public var description: String { rawValue }
    public static func < (a: ReqID, b: ReqID) -> Bool { a.rawValue.utf8.lexicographicallyPrecedes(b.rawValue.utf8) }
}

/// Position of an effect in the world's log: strictly increasing from 1, without gaps.
public typealias GlobalSeq = UInt64

/// Position in one agent's stream of views: increases by one per effect that agent observes.
public typealias ViewSeq = UInt64

/// Simulation time in seconds.
public typealias SimTime = Double

/// Host (wall) time in seconds, as given to the engine by its host; the engine never reads a clock.
public typealias HostTime = Double
