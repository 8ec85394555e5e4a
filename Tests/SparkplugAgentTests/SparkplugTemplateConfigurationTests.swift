import Configuration
import Foundation
import Tags
import Testing

/// `sparkplug.templates`: off by default, a mapping or a plain switch, every problem located.
@Suite struct SparkplugTemplateConfigurationTests {
    static let section = """
        sparkplug:
          group_id: Plant1
          edge_node_id: edge1
          brokers: [{url: "mqtt://10.0.0.5"}]

        """

    static func parse(_ extra: String) throws(ConfigurationError) -> SparkplugSettings? {
        try ConfigurationLoader.parse(
            yaml: SparkplugConfigurationTests.base + Self.section + extra, file: "a.yaml"
        ).configuration.sparkplug
    }

    @Test func templatesAreOffByDefaultAndReadAsMappingOrSwitch() throws {
        #expect(try Self.parse("")?.templates == SparkplugTemplateSettings())
        #expect(try Self.parse("")?.templates.loops == false)
        let both = try #require(try Self.parse("  templates: {loops: true, keep_flat_metrics: true}\n"))
        #expect(both.templates == SparkplugTemplateSettings(loops: true, keepFlatMetrics: true))
        #expect(try Self.parse("  templates: true\n")?.templates.loops == true)
        #expect(try Self.parse("  templates: {loops: false}\n")?.templates.loops == false)
    }

    @Test func badTemplateSettingsAreLocated() throws {
        // Line 11 is the first line after the section (base is 6 lines, the section 5).
        do {
            _ = try Self.parse("  templates: {loops: maybe, udts: true}\n")
            Issue.record("accepted bad templates")
        } catch {
            let messages = error.errors.map { "\($0.line): \($0.message)" }
            #expect(error.errors.contains { $0.line == 11 && $0.message.contains("'loops'") }, "\(messages)")
            #expect(error.errors.contains { $0.line == 11 && $0.message.contains("unknown key 'udts'") }, "\(messages)")
        }
        do {
            _ = try Self.parse("  templates: sometimes\n")
            Issue.record("accepted templates: sometimes")
        } catch {
            #expect(error.errors.contains { $0.line == 11 && $0.message.contains("templates must be") })
        }
    }

    static let skids = """
        history:
          path: /tmp/x/history.db
        devices:
          - {name: skid1, type: modbus_tcp, host: 127.0.0.1}
          - {name: skid2, type: modbus_tcp, host: 127.0.0.2}
          - {name: skid3, type: modbus_tcp, host: 127.0.0.3}
        tags:
          - {name: skid1/flow, device: skid1, area: holding_register, address: 0, type: float32}
          - {name: skid1/running, device: skid1, area: coil, address: 0, type: bool}
          - {name: skid2/flow, device: skid2, area: holding_register, address: 0, type: float32}
          - {name: running, device: skid2, area: coil, address: 0, type: bool}
          - {name: a/flow, device: skid3, area: holding_register, address: 0, type: int16}
          - {name: b/flow, device: skid3, area: holding_register, address: 1, type: float32}
        sparkplug:
          group_id: Plant1
          edge_node_id: edge1
          brokers: [{url: "mqtt://10.0.0.5"}]
          templates:
            types:

        """

    @Test func deviceTypesNameTheirMembersByTagSuffix() throws {
        let yaml =
            Self.skids + """
                      - {name: Site/Skid, members: [flow, running], devices: [skid1, skid2]}
                """
        let s = try #require(try ConfigurationLoader.parse(yaml: yaml, file: "a.yaml").configuration.sparkplug)
        #expect(
            s.templates.types == [
                SparkplugDeviceType(name: "Site/Skid", members: ["flow", "running"], devices: ["skid1", "skid2"])
            ])
        #expect(s.templates.types.first?.instanceName == "Skid")
        #expect(s.templates.loops == false)
    }

    @Test func deviceTypeProblemsAreLocatedAtTheDevice() throws {
        // Line 20 is the first type (the base is 19 lines).
        let yaml =
            Self.skids + """
                      - {name: Skid, members: [flow, running], devices: [skid1, skid3, nowhere]}
                      - name: Other
                        members: [flow]
                        devices: [skid1]
                      - {name: Mixed, members: [flow], devices: [skid2]}
                      - {name: Mixed, members: [flow, flow], devices: []}
                """
        do {
            _ = try ConfigurationLoader.parse(yaml: yaml, file: "a.yaml")
            Issue.record("accepted bad template types")
        } catch {
            let messages = error.errors.map { "\($0.line):\($0.column): \($0.message)" }
            func has(_ line: Int, _ text: String) -> Bool {
                error.errors.contains { $0.line == line && $0.message.contains(text) }
            }
            #expect(has(20, "member 'flow' of template type 'Skid' matches 2 tags of device 'skid3'"), "\(messages)")
            #expect(has(20, "device 'skid3' has no tag for member 'running'"), "\(messages)")
            #expect(has(20, "lists device 'nowhere', which is not configured"), "\(messages)")
            #expect(has(23, "device 'skid1' is listed in template types 'Skid' and 'Other'"), "\(messages)")
            #expect(has(25, "member 'flow' appears twice"), "\(messages)")
            #expect(has(25, "needs at least one entry in 'devices'"), "\(messages)")
            #expect(messages.contains { $0.contains("template type 'Mixed' is declared twice") }, "\(messages)")
        }
    }

    @Test func membersOfOneTypeHaveOneTypeOnEveryDevice() throws {
        let yaml =
            Self.skids.replacingOccurrences(
                of: "{name: skid2/flow, device: skid2, area: holding_register, address: 0, type: float32}",
                with: "{name: skid2/flow, device: skid2, area: holding_register, address: 0, type: int16}")
                + """
                      - {name: Skid, members: [flow, running], devices: [skid1, skid2]}
                """
        do {
            _ = try ConfigurationLoader.parse(yaml: yaml, file: "a.yaml")
            Issue.record("accepted members of different types")
        } catch {
            let messages = error.errors.map { "\($0.line): \($0.message)" }
            #expect(
                error.errors.contains {
                    $0.line == 20
                        && $0.message.contains("member 'flow' of template type 'Skid' is int16 on device 'skid2'")
                }, "\(messages)")
        }
    }
}
