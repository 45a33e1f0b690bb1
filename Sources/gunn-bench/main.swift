import Foundation

// gunn-bench: measures gunn's figures next to a baseline measured in the same run.
// Usage: gunn-bench <suite> [--json PATH]; suites: json.
let arguments = Array(CommandLine.arguments.dropFirst())
let usage = "usage: gunn-bench json|engine|observe|wire|log|system|llm|quick|soak|restart|memory|http|web|engine-bridge|telemetry|all [--json PATH]"
guard let suite = arguments.first else {
    FileHandle.standardError.write(Data((usage + "\n").utf8))
    exit(64)
}
var jsonPath: String?
if let i = arguments.firstIndex(of: "--json"), i + 1 < arguments.count { jsonPath = arguments[i + 1] }

struct Report: Encodable {
    var json: JSONBench.Figures?
    var engine: [EngineBench.Figures]?
    var observe: [ObservationBench.Figures]?
    var wire: WireBench.Figures?
    var log: LogBench.Figures?
    var system: SystemBench.Figures?
    var llm: LLMBench.Figures?
    var quick: QuickBench.Figures?
    var soak: SoakBench.Figures?
    var restart: SoakBench.RestartFigures?
    var memory: [MemoryBench.Row]?
    var http: HTTPBench.Figures?
    var web: WebBench.Figures?
    var engineBridge: EngineBridgeBench.Figures?
    var telemetry: TelemetryBench.Figures?
}
var report = Report()
switch suite {
case "json": report.json = JSONBench.run(arguments: arguments)
case "engine": report.engine = EngineBench.run(arguments: arguments)
case "observe": report.observe = ObservationBench.run(arguments: arguments)
case "wire": report.wire = try await WireBench.run(arguments: arguments)
case "log": report.log = try await LogBench.run(arguments: arguments)
case "system": report.system = try await SystemBench.run(arguments: arguments)
case "llm": report.llm = try await LLMBench.run(arguments: arguments)
case "quick": report.quick = try await QuickBench.run(arguments: arguments)
case "soak": report.soak = try await SoakBench.run(arguments: arguments)
case "restart": report.restart = try await SoakBench.restart(arguments: arguments)
case "memory": report.memory = try await MemoryBench.run(arguments: arguments)
case "http": report.http = try await HTTPBench.run(arguments: arguments)
case "web": report.web = try await WebBench.run(arguments: arguments)
case "engine-bridge": report.engineBridge = try await EngineBridgeBench.run(arguments: arguments)
case "telemetry": report.telemetry = try await TelemetryBench.run(arguments: arguments)
case "all":
    report.json = JSONBench.run(arguments: arguments)
    report.engine = EngineBench.run(arguments: arguments)
    report.observe = ObservationBench.run(arguments: arguments)
    report.wire = try await WireBench.run(arguments: arguments)
    report.log = try await LogBench.run(arguments: arguments)
    report.system = try await SystemBench.run(arguments: arguments)
    report.llm = try await LLMBench.run(arguments: arguments)
default:
    FileHandle.standardError.write(Data("gunn-bench: unknown suite \"\(suite)\"\n\(usage)\n".utf8))
    exit(64)
}

if let jsonPath {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    try encoder.encode(report).write(to: URL(fileURLWithPath: jsonPath))
}
