import Foundation
import TestSupport
import Testing

/// `edgepilot health` on the Sparkplug session: WARN while the Primary Host is not online or the broker is gone,
/// with how long; OK once online. (CRIT after 120 s offline is the evaluator's rule, unit-tested in AgentTests.)
@Suite(.serialized) struct HealthSparkplugTests {
    static func sparkplugCheck(_ agent: AgentProcess) -> (exit: Int32, check: [String: Any])? {
        guard let result = try? agent.cli(["health", "--json"]),
            let report = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any],
            let checks = report["checks"] as? [[String: Any]],
            let check = checks.first(where: { $0["component"] as? String == "sparkplug" })
        else { return nil }
        return (result.status, check)
    }

    @Test func waitingForThePrimaryHostThenOnlineThenBrokerLost() throws {
        let scenario = try SparkplugScenario(plant: noisyPlant(), host: .init(hostID: "Host1", manualState: true)) {
            plantPort, brokerPort in
            SparkplugAgentConfig.text(modbusPort: plantPort, brokerPort: brokerPort, primaryHost: "Host1")
        }
        defer { scenario.stop() }
        let agent = scenario.agent
        var last: (exit: Int32, check: [String: Any])?

        let waiting = eventually(timeout: 15) {
            last = Self.sparkplugCheck(agent)
            return (last?.check["reason"] as? String ?? "").contains("waiting for primary host Host1")
        }
        #expect(waiting, "\(String(describing: last))")
        #expect(last?.exit == 1 && last?.check["status"] as? String == "WARN")
        #expect(last?.check["offlineSeconds"] is NSNumber, "\(String(describing: last))")

        try scenario.host.send(["cmd": "state", "online": true])
        let online = eventually(timeout: 15) {
            last = Self.sparkplugCheck(agent)
            return last?.check["status"] as? String == "OK"
        }
        #expect(online, "\(String(describing: last))")
        #expect(eventually(timeout: 10) { Self.sparkplugCheck(agent)?.exit == 0 }, "\(String(describing: last))")

        scenario.broker.stop()
        let lost = eventually(timeout: 15) {
            last = Self.sparkplugCheck(agent)
            return (last?.check["reason"] as? String ?? "").hasPrefix("not connected")
        }
        #expect(lost, "\(String(describing: last))")
        #expect(last?.check["status"] as? String == "WARN" && last?.exit == 1)
    }
}
