import Configuration
import Foundation
import Tags
import Testing

/// `sparkplug:` is read and checked like the rest of the file: every problem with its line.
@Suite struct SparkplugConfigurationTests {
    static let base = """
        history:
          path: /tmp/x/history.db
        devices:
          - {name: plant, type: modbus_tcp, host: 127.0.0.1}
        tags:
          - {name: t1, device: plant, area: holding_register, address: 0, type: int16}

        """

    @Test func fullSectionIsRead() throws {
        let yaml =
            Self.base + """
                sparkplug:
                  group_id: Plant1
                  edge_node_id: edge1
                  primary_host_id: Ignition
                  brokers:
                    - url: mqtt://10.0.0.5
                    - host: 10.0.0.6
                      port: 1884
                  mqtt_version: 5
                  keepalive: 20s
                  store_and_forward: {max_bytes: 64MB, max_samples: 100000}
                  replay: {metrics_per_message: 200, messages_per_second: 0}
                """
        let s = try #require(try ConfigurationLoader.parse(yaml: yaml, file: "a.yaml").configuration.sparkplug)
        #expect(s.groupID == "Plant1" && s.edgeNodeID == "edge1" && s.primaryHostID == "Ignition")
        #expect(s.brokers.map { "\($0.host):\($0.port)" } == ["10.0.0.5:1883", "10.0.0.6:1884"])
        #expect(s.mqttVersion == .v5 && s.keepAliveSeconds == 20)
        #expect(s.storeAndForward == StoreAndForwardSettings(maxBytes: 64_000_000, maxSamples: 100_000))
        #expect(s.replay == ReplaySettings(metricsPerMessage: 200, messagesPerSecond: 0))
        #expect(s.replay.delivery == .alongside, "live data flows beside the drain unless in_order is asked for")
        #expect(s.compression == .off, "plain payloads unless compression is asked for")
        #expect(s.resolvedBdSeqPath(historyPath: "/tmp/x/history.db") == "/tmp/x/sparkplug.bdseq")
    }

    /// `replay.delivery` and `compression`: the values the documentation names, anything else refused with its line.
    @Test func deliveryAndCompressionAreReadAndChecked() throws {
        func parse(_ extra: String) -> (SparkplugSettings?, [String]) {
            let yaml =
                Self.base + """
                    sparkplug:
                      group_id: Plant1
                      edge_node_id: edge1
                      brokers: [{url: mqtt://10.0.0.5}]

                    """ + extra
            do {
                return (try ConfigurationLoader.parse(yaml: yaml, file: "a.yaml").configuration.sparkplug, [])
            } catch {
                return (nil, error.errors.map(\.message))
            }
        }
        let (inOrder, e1) = parse("  replay: {delivery: in_order}\n  compression: gzip\n")
        #expect(e1.isEmpty, "\(e1)")
        #expect(inOrder?.replay.delivery == .inOrder && inOrder?.compression == .gzip)
        let (alongside, e2) = parse("  replay: {delivery: alongside}\n  compression: deflate\n")
        #expect(e2.isEmpty && alongside?.replay.delivery == .alongside && alongside?.compression == .deflate)
        let (_, e3) = parse("  compression: off\n")
        #expect(e3.isEmpty)
        let (_, bad) = parse("  replay: {delivery: later}\n  compression: lz4\n")
        #expect(bad.contains { $0.contains("replay delivery must be in_order or alongside") }, "\(bad)")
        #expect(bad.contains { $0.contains("compression must be off, deflate or gzip") }, "\(bad)")
    }

    /// Each broker keeps its own TLS and credentials (a plain local fallback beside a TLS broker is normal).
    @Test func brokersHaveTheirOwnTLSAndCredentials() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("spb-conf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for name in ["ca.pem", "cloud.pass", "local.pass"] {
            try "x\n".write(to: dir.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
        let yaml =
            Self.base + """
                sparkplug:
                  group_id: Plant1
                  edge_node_id: edge1
                  brokers:
                    - url: mqtts://cloud.example.com
                      tls: {ca_file: ca.pem}
                      username: edge-cloud
                      password_file: cloud.pass
                    - url: mqtt://10.0.0.6
                      username: edge-local
                      password_file: local.pass
                    - url: mqtt://10.0.0.7
                """
        let loaded = try ConfigurationLoader.parse(yaml: yaml, file: "a.yaml", baseDirectory: dir.path)
        let brokers = try #require(loaded.configuration.sparkplug).brokers
        #expect(brokers.count == 3)
        #expect(brokers[0].port == 8883 && brokers[0].tls?.caFile == dir.path + "/ca.pem")
        #expect(brokers[0].username == "edge-cloud" && brokers[0].passwordFile == dir.path + "/cloud.pass")
        #expect(brokers[1].port == 1883 && brokers[1].tls == nil)
        #expect(brokers[1].username == "edge-local" && brokers[1].passwordFile == dir.path + "/local.pass")
        #expect(brokers[2].tls == nil && brokers[2].username == nil && brokers[2].passwordFile == nil)
        // The only warning: the local broker's password goes out in clear text (issue 15, Medium 9).
        #expect(loaded.warnings.count == 1, "\(loaded.warnings)")
        #expect(loaded.warnings.first?.line == 17 && loaded.warnings.first?.message.contains("clear text") == true)
    }

    @Test func liveConfirmationSettings() throws {
        func parse(_ section: String) throws(ConfigurationError) -> LoadedConfiguration {
            try ConfigurationLoader.parse(
                yaml: Self.base + """
                    sparkplug:
                      group_id: G
                      edge_node_id: E
                      brokers: [{url: mqtt://10.0.0.5}]
                    \(section)
                    """, file: "a.yaml")
        }
        let defaults = try #require(try parse("").configuration.sparkplug).storeAndForward
        #expect(defaults.confirmLive && defaults.unconfirmedSamples == 16_384)
        let set = try parse("  store_and_forward: {confirm_live: true, unconfirmed_samples: 1000}")
        #expect(set.configuration.sparkplug?.storeAndForward.unconfirmedSamples == 1000)
        let off = try parse("  store_and_forward: {confirm_live: false, unconfirmed_samples: 1000}")
        #expect(off.configuration.sparkplug?.storeAndForward.confirmLive == false)
        #expect(off.warnings.contains { $0.line == 11 && $0.message.contains("no effect with confirm_live: false") })
        do {
            _ = try parse("  store_and_forward:\n    confirm_live: sometimes\n    unconfirmed_samples: 10")
            Issue.record("accepted bad confirmation settings")
        } catch {
            let messages = error.errors.map { "\($0.line): \($0.message)" }
            #expect(
                messages.contains {
                    $0.hasPrefix("12:") && $0.contains("'confirm_live'") && $0.contains("true or false")
                }, "\(messages)")
            #expect(
                messages.contains {
                    $0.hasPrefix("13:") && $0.contains("'unconfirmed_samples'")
                        && $0.contains("between 256 and 1000000")
                }, "\(messages)")
        }
    }

    @Test func badValuesAreLocated() throws {
        let yaml =
            Self.base + """
                sparkplug:
                  group_id: Plant/1
                  edge_node_id: "edge#1"
                  brokers:
                    - url: http://x
                    - host: b
                      password_file: /nonexistent/pass
                      tls: {ca_file: /nonexistent/ca.pem, cert_file: /nonexistent/c.pem}
                  mqtt_version: 4
                  replay: {metrics_per_message: 0}
                  colour: blue
                """
        do {
            _ = try ConfigurationLoader.parse(yaml: yaml, file: "a.yaml")
            Issue.record("accepted a bad sparkplug section")
        } catch {
            let messages = error.errors.map { "\($0.line): \($0.message)" }
            func has(_ line: Int, _ text: String) -> Bool {
                error.errors.contains { $0.line == line && $0.message.contains(text) }
            }
            #expect(has(8, "group_id 'Plant/1' contains '/'"), "\(messages)")
            #expect(has(9, "edge_node_id 'edge#1' contains '#'"), "\(messages)")
            #expect(has(11, "broker url 'http://x'"), "\(messages)")
            #expect(has(13, "password_file '/nonexistent/pass' does not exist"), "\(messages)")
            #expect(has(14, "ca_file '/nonexistent/ca.pem'"), "\(messages)")
            #expect(messages.contains { $0.contains("both cert_file and key_file") }, "\(messages)")
            #expect(has(15, "mqtt_version must be 3.1.1 or 5"), "\(messages)")
            #expect(has(16, "'metrics_per_message'"), "\(messages)")
            #expect(has(17, "unknown key 'colour'"), "\(messages)")
        }
    }

    /// Commands are off unless configured; enabling them on a broker connection that does not protect them warns.
    @Test func commandPolicyAndLimits() throws {
        func parse(_ section: String) throws(ConfigurationError) -> LoadedConfiguration {
            try ConfigurationLoader.parse(
                yaml: Self.base + """
                    sparkplug:
                      group_id: Plant1
                      edge_node_id: edge1
                      brokers:
                        - url: mqtt://10.0.0.5

                    """ + section, file: "a.yaml")
        }
        let plain = try parse("")
        let defaults = try #require(plain.configuration.sparkplug)
        #expect(defaults.commands == .off && defaults.commandAllowList.isEmpty)
        #expect(defaults.commandLimits == SparkplugCommandLimits())
        #expect(defaults.commandLimits.maxAgeMilliseconds == 5000 && defaults.commandLimits.maxQueue == 1000)
        #expect(!plain.warnings.contains { $0.message.contains("commands") }, "\(plain.warnings)")

        let enabled = try parse(
            """
              commands: allow_list
              command_allow_list: [pump1/voltage, loop-tanks/loop/tanks/mode]
              command_limits: {max_queue: 10, max_age: 2s, max_payload: 32KiB, max_metrics: 20}
            """)
        let s = try #require(enabled.configuration.sparkplug)
        #expect(s.commands == .allowList)
        #expect(s.commandAllowList == ["pump1/voltage", "loop-tanks/loop/tanks/mode"])
        #expect(
            s.commandLimits
                == SparkplugCommandLimits(
                    maxQueue: 10, maxAgeMilliseconds: 2000, maxPayloadBytes: 32768, maxMetrics: 20))
        let warnings = enabled.warnings.map(\.message)
        #expect(warnings.contains { $0.contains("mqtt://10.0.0.5:1883 is not TLS") }, "\(warnings)")
        #expect(warnings.contains { $0.contains("without credentials") }, "\(warnings)")

        #expect(try parse("  commands: allow_list\n").warnings.contains { $0.message.contains("is empty") })
        #expect(
            try parse("  command_allow_list: [x]\n").warnings.contains { $0.message.contains("has no effect") })
        do {
            _ = try parse("  commands: yes\n  command_limits: {max_age: 1h}\n")
            Issue.record("accepted a bad command policy")
        } catch {
            let messages = error.errors.map(\.message)
            #expect(messages.contains { $0.contains("must be off, read_only_metrics or allow_list") }, "\(messages)")
            #expect(messages.contains { $0.contains("max_age must be between") }, "\(messages)")
        }
    }

    /// `scan_rate_limits` bounds what NCMD Node Control/Scan Rate may set: 100 ms to 1 h unless configured; a
    /// bound outside 1 ms…24 h, or min above max, is an error. `startup_delay_max` is off unless set, at most 10 min.
    @Test func scanRateLimits() throws {
        func parse(_ section: String) throws(ConfigurationError) -> SparkplugSettings? {
            try ConfigurationLoader.parse(
                yaml: Self.base + """
                    sparkplug:
                      group_id: Plant1
                      edge_node_id: edge1
                      brokers:
                        - url: mqtt://10.0.0.5

                    """ + section, file: "a.yaml"
            ).configuration.sparkplug
        }
        #expect(
            try parse("")?.scanRateLimits == ScanRateLimits(minimumMilliseconds: 100, maximumMilliseconds: 3_600_000))
        #expect(
            try parse("  scan_rate_limits: {min: 250ms, max: 10m}\n")?.scanRateLimits
                == ScanRateLimits(minimumMilliseconds: 250, maximumMilliseconds: 600_000))
        #expect(try parse("")?.startupDelayMaxMilliseconds == 0, "off by default")
        #expect(try parse("  startup_delay_max: 30s\n")?.startupDelayMaxMilliseconds == 30_000)
        do {
            _ = try parse("  startup_delay_max: 1h\n")
            Issue.record("accepted a one-hour startup delay")
        } catch {
            #expect(error.errors.contains { $0.message.contains("startup_delay_max must be between 0s and 10min") })
        }
        for (bad, message) in [
            ("{min: 10s, max: 1s}", "min is above max"), ("{max: 2d}", "must be between 1ms and 24h"),
            ("{min: fast}", "must be a duration"), ("{mni: 1s}", "unknown key 'mni'"),
        ] {
            do {
                _ = try parse("  scan_rate_limits: \(bad)\n")
                Issue.record("accepted scan_rate_limits \(bad)")
            } catch {
                let messages = error.errors.map { "\($0.line): \($0.message)" }
                #expect(messages.contains { $0.contains(message) }, "\(messages)")
            }
        }
    }

    @Test func brokersAndDeviceIDsAreRequiredAndChecked() throws {
        let yaml =
            Self.base.replacingOccurrences(of: "name: plant,", with: "name: plant+1,")
            .replacingOccurrences(of: "device: plant,", with: "device: plant+1,") + """
                sparkplug:
                  group_id: G
                  edge_node_id: E
                  brokers: []
                """
        do {
            _ = try ConfigurationLoader.parse(yaml: yaml, file: "a.yaml")
            Issue.record("accepted")
        } catch {
            let messages = error.errors.map(\.message)
            #expect(messages.contains { $0.contains("at least one broker") }, "\(messages)")
            #expect(messages.contains { $0.contains("device name 'plant+1' contains '+'") }, "\(messages)")
        }
    }
}
