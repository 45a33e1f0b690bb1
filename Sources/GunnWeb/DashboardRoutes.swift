import Foundation
import Synchronization
import GunnAuth
import GunnCore
import GunnHTTP

extension WebAdapter {
    /// The dashboard's routes: the page at `/` (HTML, CSS and JavaScript from the binary, no
    /// external asset), its stream and the world at a seq. The page itself is public (it holds no
    /// data); everything it shows needs a token with `observe` or `admin`.
    func dashboardRoutes(_ r: inout Router, _ dashboard: Dashboard) {
        r.get("/") { _ in .text(DashboardPage.html, contentType: "text/html; charset=utf-8") }
        r.get("/dashboard.js") { _ in .text(DashboardPage.script, contentType: "text/javascript; charset=utf-8") }
        r.get("/dashboard.css") { _ in .text(DashboardPage.style, contentType: "text/css; charset=utf-8") }
        r.webSocket("/v1/dashboard/stream", WebSocketEndpoint(subprotocols: ["gunn.dashboard.v1"]) { [self] ws, req in
            openDashboard(ws, req, dashboard)
        })
        r.on("GET", "/v1/dashboard/world") { [self] req, res in
            Task { res.respond(await worldAt(req, dashboard)) }
        }
    }

    /// Who may see what: an `admin` token sees the whole world, the log and every agent's eyes;
    /// an `observe` token only the eyes of its tenant's agents registered here that it names.
    func dashboardScope(_ req: HTTPRequest) throws(GunnError) -> Set<String>? {
        let claims = try authorize(req, .observe)
        if claims.rights.contains(.admin) { return nil }
        return ownedAgents(of: claims.tenant).filter { claims.covers(agent: $0) }
    }

    func openDashboard(_ ws: WebSocket, _ req: HTTPRequest, _ dashboard: Dashboard) {
        let allowed: Set<String>?
        do { allowed = try dashboardScope(req) } catch { return StreamHub.refuse(ws, error) }
        let sink: @Sendable (String) -> Bool = { [weak ws] text in ws?.send(.text, Array(text.utf8)) ?? false }
        // The handlers are in place before the first message goes out: a write that fails while
        // the first picture is sent closes the socket at once, and the page is still let go.
        let page = Mutex<(id: UInt64?, closed: Bool)>((nil, false))
        ws.onClose = { _, _ in
            if let id = page.withLock({ p -> UInt64? in p.closed = true; return p.id }) { dashboard.detach(id) }
        }
        ws.onMessage = { [weak ws] m in
            guard let id = page.withLock({ $0.id }) else { return }
            // The page's one message: whose eyes to look through, `{"select": AGENT|null}`.
            guard let text = m.text, let v = try? JSONParser.parse(Array(text.utf8)), case .object(let o) = v, o.count == 1,
                  let sel = o["select"], sel == .null || sel.stringValue != nil else {
                ws?.send(text: StreamHub.errorMessage(GunnError(.unknownMessage, "the dashboard stream takes {\"select\": AGENT} or {\"select\": null}")))
                return
            }
            if let e = dashboard.select(id, sel.stringValue) {
                ws?.send(text: StreamHub.errorMessage(e))
            }
        }
        guard let id = dashboard.attach(allowed: allowed, send: sink) else {
            return StreamHub.refuse(ws, GunnError(.tooManyConnections, "\(Dashboard.maxPages) dashboard pages are open already", retryAfterMs: 5000))
        }
        if page.withLock({ p -> Bool in p.id = id; return p.closed }) { dashboard.detach(id) }
    }

    /// `GET /v1/dashboard/world?seq=N`: the world right after entry N, replayed from the log
    /// (admin only: it is the whole world).
    func worldAt(_ req: HTTPRequest, _ dashboard: Dashboard) async -> HTTPResponse {
        do {
            guard try dashboardScope(req) == nil else { return .error(.forbidden, "the world at a seq needs the admin right") }
        } catch { return Self.answer(error) }
        guard let text = req.query("seq"), let seq = UInt64(text), seq >= 1 else {
            return .error(.invalidField, "query parameter \"seq\" must be a whole number from 1")
        }
        do {
            let world = try await dashboard.world(at: seq)
            var ents = JSONObject()
            for (id, e) in world.entities { ents[id] = .object(e) }
            return .json(["seq": .number(Double(world.lastGlobalSeq)), "world_digest": .string(world.digest), "entities": .object(ents)])
        } catch {
            return Self.answer(error)
        }
    }
}
