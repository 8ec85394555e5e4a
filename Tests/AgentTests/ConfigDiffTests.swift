import Foundation
import TestSupport
import Testing

/// `edgepilot config diff` and `reload --dry-run` against a running agent and the quadruple-tank simulator: the
/// preview names what the reload then does, refuses what the reload refuses, and touches nothing.
@Suite(.serialized) struct ConfigDiffTests {
    static func config(port: Int, logLevel: String = "info", extraTag: Bool = false) -> String {
        var text = DaemonEndToEndTests.config(port: port).replacingOccurrences(
            of: "log_level: info", with: "log_level: \(logLevel)")
        if extraTag {
            text += """
                  - name: tank2/level
                    device: plant
                    area: input_register
                    address: 2
                    type: float32

                """
        }
        return text
    }

    @Test func previewNamesWhatTheReloadThenDoes() throws {
        let plant = try QuadTank()
        defer { plant.stop() }
        let agent = try AgentProcess(config: Self.config(port: plant.port))
        defer { agent.dir.remove() }
        #expect(eventually { (try? agent.object(["status"]))?["devices"] != nil })

        // The running file itself: nothing changes, exit 0.
        let same = try agent.cli(["reload", "--dry-run"])
        #expect(same.status == 0, "\(same.stderr)")
        #expect(same.stdout.contains("Would be accepted: nothing changes."), "\(same.stdout)")

        // A candidate beside it: one tag more on `plant`, a new log level.
        let candidate = agent.dir.path + "/candidate.yaml"
        try Self.config(port: plant.port, logLevel: "debug", extraTag: true)
            .replacingOccurrences(of: "@DIR@", with: agent.dir.path)
            .write(toFile: candidate, atomically: true, encoding: .utf8)
        let preview = try agent.object(["config", "diff", candidate])
        #expect(preview["accepted"] as? Bool == true)
        let items = try #require(preview["items"] as? [[String: Any]])
        let plantItem = items.first { $0["name"] as? String == "plant" }
        let otherItem = items.first { $0["name"] as? String == "plant_b" }
        #expect(plantItem?["action"] as? String == "restart")
        #expect(plantItem?["reasons"] as? [String] == ["tags: 1 added"])
        #expect(otherItem?["action"] as? String == "keep")
        #expect(preview["needsRestart"] as? [String] == ["log_level"])
        let text = try agent.cli(["config", "diff", candidate])
        #expect(text.status == 0)
        #expect(text.stdout.contains("restart  device  plant"), "\(text.stdout)")
        #expect(text.stdout.contains("Left as they run (a restart applies them): log_level."), "\(text.stdout)")

        // Nothing was applied: no reload, the new tag unknown.
        #expect(try agent.object(["status"])["reloads"] as? Int == 0)
        #expect(try agent.cli(["read", "tank2/level"]).status != 0)

        // The reload itself does what the preview said, and says the log level needs a restart.
        try agent.reload(config: Self.config(port: plant.port, logLevel: "debug", extraTag: true))
        #expect(eventually(timeout: 10) { agent.log.contains("reloaded:") }, "\(agent.log)")
        let line = agent.log.split(separator: "\n").first { $0.contains("reloaded:") }.map(String.init) ?? ""
        #expect(line.contains("kept plant_b"), "\(line)")
        #expect(line.contains("restarted plant"), "\(line)")
        #expect(line.contains("needs a restart to apply: log_level"), "\(line)")
    }

    @Test func previewRefusesWhatTheReloadWouldRefuse() throws {
        let plant = try QuadTank()
        defer { plant.stop() }
        let agent = try AgentProcess(config: Self.config(port: plant.port))
        defer { agent.dir.remove() }

        let broken = agent.dir.path + "/broken.yaml"
        try (Self.config(port: plant.port) + "  - name: broken\n    device: nowhere\n")
            .replacingOccurrences(of: "@DIR@", with: agent.dir.path)
            .write(toFile: broken, atomically: true, encoding: .utf8)
        let refused = try agent.cli(["config", "diff", broken])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("broken.yaml:"), "\(refused.stderr)")
        #expect(refused.stdout.contains("would be refused"), "\(refused.stdout)")
        let json = try agent.cli(["config", "diff", broken, "--json"])
        #expect(json.status == 1)
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect(object?["accepted"] as? Bool == false)
        #expect((object?["diagnostics"] as? [[String: Any]])?.first?["line"] as? Int ?? 0 > 0)
        #expect((object?["items"] as? [Any])?.isEmpty == true)

        let missing = try agent.cli(["config", "diff", agent.dir.path + "/nothing-here.yaml"])
        #expect(missing.status == 2)
        #expect(missing.stderr.contains("no such file"), "\(missing.stderr)")

        let usage = try agent.cli(["reload"])
        #expect(usage.status != 0)
        #expect(usage.stderr.contains("systemctl reload edgepilot"), "\(usage.stderr)")

        agent.stop()
        let unreachable = try agent.cli(["config", "diff", broken])
        #expect(unreachable.status == 3, "\(unreachable.stderr)")
    }
}
