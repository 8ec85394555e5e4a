import Foundation
import History
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

private func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

/// The bounds of store-and-forward through the real agent, mosquitto and the independent host: an outage longer than
/// `max_samples`, the unconfirmed ring (`unconfirmed_samples`) overflowing under a frozen broker, and
/// `confirm_live: false`. What reached the host is compared sample by sample with the agent's history.
@Suite(.serialized) struct StoreAndForwardBoundsTests {
    /// Samples of `tag` history recorded with a timestamp (ms) after `since`.
    private func historyCount(_ agent: AgentProcess, tag: String = "tank1/level", since: Int64) -> Int {
        guard let reader = try? HistoryReader(path: agent.historyPath) else { return 0 }
        defer { reader.close() }
        return (try? reader.samples(tag: tag, since: since * 1000).count) ?? 0
    }

    /// The queue holds at most `max_samples`: an outage that stores twice as much drops the oldest half, counts the
    /// drop (`mqtt status`, once in the journal), and replays exactly the newest `max_samples`, with no gap inside
    /// them and none between them and the live data after the return.
    @Test func anOutageBeyondTheBoundKeepsTheNewestSamplesAndCountsTheDrop() throws {
        let bound = 1000
        // With a Primary Host, replay waits for its STATE: nothing is replayed before the host is back on the broker.
        let scenario = try SparkplugScenario(plant: noisyPlant(), host: .init(hostID: "Host1")) {
            plantPort, brokerPort in
            SparkplugAgentConfig.text(
                modbusPort: plantPort, brokerPort: brokerPort, primaryHost: "Host1", metricsPerMessage: 100,
                messagesPerSecond: 20,
                pollPeriod: "50ms", storeAndForwardExtra: ["max_samples: \(bound)"])
        }
        defer { scenario.stop() }
        let broker = scenario.broker
        let agent = scenario.agent
        let host = scenario.host
        func status() -> [String: Any] { (try? agent.mqttStatus()) ?? [:] }
        func int(_ key: String) -> Int { status()[key] as? Int ?? -1 }

        try host.waitFor("births and live data") { ms in ms.filter { $0.kind == "DDATA" && !$0.isHistorical }.count > 5
        }
        #expect(eventually(timeout: 30) { int("backlog") == 0 }, "the start-up backlog drains")
        #expect(int("dropped") == 0)

        broker.stop()
        let stoppedAt = nowMs()
        // Twice the bound stored: the queue dropped a whole bound's worth.
        #expect(eventually(timeout: 120) { int("dropped") >= bound }, "dropped \(int("dropped"))")
        let during = status()
        #expect(during["backlog"] as? Int == bound, "the queue stays at its bound: \(during)")
        #expect(during["backlogBytes"] as? Int == bound * 48, "\(during)")
        // The text report shows it too (it keeps growing: read its own figure).
        let text = try agent.cli(["mqtt", "status"]).stdout
        let shown = text.components(separatedBy: "dropped ").dropFirst().first.flatMap {
            Int($0.prefix { $0.isNumber })
        }
        #expect(shown ?? 0 >= bound, "\(text)")
        let restartAt = nowMs()
        try broker.start()
        #expect(
            eventually(timeout: 60) { int("backlog") == 0 }, "the kept window is replayed; backlog \(int("backlog"))")
        try host.waitFor("live data after the return") { ms in
            ms.contains { $0.kind == "DDATA" && !$0.isHistorical && $0.receivedAt > restartAt + 2000 }
        }
        let figures = status()
        let endAt = nowMs()
        #expect(agent.stop() == 0)
        try host.waitFor("NDEATH of the graceful stop") { ms in
            ms.contains { $0.kind == "NDEATH" && $0.receivedAt > endAt }
        }

        let d = try Delivery(historyPath: agent.historyPath, messages: host.messages)
        let replay = d.historical.filter { $0.receivedAt > restartAt }
        let replayed = replay.flatMap(Delivery.points)
        #expect(replayed.count == bound, "the replay is the kept window of \(bound) samples: \(replayed.count)")
        #expect(Set(replayed).count == replayed.count, "each kept sample once")
        #expect(Delivery.outOfOrder(replay).isEmpty, "replay out of order: \(Delivery.outOfOrder(replay))")
        // Per tag, the kept window is every sample history holds from its first replayed one on: nothing missing
        // inside it, and nothing missing after it (live data took over).
        let missing = d.missing(from: 0, to: endAt - 500)
        for tag in Delivery.compared {
            let window = replayed.filter { $0.tag == tag }.map(\.timestamp)
            guard let first = window.min(), let last = window.max() else {
                Issue.record("no replayed samples of \(tag)")
                continue
            }
            let inside = (d.history[tag] ?? []).filter { $0.timestamp >= first && $0.timestamp <= last }
            #expect(
                inside.count == window.count, "\(tag): \(inside.count) samples in history, \(window.count) replayed")
            let later = missing.filter { $0.tag == tag && $0.timestamp >= first }
            #expect(later.isEmpty, "\(tag): missing at or after the kept window: \(d.summary(later))")
            #expect(first > stoppedAt - 2000, "\(tag): the window starts in the outage, at \(first - stoppedAt) ms")
        }
        // The oldest went: what never arrived lies before the window, inside the outage, and is what was counted
        // (the count also holds the live samples requeued when the connection ended, which had arrived).
        let dropped = figures["dropped"] as? Int ?? -1
        let requeued = figures["liveRequeued"] as? Int ?? -1
        #expect(!missing.isEmpty, "an outage past the bound lost its oldest samples")
        #expect(missing.allSatisfy { $0.timestamp > stoppedAt - 2000 }, "\(d.summary(missing))")
        #expect(
            missing.count <= dropped && dropped <= missing.count + requeued,
            "dropped \(dropped), never arrived \(missing.count), requeued at the disconnect \(requeued)")
        #expect(d.unknown().isEmpty, "not in history: \(d.summary(d.unknown()))")
        let wrongQuality = d.qualityMismatches(replay)
        #expect(wrongQuality.isEmpty, "\(wrongQuality.prefix(5))")
        #expect(seqBreak(d.messages) == nil, "\(seqBreak(d.messages) ?? "")")
        // The journal says so once, not once per stored batch (ten a second).
        let lines = agent.log.components(separatedBy: "\n").filter { $0.contains("store-and-forward queue full") }
        #expect((1...2).contains(lines.count), "\(lines.count) journal lines: \(lines.prefix(3))")
        #expect(lines.first?.contains("max_samples \(bound)") == true, "\(lines.first ?? "")")
        #expect(
            agent.log.contains("store-and-forward queue empty again: \(dropped) oldest samples were dropped"),
            "the journal gives the total once the queue is empty: \(agent.log.suffix(1500))")
        print(
            "bound figures: dropped \(dropped), never arrived \(missing.count), requeued \(requeued), replayed "
                + "\(replayed.count), journal lines \(lines.count)")
    }

    /// A frozen broker (SIGSTOP) keeps the connection up and answers no receipt: the ring of unconfirmed live
    /// samples (256 here) fills, and its oldest quarters go to the queue while the connection still looks fine. The
    /// broker is then killed, so everything sent during the freeze is lost on the wire: every sample must still
    /// arrive, replayed from the queue.
    @Test func aFullUnconfirmedRingUnderAFrozenBrokerLosesNothing() throws {
        // Keepalives outlast the freeze: the ring overflows before anyone notices the broker is gone.
        let scenario = try SparkplugScenario(plant: noisyPlant(), host: .init(hostID: "Host1", keepalive: 120)) {
            plantPort, brokerPort in
            SparkplugAgentConfig.text(
                modbusPort: plantPort, brokerPort: brokerPort, primaryHost: "Host1", metricsPerMessage: 50,
                messagesPerSecond: 10,
                keepalive: "120s", storeAndForwardExtra: ["unconfirmed_samples: 256"])
        }
        defer { scenario.stop() }
        let broker = scenario.broker
        let agent = scenario.agent
        let host = scenario.host
        func status() -> [String: Any] { (try? agent.mqttStatus()) ?? [:] }
        func int(_ key: String) -> Int { status()[key] as? Int ?? -1 }
        func online() -> Bool { status()["sessionState"] as? String == "online" }

        try host.waitFor("births and live data") { ms in ms.filter { $0.kind == "DDATA" && !$0.isHistorical }.count > 5
        }
        #expect(eventually(timeout: 30) { int("backlog") == 0 })
        #expect(eventually(timeout: 10) { int("liveConfirmed") > 0 }, "receipts confirm live data")
        #expect(broker.log().contains("Received UNSUBSCRIBE from edgepilot-Plant1-edge1"), "receipts are UNSUBSCRIBEs")
        let connects = int("connects")
        #expect(int("liveRequeued") == 0)

        broker.pause()
        let frozenAt = nowMs()
        // Three quarters of the ring moved out (64 samples each) while the connection is still up.
        var peakUnconfirmed = 0
        let overflowed = eventually(timeout: 90) {
            let s = status()
            peakUnconfirmed = max(peakUnconfirmed, s["unconfirmed"] as? Int ?? 0)
            return s["liveRequeued"] as? Int ?? 0 >= 3 * 64
        }
        #expect(overflowed, "the ring overflowed: \(status())")
        let s = status()
        #expect(s["connected"] as? Bool == true && s["connects"] as? Int == connects, "no disconnect yet: \(s)")
        #expect(peakUnconfirmed <= 256, "the ring holds at most unconfirmed_samples: \(peakUnconfirmed)")
        broker.kill()
        let killedAt = nowMs()
        try broker.start()
        #expect(eventually(timeout: 60) { online() && int("backlog") == 0 }, "back online, replay drained")
        try host.waitFor("live data after the return") { ms in
            ms.contains { $0.kind == "DDATA" && !$0.isHistorical && $0.receivedAt > killedAt + 2000 }
        }
        let figures = status()
        let endAt = nowMs()
        #expect(agent.stop() == 0)
        try host.waitFor("NDEATH of the graceful stop") { ms in
            ms.contains { $0.kind == "NDEATH" && $0.receivedAt > endAt }
        }

        let d = try Delivery(historyPath: agent.historyPath, messages: host.messages)
        let missing = d.missing(from: 0, to: endAt - 500)
        #expect(missing.isEmpty, "never arrived: \(d.summary(missing))")
        #expect(d.unknown().isEmpty, "not in history: \(d.summary(d.unknown()))")
        // What was sent live during the freeze died with the broker: the freeze reached the host only as replay.
        let livePoints: [Point] = d.live.flatMap(Delivery.points)
        let liveInFreeze = livePoints.filter { p in p.timestamp > frozenAt + 500 && p.timestamp < killedAt - 500 }
        #expect(liveInFreeze.isEmpty, "the frozen broker delivered \(liveInFreeze.count) live samples")
        let afterKill = d.historical.filter { $0.receivedAt > killedAt }
        #expect(Delivery.outOfOrder(afterKill).isEmpty, "replay out of order: \(Delivery.outOfOrder(afterKill))")
        #expect(d.qualityMismatches(d.data).isEmpty, "\(d.qualityMismatches(d.data).prefix(5))")
        print(
            "unconfirmed ring figures: requeued \(figures["liveRequeued"] ?? "-"), peak unconfirmed "
                + "\(peakUnconfirmed), duplicates \(d.duplicates), receipts \(figures["receiptRequests"] ?? "-")")
        #expect(!agent.log.contains("Fatal error"))
    }

    /// With `confirm_live: false` live data is plain QoS 0, as documented (Config/README.md, decision 0011): no
    /// receipt requests, no ring, and what a half-open link swallows is lost, not replayed; what the agent stored
    /// while it knew the broker was away is still replayed. A configured `unconfirmed_samples` is warned about.
    @Test func withoutConfirmLiveAHalfOpenLinkLosesLiveDataAndAnOutageDoesNot() throws {
        let scenario = try SparkplugScenario(plant: noisyPlant(), host: .init(hostID: "Host1", keepalive: 120)) {
            plantPort, brokerPort in
            SparkplugAgentConfig.text(
                modbusPort: plantPort, brokerPort: brokerPort, primaryHost: "Host1", metricsPerMessage: 50,
                messagesPerSecond: 10,
                confirmLive: false, keepalive: "120s", storeAndForwardExtra: ["unconfirmed_samples: 512"])
        }
        defer { scenario.stop() }
        let broker = scenario.broker
        let agent = scenario.agent
        let host = scenario.host
        func status() -> [String: Any] { (try? agent.mqttStatus()) ?? [:] }
        func int(_ key: String) -> Int { status()[key] as? Int ?? -1 }
        func online() -> Bool { status()["sessionState"] as? String == "online" }

        let warning = "unconfirmed_samples has no effect with confirm_live: false"
        let check = try runCommand(agent.binary, ["config", "check", agent.configPath])
        #expect(check.status == 0 && (check.stdout + check.stderr).contains(warning), "\(check.stdout)\(check.stderr)")
        #expect(agent.log.contains(warning), "the journal has the warning too")

        try host.waitFor("births and a few seconds of live data") { ms in
            ms.filter { $0.kind == "DDATA" && !$0.isHistorical }.count > 30
        }
        #expect(eventually(timeout: 30) { int("backlog") == 0 })
        let plain = status()
        #expect(plain["receiptRequests"] as? Int == 0 && plain["liveConfirmed"] as? Int == 0, "\(plain)")
        #expect(plain["unconfirmed"] as? Int == 0, "\(plain)")

        // A half-open link: the broker freezes, the agent keeps publishing into the socket, then the broker dies.
        broker.pause()
        let frozenAt = nowMs()
        #expect(eventually(timeout: 30) { historyCount(agent, since: frozenAt) >= 30 }, "polling goes on")
        broker.kill()
        let killedAt = nowMs()
        try broker.start()
        #expect(eventually(timeout: 60) { online() && int("backlog") == 0 }, "back online")
        // An outage the agent notices at once: stored and replayed.
        broker.stop()
        let stoppedAt = nowMs()
        #expect(eventually(timeout: 30) { int("backlog") >= 100 }, "stored during the outage: \(int("backlog"))")
        let restartAt = nowMs()
        try broker.start()
        #expect(eventually(timeout: 60) { online() && int("backlog") == 0 }, "back online, replay drained")
        try host.waitFor("live data after the return") { ms in
            ms.contains { $0.kind == "DDATA" && !$0.isHistorical && $0.receivedAt > restartAt + 2000 }
        }
        let figures = status()
        let endAt = nowMs()
        #expect(agent.stop() == 0)
        try host.waitFor("NDEATH of the graceful stop") { ms in
            ms.contains { $0.kind == "NDEATH" && $0.receivedAt > endAt }
        }

        let d = try Delivery(historyPath: agent.historyPath, messages: host.messages)
        let missing = d.missing(from: 0, to: endAt - 500)
        // Lost: what went live into the frozen broker, and into the stopping one in its last moment, until the agent
        // noticed (generous: a loaded machine); nothing else.
        let frozen = (frozenAt - 1000)...(killedAt + 3000)
        let stopping = (stoppedAt - 1000)...(stoppedAt + 3000)
        let elsewhere = missing.filter { !frozen.contains($0.timestamp) && !stopping.contains($0.timestamp) }
        #expect(elsewhere.isEmpty, "lost outside the freeze: \(d.summary(elsewhere))")
        let recorded: [Point] = Delivery.compared.flatMap { d.history[$0] ?? [] }
        let inFreeze = recorded.filter { p in p.timestamp > frozenAt + 500 && p.timestamp < killedAt - 500 }
        let lost = Set(missing)
        #expect(!inFreeze.isEmpty && inFreeze.allSatisfy { lost.contains($0) }, "the freeze was replayed")
        let replayed = d.historical.filter { $0.receivedAt > restartAt }.flatMap(Delivery.points)
        #expect(replayed.contains { $0.timestamp > stoppedAt }, "the outage was replayed")
        #expect(d.unknown().isEmpty, "not in history: \(d.summary(d.unknown()))")
        #expect(figures["receiptRequests"] as? Int == 0 && figures["liveRequeued"] as? Int == 0, "\(figures)")
        // Not even for the replays: a broker that refuses unexpected UNSUBSCRIBEs is what this mode is for.
        let unsubscribes = broker.log().components(separatedBy: "\n").filter { $0.contains("Received UNSUBSCRIBE") }
        #expect(unsubscribes.isEmpty, "the broker saw \(unsubscribes.count) receipt requests")
        print(
            "confirm_live false figures: lost to the half-open link \(missing.count) samples, \(inFreeze.count) of "
                + "them well inside the freeze; replayed after the outage \(replayed.count)")
    }
}
