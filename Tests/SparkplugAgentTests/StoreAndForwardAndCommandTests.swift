import Foundation
import History
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

private func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

/// A sample as history stored it or Sparkplug carried it, comparable across both.
private struct Point: Hashable, CustomStringConvertible {
    var tag: String
    var timestamp: Int64
    var value: Float
    var description: String { "\(tag)@\(timestamp)=\(value)" }
}

@Suite(.serialized) struct StoreAndForwardAndCommandTests {
    static let compared = ["tank1/level", "tank2/level", "tank3/level", "tank4/level", "tank1/raw"]

    /// The broker goes away for 20 s (the issue says 60; 20 keeps the suite fast and still spans hundreds of
    /// changes and several reconnect attempts) while the plant keeps changing; then a second, shorter outage whose
    /// replay is cut by kill -9 of the agent. Every change the agent recorded in its history during an outage must
    /// arrive flagged historical, with its original timestamp and value; the first replay exactly once and in order,
    /// the killed one without gaps (duplicates allowed, bounded by the acknowledgement window).
    @Test func outageIsReplayedInOrderAndAKillDuringReplayLosesNothing() throws {
        let plant = try noisyPlant()
        defer { plant.stop() }
        let broker = try MosquittoProcess()
        try broker.start()
        defer { broker.stop() }
        let agent = try SparkplugAgent(
            config: SparkplugAgentConfig.text(
                modbusPort: plant.port, brokerPort: broker.port, primaryHost: "Host1", metricsPerMessage: 25,
                messagesPerSecond: 4))
        let host = try HostRecorder(port: broker.port, directory: agent.dir.path, hostID: "Host1")
        defer { host.stop() }
        try agent.start()
        defer { agent.stop() }
        func backlog() -> Int { ((try? agent.mqttStatus())?["backlog"] as? Int) ?? -1 }

        try host.waitFor("births and live data") { ms in ms.filter { $0.kind == "DDATA" && !$0.isHistorical }.count > 5
        }
        #expect(eventually(timeout: 30) { backlog() == 0 }, "the start-up backlog drains")

        // Outage 1.
        broker.stop()
        usleep(20_000_000)
        let status = try agent.mqttStatus()
        #expect(status["connected"] as? Bool == false)
        let stored = status["backlog"] as? Int ?? 0
        #expect(stored > 500, "20 s of five changing tags at 10 Hz went to SQLite (\(stored))")
        let restart1 = nowMs()
        try broker.start()
        #expect(eventually(timeout: 60) { backlog() == 0 }, "replay 1 drains; backlog \(backlog())")
        let drained1 = nowMs()

        // Outage 2, and kill -9 as soon as its replay has started.
        broker.stop()
        usleep(6_000_000)
        let restart2 = nowMs()
        try broker.start()
        try host.waitFor("replay 2 starts", timeout: 30) { ms in
            ms.contains { $0.isHistorical && $0.receivedAt > restart2 }
        }
        let left = backlog()
        agent.kill9()
        #expect(left > 0, "killed while \(left) samples were still queued")
        try agent.start()
        #expect(eventually(timeout: 60) { backlog() == 0 }, "replay 2 finishes after the restart")
        try host.waitFor("live data after the restart") { ms in ms.last?.kind == "DDATA" }
        #expect(agent.stop() == 0)

        let messages = host.messages
        let reader = try HistoryReader(path: agent.historyPath)
        defer { reader.close() }
        var history: [String: [Point]] = [:]
        for tag in Self.compared {
            history[tag] = try reader.samples(tag: tag, since: 0).compactMap { row in
                let v: Float
                switch row.value {
                case .real(let d): v = Float(d)
                case .integer(let i): v = Float(i)
                default: return nil
                }
                return Point(tag: tag, timestamp: row.timestamp / 1000, value: v)
            }
        }
        func points(_ m: Received) -> [Point] {
            m.metrics.compactMap { x in
                guard let name = x["name"] as? String, Self.compared.contains(name), let ts = x.int("timestamp"),
                    let v = x.double("value")
                else { return nil }
                return Point(tag: name, timestamp: ts, value: Float(v))
            }
        }
        /// The history samples that fell between the last live value of the outage's start and the first NBIRTH after
        /// `restart`: what the agent had to store. (After that birth data is live; a live QoS 0 sample still in
        /// the agent's memory when it is killed is lost like any in-memory state, which is not what this checks.)
        func outage(_ restart: Int64) -> [String: [Point]] {
            let live = messages.filter { $0.kind == "DDATA" && !$0.isHistorical }
            let birth = messages.first { $0.kind == "NBIRTH" && $0.receivedAt > restart }?.metric("bdSeq")?
                .int("timestamp")
            var out: [String: [Point]] = [:]
            for tag in Self.compared {
                // Live data still arrives while the broker shuts down; none can arrive before it is back.
                let before = live.filter { $0.receivedAt < restart }.flatMap(points).filter { $0.tag == tag }
                let after = live.filter { $0.receivedAt > restart }.flatMap(points).filter { $0.tag == tag }
                guard let lo = before.map(\.timestamp).max(), var hi = after.map(\.timestamp).min() else { continue }
                if let birth { hi = min(hi, birth) }
                out[tag] = history[tag]!.filter { $0.timestamp > lo && $0.timestamp < hi }
            }
            return out
        }
        let replay1 = messages.filter { $0.isHistorical && $0.receivedAt > restart1 && $0.receivedAt <= drained1 }
        let replay2 = messages.filter { $0.isHistorical && $0.receivedAt > restart2 }
        #expect(replay1.allSatisfy { $0.qos == 1 }, "historical data travels at QoS 1")

        let window1 = outage(restart1)
        #expect(window1.values.map(\.count).reduce(0, +) > 500)
        for tag in Self.compared {
            let expected = window1[tag] ?? []
            let got = replay1.flatMap(points).filter { $0.tag == tag }
            // Exactly the stored samples, once each and in time order.
            // Once each, in time order.
            #expect(got.count == Set(got).count, "\(tag): duplicates in the first replay")
            #expect(zip(got, got.dropFirst()).allSatisfy { $0.timestamp < $1.timestamp }, "\(tag): out of order")
            #expect(Set(got).isSubset(of: Set(expected)), "\(tag): replayed samples that history does not have")
            // Known loss window (see docs/decisions/0011): a live QoS 0 sample handed to libmosquitto in the instant
            // the broker dies is lost. Only samples of the first poll cycle after the last live receipt may miss.
            let missing = expected.filter { !got.contains($0) }
            let firstStored = expected.first?.timestamp ?? 0
            #expect(
                missing.allSatisfy { $0.timestamp <= firstStored + 150 },
                "\(tag): \(missing.count) of \(expected.count) samples missing: \(missing.prefix(5))")
        }

        let window2 = outage(restart2)
        #expect(window2.values.map(\.count).reduce(0, +) > 100)
        var duplicates = 0
        for tag in Self.compared {
            let expected = window2[tag] ?? []
            let got = replay2.flatMap(points).filter { $0.tag == tag }
            // The same known loss window as above at the start of this outage (live QoS 0 in flight when the
            // broker died); the kill during replay itself must lose nothing after it.
            let firstStored = expected.first?.timestamp ?? 0
            let missing = Set(expected).subtracting(got).filter { $0.timestamp > firstStored + 150 }
            #expect(
                missing.isEmpty,
                "\(tag): \(missing.count) samples never arrived: \(missing.sorted { $0.timestamp < $1.timestamp })")
            duplicates += got.count - Set(got).count
        }
        // At most the acknowledgement window (8 messages × 25 metrics) is sent twice.
        #expect(duplicates <= 200, "\(duplicates) duplicates")
        #expect(seqBreak(messages) == nil, "\(seqBreak(messages) ?? "")")
        #expect(!agent.log.contains("Fatal error"))
    }

    @Test func deviceCommandsAreCheckedWrittenAndAudited() throws {
        let plant = try noisyPlant()
        defer { plant.stop() }
        let broker = try MosquittoProcess()
        try broker.start()
        defer { broker.stop() }
        let agent = try SparkplugAgent(
            config: SparkplugAgentConfig.text(modbusPort: plant.port, brokerPort: broker.port))
        let host = try HostRecorder(port: broker.port, directory: agent.dir.path)
        defer { host.stop() }
        try agent.start()
        defer { agent.stop() }
        try host.waitFor("DBIRTH") { ms in ms.contains { $0.kind == "DBIRTH" } }
        func pump() throws -> Double { ((try plant.control(["cmd": "get"]))["v"] as! [Double])[0] }
        let before = try pump()

        try host.send(["cmd": "dcmd", "device": "plant", "metric": "tank1/level", "datatype": "Float", "value": 5.0])
        try host.send(["cmd": "dcmd", "device": "plant", "metric": "pump1/voltage", "datatype": "Float", "value": 12.0])
        try host.send([
            "cmd": "dcmd", "device": "plant", "metric": "pump1/voltage", "datatype": "Boolean", "value": true,
        ])
        try host.send(["cmd": "dcmd", "device": "plant", "metric": "pump1/voltage", "datatype": "String", "value": "7"])
        // Malformed: not protobuf, a device that does not exist, and a metric the node never declared.
        try host.send(["cmd": "raw", "topic": "spBv1.0/Plant1/NCMD/edge1", "hex": "120a01"])
        try host.send(["cmd": "raw", "topic": "spBv1.0/Plant1/DCMD/edge1/plant", "hex": "120a0102"])
        try host.send(["cmd": "dcmd", "device": "nosuch", "metric": "x", "datatype": "Float", "value": 1.0])
        try host.send(["cmd": "dcmd", "device": "plant", "metric": "nosuch", "datatype": "Float", "value": 1.0])
        let counted = eventually(timeout: 10) {
            let s = try? agent.mqttStatus()
            return (s?["commandsRefused"] as? Int ?? 0) >= 5 && (s?["commandsRejected"] as? Int ?? 0) >= 3
        }
        let counts = try agent.mqttStatus().filter { $0.key.hasPrefix("commands") }
        #expect(counted, "\(counts)")
        let s = try agent.mqttStatus()
        #expect(s["commandsWritten"] as? Int == 0)
        #expect(try pump() == before, "no refused write reached the PLC")

        try host.send(["cmd": "dcmd", "device": "plant", "metric": "pump1/voltage", "datatype": "Float", "value": 4.5])
        #expect(eventually(timeout: 10) { (try? pump()) == 4.5 }, "the accepted write reached the PLC")
        try host.waitFor("the new value in DDATA") { ms in
            ms.contains { m in
                m.kind == "DDATA" && !m.isHistorical
                    && m.metrics.contains { $0["name"] as? String == "pump1/voltage" && $0.double("value") == 4.5 }
            }
        }
        #expect((try agent.mqttStatus())["commandsWritten"] as? Int == 1)

        let audit = try agent.cli(["audit", "--json"])
        let rows = try JSONSerialization.jsonObject(with: Data(audit.stdout.utf8)) as? [[String: Any]] ?? []
        let ours = rows.filter { $0["source"] as? String == "sparkplug:Plant1/edge1" }
        func result(_ tag: String, _ value: String) -> [String] {
            ours.filter { $0["tag"] as? String == tag && $0["value"] as? String == value }.compactMap {
                $0["result"] as? String
            }
        }
        #expect(result("tank1/level", "float(5.0)") == ["refused"], "\(ours)")
        #expect(result("pump1/voltage", "float(12.0)") == ["refused"])
        #expect(result("pump1/voltage", "boolean(true)") == ["refused"])
        #expect(result("pump1/voltage", "string(\"7\")") == ["refused"])
        #expect(result("pump1/voltage", "float(4.5)") == ["ok"])
        #expect(
            ours.first { $0["tag"] as? String == "tank1/level" }?["detail"] as? String
                == "write refused: tag tank1/level is not configured as writable")
        #expect(agent.log.contains("DCMD refused"), "refusals are logged with the reason")

        // The device goes away: DDEATH; it comes back: DBIRTH.
        let births = host.count("DBIRTH")
        try plant.control(["cmd": "refuse", "seconds": 2])
        try host.waitFor("DDEATH") { ms in ms.contains { $0.kind == "DDEATH" } }
        try host.waitFor("DBIRTH again") { ms in ms.filter { $0.kind == "DBIRTH" }.count > births }
        #expect(seqBreak(host.messages) == nil, "\(seqBreak(host.messages) ?? "")")
        #expect(agent.process?.exitStatus() == nil, "still running")
    }
}
