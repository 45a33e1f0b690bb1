import Foundation
import GunnClient
import GunnCore
import GunnIO

// gunn-demo: scripted agents moving and talking, so a fresh system shows life.
//   gunn-demo --home DIR [--agents ann,bob,cyd | --count N] [--seed N] [--interval-ms N] [--per-tick N]
//             [--size W,H] [--distance-limit R] [--talk-one-in N]
// The small demo (the default): three agents near the origin, one intent every --interval-ms.
// The city (ops/city.json): --count N agents named c0000…, spawned over a W×H world, each seeing
// only --distance-limit around it, --per-tick intents every --interval-ms (one in --talk-one-in
// a Speak, the rest Moves of a few units). Deterministic choices from the seed; reconnects by
// itself when the orchestrator restarts.
Supervision.followSupervisor()
let args = ProcessArguments()
let usage = "gunn-demo --home DIR [--agents ann,bob,cyd | --count N] [--seed N] [--interval-ms N] [--per-tick N] [--size W,H] [--distance-limit R] [--talk-one-in N]"
let home = args.homeOrExit(usage: usage)
func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("gunn-demo: CONFIG_INVALID: \(message)\nusage: \(usage)\n".utf8))
    exit(64)
}
func whole(_ flag: String, _ range: ClosedRange<Int>) -> Int? {
    guard let text = args.value(flag) else { return nil }
    guard let v = Int(text), range.contains(v) else { fail("\(flag) must be a whole number in \(range), got \(text)") }
    return v
}
let count = whole("--count", 1...100_000)
let names: [AgentID] = count.map { n in (0..<n).map { AgentID(String(format: "c%04d", $0)) } }
    ?? (args.value("--agents") ?? "ann,bob,cyd").split(separator: ",").map { AgentID(String($0)) }
var rng = SplitMix64(seed: UInt64(whole("--seed", 0...Int.max) ?? 1))
let interval = UInt64(whole("--interval-ms", 1...3_600_000) ?? 500)
let perTick = whole("--per-tick", 1...10_000) ?? 1
let talkOneIn = UInt64(whole("--talk-one-in", 1...1_000_000) ?? 3)
let size: (Double, Double) = {
    guard let text = args.value("--size") else { return (40, 40) }
    let p = text.split(separator: ",").compactMap { Double($0) }
    guard p.count == 2, p.allSatisfy({ $0 >= 1 && $0 <= 1e6 }) else { fail("--size must be W,H (1…1000000), got \(text)") }
    return (p[0], p[1])
}()
let distanceLimit: Double? = args.value("--distance-limit").map { text in
    guard let v = Double(text), v >= 0, v <= 1e12 else { fail("--distance-limit must be a number from 0, got \(text)") }
    return v
}
let lines = ["hello there", "nice weather", "did you see that?", "over here", "let's meet at the well", "I'm heading north",
             "what a day", "anyone hungry?"]
let loop = try EventLoop(name: "demo")
let client = GunnClient(path: home + "/run/orchestrator.sock", loop: loop, name: "gunn-demo")

// Where each agent is; the small demo lines them up from the origin, the city scatters them.
var positions: [AgentID: (Double, Double)] = [:]
let city = count != nil
for (i, name) in names.enumerated() {
    positions[name] = city ? (Double(rng.next(below: UInt64(size.0))), Double(rng.next(below: UInt64(size.1)))) : (Double(i * 4), 0.0)
}
let minimum: (Double, Double) = city ? (0, 0) : (-size.0 / 2, -size.1 / 2)
let maximum: (Double, Double) = city ? size : (size.0 / 2, size.1 / 2)

func register(_ name: AgentID, _ p: (Double, Double)) async {
    var o: JSONObject = ["agent_id": .string(name.rawValue), "spawn": [.number(p.0), .number(p.1)], "staleness_threshold": 1000]
    if let distanceLimit { o["distance_limit"] = .number(distanceLimit) }
    while true {
        do {
            try await client.register(.object(o))
            return
        } catch {
            FileHandle.standardError.write(Data("gunn-demo: registering \(name): \(error); retrying\n".utf8))
            try? await Task.sleep(nanoseconds: 500_000_000)
        }
    }
}
// Registered 32 at a time; each agent's observations are read (and dropped) so none piles up.
for start in stride(from: 0, to: names.count, by: 32) {
    await withTaskGroup(of: Void.self) { group in
        for name in names[start..<min(names.count, start + 32)] { let p = positions[name]!; group.addTask { await register(name, p) } }
    }
}
for name in names { Task { while await client.nextObservation(for: name) != nil {} } }
FileHandle.standardOutput.write(Data("gunn-demo: ready: \(names.count) agents\n".utf8))

var n = 0
while true {
    try await Task.sleep(nanoseconds: interval * 1_000_000)
    var intents: [Intent] = []
    for _ in 0..<perTick {
        n += 1
        let agent = names[Int(rng.next(below: UInt64(names.count)))]
        let req = ReqID("demo-\(agent)-\(n)-\(rng.next(below: 1 << 32))")
        if rng.next(below: talkOneIn) == 0 {
            intents.append(Intent(kind: .speak, payload: ["text": .string(lines[Int(rng.next(below: UInt64(lines.count)))])],
                                  contextSeq: client.view(of: agent)?.seq ?? 0, reqID: req, agentID: agent))
        } else {
            var p = positions[agent] ?? (0, 0)
            p.0 = min(maximum.0, max(minimum.0, p.0 + Double(rng.next(below: 5)) - 2))
            p.1 = min(maximum.1, max(minimum.1, p.1 + Double(rng.next(below: 5)) - 2))
            positions[agent] = p
            intents.append(Intent(kind: .move, payload: ["to": [.number(p.0), .number(p.1)]], contextSeq: client.view(of: agent)?.seq ?? 0,
                                  reqID: req, agentID: agent))
        }
    }
    await withTaskGroup(of: Void.self) { group in
        for intent in intents {
            group.addTask {
                do {
                    let outcome = try await client.submit(intent)
                    if case .rejected(let e) = outcome, !city { FileHandle.standardError.write(Data("gunn-demo: \(intent.agentID) \(intent.kind): \(e)\n".utf8)) }
                } catch {
                    FileHandle.standardError.write(Data("gunn-demo: \(error)\n".utf8))
                }
            }
        }
    }
}
