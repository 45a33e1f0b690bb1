/// One row of `docs/errors.md`: the stable number, NAME, meaning, HTTP status and recovery
/// action of an error gunn reports. The table in the docs and `ErrorCode.all` are kept equal by a test.
public struct ErrorCode: Hashable, Sendable, CustomStringConvertible {
    public let code: Int
    public let name: String
    public let meaning: String
    public let httpStatus: Int
    public let recovery: String

    public var description: String { "\(name) (\(code))" }

    /// Looks a code up by its number.
    public static func byCode(_ code: Int) -> ErrorCode? { indexByCode[code] }

    /// Looks a code up by its NAME.
    public static func byName(_ name: String) -> ErrorCode? { indexByName[name] }

    private static let indexByCode: [Int: ErrorCode] = Dictionary(uniqueKeysWithValues: all.map { ($0.code, $0) })
    private static let indexByName: [String: ErrorCode] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })
}

extension ErrorCode {
    // 1xxx protocol
    public static let malformedFrame = ErrorCode(code: 1001, name: "MALFORMED_FRAME", meaning: "A frame could not be decoded: zero length, truncated field, bad varint, wrong wire type, or invalid bytes.", httpStatus: 400, recovery: "Fix the sender; the connection is closed and must be reopened.")
    public static let frameTooLarge = ErrorCode(code: 1002, name: "FRAME_TOO_LARGE", meaning: "A frame's length prefix exceeds the link's max_frame_bytes.", httpStatus: 413, recovery: "Send smaller frames or raise max_frame_bytes on both sides; reconnect.")
    public static let versionMismatch = ErrorCode(code: 1003, name: "VERSION_MISMATCH", meaning: "The peer's protocol major version differs from ours; the message names both versions.", httpStatus: 426, recovery: "Upgrade the older side, then reconnect.")
    public static let unknownMessage = ErrorCode(code: 1004, name: "UNKNOWN_MESSAGE", meaning: "The frame carries a body this peer does not know or does not accept in this role.", httpStatus: 400, recovery: "Check the role and protocol version; do not resend that body.")
    public static let handshakeRequired = ErrorCode(code: 1005, name: "HANDSHAKE_REQUIRED", meaning: "A frame other than Hello arrived before the handshake completed.", httpStatus: 428, recovery: "Send Hello first and wait for Welcome.")
    public static let invalidJSON = ErrorCode(code: 1006, name: "INVALID_JSON", meaning: "A JSON payload is not valid RFC 8259 JSON, exceeds the nesting limit, or has duplicate keys.", httpStatus: 400, recovery: "Fix the payload; resending it unchanged fails again.")
    public static let payloadTooLarge = ErrorCode(code: 1007, name: "PAYLOAD_TOO_LARGE", meaning: "A payload (intent, effect, HTTP body) exceeds its configured byte limit.", httpStatus: 413, recovery: "Send a smaller payload.")
    public static let unsupportedSchemaVersion = ErrorCode(code: 1008, name: "UNSUPPORTED_SCHEMA_VERSION", meaning: "A record's schema_version has a major version this build does not support.", httpStatus: 400, recovery: "Upgrade the reader or convert the record to a supported version.")
    public static let invalidField = ErrorCode(code: 1009, name: "INVALID_FIELD", meaning: "A field of a request (registration, effect draft, generation) is unknown, of the wrong type or out of range; the message names it.", httpStatus: 400, recovery: "Fix the named field; resending it unchanged fails again.")
    public static let unknownRole = ErrorCode(code: 1010, name: "UNKNOWN_ROLE", meaning: "The Hello names a role this peer does not serve.", httpStatus: 400, recovery: "Connect with a role the peer serves (docs/protocol.md lists them).")
    public static let malformedHTTP = ErrorCode(code: 1011, name: "MALFORMED_HTTP", meaning: "An HTTP request is malformed: its request line, a header field, its body framing (Content-Length with Transfer-Encoding, a bad chunk) or a missing Host; the message says which.", httpStatus: 400, recovery: "Fix the client; the server closes the connection after answering.")
    public static let uriTooLong = ErrorCode(code: 1012, name: "URI_TOO_LONG", meaning: "The HTTP request line is longer than the server's limit.", httpStatus: 414, recovery: "Send a shorter target (move data into the body).")
    public static let headersTooLarge = ErrorCode(code: 1013, name: "HEADERS_TOO_LARGE", meaning: "The HTTP header section (or the trailers) has more bytes or more fields than the server's limit.", httpStatus: 431, recovery: "Send fewer or smaller header fields.")
    public static let httpVersionNotSupported = ErrorCode(code: 1014, name: "HTTP_VERSION_NOT_SUPPORTED", meaning: "The request's HTTP major version is not 1.", httpStatus: 505, recovery: "Send HTTP/1.1.")
    public static let methodNotAllowed = ErrorCode(code: 1015, name: "METHOD_NOT_ALLOWED", meaning: "The path exists but does not answer this method; the Allow header lists the ones it does.", httpStatus: 405, recovery: "Use one of the methods in Allow.")
    public static let notFound = ErrorCode(code: 1016, name: "NOT_FOUND", meaning: "No route matches the request's path.", httpStatus: 404, recovery: "Fix the path (the API is versioned under /v1).")
    public static let expectationFailed = ErrorCode(code: 1017, name: "EXPECTATION_FAILED", meaning: "The request's Expect field asks for something other than 100-continue.", httpStatus: 417, recovery: "Drop the Expect field or send Expect: 100-continue.")
    public static let notImplemented = ErrorCode(code: 1018, name: "NOT_IMPLEMENTED", meaning: "The request uses a method or transfer coding this server does not implement.", httpStatus: 501, recovery: "Use a standard method and a chunked or Content-Length body.")
    public static let webSocketHandshakeFailed = ErrorCode(code: 1019, name: "WEBSOCKET_HANDSHAKE_FAILED", meaning: "A WebSocket upgrade request is not valid RFC 6455: not GET, a missing or bad Sec-WebSocket-Key, a missing Upgrade or Connection token, or no offered subprotocol the server speaks.", httpStatus: 400, recovery: "Fix the client's handshake; a Sec-WebSocket-Version other than 13 is answered 426 with the version the server speaks.")

    // 2xxx intents and views
    public static let staleContext = ErrorCode(code: 2001, name: "STALE_CONTEXT", meaning: "The intent was generated against a view older than the staleness threshold allows.", httpStatus: 409, recovery: "Read the fresh view, regenerate, and submit with a new context_seq.")
    public static let invalidViewSeq = ErrorCode(code: 2002, name: "INVALID_VIEW_SEQ", meaning: "A view_seq or context_seq is ahead of anything the agent was sent, or otherwise impossible.", httpStatus: 400, recovery: "Resynchronise: ask for a full view and continue from its view_seq.")
    public static let intentConflict = ErrorCode(code: 2003, name: "INTENT_CONFLICT", meaning: "The intent conflicts with an effect committed since its context (same target, exclusive action).", httpStatus: 409, recovery: "Read the fresh view and decide again.")
    public static let invalidIntent = ErrorCode(code: 2004, name: "INVALID_INTENT", meaning: "The intent is malformed: unknown kind, missing or ill-typed payload fields.", httpStatus: 400, recovery: "Fix the intent; resending it unchanged fails again.")
    public static let intentValidationFailed = ErrorCode(code: 2005, name: "INTENT_VALIDATION_FAILED", meaning: "The validator refused the intent: permission, cooldown, payload limit or world constraint.", httpStatus: 422, recovery: "Read the message, change the intent or wait out the cooldown.")
    public static let duplicateReqID = ErrorCode(code: 2006, name: "DUPLICATE_REQ_ID", meaning: "The req_id was already used by this agent for a different intent.", httpStatus: 409, recovery: "Use a fresh req_id for a new intent; reuse an id only to retry the same intent.")
    public static let unknownEffectKind = ErrorCode(code: 2007, name: "UNKNOWN_EFFECT_KIND", meaning: "No reducer is registered for the effect's kind.", httpStatus: 422, recovery: "Register a reducer for the kind, or use a built-in kind.")
    public static let unknownCommand = ErrorCode(code: 2008, name: "UNKNOWN_COMMAND", meaning: "A game engine answered a command that gunn never sent it, or one already answered.", httpStatus: 409, recovery: "Answer only the commands received, once each; the answer is dropped.")

    // 3xxx flow control and generation
    public static let quotaExceeded = ErrorCode(code: 3001, name: "QUOTA_EXCEEDED", meaning: "The agent's or tenant's rate quota is exhausted.", httpStatus: 429, recovery: "Wait retry_after_ms, then retry with the same req_id.")
    public static let queueFull = ErrorCode(code: 3002, name: "QUEUE_FULL", meaning: "The agent's queue is at its bound and the backpressure policy refused the item.", httpStatus: 503, recovery: "Back off for retry_after_ms, then retry with the same req_id.")
    public static let tokenBudgetExceeded = ErrorCode(code: 3003, name: "TOKEN_BUDGET_EXCEEDED", meaning: "A generation used up its token budget and was ended.", httpStatus: 429, recovery: "Submit what was generated so far or start a new generation with a larger budget.")
    public static let operationTimeout = ErrorCode(code: 3004, name: "OPERATION_TIMEOUT", meaning: "An operation or generation passed its deadline_ms.", httpStatus: 504, recovery: "Retry with the same req_id, or raise the deadline.")
    public static let generationCancelled = ErrorCode(code: 3005, name: "GENERATION_CANCELLED", meaning: "The generation was cancelled; the reason (e.g. stale_due_to:<global_seq>) is in the message.", httpStatus: 409, recovery: "Read the fresh view and regenerate.")
    public static let debounceActive = ErrorCode(code: 3006, name: "DEBOUNCE_ACTIVE", meaning: "The request arrived inside the agent's debounce window.", httpStatus: 429, recovery: "Wait retry_after_ms, then retry.")
    public static let requestTimeout = ErrorCode(code: 3007, name: "REQUEST_TIMEOUT", meaning: "An HTTP client sent its request head, or the next piece of its body, too slowly (the header or body progress deadline passed).", httpStatus: 408, recovery: "Send the whole request promptly on a new connection.")
    public static let tooManyConnections = ErrorCode(code: 3008, name: "TOO_MANY_CONNECTIONS", meaning: "The server holds its maximum number of connections; the newest one is refused.", httpStatus: 503, recovery: "Retry after retry_after_ms, or reuse a keep-alive connection.")

    // 4xxx identity and permission
    public static let unauthorized = ErrorCode(code: 4001, name: "UNAUTHORIZED", meaning: "No token, or a token that is invalid or expired.", httpStatus: 401, recovery: "Obtain a valid token and reconnect.")
    public static let forbidden = ErrorCode(code: 4002, name: "FORBIDDEN", meaning: "The token is valid but lacks the permission for this action.", httpStatus: 403, recovery: "Ask an operator for the permission; do not retry.")
    public static let invalidAgentID = ErrorCode(code: 4003, name: "INVALID_AGENT_ID", meaning: "The agent id is unknown to this world or is not a valid identifier.", httpStatus: 404, recovery: "Register the agent first, or fix the id.")
    public static let tenantIsolationViolation = ErrorCode(code: 4004, name: "TENANT_ISOLATION_VIOLATION", meaning: "The request touches an agent or world of another tenant.", httpStatus: 403, recovery: "Do not retry; the attempt is logged.")
    public static let agentQuarantined = ErrorCode(code: 4005, name: "AGENT_QUARANTINED", meaning: "The agent is quarantined after repeated violations and may not act.", httpStatus: 403, recovery: "An operator must release the agent.")
    public static let worldMismatch = ErrorCode(code: 4006, name: "WORLD_MISMATCH", meaning: "A Hello or a record names another world than the one this process serves.", httpStatus: 409, recovery: "Connect to the home of that world, or fix the world_id; do not retry unchanged.")

    // 5xxx external services
    public static let adapterUnavailable = ErrorCode(code: 5001, name: "ADAPTER_UNAVAILABLE", meaning: "A downstream process or link is unavailable (circuit breaker open or peer gone).", httpStatus: 503, recovery: "Wait retry_after_ms, then retry with the same req_id.")
    public static let llmServiceError = ErrorCode(code: 5002, name: "LLM_SERVICE_ERROR", meaning: "The LLM endpoint failed, answered garbage or closed the stream early.", httpStatus: 502, recovery: "Retry later; the breaker opens after repeated failures.")
    public static let unityConnectionLost = ErrorCode(code: 5003, name: "UNITY_CONNECTION_LOST", meaning: "The link to the game engine was lost.", httpStatus: 503, recovery: "Wait for the adapter to reconnect, then retry.")

    // 6xxx integrity
    public static let worldStateCorrupted = ErrorCode(code: 6001, name: "WORLD_STATE_CORRUPTED", meaning: "World state failed an invariant or a digest check against a snapshot.", httpStatus: 500, recovery: "Stop serving; rebuild state from the log by replay.")
    public static let logIntegrityViolation = ErrorCode(code: 6002, name: "LOG_INTEGRITY_VIOLATION", meaning: "A log entry's checksum does not continue the chain, or a seq was resent with different content.", httpStatus: 409, recovery: "Nothing was written; the sender must resynchronise with the log head.")
    public static let sequenceGap = ErrorCode(code: 6003, name: "SEQUENCE_GAP", meaning: "A global_seq does not follow the head without a gap.", httpStatus: 409, recovery: "Nothing was written; resend from head + 1.")
    public static let logStorageFailure = ErrorCode(code: 6004, name: "LOG_STORAGE_FAILURE", meaning: "The log writer cannot write (disk full or an I/O error); it refuses appends and reports itself degraded.", httpStatus: 507, recovery: "Free space or repair the disk, then restart the log writer; nothing acknowledged was lost.")
    public static let snapshotRequired = ErrorCode(code: 6005, name: "SNAPSHOT_REQUIRED", meaning: "A compaction or a read reaches before the log's first entry, and no durable snapshot covers that seq.", httpStatus: 409, recovery: "Compact or read from a seq after a durable snapshot (gunnctl snapshot shows the newest); wait for the next snapshot if there is none yet.")

    // 7xxx operations
    public static let configInvalid = ErrorCode(code: 7001, name: "CONFIG_INVALID", meaning: "The configuration file or a GUNN_* override has an unknown key or a bad value; the message names it.", httpStatus: 500, recovery: "Fix the named key and start again.")
    public static let childFailed = ErrorCode(code: 7002, name: "CHILD_FAILED", meaning: "A supervised child exited more than max_restarts times within max_seconds; the supervisor stopped everything.", httpStatus: 503, recovery: "Read logs/<child>.log, fix the cause, start the supervisor again.")
    public static let notRunning = ErrorCode(code: 7003, name: "NOT_RUNNING", meaning: "No gunn process answers on the home's sockets (missing, refused or not handshaking).", httpStatus: 503, recovery: "Start the system (ops/run or gunn-supervisor), or pass the right --home.")

    // 9xxx internal
    public static let internalError = ErrorCode(code: 9001, name: "INTERNAL_ERROR", meaning: "A bug in gunn: an invariant of its own code did not hold.", httpStatus: 500, recovery: "Report it with the logs; retry may succeed.")

    /// Every code, in table order.
    public static let all: [ErrorCode] = [
        malformedFrame, frameTooLarge, versionMismatch, unknownMessage, handshakeRequired, invalidJSON,
        payloadTooLarge, unsupportedSchemaVersion, invalidField, unknownRole,
        malformedHTTP, uriTooLong, headersTooLarge, httpVersionNotSupported, methodNotAllowed, notFound,
        expectationFailed, notImplemented, webSocketHandshakeFailed,
        staleContext, invalidViewSeq, intentConflict, invalidIntent, intentValidationFailed, duplicateReqID, unknownEffectKind, unknownCommand,
        quotaExceeded, queueFull, tokenBudgetExceeded, operationTimeout, generationCancelled, debounceActive,
        requestTimeout, tooManyConnections,
        unauthorized, forbidden, invalidAgentID, tenantIsolationViolation, agentQuarantined, worldMismatch,
        adapterUnavailable, llmServiceError, unityConnectionLost,
        worldStateCorrupted, logIntegrityViolation, sequenceGap, logStorageFailure, snapshotRequired,
        configInvalid, childFailed, notRunning,
        internalError,
    ]
}

/// An error carrying one of the table's codes and a message that says what was wrong.
public struct GunnError: Error, Hashable, Sendable, CustomStringConvertible {
    public let code: ErrorCode
    public let message: String
    /// Milliseconds the client should wait before retrying, where that helps (quota, queue full, breaker open).
    public let retryAfterMs: UInt64?

    public init(_ code: ErrorCode, _ message: String, retryAfterMs: UInt64? = nil) {
        self.code = code
        self.message = message
        self.retryAfterMs = retryAfterMs
    }

    public var description: String {
        var text = "\(code.name) (\(code.code)): \(message)"
        if let retryAfterMs { text += " [retry after \(retryAfterMs) ms]" }
        return text
    }
}
