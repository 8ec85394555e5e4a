import Foundation
import TestSupport
import Testing

private func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

/// kill -9 of the agent again and again at random points of a broker outage and of the replay after it, restarted
/// each time. `StoreAndForwardAndCommandTests.aMinuteOfOutageAndAKillDuringReplayLoseNothing` kills once, right at
/// the start of a replay; here the kills fall anywhere, several times over the same history file.
@Suite(.serialized) struct KillRoundsTests {
    @Test func fiveKillsDuringOutagesAndReplaysLoseNothingCommitted() throws {
        let rounds = 5
        // With a Primary Host the agent publishes only while the recording host is subscribed (its STATE is
        // online): what the broker takes while the host reconnects after a broker restart would be lost to it.
        let scenario = try SparkplugScenario(plant: noisyPlant(), host: .init(hostID: "Host1")) {
            plantPort, brokerPort in
            SparkplugAgentConfig.text(
                modbusPort: plantPort, brokerPort: brokerPort, primaryHost: "Host1", metricsPerMessage: 50,
                messagesPerSecond: 5)
        }
        defer { scenario.stop() }
        let broker = scenario.broker
        let agent = scenario.agent
        let host = scenario.host
        func status() -> [String: Any] { (try? agent.mqttStatus()) ?? [:] }
        func backlog() -> Int { status()["backlog"] as? Int ?? -1 }
        func online() -> Bool { status()["sessionState"] as? String == "online" }

        try host.waitFor("births and live data") { ms in ms.filter { $0.kind == "DDATA" && !$0.isHistorical }.count > 5
        }
        #expect(eventually(timeout: 30) { backlog() == 0 }, "the start-up backlog drains")

        var generator = SystemRandomNumberGenerator()
        var kills: [Int64] = []
        var places: [String] = []
        func killAndRestart() throws {
            kills.append(nowMs())
            agent.kill9()
            try agent.start()
            // The control socket answers once the agent is up again.
            #expect(eventually(timeout: 15) { !status().isEmpty }, "the agent came back")
        }
        for round in 1...rounds {
            broker.stop()
            usleep(UInt32.random(in: 1_500_000...3_000_000, using: &generator))
            if round % 2 == 1 {
                // In the outage: what is stored is on disk, what was being stored dies with the process.
                try killAndRestart()
                places.append("outage")
                usleep(1_000_000)
            }
            let returnAt = nowMs()
            try broker.start()
            try host.waitFor("replay \(round) starts", timeout: 30) { ms in
                ms.contains { $0.isHistorical && $0.receivedAt > returnAt }
            }
            // Somewhere in the replay (it takes a few seconds at 250 samples a second).
            usleep(UInt32.random(in: 0...1_500_000, using: &generator))
            try killAndRestart()
            places.append(backlog() > 0 ? "replay" : "after replay")
        }
        #expect(eventually(timeout: 60) { online() && backlog() == 0 }, "everything stored is delivered: \(status())")
        let settledAt = nowMs()
        try host.waitFor("live data after the last restart") { ms in
            ms.contains { $0.kind == "DDATA" && !$0.isHistorical && $0.receivedAt > settledAt + 1000 }
        }
        let endAt = nowMs()
        #expect(agent.stop() == 0)
        try host.waitFor("NDEATH of the graceful stop") { ms in
            ms.contains { $0.kind == "NDEATH" && $0.receivedAt > endAt }
        }

        let check = try runCommand("/usr/bin/sqlite3", [agent.historyPath, "PRAGMA integrity_check;"])
        #expect(check.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "ok", "\(check.stdout)\(check.stderr)")
        let d = try Delivery(historyPath: agent.historyPath, messages: host.messages)
        // Excused at each kill: what history committed in the last moment but the agent had not sent yet (a live
        // sample in memory dies with the process). Everything else that history holds arrived.
        let killWindows = kills.map { ($0 - 300)...$0 }
        let missing = d.missing(from: 0, to: endAt - 500, excused: killWindows)
        #expect(missing.isEmpty, "never arrived: \(d.summary(missing))")
        let lostToKills = d.missing(from: 0, to: endAt - 500).count - missing.count
        // Nothing arrived that history does not hold (history loses its last uncommitted 100 ms on kill -9).
        let unknown = d.unknown(excused: kills.map { ($0 - 1000)...$0 })
        #expect(unknown.isEmpty, "not in history: \(d.summary(unknown))")
        // bdSeq only grows across restarts: a host never takes a new session's NDEATH for an old one's.
        let bdSeqs = d.messages.filter { $0.kind == "NBIRTH" }.compactMap { $0.metric("bdSeq")?.int("value") }
        #expect(bdSeqs.count >= rounds, "\(bdSeqs)")
        #expect(zip(bdSeqs, bdSeqs.dropFirst()).allSatisfy { $0 < $1 }, "bdSeq across restarts: \(bdSeqs)")
        #expect(d.qualityMismatches(d.data).isEmpty, "\(d.qualityMismatches(d.data).prefix(5))")
        print(
            "kill -9 rounds: \(kills.count) kills (\(places.joined(separator: ", "))), bdSeq \(bdSeqs), duplicates "
                + "\(d.duplicates), lost in the 300 ms before a kill \(lostToKills), lost otherwise 0")
        #expect(!agent.log.contains("Fatal error"))
    }
}
