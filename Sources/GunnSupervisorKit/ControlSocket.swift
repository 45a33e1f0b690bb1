import Foundation
import Glibc
import GunnCore
import GunnIO
import GunnWire

/// The supervisor's control socket, `run/supervisor.sock`: status of every child (asked at once,
/// each within `status_probe_ms`) and child control (restart, stop, start).
extension Supervisor {
    /// Every child's status, plus the clients attached to the orchestrator by hand. Every child
    /// the table calls ready is asked at once, each within `status_probe_ms`: one that does not
    /// answer is shown `not_answering`, and never delays the report of the others.
    public func status() async -> [ChildStatus] {
        let now = Self.now()
        let table = state.withLock { s in
            s.children.map { c -> (status: ChildStatus, socket: String?) in
                var st = ChildStatus()
                st.name = c.spec.name; st.pid = c.pid; st.state = c.state.rawValue; st.restarts = UInt32(clamping: c.restarts)
                st.lastExitStatus = c.lastExitStatus; st.lastExit = c.lastExit
                st.uptimeMs = c.pid != 0 ? UInt64(max(0, now - c.startedAt) * 1000) : 0
                return (st, c.state == .ready && c.pid != 0 ? c.spec.socket : nil)
            }
        }
        var out = table.map(\.status)
        let own = Set(out.map(\.pid).filter { $0 != 0 })
        let hello = Hello(protocolMajor: 1, protocolMinor: 0, role: "ctl", worldID: config.worldID, clientName: "gunn-supervisor")
        let probeMs = config.statusProbeMs
        var attached: [ChildStatus] = []
        await withTaskGroup(of: (Int, ControlProbe.Outcome?).self) { group in
            for (i, entry) in table.enumerated() where entry.status.state == ChildState.ready.rawValue {
                guard let socket = entry.socket else {
                    // No socket to ask: a stopped process (SIGSTOP, a debugger) is the wedge we can see.
                    let pid = entry.status.pid
                    group.addTask { (i, Spawn.state(of: pid).map { $0 == "T" || $0 == "t" } == true ? .notAnswering : nil) }
                    continue
                }
                let probe = ControlProbe(path: home + "/" + socket, loop: loop, hello: hello, deadlineMs: probeMs)
                // The orchestrator also lists its sessions: the clients attached by hand.
                let request: Frame.Body? = socket.hasSuffix("orchestrator.sock") ? .status(Empty()) : nil
                group.addTask { (i, await probe.run(request: request)) }
            }
            for await (i, outcome) in group {
                switch outcome {
                case .notAnswering?, .absent?: out[i].state = ChildState.notAnswering.rawValue
                case .answered(.statusResult(let r)?)?:
                    lastSeenHead.store(r.headSeq, ordering: .relaxed)
                    // Not our children, not ourselves, not gunnctl: clients someone attached by hand.
                    for var s in r.children where !own.contains(s.pid) && s.pid != getpid() && s.state != "ctl" && s.state != "supervisor" {
                        s.state = "attached"
                        attached.append(s)
                    }
                case .answered?, nil: break
                }
            }
        }
        return out + attached.sorted { ($0.name, $0.pid) < ($1.name, $1.pid) }
    }

    func serveControl(_ conn: FramedConnection) async {
        while let frame = await conn.receive() {
            switch frame.body {
            case .status?:
                var r = StatusResult()
                r.children = await status()
                r.features = config.features.enabled.sorted()
                r.profile = config.profile ?? ""
                conn.post([Frame(id: frame.id, .statusResult(r))])
            case .metrics?:
                conn.post([Frame(id: frame.id, telemetry.answer(frame.body)!)])
            case .restart(let req)?:
                let action = req.action.isEmpty ? "restart" : req.action
                var r = ControlResult()
                let known = state.withLock { s in s.children.contains { $0.spec.name == req.name } }
                if !known {
                    let names = config.children.map(\.name).joined(separator: ", ")
                    let error = GunnError(.invalidAgentID, "no child named \"\(req.name)\" (children: \(names))")
                    conn.post([Frame(id: frame.id, .error(WireErrorMessage(error)))])
                } else if !["restart", "stop", "start"].contains(action) {
                    let error = GunnError(.unknownMessage, "unknown action \"\(action)\" (restart, stop, start)")
                    conn.post([Frame(id: frame.id, .error(WireErrorMessage(error)))])
                } else {
                    state.withLock { $0.commands.append((action, req.name)) }
                    r.ok = true
                    r.message = "\(action) \(req.name) requested"
                    conn.post([Frame(id: frame.id, .controlResult(r))])
                }
            default:
                let error = GunnError(.unknownMessage, "the supervisor serves Status, Restart and Metrics only")
                conn.post([Frame(id: frame.id, .error(WireErrorMessage(error)))])
            }
        }
    }
}
