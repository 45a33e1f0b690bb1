import Foundation
import GunnCore
import Synchronization

/// What one generation asks of a backend.
public struct GenerationParams: Sendable {
    public var messages: [(role: String, content: String)]
    public var model = ""
    public var temperature: Double = 0.7
    public var maxTokens = 64
    /// OPERATION_TIMEOUT when the generation is still running after this long.
    public var deadlineMs: Double?
    /// TOKEN_BUDGET_EXCEEDED when more tokens than this arrive.
    public var tokenBudget: Int?
    public var seed: UInt64 = 0
    public init(messages: [(role: String, content: String)]) { self.messages = messages }
}

/// How a generation ended.
public enum GenerationEnd: Sendable, Equatable {
    case completed(reason: String?)
    case cancelled(reason: String)
    case failed(GunnError)
}

/// A source of tokens: starts streaming, stops at `cancel()` without delivering another token.
public protocol LLMBackend: Sendable {
    func stream(_ params: GenerationParams, onToken: @escaping @Sendable (String) -> Void,
                onEnd: @escaping @Sendable (GunnError?) -> Void) -> any BackendStream
}

public protocol BackendStream: Sendable {
    func cancel()
}

/// One generation: the backend's stream with the deadline and the token budget enforced, exactly
/// one end, and no token after it (whatever the backend does). `cancel(reason:)` halts it at once
/// and reports how many tokens were emitted.
public final class Generation: Sendable {
    struct State: Sendable {
        var ended = false
        var tokens = 0
        var text = ""
        var stream: (any BackendStream)?
    }

    private let state = Mutex(State())
    private let onToken: @Sendable (String) -> Void
    private let onEnd: @Sendable (GenerationEnd, _ tokensEmitted: Int) -> Void

    public init(onToken: @escaping @Sendable (String) -> Void, onEnd: @escaping @Sendable (GenerationEnd, Int) -> Void) {
        self.onToken = onToken
        self.onEnd = onEnd
    }

    public var tokensEmitted: Int { state.withLock { $0.tokens } }
    public var text: String { state.withLock { $0.text } }

    public func start(_ backend: any LLMBackend, _ params: GenerationParams) {
        let s = backend.stream(params, onToken: { [self] token in
            let (deliver, overBudget) = state.withLock { st -> (Bool, Bool) in
                guard !st.ended else { return (false, false) }
                if let budget = params.tokenBudget, st.tokens >= budget { return (false, true) }
                st.tokens += 1
                st.text += token
                return (true, false)
            }
            if deliver { onToken(token) }
            if overBudget {
                finish(.failed(GunnError(.tokenBudgetExceeded, "the generation passed its budget of \(params.tokenBudget ?? 0) tokens")))
            }
        }, onEnd: { [self] error in
            finish(error.map { .failed($0) } ?? .completed(reason: nil))
        })
        state.withLock { $0.stream = s }
        if state.withLock({ $0.ended }) { s.cancel() }
        if let ms = params.deadlineMs {
            DispatchQueue.global().asyncAfter(deadline: .now() + ms / 1000) { [self] in
                finish(.failed(GunnError(.operationTimeout, "the generation passed its deadline of \(Int(ms)) ms")))
            }
        }
    }

    /// Halts the generation now (a Cancel from the orchestrator): the backend's stream is closed.
    /// False when it had already ended (completed, failed or cancelled): nothing changes then.
    @discardableResult
    public func cancel(reason: String) -> Bool { finish(.cancelled(reason: reason)) }

    @discardableResult
    private func finish(_ end: GenerationEnd) -> Bool {
        let (first, stream, tokens) = state.withLock { st -> (Bool, (any BackendStream)?, Int) in
            defer { st.ended = true }
            return (!st.ended, st.stream, st.tokens)
        }
        guard first else { return false }
        if case .completed = end {} else { stream?.cancel() }
        onEnd(end, tokens)
        return true
    }
}

// MARK: - Backends

/// Deterministic text from the seed: the first token at once, then one every
/// `minIntervalMs`…`maxIntervalMs`, `maxTokens` of them. For tests, demos and benchmarks.
/// With `lines`, the text is one of them (chosen by the seed: `lines[seed % count]`), word by
/// word, so a demo can script what each attempt says.
public struct DummyBackend: LLMBackend {
    public var minIntervalMs: Double = 20
    public var maxIntervalMs: Double = 30
    public var lines: [String] = []
    public init(minIntervalMs: Double = 20, maxIntervalMs: Double = 30, lines: [String] = []) {
        self.minIntervalMs = minIntervalMs; self.maxIntervalMs = maxIntervalMs; self.lines = lines
    }

    /// The tokens this backend sends for `params`.
    public func tokens(_ params: GenerationParams) -> [String] {
        guard !lines.isEmpty else { return Self.text(params) }
        let words = lines[Int(params.seed % UInt64(lines.count))].split(separator: " ", omittingEmptySubsequences: true)
        return words.prefix(params.maxTokens).enumerated().map { ($0.offset == 0 ? "" : " ") + $0.element }
    }

    static let words = ["the", "world", "moves", "while", "we", "talk", "and", "every", "word", "may", "go", "stale", "so", "listen", "first",
                        "then", "speak", "again", "softly", "near", "the", "well"]

    /// The tokens a generation with these parameters produces (what `stream` will send).
    public static func text(_ params: GenerationParams) -> [String] {
        var h = params.seed
        for m in params.messages { for b in m.content.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 } }
        var rng = SplitMix64(seed: h)
        return (0..<params.maxTokens).map { i in (i == 0 ? "" : " ") + words[Int(rng.next(below: UInt64(words.count)))] }
    }

    final class Stream: BackendStream {
        let stop = DispatchSemaphore(value: 0)
        let stopped = Atomic<Bool>(false)
        func cancel() {
            if !stopped.exchange(true, ordering: .sequentiallyConsistent) { stop.signal() }
        }
    }

    public func stream(_ params: GenerationParams, onToken: @escaping @Sendable (String) -> Void,
                       onEnd: @escaping @Sendable (GunnError?) -> Void) -> any BackendStream {
        let s = Stream()
        let tokens = self.tokens(params)
        var rng = SplitMix64(seed: params.seed ^ 0x5EED)
        let gaps = tokens.indices.map { _ in minIntervalMs + Double(rng.next(below: UInt64(max(1, maxIntervalMs - minIntervalMs + 1)))) }
        let t = Thread {
            for (i, token) in tokens.enumerated() {
                if i > 0, s.stop.wait(timeout: .now() + gaps[i] / 1000) == .success { return }
                if s.stopped.load(ordering: .sequentiallyConsistent) { return }
                onToken(token)
            }
            onEnd(nil)
        }
        t.name = "dummy-llm"
        t.start()
        return s
    }
}

/// An OpenAI-compatible `/v1/chat/completions` endpoint with `"stream": true` (SSE), or Ollama's
/// `/api/chat` (NDJSON), over plain HTTP or HTTPS.
public struct HTTPBackend: LLMBackend {
    public var host: String
    public var port: UInt16
    public var format: TokenStreamDecoder.Format
    public var stallSeconds: Double = 30
    /// The TCP connection not accepted after this long: LLM_SERVICE_ERROR.
    public var connectTimeoutSeconds = HTTPStream.Request.defaultConnectTimeoutSeconds
    /// Extra top-level fields of the request body (e.g. llama-cpp-python's `min_tokens`).
    public var extraBody: JSONObject = [:]
    /// HTTPS: TLS through libssl, verified against `caFile` or the system's roots.
    public var tls = false
    public var caFile: String?

    public init(host: String, port: UInt16, format: TokenStreamDecoder.Format) {
        self.host = host; self.port = port; self.format = format
    }

    public var path: String { format == .openAISSE ? "/v1/chat/completions" : "/api/chat" }

    public func body(_ p: GenerationParams) -> JSONValue {
        let messages: JSONValue = .array(p.messages.map { ["role": .string($0.role), "content": .string($0.content)] })
        var o: JSONObject
        switch format {
        case .openAISSE:
            o = ["model": .string(p.model), "messages": messages, "stream": true, "temperature": .number(p.temperature),
                 "max_tokens": .number(Double(p.maxTokens)), "seed": .number(Double(p.seed % (1 << 31)))]
        case .ollamaNDJSON:
            o = ["model": .string(p.model), "messages": messages, "stream": true,
                 "options": ["temperature": .number(p.temperature), "num_predict": .number(Double(p.maxTokens)), "seed": .number(Double(p.seed % (1 << 31)))]]
        }
        for (k, v) in extraBody { o[k] = v }
        return .object(o)
    }

    final class Stream: BackendStream {
        let http = HTTPStream()
        func cancel() { http.cancel() }
    }

    public func stream(_ params: GenerationParams, onToken: @escaping @Sendable (String) -> Void,
                       onEnd: @escaping @Sendable (GunnError?) -> Void) -> any BackendStream {
        let s = Stream()
        var req = HTTPStream.Request(host: host, port: port, path: path, body: CanonicalJSON.encode(body(params)))
        req.stallSeconds = stallSeconds
        req.connectTimeoutSeconds = connectTimeoutSeconds
        req.tls = tls
        req.caFile = caFile
        let decoder = Mutex((TokenStreamDecoder(format: format), failed: GunnError?.none))
        s.http.start(req, onBody: { bytes in
            let chunks = decoder.withLock { d -> [StreamChunk] in
                guard d.failed == nil else { return [] }
                do { return try d.0.feed(bytes) } catch { d.failed = error as? GunnError; return [] }
            }
            for c in chunks { if case .token(let t) = c { onToken(t) } }
            if decoder.withLock({ $0.failed }) != nil { s.http.cancel() }
        }, onEnd: { error in
            let failure = decoder.withLock { d -> GunnError? in
                if let f = d.failed { return f }
                // Closed by us (a cancel): not the server's failure, however unfinished the stream.
                if s.http.isCancelled { return nil }
                if let error { return error }
                do { _ = try d.0.finish(); return nil } catch { return error as? GunnError }
            }
            onEnd(failure)
        })
        return s
    }
}
