import Foundation
import GunnAuth
import GunnCore
import GunnHTTP
import Synchronization

extension WebAdapter {
    /// `GET /v1/stream?agents=A,B[&resume=A:VIEW_SEQ:DIGEST,…]` upgraded to WebSocket: for each
    /// agent, the observations after the held view named in `resume` when the recent window still
    /// has it (one delta message each), else its whole view; then every observation and
    /// cancellation as it happens, as JSON text messages (docs/web.md). The token comes in the
    /// Authorization header or, for browsers, `access_token`.
    func openWebSocket(_ ws: WebSocket, _ req: HTTPRequest) {
        let claims: TokenClaims, agents: [String]
        do { (claims, agents) = try openStream(req) } catch {
            return StreamHub.refuse(ws, error)
        }
        let marks = Self.resumeMarks(req)
        for a in agents where client.view(of: AgentID(a)) == nil { Task { _ = await self.ensureRegistered(a) } }
        let sink: StreamHub.Sink = { [weak ws] text in
            guard let ws else { return false }
            return ws.send(.text, Array(text.utf8))
        }
        // The handlers are in place before the first message goes out, so a connection that fails
        // while the views are written still releases its subscriptions and its stream slot.
        let subs = Mutex<[(String, UInt64)]>([])
        let tenant = claims.tenant
        ws.onClose = { [hub] _, _ in
            // Off this stack: a close can happen inside a send that `hub.subscribe` makes while it
            // holds the hub's lock (the peer reset the connection mid-subscription).
            let held = subs.withLock { $0 }
            Task {
                for (a, id) in held { hub.unsubscribe(a, id) }
                self.closeStream(tenant: tenant)
            }
        }
        ws.onMessage = { [weak ws] m in
            // The stream is one-way; a client's text is answered with an error, nothing else.
            ws?.send(text: StreamHub.errorMessage(GunnError(.unknownMessage, "this stream takes no messages; use the REST API")))
        }
        for a in agents {
            let id = hub.subscribe(a, resume: marks[a], sink).0
            subs.withLock { $0.append((a, id)) }
        }
    }

    /// `GET /v1/events?agents=A,B[&resume=…]`: the same messages as server-sent events, for
    /// clients without WebSocket. The `event` is the message's type; a comment every 15 s finds a
    /// reader that went away.
    func openEventStream(_ req: HTTPRequest, _ res: HTTPResponder) {
        let claims: TokenClaims, agents: [String]
        do { (claims, agents) = try openStream(req) } catch {
            res.respond(Self.answer(error))
            return
        }
        let sse = res.eventStream()
        let marks = Self.resumeMarks(req)
        for a in agents where client.view(of: AgentID(a)) == nil { Task { _ = await self.ensureRegistered(a) } }
        let sink: StreamHub.Sink = { text in
            if sse.isClosed { return false }
            let type = (try? JSONParser.parse(text))?["type"]?.stringValue ?? "message"
            sse.send(data: text, event: type)
            return !sse.isClosed
        }
        var subs: [(String, UInt64)] = []
        for a in agents { subs.append((a, hub.subscribe(a, resume: marks[a], sink).0)) }
        let tenant = claims.tenant
        Task { [hub] in
            while !sse.isClosed {
                try? await Task.sleep(nanoseconds: 15_000_000_000)
                sse.comment("keepalive")
            }
            for (a, id) in subs { hub.unsubscribe(a, id) }
            self.closeStream(tenant: tenant)
        }
    }
}
