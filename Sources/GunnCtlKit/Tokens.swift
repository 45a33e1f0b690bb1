import Foundation
import GunnAuth
import GunnCore

/// `gunnctl token issue|revoke|list`: bearer tokens for the web adapter, signed with the home's
/// secret (data/web-secret) and recorded in data/web-tokens.json (claims only, never the token).
extension Ctl {
    var tokenStore: TokenStore { TokenStore(dataDir: home + "/data") }

    /// Prints the new token (its one appearance in clear) and, when the adapter runs, its address.
    func tokenIssue(tenant: String, world: String?, agents: [String], rights: [String], ttlSeconds: UInt64) async throws {
        var set = Set<Right>()
        for r in rights {
            guard let right = Right(rawValue: r) else {
                throw GunnCtl.Exit(code: 2, message: "\(ErrorCode.configInvalid): unknown right \"\(r)\" (rights: observe, act, emit, admin)")
            }
            set.insert(right)
        }
        var worldID = world
        if worldID == nil {
            // The world of the running orchestrator, from its Welcome.
            let link = try await endpoints.connect("orchestrator")
            worldID = link.conn.welcome?.worldID
            link.close()
        }
        guard let worldID, !worldID.isEmpty else { throw GunnCtl.Exit(code: 2, message: "no world: pass --world ID") }
        let (token, claims): (String, TokenClaims)
        do { (token, claims) = try tokenStore.issue(tenant: tenant, world: worldID, agents: agents, rights: set, ttlSeconds: Int64(ttlSeconds)) } catch {
            throw GunnCtl.Exit(code: 2, message: "\(error)")
        }
        let url = (try? String(contentsOfFile: home + "/run/web.addr", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        if json {
            var o = claims.json.objectValue ?? JSONObject()
            o["token"] = .string(token)
            o["url"] = url.map { .string($0) } ?? .null
            emitJSON(.object(o))
        } else {
            out(token)
        }
    }

    func tokenRevoke(_ id: String) throws {
        let known: Bool
        do { known = try tokenStore.revoke(id: id) } catch { throw GunnCtl.Exit(code: 2, message: "\(error)") }
        if !known { negative = true }
        if json { emitJSON(["id": .string(id), "revoked": .bool(known)]) } else { out(known ? "revoked \(id)" : "no token \(id) was issued here") }
    }

    /// Lifts an agent's quarantine: removed from data/web-quarantine.json (the adapter reads it
    /// again at once) and an `AgentReleased` record emitted through the orchestrator.
    func tokenRelease(_ agent: String) async throws {
        let list = QuarantineList(dataDir: home + "/data")
        let changed: Bool
        do { changed = try list.set(agent, reason: nil) } catch { throw GunnCtl.Exit(code: 2, message: "\(error)") }
        guard changed else {
            negative = true
            if json { emitJSON(["agent_id": .string(agent), "released": false]) } else { out("\(agent) is not quarantined") }
            return
        }
        try await emit(kind: "AgentReleased", payload: CanonicalJSON.encodeString(["agent_id": .string(agent), "reason": "released by gunnctl"]), source: "gunnctl")
        if json { emitJSON(["agent_id": .string(agent), "released": true]) } else { out("released \(agent)") }
    }

    func tokenList() {
        let r = tokenStore.registry()
        let now = Int64(Date().timeIntervalSince1970)
        if json {
            emitJSON(.array(r.issued.map { c in
                var o = c.json.objectValue ?? JSONObject()
                o["revoked"] = .bool(r.revoked.contains(c.id))
                o["expired"] = .bool(c.expiresAt <= now)
                return .object(o)
            }))
            return
        }
        out("ID                                TENANT        WORLD       RIGHTS                AGENTS        STATE")
        for c in r.issued {
            let state = r.revoked.contains(c.id) ? "revoked" : c.expiresAt <= now ? "expired" : "valid \(c.expiresAt - now) s"
            out([c.id.padding(toLength: 34, withPad: " ", startingAt: 0), c.tenant.padding(toLength: 14, withPad: " ", startingAt: 0),
                 c.world.padding(toLength: 12, withPad: " ", startingAt: 0),
                 c.rights.map(\.rawValue).sorted().joined(separator: ",").padding(toLength: 22, withPad: " ", startingAt: 0),
                 c.agents.joined(separator: ",").padding(toLength: 14, withPad: " ", startingAt: 0), state].joined())
        }
    }
}
