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
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),

        // ── Pure core: no Foundation, no I/O ─────────────────────────────────────────────────────────────────
        // Values, quality, the tag table, change feeds and the configuration model.
        .target(name: "Tags"),
        // Models, MPC, dense QP solver, PID, supervisor. libm because .squareRoot() calls sqrt() in debug builds.
        .target(name: "Control", linkerSettings: [.linkedLibrary("m")]),
        // Process identification from history (data preparation, GBN, FOPDT/SOPDT/integrating PEM, PO-MOESP).
        // Pure Swift like Control; libm for the same reason.
        .target(name: "Identification", dependencies: ["Control"], linkerSettings: [.linkedLibrary("m")]),
        // Loop performance from routine data (service factor, IAE, variance, Harris index, Hägglund oscillation,
        // Horch stiction) in fixed memory over a sliding window; pure, depends on nothing.
        .target(name: "LoopMonitoring", linkerSettings: [.linkedLibrary("m")]),

        // ── Configuration: YAML and CSV files → a validated AgentConfiguration, with located errors ────────────
        .target(name: "Configuration", dependencies: ["Tags", "Yams"]),

        // ── Protocol clients: speak one protocol, know nothing of tags' consumers ─────────────────────────────
        // libmodbus connection, register codec, request coalescing, probe.
        .target(name: "Modbus", dependencies: ["Tags", "CModbus"]),
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
            name: "Sparkplug", dependencies: ["CZlib", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            exclude: ["Proto"]),

        // ── The device seam and the drivers behind it: each keeps one device's tag table current ─────────────
        // `DeviceDriver`: the one seam every device and every write goes through.
        .target(name: "Devices", dependencies: ["Tags"]),
        // Modbus TCP/RTU devices: `ModbusPoller` (poll groups on a monotonic schedule, checked writes).
        .target(
            name: "ModbusDriver",
            dependencies: ["Devices", "Modbus", "Tags", .product(name: "Logging", package: "swift-log")]),
        // OPC UA devices: subscriptions and polled reads into the tag table, checked writes, reconnect, trust.
        .target(
            name: "OPCUADriver",
            dependencies: ["Devices", "OPCUA", "Tags", .product(name: "Logging", package: "swift-log")]),

        // ── Consumers of the tag tables ───────────────────────────────────────────────────────────────────────
        // SQLite history: schema, writer thread, read-only queries, audit, store-and-forward queue.
        .target(name: "History", dependencies: ["Tags", "CSQLite"]),
        // Control loops in real time (schedule, cycle, MV writer, operator commands, state board, KPIs); each
        // loop's state is also a device (`LoopStateDevice`) behind the same seam.
        .target(
            name: "LoopRuntime",
            dependencies: [
                "Control", "Devices", "History", "Identification", "LoopMonitoring", "Tags",
                .product(name: "Logging", package: "swift-log"),
            ]),
        // The Sparkplug B edge node: session driving, live data with broker receipts, replay, commands.
        .target(
            name: "SparkplugPublisher",
            dependencies: [
                "Devices", "History", "MQTT", "Sparkplug", "Tags", .product(name: "Logging", package: "swift-log"),
            ]),
        // A loop's model from its history: the loop's tags read from the history file → Identification's data,
        // stretches left out (bad, saturated, mode) in the engineer's terms, the report and the YAML model block;
        // validation of a candidate by replaying the same history (`edgepilot model validate`).
        .target(name: "LoopIdentification", dependencies: ["Control", "History", "Identification", "Tags"]),
        // The technician's door: control-socket protocol, server and client.
        .target(name: "LocalControl", dependencies: ["LoopRuntime", "SparkplugPublisher"]),

        // The opt-in Prometheus endpoint: the text format and a small HTTP server on a thread of its own.
        .target(name: "Metrics", dependencies: ["Tags"]),

        // ── The service host and the wiring ───────────────────────────────────────────────────────────────────
        // systemd notify and watchdog, journald log lines.
        .target(name: "Systemd", dependencies: ["Tags", .product(name: "Logging", package: "swift-log")]),
        // Wiring only: builds drivers, tables, loops, history and publisher from the configuration; reloads;
        // answers control-socket requests; signals.
        .target(
            name: "Agent",
            dependencies: [
                "Tags", "Configuration", "Devices", "ModbusDriver", "OPCUADriver", "History", "LoopRuntime",
                "SparkplugPublisher", "LocalControl", "Systemd", "Control", "Modbus", "OPCUA", "Metrics",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The one executable: `run` for systemd and the technician commands.
        .executableTarget(
            name: "edgepilot",
            dependencies: [
                "Agent", "LocalControl", "LoopRuntime", "SparkplugPublisher", "Configuration", "Control", "Modbus",
                "Tags", "OPCUA", "OPCUADriver", "History", "LoopIdentification", "MQTT", "Sparkplug",
                .product(name: "ArgumentParser", package: "swift-argument-parser"), "Yams",
            ]
        ),

        // Test and benchmark support: counts heap allocations per thread by interposing malloc.
        .target(name: "CAllocCounter"),
        .target(name: "TestSupport", path: "Tests/TestSupport", exclude: ["Peers"]),

        .testTarget(name: "ArchitectureTests"),
        .testTarget(name: "TagsTests", dependencies: ["Tags"]),
        .testTarget(name: "ConfigurationTests", dependencies: ["Configuration"]),
        .testTarget(
            name: "ModbusTests",
            dependencies: [
                "Modbus", "ModbusDriver", "Tags", "CAllocCounter", "TestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(
            name: "HistoryTests", dependencies: ["History", "Tags", "CSQLite", "HistoryCrashWriter", "TestSupport"]),
        .executableTarget(name: "HistoryCrashWriter", dependencies: ["History"], path: "Tests/HistoryCrashWriter"),
        .testTarget(
            name: "OPCUATests",
            dependencies: [
                "OPCUA", "TestSupport", "CAllocCounter",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]
        ),
        .testTarget(name: "MQTTTests", dependencies: ["MQTT", "TestSupport"]),
        .testTarget(name: "SparkplugTests", dependencies: ["Sparkplug", "MQTT", "TestSupport"]),
        .testTarget(
            name: "SparkplugAgentTests",
            dependencies: ["SparkplugPublisher", "Configuration", "History", "Sparkplug", "Tags", "TestSupport"],
            exclude: ["Peers"]),
        .testTarget(
            name: "IdentificationTests", dependencies: ["Identification", "Control", "TestSupport"], exclude: ["Peers"]),
        .testTarget(name: "LoopMonitoringTests", dependencies: ["LoopMonitoring", "CAllocCounter"]),
        .testTarget(name: "ControlTests", dependencies: ["Control", "CAllocCounter"], exclude: ["Fixtures"]),
        .testTarget(name: "AgentTests", dependencies: ["Agent", "Configuration", "Tags", "History", "TestSupport"]),
        .testTarget(name: "MetricsTests", dependencies: ["Metrics", "Tags"]),
        .testTarget(
            name: "LoopIdentificationTests",
            dependencies: ["LoopIdentification", "Identification", "History", "Configuration", "Tags", "TestSupport"]),
        .testTarget(
            name: "OPCUAAgentTests",
            dependencies: ["OPCUADriver", "Configuration", "OPCUA", "Tags", "TestSupport", "CAllocCounter"]),
        .testTarget(
            name: "LoopTests",
            dependencies: [
                "LoopRuntime", "Devices", "ModbusDriver", "Modbus", "Control", "Configuration", "Tags", "History",
                "CAllocCounter", "TestSupport", .product(name: "Logging", package: "swift-log"),
            ]),

        .executableTarget(
            name: "pollbench", dependencies: ["Modbus", "ModbusDriver", "Tags", "CAllocCounter"],
            path: "Benchmarks/pollbench",
            exclude: ["run.sh"]),
        .executableTarget(
            name: "historybench", dependencies: ["History", "CSQLite"], path: "Benchmarks/historybench",
            exclude: ["peer.py"]),
        .executableTarget(name: "sparkplugbench", dependencies: ["Sparkplug"], path: "Benchmarks/sparkplugbench"),
        .executableTarget(
            name: "identbench", dependencies: ["Identification", "Control"], path: "Benchmarks/identbench"),
        .executableTarget(name: "qpbench", dependencies: ["Control"], path: "Benchmarks/qpbench"),
        .executableTarget(
            name: "shadowbench", dependencies: ["Control", "CAllocCounter"], path: "Benchmarks/shadowbench"),
        .executableTarget(
            name: "identifybench", dependencies: ["LoopIdentification", "History", "Configuration", "Tags"],
            path: "Benchmarks/identifybench"),
    ]
)
