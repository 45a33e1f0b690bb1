import Foundation
import GunnCore
import GunnIO
import GunnSupervisorKit

// gunn-supervisor: starts, watches and stops gunn's processes.
//   gunn-supervisor [--config FILE] [--home DIR] [--profile NAME [--profiles FILE]]
// Config: --config, else GUNN_CONFIG, else ops/gunn.json. Home: --home, else GUNN_HOME, else ./.gunn.
// Profile: --profile, else GUNN_PROFILE: one entry of --profiles (default: profiles.json beside the
// config), whose keys win over the config's; GUNN_* variables win over both.
let usage = "gunn-supervisor [--config FILE] [--home DIR] [--profile dev|prod] [--profiles FILE]   (defaults: ops/gunn.json, ./.gunn)"
let args = ProcessArguments()
if args.arguments.contains("--help") || args.arguments.contains("-h") {
    print("usage: \(usage)")
    exit(0)
}
let termination = TerminationSignals.install()
let configPath = args.value("--config", env: "GUNN_CONFIG") ?? "ops/gunn.json"
let home = args.value("--home", env: "GUNN_HOME") ?? ".gunn"
func fail(_ message: String, _ code: Int32) -> Never {
    FileHandle.standardError.write(Data("gunn-supervisor: \(message)\n".utf8))
    exit(code)
}
guard let bytes = FileManager.default.contents(atPath: configPath) else { fail("cannot read config \(configPath)", 78) }
var config: SupervisorConfig
let absoluteConfig = configPath.hasPrefix("/") ? configPath : FileManager.default.currentDirectoryPath + "/" + configPath
var profile: (name: String, values: JSONObject)?
if let name = args.value("--profile", env: "GUNN_PROFILE") {
    let file = args.value("--profiles") ?? (absoluteConfig as NSString).deletingLastPathComponent + "/profiles.json"
    guard let data = FileManager.default.contents(atPath: file) else { fail("CONFIG_INVALID (7001): cannot read the profiles file \(file)", 78) }
    do { profile = (name, try SupervisorConfig.profile(name, from: [UInt8](data))) } catch { fail("\(file): \(error)", 78) }
}
do { config = try SupervisorConfig.parse([UInt8](bytes), environment: args.environment, profile: profile) } catch {
    fail("\(configPath): \(error)", 78)
}
config.configDir = (absoluteConfig as NSString).deletingLastPathComponent
let supervisor: Supervisor
do { supervisor = try Supervisor(config: config, home: home) } catch { fail("\(error)", 78) }
exit(await supervisor.run(termination: termination))
