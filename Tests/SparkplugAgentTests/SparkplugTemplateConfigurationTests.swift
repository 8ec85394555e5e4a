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
}
