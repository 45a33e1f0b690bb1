import Foundation
import Glibc
import Synchronization
import GunnCore

/// The context_seq the adapter filled in for each intent sent without one, by agent and req_id,
/// so that a retry of the same req_id — even after this process was killed and restarted — is
/// the same intent to the orchestrator's idempotency table (its fingerprint includes the context).
/// Kept in memory (bounded: the oldest are forgotten first) and appended to a file under data/
/// before the intent is sent; a write survives the process (kill -9), not a crash of the machine.
final class ContextJournal: Sendable {
    let path: String?
    let capacity: Int
    private struct State {
        var map: [String: UInt64] = [:]
        var order: [String] = []
        var head = 0
        var fd: Int32 = -1
        var lines = 0
    }
    private let state = Mutex(State())

    init(path: String?, capacity: Int) {
        self.path = path
        self.capacity = max(1, capacity)
        guard let path else { return }
        // The newest `capacity` records of the file.
        if let data = FileManager.default.contents(atPath: path) {
            state.withLock { s in
                for line in data.split(separator: 0x0A) {
                    guard let v = try? JSONParser.parse([UInt8](line)), let k = v["k"]?.stringValue, let c = v["c"]?.int64Value, c >= 0 else { continue }
                    Self.remember(&s, k, UInt64(c), capacity: capacity)
                    s.lines += 1
                }
            }
        }
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        state.withLock { $0.fd = fd }
    }

    private static func remember(_ s: inout State, _ key: String, _ ctx: UInt64, capacity: Int) {
        if s.map[key] == nil { s.order.append(key) }
        s.map[key] = ctx
        while s.order.count - s.head > capacity {
            s.map[s.order[s.head]] = nil
            s.head += 1
        }
        if s.head > capacity { s.order.removeFirst(s.head); s.head = 0 }
    }

    /// The context recorded for `agent`/`req`, or `current`, recorded now.
    func context(agent: String, req: String, current: UInt64) -> UInt64 {
        let key = agent + "\u{0}" + req
        return state.withLock { s -> UInt64 in
            if let c = s.map[key] { return c }
            Self.remember(&s, key, current, capacity: capacity)
            if s.fd >= 0 {
                var line = CanonicalJSON.encode(.object(JSONObject(["k": .string(key), "c": .number(Double(current))])))
                line.append(0x0A)
                _ = line.withUnsafeBytes { Glibc.write(s.fd, $0.baseAddress, $0.count) }
                s.lines += 1
                if s.lines > 2 * capacity { compact(&s) }
            }
            return current
        }
    }

    /// Rewrites the file with what memory holds (the file never grows past twice the capacity).
    private func compact(_ s: inout State) {
        guard let path else { return }
        var out: [UInt8] = []
        for k in s.order[s.head...] {
            guard let c = s.map[k] else { continue }
            out += CanonicalJSON.encode(.object(JSONObject(["k": .string(k), "c": .number(Double(c))])))
            out.append(0x0A)
        }
        let tmp = path + ".tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: Data(out), attributes: [.posixPermissions: 0o600]), rename(tmp, path) == 0 else { return }
        Glibc.close(s.fd)
        s.fd = Glibc.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        s.lines = s.order.count - s.head
    }
}
