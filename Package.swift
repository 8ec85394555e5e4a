// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "EdgePilot",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "edgepilot", targets: ["edgepilot"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // C libraries from Debian, found through pkg-config.
        .systemLibrary(name: "CModbus", pkgConfig: "libmodbus", providers: [.apt(["libmodbus-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),

        // Values, quality, the tag table and the configuration model; no I/O.
        .target(name: "Tags"),
        // YAML and CSV configuration files → a validated AgentConfiguration, with located errors.
        .target(name: "Configuration", dependencies: ["Tags", "Yams"]),
        .target(name: "Modbus", dependencies: ["Tags", "CModbus"]),
        .target(name: "History", dependencies: ["Tags", "CSQLite"]),
        // Models, MPC, dense QP solver, PID, supervisor. Pure Swift, no Foundation.
        // libm because .squareRoot() calls sqrt() in debug builds.
        .target(name: "Control", linkerSettings: [.linkedLibrary("m")]),
        // Runtime wiring: pollers, history writer, control socket, systemd notify, signals.
        .target(
            name: "Agent",
            dependencies: [
                "Tags", "Configuration", "Modbus", "History",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "edgepilot",
            dependencies: [
                "Agent", "Configuration", "Modbus", "Tags",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // Test and benchmark support: counts heap allocations per thread by interposing malloc.
        .target(name: "CAllocCounter"),
        .target(name: "TestSupport", path: "Tests/TestSupport"),

        .testTarget(name: "TagsTests", dependencies: ["Tags"]),
        .testTarget(name: "ConfigurationTests", dependencies: ["Configuration"]),
        .testTarget(name: "ModbusTests", dependencies: ["Modbus", "Tags", "CAllocCounter", "TestSupport"]),
        .testTarget(name: "HistoryTests", dependencies: ["History", "Tags", "CSQLite", "HistoryCrashWriter"]),
        .executableTarget(name: "HistoryCrashWriter", dependencies: ["History"], path: "Tests/HistoryCrashWriter"),
        .testTarget(name: "ControlTests", dependencies: ["Control", "CAllocCounter"], exclude: ["Fixtures"]),
        .testTarget(name: "AgentTests", dependencies: ["Agent", "History", "TestSupport"]),

        .executableTarget(
            name: "pollbench", dependencies: ["Modbus", "Tags", "CAllocCounter"], path: "Benchmarks/pollbench",
            exclude: ["run.sh"]),
        .executableTarget(
            name: "historybench", dependencies: ["History", "CSQLite"], path: "Benchmarks/historybench",
            exclude: ["peer.py"]),
        .executableTarget(name: "qpbench", dependencies: ["Control"], path: "Benchmarks/qpbench"),
    ]
)
