import Foundation

/// The small command-line reading gunn's executables share: `--name value` options with `GUNN_*`
/// environment fallbacks (DESIGN.md §1).
public struct ProcessArguments: Sendable {
    public let arguments: [String]
    public let environment: [String: String]

    public init(arguments: [String] = CommandLine.arguments, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.arguments = arguments
        self.environment = environment
    }

    /// The value after `--name`, else the environment variable `env`, else nil.
    public func value(_ name: String, env: String? = nil) -> String? {
        if let i = arguments.firstIndex(of: name), i + 1 < arguments.count { return arguments[i + 1] }
        return env.flatMap { environment[$0] }
    }

    /// `--home` or `GUNN_HOME`; prints `usage` and exits 64 when neither is given.
    public func homeOrExit(usage: String) -> String {
        guard let home = value("--home", env: "GUNN_HOME") else {
            FileHandle.standardError.write(Data("usage: \(usage)\n".utf8))
            exit(64)
        }
        return home
    }

    /// `--world-id` (or GUNN_WORLD_ID, which the supervisor sets); a missing or empty one exits
    /// 64 with a CONFIG_INVALID line naming `program`.
    public func worldIDOrExit(program: String) -> String {
        guard let world = value("--world-id", env: "GUNN_WORLD_ID"), !world.isEmpty else {
            FileHandle.standardError.write(Data("\(program): CONFIG_INVALID (7001): --world-id (or GUNN_WORLD_ID) is required\n".utf8))
            exit(64)
        }
        return world
    }
}
