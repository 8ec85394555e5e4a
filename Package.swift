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
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // C libraries from Debian, found through pkg-config.
        .systemLibrary(name: "CModbus", pkgConfig: "libmodbus", providers: [.apt(["libmodbus-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CMosquitto", pkgConfig: "libmosquitto", providers: [.apt(["libmosquitto-dev"])]),

        // Values, quality, the tag table and the configuration model; no I/O.
        .target(name: "Tags"),
        // YAML and CSV configuration files → a validated AgentConfiguration, with located errors.
        .target(name: "Configuration", dependencies: ["Tags", "Yams"]),
        .target(name: "Modbus", dependencies: ["Tags", "CModbus"]),
        .target(name: "History", dependencies: ["Tags", "CSQLite"]),
        // OPC UA binary client: transport → secure channel (None/Basic256Sha256/Aes128_Sha256_RsaOaep) → services.
        .target(
            name: "OPCUA",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]
        ),
        // MQTT 3.1.1/5 client over libmosquitto: broker list, backoff, TLS, QoS 1 acknowledgements.
        .target(name: "MQTT", dependencies: ["CMosquitto"]),
        // Sparkplug B 3.0 payloads (generated from Proto/, committed) and the edge-node session state machine.
        .target(
            name: "Sparkplug", dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
            exclude: ["Proto"]),
        // Models, MPC, dense QP solver, PID, supervisor. Pure Swift, no Foundation.
        // libm because .squareRoot() calls sqrt() in debug builds.
        .target(name: "Control", linkerSettings: [.linkedLibrary("m")]),
        // Process identification from history (data preparation, GBN, FOPDT/SOPDT/integrating PEM, PO-MOESP).
        // Pure Swift like Control; libm for the same reason.
        .target(name: "Identification", dependencies: ["Control"], linkerSettings: [.linkedLibrary("m")]),
        .testTarget(
            name: "IdentificationTests", dependencies: ["Identification", "Control", "TestSupport"], exclude: ["Peers"]),
        .executableTarget(
            name: "identbench", dependencies: ["Identification", "Control"], path: "Benchmarks/identbench"),
        // Runtime wiring: pollers, history writer, control socket, systemd notify, signals.
        .target(
            name: "Agent",
            dependencies: [
                "Tags", "Configuration", "Modbus", "History", "Control", "OPCUA", "MQTT", "Sparkplug",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "edgepilot",
            dependencies: [
                "Agent", "Configuration", "Modbus", "Tags", "OPCUA",
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
        .testTarget(
            name: "OPCUATests",
            dependencies: [
                "OPCUA", "TestSupport",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]
        ),
        .testTarget(name: "MQTTTests", dependencies: ["MQTT", "TestSupport"]),
        .testTarget(name: "SparkplugTests", dependencies: ["Sparkplug", "MQTT", "TestSupport"]),
        .testTarget(
            name: "SparkplugAgentTests",
            dependencies: ["Agent", "Configuration", "History", "Sparkplug", "Tags", "TestSupport"], exclude: ["Peers"]),
        .testTarget(name: "ControlTests", dependencies: ["Control", "CAllocCounter"], exclude: ["Fixtures"]),
        .testTarget(name: "AgentTests", dependencies: ["Agent", "History", "TestSupport"]),
        .testTarget(
            name: "OPCUAAgentTests",
            dependencies: ["Agent", "Configuration", "OPCUA", "Tags", "TestSupport", "CAllocCounter"]),
        .testTarget(
            name: "LoopTests",
            dependencies: ["Agent", "Control", "Configuration", "Tags", "History", "CAllocCounter", "TestSupport"]),

        .executableTarget(
            name: "pollbench", dependencies: ["Modbus", "Tags", "CAllocCounter"], path: "Benchmarks/pollbench",
            exclude: ["run.sh"]),
        .executableTarget(
            name: "historybench", dependencies: ["History", "CSQLite"], path: "Benchmarks/historybench",
            exclude: ["peer.py"]),
        .executableTarget(name: "sparkplugbench", dependencies: ["Sparkplug"], path: "Benchmarks/sparkplugbench"),
        .executableTarget(name: "qpbench", dependencies: ["Control"], path: "Benchmarks/qpbench"),
    ]
)
