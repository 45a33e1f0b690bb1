import Foundation
import Glibc
import Synchronization
import GunnCore

/// Agents the web adapter quarantined after repeated refusals of their tokens, kept in
/// data/web-quarantine.json (agent → reason, since) so a restarted adapter and gunnctl see the
/// same set. gunnctl lifts a quarantine by removing the agent; the adapter reads the file again
/// whenever it changes.
public final class QuarantineList: Sendable {
    public let path: String
    private let file: WatchedFile<[String: String]>
    /// Agents held in quarantine at most (the file is bounded like everything else).
    public static let maxAgents = 100_000

    public init(dataDir: String) {
        path = dataDir + "/web-quarantine.json"
        file = WatchedFile(path: path, empty: [:]) { Self.read($0) }
    }

    /// agent → reason, as the file holds it now.
    public func current() -> [String: String] { file.current }

    public func isQuarantined(_ agent: String) -> Bool { current()[agent] != nil }

    static func read(_ path: String) -> [String: String] {
        guard let data = FileManager.default.contents(atPath: path), data.count <= 64 << 20, let v = try? JSONParser.parse([UInt8](data)),
              let o = v.objectValue else { return [:] }
        var out: [String: String] = [:]
        for (k, r) in o { out[k] = r.stringValue ?? "" }
        return out
    }

    /// Adds (`reason` non-nil) or removes an agent under an exclusive lock on the file; returns
    /// whether the set changed.
    @discardableResult
    public func set(_ agent: String, reason: String?) throws(GunnError) -> Bool {
        let dir = (path as NSString).deletingLastPathComponent
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let lockFD = Glibc.open(path + ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lockFD >= 0 else { throw GunnError(.configInvalid, "cannot open \(path).lock") }
        defer { Glibc.close(lockFD) }
        guard flock(lockFD, LOCK_EX) == 0 else { throw GunnError(.configInvalid, "cannot lock \(path)") }
        var agents = Self.read(path)
        let before = agents[agent]
        if let reason {
            guard agents.count < Self.maxAgents || before != nil else { throw GunnError(.queueFull, "\(Self.maxAgents) agents are quarantined already") }
            agents[agent] = reason
        } else {
            agents[agent] = nil
        }
        guard agents[agent] != before else { return false }
        var o = JSONObject()
        for (k, r) in agents { o[k] = .string(r) }
        let tmp = path + ".tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: Data(CanonicalJSON.encode(.object(o))), attributes: [.posixPermissions: 0o600]),
              Glibc.rename(tmp, path) == 0 else { throw GunnError(.configInvalid, "cannot write \(path)") }
        return true
    }
}
