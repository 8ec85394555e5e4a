import Foundation
import TestSupport
import Testing

/// `edgepilot health` against the real agent and the quadruple-tank simulator, read as a monitoring system reads
/// it: by exit code (0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN) and the first line of output.
@Suite(.serialized) struct HealthEndToEndTests {
    /// `edgepilot health [--json]`: exit code and output.
    static func health(_ agent: AgentProcess, json: Bool = false) -> CommandResult? {
        try? agent.cli(["health"] + (json ? ["--json"] : []))
    }

    static func checks(_ result: CommandResult?) -> [[String: Any]] {
        guard let result, let object = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)),
            let report = object as? [String: Any]
        else { return [] }
        return report["checks"] as? [[String: Any]] ?? []
    }

    @Test func allOKExitsZeroThenAKilledDeviceIsCriticalByName() throws {
        let plant = try TankScenario.plant()
        var plantRunning = true
        defer { if plantRunning { plant.stop() } }
        let agent = try AgentProcess(config: TankScenario.config(port: plant.port))
        defer {
            agent.stop()
            agent.dir.remove()
        }
        var last: CommandResult?
        let ok = eventually(timeout: 15) {
            last = Self.health(agent)
            return last?.status == 0
        }
        #expect(ok, "health never OK: \(last?.stdout ?? "") \(last?.stderr ?? "")\n\(agent.log)")
        #expect(last?.stdout.hasPrefix("EDGEPILOT OK: all") == true, "\(last?.stdout ?? "")")

        // --json: the shape a monitoring system parses, figures as JSON numbers, not strings.
        let json = try #require(Self.health(agent, json: true))
        #expect(json.status == 0)
        let report = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect(report["status"] as? String == "OK")
        let checks = try #require(report["checks"] as? [[String: Any]])
        for check in checks {
            for key in ["component", "name", "status", "reason"] {
                #expect(check[key] is String, "\(key) in \(check)")
            }
        }
        let components = Set(checks.compactMap { $0["component"] as? String })
        #expect(components.isSuperset(of: ["device", "history", "loop", "clock"]), "\(components)")
        let device = try #require(checks.first { $0["component"] as? String == "device" })
        #expect(device["name"] as? String == "plant")
        #expect(device["ageSeconds"] is NSNumber && device["periodSeconds"] as? Double == 0.05, "\(device)")
        let disk = try #require(checks.first { $0["name"] as? String == "disk" })
        #expect(disk["freePercent"] is NSNumber && disk["freeBytes"] is NSNumber, "\(disk)")
        #expect(!(disk["freePercent"] is String))

        // The plant goes away: the device is CRIT, named on the first line, exit 2.
        plant.stop()
        plantRunning = false
        let critical = eventually(timeout: 15) {
            last = Self.health(agent)
            return last?.status == 2
        }
        #expect(critical, "health never CRIT: \(last?.stdout ?? "")")
        let firstLine = last?.stdout.split(separator: "\n").first.map(String.init) ?? ""
        #expect(firstLine.hasPrefix("EDGEPILOT CRIT: device plant: not connected"), "\(firstLine)")
    }

    @Test func aLoopShedToItsFallbackIsAWarningNamingTheLoopAndWhy() throws {
        let plant = try TankScenario.plant()
        defer { plant.stop() }
        // No return to MPC for 10 minutes: the loop stays shed once the plant is back.
        let agent = try AgentProcess(config: TankScenario.config(port: plant.port, healthy: "10m"))
        defer {
            agent.stop()
            agent.dir.remove()
        }
        #expect(eventually(timeout: 15) { Self.health(agent)?.status == 0 }, "\(agent.log)")
        try plant.control(["cmd": "refuse", "seconds": 2])
        var last: CommandResult?
        let warned = eventually(timeout: 20) {
            last = Self.health(agent, json: true)
            let checks = Self.checks(last)
            let device = checks.first { $0["component"] as? String == "device" }
            return last?.status == 1 && device?["status"] as? String != "CRIT"
        }
        #expect(warned, "health never WARN with the device back: \(last?.stdout ?? "")")
        let loop = try #require(Self.checks(last).first { $0["component"] as? String == "loop" })
        #expect(loop["name"] as? String == "tanks" && loop["status"] as? String == "WARN")
        let reason = loop["reason"] as? String ?? ""
        #expect(reason.hasPrefix("shed from mpc to "), "\(reason)")
        #expect(reason.contains("bad quality") || reason.contains("stale"), "\(reason)")
        let text = try #require(Self.health(agent))
        #expect(text.status == 1)
        #expect(text.stdout.contains("loop tanks: shed from mpc to "), "\(text.stdout)")
    }

    @Test func anAgentThatIsNotRunningIsUnknownWithExitThree() throws {
        let dir = try TemporaryDirectory("edgepilot-health")
        defer { dir.remove() }
        let binary = productsDirectory.appendingPathComponent("edgepilot").path
        let result = try runCommand(binary, ["health", "--socket", dir.path + "/control.sock"])
        #expect(result.status == 3)
        #expect(result.stdout.hasPrefix("EDGEPILOT UNKNOWN: the agent is not running"), "\(result.stdout)")
        let json = try runCommand(binary, ["health", "--json", "--socket", dir.path + "/control.sock"])
        #expect(json.status == 3)
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect(object?["status"] as? String == "UNKNOWN")
    }
}
