import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The real daemon against the defects of issue 13 (docs/decisions/0016): births with the current quality, bdSeq
/// per CONNECT a broker may have accepted, replay at QoS 0 confirmed by receipts, coalesced rebirths.
@Suite(.serialized) struct SessionConformanceTests {
    @Test func birthsCarryCurrentQualityAndABurstOfRebirthsGivesOneBirth() throws {
        let scenario = try SparkplugScenario(plant: noisyPlant()) { plantPort, brokerPort in
            SparkplugAgentConfig.text(modbusPort: plantPort, brokerPort: brokerPort)
        }
        defer { scenario.stop() }
        let host = scenario.host
        try host.waitFor("births and live data") { ms in
            ms.contains { $0.kind == "DBIRTH" } && ms.filter { $0.kind == "DDATA" && !$0.isHistorical }.count >= 5
        }

        // pump1/voltage never changes, so it never goes out as data: only the birth can tell its quality.
        try host.send(["cmd": "rebirth"])
        try host.waitFor("the rebirth") { ms in ms.filter { $0.kind == "DBIRTH" }.count == 2 }
        let dbirth = try #require(host.messages.last { $0.kind == "DBIRTH" })
        for m in dbirth.metrics {
            #expect(m.property("Quality") as? Int == 192, "\(m["name"] ?? "?") in DBIRTH: \(m)")
        }
        #expect(dbirth.metric("pump1/voltage")?["is_null"] as? Bool != true, "a value read from the PLC")

        // Five requests at once: one NBIRTH, one DBIRTH.
        usleep(1_500_000)
        let births = (host.count("NBIRTH"), host.count("DBIRTH"))
        for _ in 0..<5 { try host.send(["cmd": "rebirth"]) }
        try host.waitFor("the coalesced rebirth") { ms in ms.filter { $0.kind == "NBIRTH" }.count > births.0 }
        usleep(3_000_000)
        #expect(host.count("NBIRTH") == births.0 + 1, "\(host.count("NBIRTH") - births.0) NBIRTHs for 5 requests")
        #expect(host.count("DBIRTH") == births.1 + 1, "\(host.count("DBIRTH") - births.1) DBIRTHs for 5 requests")
        #expect(seqBreak(host.messages) == nil, "\(seqBreak(host.messages) ?? "")")
    }

    /// A broker that refuses the agent's CONNECT (wrong password), then accepts it after a reload: the refused
    /// attempts did not register a Will, so the first NBIRTH still has bdSeq 0. Then a broker that is down (TCP
    /// refused) for a few attempts: the next session takes exactly the next bdSeq.
    @Test func bdSeqAdvancesOnlyPerCONNECTABrokerMayHaveAccepted() throws {
        let broker = try MosquittoBroker()
        let passwords = broker.directory.appendingPathComponent("passwd").path
        try run("/usr/bin/mosquitto_passwd", ["-b", "-c", passwords, "edge", "not-what-the-agent-sends"])
        try run("/usr/bin/mosquitto_passwd", ["-b", passwords, "host", "host-pw"])
        broker.listenerConfig = "allow_anonymous false\npassword_file \(passwords)"
        try broker.start()
        let dir = try TemporaryDirectory("edgepilot-bdseq")
        defer { dir.remove() }
        let passwordFile = dir.path + "/mqtt-password"
        try "edge-pw\n".write(toFile: passwordFile, atomically: true, encoding: .utf8)
        let scenario = try SparkplugScenario(
            plant: noisyPlant(), broker: broker,
            host: .init(hostID: "Host1", extraArguments: ["--username", "host", "--password", "host-pw"])
        ) { plantPort, brokerPort in
            SparkplugAgentConfig.text(modbusPort: plantPort, brokerPort: brokerPort, primaryHost: "Host1")
                .replacingOccurrences(
                    of: "    - url: mqtt://127.0.0.1:\(brokerPort)\n",
                    with: "    - url: mqtt://127.0.0.1:\(brokerPort)\n      username: edge\n"
                        + "      password_file: \(passwordFile)\n")
        }
        defer { scenario.stop() }
        let agent = scenario.agent
        let host = scenario.host
        func refusals() -> Int {
            broker.log().components(separatedBy: "\n").filter { $0.contains("disconnected, not authorised") }.count
        }
        #expect(eventually(timeout: 20) { refusals() >= 5 }, "\(broker.log().suffix(1500))")
        #expect(host.count("NBIRTH") == 0)

        try run("/usr/bin/mosquitto_passwd", ["-b", passwords, "edge", "edge-pw"])
        try broker.reload()
        try host.waitFor("NBIRTH once the broker accepts") { ms in ms.contains { $0.kind == "DBIRTH" } }
        let first = try #require(host.messages.first { $0.kind == "NBIRTH" })
        #expect(first.metric("bdSeq")?.int("value") == 0, "\(refusals()) refused CONNECTs before it")
        #expect((try agent.mqttStatus())["bdSeq"] as? Int == 0)

        // Graceful stop (NDEATH bdSeq 0), then the agent starts while the broker is down.
        #expect(agent.stop() == 0)
        try host.waitFor("NDEATH") { ms in ms.contains { $0.kind == "NDEATH" } }
        broker.stop()
        try agent.start()
        usleep(2_500_000)
        #expect(((try agent.mqttStatus())["lastError"] as? String) != nil, "attempts failed while the broker was down")
        try broker.start()
        try host.waitFor("the second session's NBIRTH", timeout: 30) { ms in
            ms.filter { $0.kind == "NBIRTH" }.count == 2
        }
        let second = host.messages.filter { $0.kind == "NBIRTH" }[1]
        #expect(second.metric("bdSeq")?.int("value") == 1)
        #expect(host.messages.first { $0.kind == "NDEATH" }?.metric("bdSeq")?.int("value") == 0)
    }

    /// The backlog is replayed as DDATA at QoS 0 (tck-id-payloads-ddata-qos); rows leave the queue only on a
    /// receipt from the broker: while the broker is frozen none are confirmed, and nothing recorded is lost.
    @Test func replayIsQoS0AndConfirmedOnlyByTheBroker() throws {
        let scenario = try SparkplugScenario(
            plant: noisyPlant(), host: .init(hostID: "Host1", manualState: true, keepalive: 60)
        ) { plantPort, brokerPort in
            SparkplugAgentConfig.text(
                modbusPort: plantPort, brokerPort: brokerPort, primaryHost: "Host1", metricsPerMessage: 10,
                messagesPerSecond: 3)
        }
        defer { scenario.stop() }
        let agent = scenario.agent
        let host = scenario.host
        let broker = scenario.broker
        func status() -> [String: Any] { (try? agent.mqttStatus()) ?? [:] }
        func backlog() -> Int { status()["backlog"] as? Int ?? -1 }

        // No births before the Primary Host's STATE: changes are stored.
        #expect(eventually(timeout: 15) { status()["sessionState"] as? String == "waiting_for_primary_host" })
        usleep(4_000_000)
        #expect(backlog() > 100)
        try host.send(["cmd": "state", "online": true])
        try host.waitFor("replay") { ms in ms.contains(where: \.isHistorical) }

        broker.pause()
        usleep(500_000)
        let frozen = backlog()
        usleep(3_000_000)
        let later = backlog()
        #expect(frozen > 0 && later >= frozen, "confirmed while the broker was frozen: \(frozen) → \(later)")
        broker.resume()

        #expect(eventually(timeout: 60) { backlog() == 0 }, "replay drains; backlog \(backlog())")
        try host.waitFor("live data") { ms in ms.last?.kind == "DDATA" && !ms.last!.isHistorical }
        let endAt = Int64(Date().timeIntervalSince1970 * 1000)
        #expect(agent.stop() == 0)
        try host.waitFor("NDEATH") { ms in ms.contains { $0.kind == "NDEATH" } }

        let d = try Delivery(historyPath: agent.historyPath, messages: host.messages)
        #expect(!d.historical.isEmpty)
        #expect(d.historical.allSatisfy { $0.qos == 0 }, "historical DDATA at QoS 0")
        #expect(d.live.allSatisfy { $0.qos == 0 })
        let missing = d.missing(from: 0, to: endAt - 500)
        #expect(missing.isEmpty, "never arrived: \(d.summary(missing))")
        #expect(Delivery.outOfOrder(d.historical).isEmpty, "\(Delivery.outOfOrder(d.historical))")
    }
}
