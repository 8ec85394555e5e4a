import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

private func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

/// `sparkplug.replay.delivery` and `sparkplug.compression` against mosquitto and the Tahu-decoding host
/// (docs/decisions/0038-replay-delivery-and-payload-compression.md).
@Suite(.serialized) struct ReplayDeliveryTests {
    /// Starts the plant, broker, host (Primary Host `Host1`) and agent, waits for live data and an empty backlog,
    /// stops the broker for `outage` seconds and starts it again; returns the scenario and when the broker came back.
    private func outage(
        seconds: UInt32, metricsPerMessage: Int, messagesPerSecond: Double, delivery: String
    ) throws -> (SparkplugScenario, Int64) {
        let scenario = try SparkplugScenario(plant: noisyPlant(), host: .init(hostID: "Host1")) {
            plantPort, brokerPort in
            SparkplugAgentConfig.text(
                modbusPort: plantPort, brokerPort: brokerPort, primaryHost: "Host1",
                metricsPerMessage: metricsPerMessage, messagesPerSecond: messagesPerSecond,
                replayExtra: ["delivery: \(delivery)"])
        }
        let agent = scenario.agent
        func backlog() -> Int { (try? agent.mqttStatus())?["backlog"] as? Int ?? -1 }
        try scenario.host.waitFor("births and live data") { ms in
            ms.filter { $0.kind == "DDATA" && !$0.isHistorical }.count > 5
        }
        #expect(eventually(timeout: 30) { backlog() == 0 }, "the start-up backlog drains")
        scenario.broker.stop()
        usleep(seconds * 1_000_000)
        #expect(backlog() > 100, "the outage went to the queue")
        let restart = nowMs()
        try scenario.broker.start()
        return (scenario, restart)
    }

    /// in_order: after an outage, history is drained before live data resumes, so the host receives every
    /// historical sample before any live sample with a later timestamp; nothing is lost, and `mqtt status` shows
    /// the mode, the configured rate and the measured drain while live data is held.
    @Test func inOrderDrainsHistoryBeforeLiveDataResumes() throws {
        let (scenario, restart) = try outage(
            seconds: 8, metricsPerMessage: 10, messagesPerSecond: 20, delivery: "in_order")
        defer { scenario.stop() }
        let agent = scenario.agent
        func status() -> [String: Any] { (try? agent.mqttStatus()) ?? [:] }
        #expect(eventually(timeout: 20) { status()["liveHeld"] as? Bool == true }, "live data held during the drain")
        let during = status()
        #expect(during["replayDelivery"] as? String == "in_order")
        #expect(during["replayMetricsPerMessage"] as? Int == 10)
        #expect(during["replayMessagesPerSecond"] as? Double == 20)
        #expect(eventually(timeout: 20) { (status()["replayDrainRate"] as? Double ?? 0) > 0 }, "drain measured")
        #expect(eventually(timeout: 60) { status()["backlog"] as? Int == 0 }, "the backlog drains")
        #expect(eventually(timeout: 20) { status()["liveHeld"] as? Bool == false }, "live data resumes")
        try scenario.host.waitFor("live data after the drain") { ms in
            ms.filter { $0.kind == "DDATA" && !$0.isHistorical && $0.receivedAt > restart }.count > 5
        }
        let text = try agent.cli(["mqtt", "status"])
        #expect(text.stdout.contains("replay: delivery in_order"), "\(text.stdout)")
        let endAt = nowMs()
        #expect(agent.stop() == 0)

        let d = try Delivery(historyPath: agent.historyPath, messages: scenario.host.messages)
        let missing = d.missing(from: 0, to: endAt - 500)
        #expect(missing.isEmpty, "never arrived: \(d.summary(missing))")
        let after = d.data.filter { $0.receivedAt >= restart }
        #expect(after.contains { $0.isHistorical }, "the outage was replayed")
        // Every historical sample arrives before any live sample with a later timestamp, whatever the tag.
        var newestLive: Int64 = .min
        var late: [Point] = []
        for m in after {
            let points = Delivery.points(m)
            if m.isHistorical {
                late += points.filter { $0.timestamp < newestLive }
            } else {
                newestLive = max(newestLive, points.map(\.timestamp).max() ?? .min)
            }
        }
        #expect(late.isEmpty, "historical after newer live data: \(d.summary(late))")
    }

    /// alongside (the default): live data keeps flowing while the backlog drains, nothing is lost, and the drain
    /// keeps to `messages_per_second` as the host measures it.
    @Test func alongsideKeepsLiveDataFlowingAndHoldsTheRate() throws {
        let rate = 10.0
        let (scenario, restart) = try outage(
            seconds: 8, metricsPerMessage: 5, messagesPerSecond: rate, delivery: "alongside")
        defer { scenario.stop() }
        let agent = scenario.agent
        func status() -> [String: Any] { (try? agent.mqttStatus()) ?? [:] }
        let during = status()
        #expect(during["replayDelivery"] as? String == "alongside")
        #expect(during["liveHeld"] as? Bool == false)
        #expect(eventually(timeout: 90) { status()["backlog"] as? Int == 0 }, "the backlog drains")
        try scenario.host.waitFor("live data after the drain") { ms in
            ms.last?.kind == "DDATA" && ms.last?.isHistorical == false
        }
        let endAt = nowMs()
        #expect(agent.stop() == 0)

        let d = try Delivery(historyPath: agent.historyPath, messages: scenario.host.messages)
        let missing = d.missing(from: 0, to: endAt - 500)
        #expect(missing.isEmpty, "never arrived: \(d.summary(missing))")
        let replay = d.historical.filter { $0.receivedAt >= restart }
        let first = try #require(replay.first).receivedAt
        let last = try #require(replay.last).receivedAt
        let liveDuring = d.live.filter { $0.receivedAt > first && $0.receivedAt < last }
        #expect(liveDuring.count >= 10, "live messages during the drain: \(liveDuring.count)")
        // The rate as the host measured it: n messages over their span. The token bucket allows a burst of
        // max(1, rate / 10) messages; 10 % on top for the receive times the host takes from its own clock.
        let span = Double(last - first) / 1000
        let bound = 1.1 * rate * span + 2
        #expect(Double(replay.count - 1) <= bound, "\(replay.count) replay messages in \(span) s at \(rate)/s")
        // And it did not crawl either (a generous bound: a quarter of the rate).
        #expect(Double(replay.count - 1) >= 0.25 * rate * span, "\(replay.count) replay messages in \(span) s")
    }

    /// `compression: deflate | gzip` publishes NBIRTH, DBIRTH and DDATA compressed as MQTT Engine reads them (the
    /// Tahu host inflates them with Python's zlib and gzip); the NDEATH stays plain; off (the default) sends plain
    /// payloads. `mqtt watch` shows the decompressed content.
    @Test(arguments: ["off", "deflate", "gzip"])
    func compressedBirthsAndDataDecodeAtTheHost(_ compression: String) throws {
        let scenario = try SparkplugScenario(plant: noisyPlant()) { plantPort, brokerPort in
            SparkplugAgentConfig.text(
                modbusPort: plantPort, brokerPort: brokerPort,
                sparkplugExtra: compression == "off" ? "" : "  compression: \(compression)")
        }
        defer { scenario.stop() }
        let agent = scenario.agent
        let host = scenario.host
        try host.waitFor("births and data") { ms in ms.filter { $0.kind == "DDATA" }.count > 3 }
        let status = try agent.mqttStatus()
        #expect(status["compression"] as? String == compression)
        let watch = try runCommand(
            agent.binary, ["mqtt", "watch", "--config", agent.configPath, "--json", "--count", "1", "--seconds", "15"])
        #expect(watch.status == 0, "\(watch.stderr)")
        let line = try #require(
            try JSONSerialization.jsonObject(with: Data(watch.stdout.utf8)) as? [String: Any], "\(watch.stdout)")
        #expect((line["metrics"] as? [[String: Any]])?.isEmpty == false, "\(watch.stdout)")
        let algorithm: String? = compression == "off" ? nil : compression.uppercased()
        #expect(line["compressed"] as? String == algorithm, "\(watch.stdout)")
        #expect(agent.stop() == 0)
        try host.waitFor("NDEATH") { ms in ms.contains { $0.kind == "NDEATH" } }

        #expect(!host.entries.contains { $0["error"] != nil }, "every payload decoded")
        let messages = host.messages
        for kind in ["NBIRTH", "DBIRTH", "DDATA"] {
            let of = messages.filter { $0.kind == kind }
            #expect(!of.isEmpty && of.allSatisfy { $0.compressed == algorithm }, "\(kind) compressed as \(compression)")
            if algorithm != nil {
                #expect(of.allSatisfy { $0.wrapperSeq == $0.seq }, "the wrapper carries the payload's seq")
            }
        }
        #expect(messages.filter { $0.kind == "NDEATH" }.allSatisfy { $0.compressed == nil }, "deaths stay plain")
        let dbirth = try #require(messages.first { $0.kind == "DBIRTH" })
        #expect(dbirth.metric("tank1/level") != nil, "the birth's metrics decode")
        #expect(seqBreak(messages) == nil)
    }
}
