import Foundation
import GunnClient
import GunnCore
import GunnIO

// gunn-demo: a small world with scripted agents moving and talking, so a fresh system shows life.
//   gunn-demo --home DIR [--agents ann,bob,cyd] [--seed N] [--interval-ms N]
// Deterministic choices from the seed; reconnects by itself when the orchestrator restarts.
Supervision.followSupervisor()
let args = ProcessArguments()
let home = args.homeOrExit(usage: "gunn-demo --home DIR [--agents ann,bob,cyd] [--seed N] [--interval-ms N]")
let names = (args.value("--agents") ?? "ann,bob,cyd").split(separator: ",").map { AgentID(String($0)) }
var rng = SplitMix64(seed: UInt64(args.value("--seed") ?? "1") ?? 1)
let interval = UInt64(args.value("--interval-ms") ?? "500") ?? 500
let lines = ["hello there", "nice weather", "did you see that?", "over here", "let's meet at the well", "I'm heading north",
             "what a day", "anyone hungry?"]
let loop = try EventLoop(name: "demo")
let client = GunnClient(path: home + "/run/orchestrator.sock", loop: loop, name: "gunn-demo")
var positions: [AgentID: (Double, Double)] = [:]
for (i, name) in names.enumerated() {
    let p = (Double(i * 4), 0.0)
    positions[name] = p
    while true {
        do {
            try await client.register(["agent_id": .string(name.rawValue), "spawn": [.number(p.0), .number(p.1)], "staleness_threshold": 1000])
            break
        } catch {
            FileHandle.standardError.write(Data("gunn-demo: registering \(name): \(error); retrying\n".utf8))
            try await Task.sleep(nanoseconds: 500_000_000)
        }
    }
}
FileHandle.standardOutput.write(Data("gunn-demo: ready: \(names.map(\.rawValue).joined(separator: ", "))\n".utf8))
var n = 0
while true {
    try await Task.sleep(nanoseconds: interval * 1_000_000)
    n += 1
    let agent = names[Int(rng.next(below: UInt64(names.count)))]
    let req = ReqID("demo-\(agent)-\(n)-\(rng.next(below: 1 << 32))")
    let intent: Intent
    if rng.next(below: 3) == 0 {
        intent = Intent(kind: .speak, payload: ["text": .string(lines[Int(rng.next(below: UInt64(lines.count)))])],
                        contextSeq: client.view(of: agent)?.seq ?? 0, reqID: req, agentID: agent)
    } else {
        var p = positions[agent] ?? (0, 0)
        p.0 = min(20, max(-20, p.0 + Double(rng.next(below: 5)) - 2))
        p.1 = min(20, max(-20, p.1 + Double(rng.next(below: 5)) - 2))
        positions[agent] = p
        intent = Intent(kind: .move, payload: ["to": [.number(p.0), .number(p.1)]], contextSeq: client.view(of: agent)?.seq ?? 0, reqID: req, agentID: agent)
    }
    do {
        let outcome = try await client.submit(intent)
        if case .rejected(let e) = outcome { FileHandle.standardError.write(Data("gunn-demo: \(agent) \(intent.kind): \(e)\n".utf8)) }
    } catch {
        FileHandle.standardError.write(Data("gunn-demo: \(error)\n".utf8))
    }
}
