import Foundation
import GunnCore
import GunnIO
import GunnWire

// gunn-wire-peer: a second process for GunnIO's tests and gunn-bench wire.
//   gunn-wire-peer echo PATH [--heartbeat-ms N]   serve PATH; echo every data frame back
//   gunn-wire-peer sink PATH                      serve PATH; take frames, answer a SubmitIntent with id != 0 by EmitResult(draft_id: frames taken)
//   gunn-wire-peer raw-echo PATH SIZE             the bare baseline: blocking read/write, echo each SIZE-byte message
//   gunn-wire-peer raw-sink PATH SIZE COUNT       the bare baseline: read COUNT messages of SIZE bytes, answer 1 byte
// Prints "ready" on stdout once listening; exits when stdin closes.
let args = CommandLine.arguments
if args.count >= 4, args[1].hasPrefix("raw-") {
    RawBaseline.serve(mode: args[1], path: args[2], size: Int(args[3]) ?? 64, count: args.count > 4 ? Int(args[4]) ?? 0 : 0)
    exit(0)
}
guard args.count >= 3, ["echo", "sink"].contains(args[1]) else {
    FileHandle.standardError.write(Data("usage: gunn-wire-peer echo|sink PATH [--heartbeat-ms N]\n".utf8))
    exit(64)
}
let mode = args[1], path = args[2]
var options = ConnectionOptions()
if let i = args.firstIndex(of: "--heartbeat-ms"), i + 1 < args.count, let v = Double(args[i + 1]) { options.heartbeatMs = v }
options.handshakeTimeoutMs = 2000
options.receiveWindow = 1024

let loop = try EventLoop(name: "peer-io")
let server = try await UnixSocketServer(path: path, loop: loop, options: options) { hello in
    var w = Welcome()
    w.role = "peer"
    w.sessionID = "s-\(hello.clientName)"
    return .success(w)
} onConnection: { conn in
    Task {
        var taken: UInt64 = 0
        if mode == "echo" {
            while let f = await conn.receive() {
                guard let body = f.body else { continue }
                try? await conn.send(body, id: f.id)
            }
        } else {
            while true {
                let batch = await conn.receive(upTo: 4096)
                if batch.isEmpty { break }
                for f in batch {
                    taken += 1
                    if case .submitIntent? = f.body, f.id != 0 {
                        var r = EmitResult()
                        r.draftID = String(taken)
                        r.accepted = true
                        try? await conn.send(.emitResult(r), id: f.id)
                    }
                }
            }
        }
    }
}
FileHandle.standardOutput.write(Data("ready\n".utf8))
// Serve until the parent closes our stdin.
while let line = readLine(strippingNewline: true) { _ = line }
await server.stop()
exit(0)
