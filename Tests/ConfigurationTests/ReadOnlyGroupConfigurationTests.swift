import Configuration
import Foundation
import Tags
import Testing

/// `agent.read_only_group` (decision 0024): a group name or number, `none`, or the default `edgepilot-ro`.
@Suite struct ReadOnlyGroupConfigurationTests {
    func load(_ agent: String) throws(ConfigurationError) -> LoadedConfiguration {
        try ConfigurationLoader.parse(yaml: "agent:\n  control_socket: /tmp/x.sock\n" + agent, file: "t.yaml")
    }

    @Test func defaultNameNumberAndNone() throws {
        #expect(try load("").configuration.readOnlyGroup == "edgepilot-ro")
        #expect(try load("  read_only_group: nogroup\n").configuration.readOnlyGroup == "nogroup")
        #expect(try load("  read_only_group: 65534\n").configuration.readOnlyGroup == "65534")
        #expect(try load("  read_only_group: none\n").configuration.readOnlyGroup == nil)
    }

    @Test func aBadNameIsAnErrorAtItsLineAndAMissingGroupAWarning() throws {
        do {
            _ = try load("  read_only_group: \"ops; rm\"\n")
            Issue.record("accepted a group name with a space and a semicolon")
        } catch {
            let d = try #require(error.errors.first { $0.message.contains("read_only_group") })
            #expect(d.line == 3 && d.message.contains("is not a group name or number"), "\(d)")
        }
        let missing = try load("  read_only_group: no-such-group-here\n")
        #expect(missing.warnings.contains { $0.line == 3 && $0.message.contains("does not exist on this machine") })
    }
}
