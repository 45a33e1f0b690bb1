// swift-tools-version:6.0
// gunn: a multi-agent simulation core. No package dependencies: the toolchain and two system
// libraries (libsqlite3, OpenSSL's libcrypto) only. Swift 6 language mode, which implies complete
// strict concurrency checking; no target relaxes it.
import PackageDescription

let package = Package(
    name: "gunn",
    products: [
        .library(name: "GunnCore", targets: ["GunnCore"]),
        .library(name: "GunnCrypto", targets: ["GunnCrypto"]),
        .library(name: "GunnWire", targets: ["GunnWire"]),
        .executable(name: "gunn-bench", targets: ["gunn-bench"]),
    ],
    targets: [
        .systemLibrary(
            name: "CSQLite",
            path: "Sources/CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        .systemLibrary(
            name: "CCrypto",
            path: "Sources/CCrypto",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        .systemLibrary(
            name: "CTLS",
            path: "Sources/CTLS",
            pkgConfig: "libssl",
            providers: [.apt(["libssl-dev"])]
        ),
        .target(name: "GunnCrypto", dependencies: ["CCrypto"]),
        .target(name: "GunnCore", dependencies: ["GunnCrypto"]),
        .target(name: "GunnWire", dependencies: ["GunnCore"]),
        .target(name: "CGunnSys"),
        .target(name: "GunnStore", dependencies: ["GunnCore", "CSQLite", "GunnCrypto"]),
        .target(name: "GunnEventLogServer", dependencies: ["GunnStore", "GunnIO", "GunnWire", "GunnCore", "GunnTelemetry"]),
        .executableTarget(name: "gunn-eventlog", dependencies: ["GunnEventLogServer", "GunnStore", "GunnIO", "GunnTelemetry"]),
        .target(name: "GunnOrchestratorServer", dependencies: ["GunnCore", "GunnIO", "GunnWire", "GunnTelemetry"]),
        .executableTarget(name: "gunn-orchestrator", dependencies: ["GunnOrchestratorServer", "GunnIO", "GunnCore", "GunnTelemetry"]),
        .target(name: "GunnClient", dependencies: ["GunnIO", "GunnWire", "GunnCore", "GunnOrchestratorServer"]),
        .executableTarget(name: "gunn-script-agent", dependencies: ["GunnClient", "GunnIO", "GunnCore"]),
        .target(name: "GunnIO", dependencies: ["GunnWire", "GunnCore", "CGunnSys"]),
        .executableTarget(name: "gunn-bench", dependencies: ["GunnCore", "GunnWire", "GunnIO", "GunnStore", "CSQLite", "GunnClient", "GunnHTTP", "GunnAuth"]),
        .target(name: "GunnLLM", dependencies: ["GunnCore", "GunnIO", "GunnWire", "CTLS"]),
        .target(name: "GunnHTTP", dependencies: ["GunnCore", "GunnCrypto", "GunnIO", "CTLS"]),
        .target(name: "GunnAuth", dependencies: ["GunnCore", "GunnCrypto"]),
        .target(name: "GunnWeb", dependencies: ["GunnHTTP", "GunnAuth", "GunnClient", "GunnCore", "GunnIO", "GunnWire", "GunnOrchestratorServer", "GunnTelemetry"]),
        .executableTarget(name: "gunn-adapter-web", dependencies: ["GunnWeb", "GunnClient", "GunnIO", "GunnCore", "GunnAuth", "GunnTelemetry"]),
        .target(name: "GunnTelemetry", dependencies: ["GunnCore", "GunnWire", "GunnIO"]),
        .target(name: "GunnUnity", dependencies: ["GunnHTTP", "GunnAuth", "GunnClient", "GunnCore", "GunnIO", "GunnWire", "GunnTelemetry"]),
        .executableTarget(name: "gunn-adapter-unity", dependencies: ["GunnUnity", "GunnHTTP", "GunnClient", "GunnIO", "GunnCore", "GunnAuth", "GunnTelemetry"]),
        .target(name: "GunnLLMAdapter", dependencies: ["GunnLLM", "GunnClient", "GunnCore", "GunnWire", "GunnTelemetry"]),
        .executableTarget(name: "gunn-adapter-llm", dependencies: ["GunnLLMAdapter", "GunnLLM", "GunnClient", "GunnIO", "GunnCore", "GunnTelemetry"]),
        .target(name: "GunnSupervisorKit", dependencies: ["GunnCore", "GunnIO", "GunnWire", "GunnTelemetry"]),
        .executableTarget(name: "gunn-supervisor", dependencies: ["GunnSupervisorKit", "GunnIO", "GunnCore", "GunnTelemetry"]),
        .target(name: "GunnCtlKit", dependencies: ["GunnCore", "GunnIO", "GunnWire", "GunnOrchestratorServer", "GunnAuth", "GunnTelemetry"]),
        .executableTarget(name: "gunnctl", dependencies: ["GunnCtlKit"]),
        .executableTarget(name: "gunn-demo", dependencies: ["GunnClient", "GunnIO", "GunnCore", "GunnTelemetry"]),
        .executableTarget(name: "gunn-wire-peer", dependencies: ["GunnIO", "GunnWire", "GunnCore"]),
        .testTarget(name: "GunnCryptoTests", dependencies: ["GunnCrypto"]),
        .testTarget(name: "GunnCoreTests", dependencies: ["GunnCore", "GunnCrypto"]),
        .testTarget(name: "CSQLiteTests", dependencies: ["CSQLite"]),
        .testTarget(name: "GunnWireTests", dependencies: ["GunnWire", "GunnCore"]),
        .testTarget(name: "GunnIOTests", dependencies: ["GunnIO", "GunnWire", "GunnCore"]),
        .testTarget(name: "GunnStoreTests", dependencies: ["GunnStore", "GunnCore", "CSQLite"]),
        .testTarget(name: "GunnLLMTests", dependencies: ["GunnLLM", "GunnCore"]),
        .testTarget(name: "GunnHTTPTests", dependencies: ["GunnHTTP", "GunnCore", "GunnIO"]),
        .testTarget(name: "GunnAuthTests", dependencies: ["GunnAuth", "GunnCore", "GunnCrypto"]),
        .testTarget(name: "GunnWebTests", dependencies: ["GunnWeb", "GunnAuth", "GunnClient", "GunnCore", "GunnIO", "GunnOrchestratorServer",
                                                 "GunnTelemetry", "GunnWire"]),
        .testTarget(name: "GunnTelemetryTests", dependencies: ["GunnTelemetry", "GunnCore", "GunnWire"], exclude: ["redaction-corpus.json"]),
        .testTarget(name: "GunnUnityTests", dependencies: ["GunnUnity", "GunnCore", "GunnWire"]),
        .testTarget(name: "GunnSupervisorKitTests", dependencies: ["GunnSupervisorKit", "GunnCore"]),
        .testTarget(name: "GunnOrchestratorServerTests", dependencies: ["GunnOrchestratorServer", "GunnClient", "GunnCore", "GunnWire"]),
        .testTarget(name: "SystemTests", dependencies: ["GunnIO", "GunnWire", "GunnCore", "GunnStore", "GunnClient", "GunnSupervisorKit", "GunnOrchestratorServer", "GunnAuth", "GunnCrypto", "GunnTelemetry"]),
    ],
    swiftLanguageModes: [.v6]
)
