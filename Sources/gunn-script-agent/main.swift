import Foundation
import GunnClient
import GunnCore
import GunnIO

// gunn-script-agent: one scripted agent in its own process, for system tests.
//   gunn-script-agent SOCKET AGENT_ID X Y
// Registers AGENT_ID spawned at (X, Y), prints "registered <view_seq>", then runs commands from stdin,
// one per line, answering each with one line on stdout:
//   begin REQ            -> "token <context_seq>"
//   wait-cancel          -> "cancel <req> <reason>"
//   speak REQ TEXT...    -> "committed <global_seq>" | "rejected <NAME>"
//   observe N            -> N lines "obs <view_seq>", then "view <canonical JSON of its view>"
//   quit
let a = CommandLine.arguments
guard a.count >= 5, let x = Double(a[3]), let y = Double(a[4]) else {
    FileHandle.standardError.write(Data("usage: gunn-script-agent SOCKET AGENT_ID X Y\n".utf8))
    exit(64)
}
let agent = AgentID(a[2])
func say(_ s: String) { FileHandle.standardOutput.write(Data((s + "\n").utf8)) }
let loop = try EventLoop(name: "script-agent")
let client = GunnClient(path: a[1], loop: loop, name: agent.rawValue)
let view = try await client.register(["agent_id": .string(agent.rawValue), "spawn": [.number(x), .number(y)]])
say("registered \(view?.seq ?? 0)")
while let line = readLine() {
    let words = line.split(separator: " ").map(String.init)
    guard let cmd = words.first else { continue }
    switch cmd {
    case "begin":
        let t = try await client.beginGeneration(agent, reqID: ReqID(words[1]))
        say("token \(t.contextSeq)")
    case "wait-cancel":
        guard let c = await client.nextCancel(for: agent) else { say("closed"); break }
        say("cancel \(c.reqID) \(c.reason)")
    case "speak":
        let text = words.dropFirst(2).joined(separator: " ")
        let ctx = client.view(of: agent)?.seq ?? 0
        let o = try await client.submit(Intent(kind: .speak, payload: ["text": .string(text)], contextSeq: ctx, reqID: ReqID(words[1]), agentID: agent))
        switch o {
        case .committed(let e): say("committed \(e.globalSeq)")
        case .rejected(let e): say("rejected \(e.code.name)")
        }
    case "observe":
        for _ in 0..<(Int(words[1]) ?? 1) {
            guard let o = await client.nextObservation(for: agent) else { break }
            say("obs \(o.viewSeq)")
        }
        // The view is updated as observations are routed; a short settle for the last one.
        try await Task.sleep(nanoseconds: 20_000_000)
        say("view \(client.view(of: agent).map { CanonicalJSON.encodeString($0.doc) } ?? "null")")
    case "quit":
        client.close()
        exit(0)
    default:
        say("unknown \(cmd)")
    }
}
exit(0)
