import Foundation
import Sparkplug
import TestSupport
import Testing

/// Assertions a captured session cannot show: identifiers that cannot be topic levels, and the Primary Host going
/// offline on one of two brokers, over MQTT 5.
@Suite(.serialized) struct SparkplugConformanceRuleTests {
    @Test(
        """
        tck-id-topic-structure-namespace-valid-group-id, tck-id-topic-structure-namespace-valid-edge-node-id, \
        tck-id-topic-structure-namespace-valid-device-id, tck-id-intro-group-id-chars, \
        tck-id-intro-edge-node-id-chars, tck-id-intro-device-id-chars, tck-id-topic-structure-namespace-unique-device-id
        """)
    func identifiersThatCannotBeTopicLevelsAreRefused() throws {
        func session(_ group: String, _ node: String) throws -> EdgeNodeSession {
            try EdgeNodeSession(
                configuration: EdgeNodeConfiguration(groupID: group, edgeNodeID: node), nodeMetrics: [], lastBdSeq: nil)
        }
        for bad in ["Plant/1", "Plant+1", "Plant#1", ""] {
            #expect(throws: SparkplugError.self, "group \(bad)") { try session(bad, "edge1") }
            #expect(throws: SparkplugError.self, "edge node \(bad)") { try session("Plant1", bad) }
            var s = try session("Plant1", "edge1")
            #expect(throws: SparkplugError.self, "device \(bad)") { try s.addDevice(bad, metrics: [], now: 0) }
        }
        // Any other UTF-8 is a valid identifier; a device id is unique within its node.
        var s = try session("Usine-Zürich", "nœud 1")
        _ = try s.addDevice("pompe·1", metrics: [], now: 0)
        #expect(throws: SparkplugError.self) { try s.addDevice("pompe·1", metrics: [], now: 0) }
        // The agent refuses such a configuration before it connects.
        let dir = try TemporaryDirectory("edgepilot-ids")
        defer { dir.remove() }
        let config = SparkplugAgentConfig.text(modbusPort: 1, brokerPort: 1)
            .replacingOccurrences(of: "group_id: Plant1", with: "group_id: Plant/1")
        let agent = try AgentProcess(config: config, dir: dir, start: false)
        let check = try agent.cli(["config", "check", agent.configPath])
        #expect(check.status != 0, "config check accepted group_id Plant/1: \(check.stdout)")
    }

    @Test(
        """
        tck-id-operational-behavior-primary-application-state-with-multiple-servers-walk, \
        tck-id-message-flow-edge-node-birth-publish-phid-offline, \
        tck-id-operational-behavior-edge-node-termination-host-offline, \
        tck-id-operational-behavior-edge-node-termination-host-offline-reconnect, \
        tck-id-message-flow-edge-node-birth-publish-phid-wait-online, tck-id-principles-persistence-clean-session-50, \
        tck-id-payloads-ndeath-will-message-publisher-disconnect-mqtt50
        """)
    func primaryHostOfflineMovesTheNodeToTheNextServerOverMQTT5() throws {
        let second = try MosquittoBroker()
        try second.start()
        defer { second.stop() }
        let scenario = try SparkplugScenario(plant: noisyPlant(), host: .init(hostID: "Host1"), startAgent: false) {
            plantPort, brokerPort in
            SparkplugAgentConfig.text(
                modbusPort: plantPort, brokerPort: brokerPort, primaryHost: "Host1",
                sparkplugExtra: "  mqtt_version: 5\n"
            )
            .replacingOccurrences(
                of: "    - url: mqtt://127.0.0.1:\(brokerPort)\n",
                with: "    - url: mqtt://127.0.0.1:\(brokerPort)\n    - url: mqtt://127.0.0.1:\(second.port)\n")
        }
        defer { scenario.stop() }
        let first = scenario.host
        let other = try HostRecorder(
            port: second.port, directory: scenario.agent.dir.path, hostID: "Host1", manualState: true)
        defer { other.stop() }
        try scenario.agent.start()
        try first.waitFor("births on the first broker") { ms in ms.contains { $0.kind == "DBIRTH" } }

        // The Primary Host goes offline there: NDEATH, DISCONNECT asking for the Will (two NDEATHs), next broker.
        try first.send(["cmd": "state", "online": false])
        try first.waitFor("NDEATH and the Will on the first broker") { ms in
            ms.filter { $0.kind == "NDEATH" }.count == 2
        }
        let id = ConformanceCapture.clientID
        #expect(eventually(timeout: 15) { !BrokerLog(second.log(), clientID: id).connects.isEmpty })
        // Connected there, but the Primary Host has said nothing on that broker: no births.
        usleep(1_500_000)
        #expect(other.count("NBIRTH") == 0, "births before the Primary Host is online on the second broker")
        try other.send(["cmd": "state", "online": true])
        try other.waitFor("births on the second broker") { ms in ms.contains { $0.kind == "DBIRTH" } }

        let before = other.count("NDEATH")
        #expect(scenario.agent.stop() == 0)
        try other.waitFor("NDEATH and the Will on the second broker") { ms in
            ms.filter { $0.kind == "NDEATH" }.count >= before + 2
        }
        let deaths = other.messages.filter { $0.kind == "NDEATH" }.suffix(2).map { $0.metric("bdSeq")?.int("value") }
        let birth = other.messages.first { $0.kind == "NBIRTH" }?.metric("bdSeq")?.int("value")
        #expect(deaths.allSatisfy { $0 == birth }, "\(deaths) for NBIRTH bdSeq \(birth ?? -1)")
        for log in [BrokerLog(scenario.broker.log(), clientID: id), BrokerLog(second.log(), clientID: id)] {
            #expect(!log.connects.isEmpty)
            #expect(log.connects.allSatisfy { $0.protocolLevel == 5 && $0.cleanSession }, "\(log.connects)")
            #expect(log.events.last == .disconnect, "the session ended with DISCONNECT: \(log.events.suffix(3))")
        }
    }

    @Test func theTableInDocsNamesTheTestOfEveryCheckedAssertion() throws {
        let doc = try String(
            contentsOf: repositoryRoot.appendingPathComponent("docs/SPARKPLUG.md"), encoding: .utf8)
        let rows = doc.split(separator: "\n").filter { $0.hasPrefix("| `tck-id-") }
        for id in CapturedSessionChecks.ids {
            let row = rows.first { $0.hasPrefix("| `\(id)`") }
            #expect(row?.contains("SparkplugConformanceTests/assertion") == true, "\(id): \(row ?? "no row")")
        }
        #expect(Set(rows).count == rows.count, "one row per assertion")
    }
}
