import Foundation
import GunnAuth
import GunnCore
import GunnHTTP

/// The REST API as one table: each operation's method, path, schemas and handler. The router is
/// built from it and `/openapi.json` is written from it, so the served document and the routes
/// cannot drift apart.
struct Operation {
    let method: String
    /// OpenAPI form: `/v1/agents/{agent_id}/view`.
    let path: String
    let id: String
    let summary: String
    let secured: Bool
    let body: JSONValue?
    let parameters: [JSONValue]
    /// status → (description, schema reference or nil)
    let responses: [(Int, String, String?)]
    let handle: @Sendable (HTTPRequest, HTTPResponder) -> Void

    var routePattern: String {
        path.split(separator: "/").map { $0.hasPrefix("{") ? ":" + $0.dropFirst().dropLast() : String($0) }.reduce("") { $0 + "/" + $1 }
    }
}

public enum APIVersion {
    /// The API's version: its major is the /v1 of the paths; a breaking change bumps it (docs/web.md).
    public static let current = "1.0.0"
}

extension WebAdapter {
    static let agentIDPattern = "^[A-Za-z0-9._:-]{1,128}$"
    static let reqIDPattern = "^[A-Za-z0-9._:-]{1,256}$"

    func operations() -> [Operation] {
        let agentParam: JSONValue = ["name": "agent_id", "in": "path", "required": true,
                                     "schema": ["type": "string", "pattern": .string(Self.agentIDPattern)]]
        let reqParam: JSONValue = ["name": "req_id", "in": "path", "required": true,
                                   "schema": ["type": "string", "pattern": .string(Self.reqIDPattern)]]
        let idemHeader: JSONValue = ["name": "Idempotency-Key", "in": "header", "required": false,
                                     "schema": ["type": "string", "pattern": .string(Self.reqIDPattern)]]
        let common: [(Int, String, String?)] = [(401, "No, malformed, forged, expired or revoked token", "Error"),
                                                (403, "The token lacks the right, the agent, or the world", "Error"),
                                                (429, "Rate limit (Retry-After)", "Error"), (503, "The orchestrator is unavailable", "Error")]
        func async(_ body: @escaping @Sendable (HTTPRequest) async -> HTTPResponse) -> @Sendable (HTTPRequest, HTTPResponder) -> Void {
            { req, res in Task { res.respond(await body(req)) } }
        }
        return [
            Operation(method: "GET", path: "/health", id: "health", summary: "The process is alive.", secured: false, body: nil, parameters: [],
                      responses: [(200, "Alive", "Status")]) { _, res in res.respond(.json(["status": "ok"])) },
            Operation(method: "GET", path: "/ready", id: "ready", summary: "Connected to the orchestrator, which answers.", secured: false, body: nil,
                      parameters: [], responses: [(200, "Ready", "Status"), (503, "Not ready", "Error")], handle: async { [self] _ in await ready() }),
            Operation(method: "POST", path: "/v1/agents", id: "registerAgent", summary: "Register an agent (right: act); its view comes back.",
                      secured: true, body: ["$ref": "#/components/schemas/Registration"], parameters: [],
                      responses: [(201, "Registered", "View"), (400, "A field is unknown, ill-typed or out of range", "Error"),
                                  (404, "Invalid agent id", "Error"), (409, "Conflict", "Error")] + common,
                      handle: async { [self] req in await register(req) }),
            Operation(method: "GET", path: "/v1/agents/{agent_id}/view", id: "getView", summary: "The agent's current view (right: observe).",
                      secured: true, body: nil, parameters: [agentParam],
                      responses: [(200, "The view", "View"), (404, "Not registered here", "Error")] + common, handle: async { [self] req in await view(req) }),
            Operation(method: "POST", path: "/v1/agents/{agent_id}/intents", id: "submitIntent",
                      summary: "Submit an intent (right: act). The same req_id (or Idempotency-Key) returns the first outcome.",
                      secured: true, body: ["$ref": "#/components/schemas/Intent"], parameters: [agentParam, idemHeader],
                      responses: [(200, "Committed", "Committed"), (400, "Malformed intent or impossible context_seq", "Error"),
                                  (404, "Not registered here", "Error"), (409, "Stale, conflicting or a reused req_id", "Error"),
                                  (422, "Refused by the world's validator", "Error"), (507, "The log cannot write", "Error")] + common,
                      handle: async { [self] req in await submit(req) }),
            Operation(method: "POST", path: "/v1/agents/{agent_id}/generations", id: "beginGeneration",
                      summary: "Begin a generation (right: act): its cancel token is the view it decides on; the stream sends a cancel the moment that goes stale.",
                      secured: true, body: ["$ref": "#/components/schemas/Generation"], parameters: [agentParam],
                      responses: [(201, "Begun", "CancelToken"), (400, "A field is unknown, ill-typed or out of range", "Error"),
                                  (404, "Not registered here", "Error"), (409, "A generation of this agent is live", "Error")] + common,
                      handle: async { [self] req in await beginGeneration(req) }),
            Operation(method: "POST", path: "/v1/agents/{agent_id}/generations/{req_id}/tokens", id: "postToken",
                      summary: "One token of a live generation (right: act), relayed as partial speech to the agents that see the speaker.",
                      secured: true, body: ["$ref": "#/components/schemas/Token"], parameters: [agentParam, reqParam],
                      responses: [(202, "Relayed", "Status"), (400, "A field is unknown, ill-typed or out of range", "Error"),
                                  (404, "Not registered here", "Error"), (409, "The generation is not live (GENERATION_CANCELLED)", "Error")] + common,
                      handle: async { [self] req in await postToken(req) }),
            Operation(method: "POST", path: "/v1/agents/{agent_id}/generations/{req_id}/halted", id: "reportHalted",
                      summary: "The generation stopped (right: act): finished, or cancelled after a cancel message.",
                      secured: true, body: ["$ref": "#/components/schemas/Halted"], parameters: [agentParam, reqParam],
                      responses: [(200, "Recorded", "Status"), (400, "A field is unknown, ill-typed or out of range", "Error"),
                                  (404, "Not registered here, or no such generation", "Error"), (409, "Conflict", "Error")] + common,
                      handle: async { [self] req in await halted(req) }),
            Operation(method: "POST", path: "/v1/effects", id: "emitEffect", summary: "Emit an effect draft (right: emit).", secured: true,
                      body: ["$ref": "#/components/schemas/EffectDraft"], parameters: [],
                      responses: [(202, "Accepted for ordering", "Status"), (400, "A field is unknown, ill-typed or out of range", "Error"),
                                  (422, "No reducer for the kind, or refused", "Error")] + common,
                      handle: async { [self] req in await emit(req) }),
        ]
    }

    /// The router: the table's operations, the stream endpoints, the OpenAPI document and its page.
    public func router() -> Router {
        var r = Router()
        let ops = operations()
        for op in ops { r.on(op.method, op.routePattern, op.handle) }
        let doc = Array(CanonicalJSON.encode(openAPI(ops)))
        r.get("/openapi.json") { _ in HTTPResponse(status: 200, headers: [("Content-Type", "application/json")], body: doc) }
        r.get("/docs") { _ in .text(docsPage, contentType: "text/html; charset=utf-8") }
        // Browsers ask for it on every page; an empty answer keeps their consoles clean.
        r.get("/favicon.ico") { _ in HTTPResponse(status: 204) }
        r.webSocket("/v1/stream", WebSocketEndpoint(subprotocols: ["gunn.web.v1"]) { [self] ws, req in openWebSocket(ws, req) })
        r.on("GET", "/v1/events") { [self] req, res in openEventStream(req, res) }
        if let dashboard { dashboardRoutes(&r, dashboard) }
        return r
    }

    func openAPI(_ ops: [Operation]) -> JSONValue {
        var paths = JSONObject()
        for op in ops {
            var o = JSONObject()
            o["operationId"] = .string(op.id)
            o["summary"] = .string(op.summary)
            o["security"] = op.secured ? [["bearerAuth": []]] : []
            if !op.parameters.isEmpty { o["parameters"] = .array(op.parameters) }
            if let body = op.body { o["requestBody"] = ["required": true, "content": ["application/json": ["schema": body]]] }
            var responses = JSONObject()
            for (status, text, schema) in op.responses {
                var r = JSONObject()
                r["description"] = .string(text)
                if let schema { r["content"] = ["application/json": ["schema": ["$ref": .string("#/components/schemas/\(schema)")]]] }
                responses[String(status)] = .object(r)
            }
            o["responses"] = .object(responses)
            if op.id == "registerAgent" {
                o["responses"] = .object({ var rs = responses
                    var created = rs["201"]!.objectValue!
                    created["links"] = ["GetView": ["operationId": "getView", "parameters": ["agent_id": "$response.body#/agent_id"]],
                                        "SubmitIntent": ["operationId": "submitIntent", "parameters": ["agent_id": "$response.body#/agent_id"]]]
                    rs["201"] = .object(created)
                    return rs }())
            }
            var item = paths[op.path]?.objectValue ?? JSONObject()
            item[op.method.lowercased()] = .object(o)
            paths[op.path] = .object(item)
        }
        return [
            "openapi": "3.1.0",
            "info": ["title": "gunn web adapter", "version": .string(APIVersion.current),
                     "description": "Agents join a gunn world over REST. Streams (not listed as paths): WebSocket GET /v1/stream?agents=A,B[&resume=A:VIEW_SEQ:DIGEST] (subprotocol gunn.web.v1) and server-sent events GET /v1/events?agents=A,B; see docs/web.md."],
            "paths": .object(paths),
            "components": ["securitySchemes": ["bearerAuth": ["type": "http", "scheme": "bearer"]], "schemas": Self.schemas],
        ]
    }

    static let schemas: JSONValue = [
        "Error": ["type": "object", "required": ["code", "name", "message", "retry_after_ms"],
                  "properties": ["code": ["type": "integer"], "name": ["type": "string"], "message": ["type": "string"],
                                 "retry_after_ms": ["type": ["integer", "null"]]]],
        "Status": ["type": "object", "required": ["status"], "properties": ["status": ["type": "string"], "global_seq": ["type": "integer"]]],
        "View": ["type": "object", "required": ["agent_id", "view_seq", "global_seq", "context_digest", "view"],
                 "properties": ["agent_id": ["type": "string"], "view_seq": ["type": "integer", "minimum": 0], "global_seq": ["type": "integer", "minimum": 0],
                                "context_digest": ["type": "string", "pattern": "^[0-9a-f]{64}$"], "view": ["type": "object"]]],
        "Registration": ["type": "object", "additionalProperties": false, "required": ["agent_id"],
                         "properties": ["agent_id": ["type": "string", "pattern": .string(agentIDPattern)],
                                        "spawn": ["type": "array", "minItems": 2, "maxItems": 3, "items": ["type": "number", "minimum": -1e6, "maximum": 1e6]],
                                        "staleness_threshold": ["type": "integer", "minimum": 0, "maximum": 1_000_000],
                                        "distance_limit": ["type": "number", "minimum": 0, "maximum": 1e6],
                                        "max_patch_ops": ["type": "integer", "minimum": 1, "maximum": 100_000],
                                        "interrupt": ["enum": ["always", "only_conflict"]],
                                        "debounce_ms": ["type": "integer", "minimum": 0, "maximum": 3_600_000],
                                        "latency_ms": ["type": "number", "minimum": 0, "maximum": 60000],
                                        "require_relationship": ["type": "boolean"],
                                        "hidden_fields": ["type": "array", "maxItems": 64,
                                                          "items": ["type": "string", "minLength": 1, "maxLength": 128]]]],
        "Intent": ["type": "object", "additionalProperties": false, "required": ["kind"],
                   "properties": ["kind": ["enum": ["Speak", "Move", "Interact", "Custom"]], "payload": ["type": "object"],
                                  "context_seq": ["type": "integer", "minimum": 0, "maximum": 9_007_199_254_740_992],
                                  "req_id": ["type": "string", "pattern": .string(reqIDPattern)],
                                  "priority": ["type": "integer", "minimum": -1000, "maximum": 1000]]],
        "Generation": ["type": "object", "additionalProperties": false, "required": ["req_id"],
                       "properties": ["req_id": ["type": "string", "pattern": .string(reqIDPattern)],
                                      "deadline_ms": ["type": "integer", "minimum": 0, "maximum": 3_600_000],
                                      "token_budget": ["type": "integer", "minimum": 0, "maximum": 1_000_000]]],
        "CancelToken": ["type": "object", "required": ["agent_id", "req_id", "context_seq", "context_digest"],
                        "properties": ["agent_id": ["type": "string"], "req_id": ["type": "string"], "context_seq": ["type": "integer"],
                                       "context_digest": ["type": "string"]]],
        "Token": ["type": "object", "additionalProperties": false, "required": ["index", "text"],
                  "properties": ["index": ["type": "integer", "minimum": 0, "maximum": 4_294_967_295],
                                 "text": ["type": "string", "maxLength": 1024]]],
        "Halted": ["type": "object", "additionalProperties": false,
                   "properties": ["tokens_emitted": ["type": "integer", "minimum": 0, "maximum": 4_294_967_295],
                                  "halt_latency_us": ["type": "integer", "minimum": 0, "maximum": 3_600_000_000],
                                  "cancelled": ["type": "boolean"]]],
        "Committed": ["type": "object", "required": ["status", "req_id", "effect"],
                      "properties": ["status": ["const": "committed"], "req_id": ["type": "string"], "effect": ["type": "object"]]],
        "EffectDraft": ["type": "object", "additionalProperties": false, "required": ["kind", "source_id"],
                        "properties": ["kind": ["type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"], "payload": ["type": "object"],
                                       "source_id": ["type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"],
                                       "priority": ["type": "integer", "minimum": -1000, "maximum": 1000],
                                       "sim_time": ["type": "number", "minimum": 0, "maximum": 1e15],
                                       "draft_id": ["type": "string", "pattern": "^[A-Za-z0-9._:-]{1,256}$"]]],
    ]
}

/// A page that renders /openapi.json with no external asset.
let docsPage = """
<!doctype html><html lang="en"><head><meta charset="utf-8"><title>gunn web API</title>
<style>body{font:15px/1.45 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#111;background:#fff}
code,pre{font:13px ui-monospace,monospace;background:#f3f3f3}pre{padding:.6em;overflow:auto}h2{border-top:1px solid #ccc;padding-top:.6em}
.m{font-weight:bold;display:inline-block;min-width:4em}</style></head><body><h1>gunn web API</h1><p id="info"></p><div id="ops"></div>
<script>
fetch('/openapi.json').then(r => r.json()).then(doc => {
  document.getElementById('info').textContent = doc.info.description + ' (version ' + doc.info.version + ')';
  const ops = document.getElementById('ops');
  for (const [path, item] of Object.entries(doc.paths)) for (const [method, op] of Object.entries(item)) {
    const h = document.createElement('h2'); h.innerHTML = '<span class="m"></span> <code></code>';
    h.querySelector('.m').textContent = method.toUpperCase(); h.querySelector('code').textContent = path; ops.appendChild(h);
    const p = document.createElement('p'); p.textContent = op.summary + (op.security && op.security.length ? ' Needs a bearer token.' : ''); ops.appendChild(p);
    const pre = document.createElement('pre'); pre.textContent = JSON.stringify({requestBody: op.requestBody, responses: Object.keys(op.responses)}, null, 1); ops.appendChild(pre);
  }
  window.gunnDocsReady = true;
});
</script></body></html>
"""
