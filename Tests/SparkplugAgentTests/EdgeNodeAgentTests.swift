import Foundation
import History
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The real daemon (`edgepilot run`) against the quadruple-tank simulator and mosquitto, checked on the
/// subscriber side by an independent Python host that decodes with Eclipse Tahu's schema.
@Suite(.serialized) struct EdgeNodeAgentTests {
    static let tagNames: Set<String> = [
        "tank1/level", "tank2/level", "tank3/level", "tank4/level", "pump1/voltage", "tank1/raw",
    ]

    @Test func birthsDataSeqRebirthAndBdSeqAcrossRestarts() throws {
        let scenario = try SparkplugScenario(plant: noisyPlant()) { plantPort, brokerPort in
            SparkplugAgentConfig.text(modbusPort: plantPort, brokerPort: brokerPort)
        }
        defer { scenario.stop() }
        let agent = scenario.agent
        let host = scenario.host

        try host.waitFor("NBIRTH, DBIRTH and live data") { ms in
            ms.contains { $0.kind == "DBIRTH" } && ms.filter { $0.kind == "DDATA" && !$0.isHistorical }.count >= 10
        }
        let messages = host.messages
        let nbirth = try #require(messages.first)
        #expect(nbirth.kind == "NBIRTH")
        #expect(nbirth.seq == 0)
        #expect(nbirth.metric("bdSeq")?.int("value") == 0, "first session of a fresh node")
        #expect(nbirth.metric("bdSeq")?["datatype_name"] as? String == "Int64")
        #expect(nbirth.metric("Node Control/Rebirth")?.bool("value") == false)
        #expect(nbirth.metric("Node Control/Rebirth")?["alias"] is NSNull, "never aliased")
        #expect(nbirth.metric("Node Control/Next Server")?.bool("value") == false)
        #expect(nbirth.metric("Properties/Version")?["value"] as? String == "0.1.0")
        // Read at birth time: what was stored while the node waited for its connection.
        #expect(nbirth.metric("Store and Forward/Backlog")?.int("value") != nil)
        #expect(nbirth.metric("Polling/Devices")?.int("value") == 1)

        let dbirth = try #require(messages.first { $0.kind == "DBIRTH" })
        #expect(dbirth.device == "plant")
        #expect(Set(dbirth.metrics.compactMap { $0["name"] as? String }) == Self.tagNames)
        let level = try #require(dbirth.metric("tank1/level"))
        #expect(level["datatype_name"] as? String == "Float")
        #expect(level.property("engUnit") as? String == "cm")
        #expect(level["alias"] as? NSNumber != nil)
        let voltage = try #require(dbirth.metric("pump1/voltage"))
        #expect(voltage.property("engLow") as? Double == 0)
        #expect(voltage.property("engHigh") as? Double == 10)
        #expect(dbirth.metric("tank1/raw")?["datatype_name"] as? String == "Int16")

        // Changes read before the first CONNACK were stored and come as historical DDATA; all data is QoS 0.
        let ddata = messages.filter { $0.kind == "DDATA" && !$0.isHistorical }
        for m in ddata.prefix(10) {
            #expect(m.qos == 0)
            for metric in m.metrics {
                #expect(Self.tagNames.contains(metric["name"] as? String ?? ""), "only declared metrics")
                #expect(metric["timestamp"] as? NSNumber != nil)
                #expect(metric.bool("is_historical") == false)
                #expect(metric.property("Quality") as? Int == 192)
            }
        }
        // Only changed metrics: the pump voltage does not move, so it is not in the data messages.
        #expect(!ddata.contains { $0.metric("pump1/voltage") != nil })

        // NCMD Rebirth from the host: NBIRTH with seq 0 and the same bdSeq, then the DBIRTH.
        try host.send(["cmd": "rebirth"])
        try host.waitFor("the rebirth") { ms in
            ms.filter { $0.kind == "NBIRTH" }.count == 2 && ms.last?.kind != "NBIRTH"
        }
        // And from the CLI.
        let rebirth = try agent.cli(["mqtt", "rebirth"])
        #expect(rebirth.status == 0, "\(rebirth.stderr)")
        try host.waitFor("the CLI rebirth") { ms in ms.filter { $0.kind == "NBIRTH" }.count == 3 }
        let status = try agent.mqttStatus()
        #expect(status["sessionState"] as? String == "online")
        #expect(status["bdSeq"] as? Int == 0)
        #expect(status["births"] as? Int == 3)
        let textStatus = try agent.cli(["mqtt", "status"])
        #expect(textStatus.stdout.contains("online"), "\(textStatus.stdout)")

        // Graceful stop: NDEATH with this session's bdSeq. Restart: the next CONNECT uses bdSeq + 1.
        #expect(agent.stop() == 0)
        try host.waitFor("NDEATH") { ms in ms.contains { $0.kind == "NDEATH" } }
        try agent.start()
        try host.waitFor("the second session's NBIRTH") { ms in ms.filter { $0.kind == "NBIRTH" }.count == 4 }
        try host.waitFor("data after the restart") { ms in ms.last?.kind == "DDATA" }
        let all = host.messages
        let births = all.filter { $0.kind == "NBIRTH" }
        #expect(births.prefix(3).allSatisfy { $0.metric("bdSeq")?.int("value") == 0 }, "rebirth keeps bdSeq")
        #expect(births[3].metric("bdSeq")?.int("value") == 1)
        #expect(all.first { $0.kind == "NDEATH" }?.metric("bdSeq")?.int("value") == 0)
        #expect(all.first { $0.kind == "NDEATH" }?.seq == nil, "NDEATH carries no seq")
        #expect(seqBreak(all) == nil, "\(seqBreak(all) ?? "")")
        // Every DBIRTH follows its NBIRTH before any data.
        for (i, m) in all.enumerated() where m.kind == "NBIRTH" {
            #expect(all[i + 1].kind == "DBIRTH", "message after NBIRTH \(i) is \(all[i + 1].kind)")
        }
    }

    @Test func primaryHostStateGatesTheBirths() throws {
        let scenario = try SparkplugScenario(plant: noisyPlant(), host: .init(hostID: "Host1", manualState: true)) {
            plantPort, brokerPort in
            SparkplugAgentConfig.text(modbusPort: plantPort, brokerPort: brokerPort, primaryHost: "Host1")
        }
        defer { scenario.stop() }
        let agent = scenario.agent
        let host = scenario.host

        #expect(
            eventually(timeout: 15) {
                (try? agent.mqttStatus())?["sessionState"] as? String == "waiting_for_primary_host"
            })
        usleep(1_000_000)
        #expect(host.messages.isEmpty, "no birth before the Primary Host is online")
        // Changes meanwhile are stored, not lost.
        #expect(((try agent.mqttStatus())["backlog"] as? Int ?? 0) > 0)

        try host.send(["cmd": "state", "online": true])
        try host.waitFor("NBIRTH after STATE online") { ms in ms.contains { $0.kind == "DBIRTH" } }
        #expect(host.messages.first?.kind == "NBIRTH")
        #expect((try agent.mqttStatus())["primaryHostOnline"] as? Bool == true)

        // Offline: NDEATH, disconnect; back online: a new session with the next bdSeq.
        try host.send(["cmd": "state", "online": false])
        try host.waitFor("NDEATH after STATE offline") { ms in ms.contains { $0.kind == "NDEATH" } }
        try host.send(["cmd": "state", "online": true])
        try host.waitFor("the next session's NBIRTH") { ms in ms.filter { $0.kind == "NBIRTH" }.count == 2 }
        let births = host.messages.filter { $0.kind == "NBIRTH" }
        let first = births[0].metric("bdSeq")?.int("value") ?? -1
        // Every CONNECT takes the next bdSeq; a reconnect that meets the retained offline STATE walks on again
        // (tck-id-operational-behavior-primary-application-state-with-multiple-servers-walk), so it may be more than +1.
        let second = births[1].metric("bdSeq")?.int("value") ?? -1
        #expect(second > first, "bdSeq \(first) then \(second)")
        #expect(seqBreak(host.messages) == nil, "\(seqBreak(host.messages) ?? "")")
    }
}
