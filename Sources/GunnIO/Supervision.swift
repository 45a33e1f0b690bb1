import CGunnSys
import Foundation
import Glibc
import GunnCore
import GunnWire

/// What a process started by gunn-supervisor does first: die with the supervisor.
public enum Supervision {
    /// The environment variable through which the supervisor names itself to its children.
    public static let supervisorPIDVariable = "GUNN_SUPERVISOR_PID"

    /// When started by gunn-supervisor: asks the kernel for SIGKILL when the parent dies
    /// (PR_SET_PDEATHSIG), then checks that the parent is still the supervisor that spawned this
    /// process — if it died between the spawn and the prctl, this process exits at once rather
    /// than live on as an orphan. Does nothing for a process started by hand.
    public static func followSupervisor(environment: [String: String] = ProcessInfo.processInfo.environment) {
        guard let s = environment[supervisorPIDVariable], let pid = pid_t(s) else { return }
        _ = gunn_set_parent_death_signal(SIGKILL)
        if getppid() != pid {
            FileHandle.standardError.write(Data("supervisor \(pid) is gone; exiting\n".utf8))
            exit(0)
        }
    }
}

extension WireErrorMessage {
    /// The wire form of a coded error.
    public init(_ e: GunnError) {
        self.init(code: UInt32(e.code.code), name: e.code.name, message: e.message, retryAfterMs: e.retryAfterMs ?? 0)
    }
}
