import Configuration
import Foundation
import Tags
import Testing

/// Issue 15's settings: the device write queue, the audit trail's own retention, credentials over plain transports.
@Suite struct SecuritySettingsTests {
    static let base = """
        history:
          path: /tmp/h.db
        devices:
          - name: plc
            type: modbus_tcp
            host: 127.0.0.1
        tags:
          - {name: x, device: plc, area: holding_register, address: 0, type: uint16}

        """

    @Test func writeLimitsAndAuditRetentionHaveSafeDefaultsAndCanBeSet() throws {
        let defaults = try ConfigurationLoader.parse(yaml: Self.base, file: "c.yaml").configuration
        #expect(defaults.devices[0].writeLimits == DeviceWriteLimits(maxQueue: 64, maxAgeMilliseconds: 5000))
        #expect(defaults.history.auditMaxRows == 100_000)
        #expect(defaults.history.auditRetentionSeconds == nil)

        let yaml = """
            agent:
              write_limits: {max_queue: 8, max_age: 2s}
            history:
              path: /tmp/h.db
              audit_max_rows: 5000
              audit_retention: 400d
            devices:
              - name: plc
                type: modbus_tcp
                host: 127.0.0.1
            tags:
              - {name: x, device: plc, area: holding_register, address: 0, type: uint16}
            """
        let c = try ConfigurationLoader.parse(yaml: yaml, file: "c.yaml").configuration
        #expect(c.devices[0].writeLimits == DeviceWriteLimits(maxQueue: 8, maxAgeMilliseconds: 2000))
        #expect(c.history.auditMaxRows == 5000)
        #expect(c.history.auditRetentionSeconds == 400 * 86_400)

        let bad = yaml.replacingOccurrences(of: "max_age: 2s", with: "max_age: 1h")
        #expect(throws: ConfigurationError.self) { try ConfigurationLoader.parse(yaml: bad, file: "c.yaml") }
    }

    @Test func aBrokerPasswordOverPlainMQTTIsWarned() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mqtt-pw-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try "pw\n".write(to: dir.appendingPathComponent("pw"), atomically: true, encoding: .utf8)
        let yaml =
            Self.base + """
                sparkplug:
                  group_id: G
                  edge_node_id: n
                  brokers:
                    - url: mqtt://broker:1883
                      username: edge
                      password_file: pw
                """
        let loaded = try ConfigurationLoader.parse(yaml: yaml, file: "c.yaml", baseDirectory: dir.path)
        let warning = loaded.warnings.first { $0.message.contains("clear text") }
        #expect(warning?.line == 15, "at password_file: \(loaded.warnings)")
    }
}
