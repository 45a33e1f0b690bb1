import Foundation
import GunnCore
import Synchronization

/// One circuit breaker per HTTP endpoint, shared by every agent that uses it. A call is judged
/// when it ends: failed (refused, HTTP error, malformed stream, stall) or succeeded (completed or
/// cancelled by us), and slow when its first token came later than the slow-call limit — the
/// time to first token, not the whole stream, since a long answer is not a slow server. While a
/// breaker is open, generations on its endpoint fail at once with LLM_SERVICE_ERROR and a
/// retry-after, without a connection attempt.
public final class EndpointBreakers: Sendable {
    public let config: CircuitBreakerConfig
    /// The open-duration jitter of each endpoint's breaker comes from this seed and the endpoint.
    public let seed: UInt64
    private let breakers = Mutex<[String: CircuitBreaker]>([:])
    /// Transitions, for the adapter's log ("breaker http://…: closed → open (…)").
    private let onTransition: @Sendable (String, BreakerTransition) -> Void

    public init(_ settings: AdapterConfig.Breaker, seed: UInt64 = 0, onTransition: @escaping @Sendable (String, BreakerTransition) -> Void = { _, _ in }) {
        var c = CircuitBreakerConfig()
        c.window = .count(calls: 10)
        c.minimumCalls = 4
        c.failureRateThreshold = 0.5
        c.consecutiveFailuresThreshold = settings.consecutiveFailures
        c.slowCallSeconds = settings.slowFirstTokenMs / 1000
        c.slowCallRateThreshold = 0.5
        c.openBaseSeconds = settings.openMs / 1000
        c.openMaxSeconds = max(settings.openMs, settings.openMaxMs) / 1000
        c.halfOpenProbes = 1
        c.probeDeadlineSeconds = 300 // a probe is a whole generation; it is judged when it ends
        config = c
        self.seed = seed
        self.onTransition = onTransition
    }

    static func now() -> Double { Date().timeIntervalSince1970 }

    public func state(of endpoint: String) -> BreakerState { breakers.withLock { $0[endpoint]?.state ?? .closed } }

    func acquire(_ endpoint: String) -> CircuitBreaker.Decision {
        let (d, events) = breakers.withLock { b -> (CircuitBreaker.Decision, [BreakerTransition]) in
            if b[endpoint] == nil {
                var h = seed ^ 0xcbf2_9ce4_8422_2325 // FNV-1a: stable across processes, unlike Hasher
                for byte in endpoint.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
                b[endpoint] = CircuitBreaker(name: endpoint, config: config, seed: h)
            }
            return b[endpoint]!.acquire(at: Self.now())
        }
        for e in events { onTransition(endpoint, e) }
        return d
    }

    func record(_ endpoint: String, _ permit: CircuitBreaker.Permit, success: Bool, firstTokenAfter: Double?) {
        let now = Self.now()
        let events = breakers.withLock { $0[endpoint]?.record(permit, success: success, at: now, elapsed: firstTokenAfter) ?? [] }
        for e in events { onTransition(endpoint, e) }
    }
}

/// An HTTP backend behind its endpoint's breaker.
public struct GuardedBackend: LLMBackend {
    public let backend: HTTPBackend
    public let breakers: EndpointBreakers
    public var endpoint: String { "\(backend.tls ? "https" : "http")://\(backend.host):\(backend.port)" }

    public init(_ backend: HTTPBackend, breakers: EndpointBreakers) {
        self.backend = backend; self.breakers = breakers
    }

    final class Refused: BackendStream { func cancel() {} }

    public func stream(_ params: GenerationParams, onToken: @escaping @Sendable (String) -> Void,
                       onEnd: @escaping @Sendable (GunnError?) -> Void) -> any BackendStream {
        let permit: CircuitBreaker.Permit
        switch breakers.acquire(endpoint) {
        case .rejected(let after):
            onEnd(GunnError(.llmServiceError, "the circuit breaker of \(endpoint) is open (too many failed or slow calls); retry after \(after) ms", retryAfterMs: after))
            return Refused()
        case .allowed(let p): permit = p
        }
        let started = EndpointBreakers.now()
        let firstToken = Mutex<Double?>(nil)
        let endpoint = self.endpoint
        return backend.stream(params, onToken: { t in
            firstToken.withLock { if $0 == nil { $0 = EndpointBreakers.now() - started } }
            onToken(t)
        }, onEnd: { [breakers] error in
            let ttft = firstToken.withLock { $0 }
            breakers.record(endpoint, permit, success: error == nil, firstTokenAfter: ttft ?? (EndpointBreakers.now() - started))
            onEnd(error)
        })
    }
}
