import Foundation
import TestSupport
import Testing

/// What every command shares (README, "Exit codes"): 0 ok, 1 refused or failed, 2 usage or not found, 3 agent
/// unreachable; values as precise as their type; help text in whole sentences.
@Suite(.serialized) struct CLIConventionsTests {
    let binary = productsDirectory.appendingPathComponent("edgepilot").path

    @Test func exitCodesAreTheDocumentedOnes() throws {
        let plant = try QuadTank()
        defer { plant.stop() }
        let agent = try AgentProcess(config: DaemonEndToEndTests.config(port: plant.port))
        defer { agent.dir.remove() }
        #expect(eventually { (try? agent.cli(["read", "tank1/level", "--json"]))?.stdout.contains("good") == true })

        #expect(try agent.cli(["read", "tank1/level"]).status == 0)
        // --format yaml prints the same data as --json, as YAML (a number stays an unquoted YAML float); asking for
        // both forms is a usage error.
        let yaml = try agent.cli(["read", "tank1/level", "--format", "yaml"])
        #expect(yaml.status == 0)
        #expect(
            yaml.stdout.contains("name: tank1/level\n") && yaml.stdout.contains("quality: good\n"), "\(yaml.stdout)")
        #expect(
            yaml.stdout.range(of: #"\nvalue: [-+]?\d+(\.\d+)?(e[-+]?\d+)?\n"#, options: .regularExpression) != nil,
            "\(yaml.stdout)")
        #expect(try agent.cli(["read", "tank1/level", "--json", "--format", "yaml"]).status == 2)
        // Not found: a tag, a loop.
        let tag = try agent.cli(["read", "tank9/level"])
        #expect(tag.status == 2)
        #expect(tag.stderr.contains("no tag named 'tank9/level'"), "\(tag.stderr)")
        #expect(try agent.cli(["history", "nope", "--since", "1m"]).status == 2)
        #expect(try agent.cli(["loop", "nope", "mode", "pid"]).status == 2)
        // Usage: a missing argument, an unknown option, a bad duration.
        #expect(try runCommand(binary, ["read"]).status == 2)
        #expect(try runCommand(binary, ["config", "check", agent.dir.path + "/missing.yaml"]).status == 2)
        #expect(try runCommand(binary, ["config", "check", agent.configPath]).status == 0)
        #expect(try agent.cli(["tags", "--no-such-option"]).status == 2)
        #expect(try agent.cli(["history", "tank1/level", "--since", "yesterday-ish"]).status == 2)
        // Refused: a tag that is not writable, a value beyond its limits.
        let readOnly = try agent.cli(["write", "tank1/level", "3", "--yes"])
        #expect(readOnly.status == 1, "\(readOnly.stderr)")
        let beyond = try agent.cli(["write", "pump1/voltage", "11", "--yes"])
        #expect(beyond.status == 1, "\(beyond.stderr)")

        agent.stop()
        for command in [["status"], ["read", "tank1/level"], ["tags"], ["loops"], ["audit"]] {
            let r = try agent.cli(command)
            #expect(r.status == 3, "\(command): \(r.status) \(r.stderr)")
            #expect(r.stderr.contains("the agent is not running"), "\(r.stderr)")
        }
    }

    /// A float32 tag shows its own digits (2.7517078), not the float64 expansion of them (2.7517077922821045).
    @Test func float32ValuesShowTheirOwnPrecision() throws {
        let plant = try QuadTank()
        defer { plant.stop() }
        let agent = try AgentProcess(config: DaemonEndToEndTests.config(port: plant.port))
        defer { agent.dir.remove() }
        #expect(eventually { (try? agent.cli(["read", "tank1/level", "--json"]))?.stdout.contains("good") == true })

        let report = try agent.object(["read", "tank1/level"])
        let value = try #require(report["value"] as? Double, "a number, not a string: \(report)")
        #expect(value == Double(Float(value).description), "\(value) is the float32's own decimal")
        // The plant moves between two reads, so the text is checked on its own number, not against the JSON one.
        let text = try agent.cli(["read", "tank1/level"]).stdout
        let shown = try #require(text.firstMatch(of: #/= (\S+) cm/#)?.1, "\(text)")
        #expect(Float(shown).map { $0.description == shown } == true, "\(text)")
        #expect(text.range(of: #"\d\.\d{10,}"#, options: .regularExpression) == nil, "\(text)")

        // History too.
        #expect(eventually { (try? agent.cli(["history", "tank1/level", "--since", "1m"]))?.status == 0 })
        let history = try #require(try agent.json(["history", "tank1/level", "--since", "1m"]) as? [[String: Any]])
        for point in history {
            let v = try #require(point["value"] as? Double)
            #expect(v == Double(Float(v).description), "\(v)")
        }
    }

    /// Every command's description reads as sentences: a line break inside one was a hard newline in the source.
    @Test func helpTextsHaveNoBrokenLines() throws {
        var broken: [String] = []
        var visited = 0
        func walk(_ path: [String]) throws {
            visited += 1
            let help = try runCommand(binary, path + ["--help"], environment: ["COLUMNS": "10000"]).stdout
            let description = help.components(separatedBy: "USAGE:")[0].split(separator: "\n").dropFirst()
            for line in description where !line.hasPrefix(" ") {
                guard let last = line.last, !".:)!?'`\"".contains(last) else { continue }
                broken.append("\(path.joined(separator: " ")): …\(line.suffix(50))")
            }
            guard let list = help.components(separatedBy: "SUBCOMMANDS:").dropFirst().first else { return }
            for line in list.components(separatedBy: "\n\n")[0].split(separator: "\n") {
                let name = line.split(separator: " ").first.map(String.init) ?? ""
                if line.hasPrefix("  "), !name.isEmpty, name != "help" { try walk(path + [name]) }
            }
        }
        try walk([])
        #expect(visited > 30)
        #expect(broken.isEmpty, "\(broken.joined(separator: "\n"))")
    }
}
