import Foundation
import GunnCore
import GunnIO
import GunnSupervisorKit

// gunn-supervisor: starts, watches and stops gunn's processes.
//   gunn-supervisor [--config FILE] [--home DIR]
// Config: --config, else GUNN_CONFIG, else ops/gunn.json. Home: --home, else GUNN_HOME, else ./.gunn.
let usage = "gunn-supervisor [--config FILE] [--home DIR]   (defaults: ops/gunn.json, ./.gunn)"
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
do { config = try SupervisorConfig.parse([UInt8](bytes), environment: args.environment) } catch {
    fail("\(configPath): \(error)", 78)
}
let absoluteConfig = configPath.hasPrefix("/") ? configPath : FileManager.default.currentDirectoryPath + "/" + configPath
config.configDir = (absoluteConfig as NSString).deletingLastPathComponent
let supervisor: Supervisor
do { supervisor = try Supervisor(config: config, home: home) } catch { fail("\(error)", 78) }
exit(await supervisor.run(termination: termination))
