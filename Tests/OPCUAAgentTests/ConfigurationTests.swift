import Configuration
import Foundation
import Tags
import Testing

/// `type: opcua` devices, OPC UA tags and subscription poll groups in the configuration.
@Suite struct OPCUAConfigurationTests {
    static let valid = """
        history:
          path: /var/lib/edgepilot/history.db
        poll_groups:
          - name: fast
            period: 100ms
            mode: subscribe
            sampling_interval: 50ms
            deadband: 0.5
            queue_size: 4
          - name: slow
            period: 1s
        devices:
          - name: plc
            type: opcua
            endpoint: opc.tcp://10.0.0.5:4840/
        tags:
          - name: level
            device: plc
            node: "ns=2;s=Tank1.Level"
            type: float64
            poll_group: fast
          - name: valve
            device: plc
            browse_path: Objects/2:Plant/2:Valve
            type: Double
            writable: true
            limits: {min: 0, max: 100}
          - name: label
            device: plc
            node: "i=2261"
            type: string
        """

    @Test func validConfigurationHasSecureDefaults() throws {
        let loaded = try ConfigurationLoader.parse(yaml: Self.valid, file: "plant.yaml")
        let c = loaded.configuration
        guard case .opcua(let s) = c.devices[0].transport else {
            Issue.record("not an OPC UA device")
            return
        }
        #expect(s.policy == .basic256Sha256 && s.mode == .signAndEncrypt && s.trust == .trustList)
        #expect(s.pkiDirectory == "/var/lib/edgepilot/pki" && s.userName == nil)
        #expect(s.applicationUri.hasPrefix("urn:edgepilot:"))
        #expect(c.devices[0].timeoutMilliseconds == 5000)
        let fast = try #require(c.pollGroup(named: "fast")?.subscription)
        #expect(
            fast == OPCUASubscriptionSettings(samplingIntervalMilliseconds: 50, deadband: .absolute(0.5), queueSize: 4))
        #expect(c.pollGroup(named: "slow")?.subscription == nil)
        #expect(c.tags[1].source == .opcuaBrowsePath("Objects/2:Plant/2:Valve") && c.tags[1].type == .float64)
        #expect(c.tags[2].type == .string(registers: 128))
    }

    private func errors(_ yaml: String) -> [ConfigDiagnostic] {
        do {
            _ = try ConfigurationLoader.parse(yaml: yaml, file: "plant.yaml")
            return []
        } catch {
            return error.errors
        }
    }

    @Test func percentDeadband() throws {
        func deadband(_ text: String) throws -> OPCUASubscriptionSettings.Deadband? {
            let yaml = Self.valid.replacingOccurrences(of: "deadband: 0.5", with: "deadband: \(text)")
            return try ConfigurationLoader.parse(yaml: yaml, file: "plant.yaml").configuration
                .pollGroup(named: "fast")?.subscription?.deadband
        }
        #expect(try deadband("2%") == .percent(2))
        #expect(try deadband("\"0.5 %\"") == .percent(0.5))
        #expect(try deadband("0") == OPCUASubscriptionSettings.Deadband.none)
        let bad = errors(Self.valid.replacingOccurrences(of: "deadband: 0.5", with: "deadband: 120%"))
        #expect(bad.count == 1 && bad[0].message.contains("percentage like 2%"), "\(bad)")
        #expect(bad.first?.line == 8)
    }

    @Test func mistakesAreLocated() {
        let yaml = """
            poll_groups:
              - name: slow
                period: 1s
                sampling_interval: 50ms
            devices:
              - name: plc
                type: opcua
                endpoint: http://10.0.0.5/
                security_policy: Basic128
                security_mode: Sign
                user: operator
              - name: open
                type: opcua
                endpoint: opc.tcp://10.0.0.6:4840/
                security_policy: none
                security_mode: SignAndEncrypt
                trust: 12ab
              - name: mb
                type: modbus_tcp
                host: 127.0.0.1
            tags:
              - name: a
                device: plc
                node: "ns=two;s=x"
                type: float64
              - name: b
                device: mb
                browse_path: Objects/2:X
                type: float64
              - name: c
                device: plc
                area: holding_register
                address: 0
                type: int16
              - name: d
                device: plc
                node: "ns=2;i=7"
                type: int32
                writable: true
            """
        let e = errors(yaml)
        func line(_ fragment: String) -> Int? { e.first { $0.message.contains(fragment) }?.line }
        #expect(line("applies to poll groups with mode: subscribe") == 4)
        #expect(line("must start with opc.tcp://") == 8)
        #expect(line("unknown security_policy 'Basic128'") == 9)
        #expect(line("user and password_file go together") != nil)
        #expect(line("security_mode SignAndEncrypt does not go with security_policy none") == 16)
        #expect(line("trust must be trust_list or a 40-digit") == 17)
        #expect(line("is not a valid NodeId") == 22)
        #expect(line("has a browse_path, but device 'mb' is a Modbus device") == 26)
        #expect(line("is an OPC UA device") == 30)
        #expect(line("tag 'd' is writable but has no limits") == 35)
        #expect(e.allSatisfy { $0.file == "plant.yaml" })
    }

    @Test func pinnedThumbprintAndUserIdentity() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("opcua-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try "secret\n".write(to: dir.appendingPathComponent("pw"), atomically: true, encoding: .utf8)
        let yaml = """
            history:
              path: /data/ep/history.db
            devices:
              - name: plc
                type: opcua
                endpoint: opc.tcp://10.0.0.5:4840/
                security_policy: Aes128_Sha256_RsaOaep
                security_mode: sign
                user: operator
                password_file: pw
                trust: "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01"
                application_uri: urn:site:edge1
            tags:
              - name: x
                device: plc
                node: "ns=1;i=5"
                type: uint32
            """
        let c = try ConfigurationLoader.parse(yaml: yaml, file: "p.yaml", baseDirectory: dir.path).configuration
        guard case .opcua(let s) = c.devices[0].transport else {
            Issue.record("not an OPC UA device")
            return
        }
        #expect(s.policy == .aes128Sha256RsaOaep && s.mode == .sign)
        #expect(s.trust == .pinnedThumbprint("abcdef0123456789abcdef0123456789abcdef01"))
        #expect(s.userName == "operator" && s.passwordFile == dir.path + "/pw")
        #expect(s.pkiDirectory == "/data/ep/pki" && s.applicationUri == "urn:site:edge1")
    }
}
