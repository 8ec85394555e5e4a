import Foundation
import History
import TestSupport
import Testing

/// The history volume filling up under a running agent: a real 4 MiB tmpfs under the history database (the test
/// command runs as root, as CI does), filled to the last byte while the agent polls, controls and writes history.
@Suite(.serialized) struct HistoryFullDiskTests {
    /// The writer keeps up to `maxBatchRows` changes in memory and retries; the feed drops and counts the oldest
    /// beyond that. Polling and the loop go on, the journal hears of the failure once and of the return once, and
    /// what was held in memory reaches the file once space returns, which stays intact.
    @Test func aFullHistoryDiskKeepsTheLoopRunningSaysSoOnceAndLosesNothingItHeld() throws {
        let plant = try TankScenario.plant(["--noise", "0.05", "--seed", "7"])
        defer { plant.stop() }
        let volume = try SmallVolume(prefix: "edgepilot-historyfull")
        defer { volume.unmount() }
        let database = volume.path + "/history.db"
        let config = TankScenario.config(port: plant.port).replacingOccurrences(
            of: "path: @DIR@/history.db", with: "path: \(database)")
        let agent = try AgentProcess(config: config)
        defer {
            agent.stop()
            agent.dir.remove()
        }
        func status() -> [String: Any] { ((try? agent.json(["status"])) as? [String: Any]) ?? [:] }
        func history() -> [String: Any] { status()["history"] as? [String: Any] ?? [:] }
        func commits() -> Int { history()["commits"] as? Int ?? -1 }
        func polls() -> Int {
            let devices = status()["devices"] as? [[String: Any]] ?? []
            return devices.first { $0["name"] as? String == "plant" }?["polls"] as? Int ?? -1
        }
        func plantWrites() -> Int { ((try? plant.control(["cmd": "writes"]))?["writes"] as? [Any])?.count ?? -1 }
        func lines(_ text: String) -> [String] { agent.log.components(separatedBy: "\n").filter { $0.contains(text) } }
        #expect(eventually(timeout: 15) { agent.mode() == "mpc" && commits() > 0 }, "\(agent.log)")

        // Fill the volume to the last byte.
        try volume.fill()
        let fullAt = Int64(Date().timeIntervalSince1970 * 1_000_000)

        // Commits fail (the WAL may take a few more first).
        var stalled = commits()
        let failing = eventually(timeout: 20) {
            let c = commits()
            defer { stalled = c }
            return history()["lastError"] as? String != nil && c == stalled
        }
        #expect(failing, "history kept committing on a full disk: \(history())")
        let polled = polls()
        let written = plantWrites()
        Thread.sleep(forTimeInterval: 4)
        // Polling and control go on.
        #expect(polls() > polled + 40, "polls \(polled) → \(polls())")
        #expect(plantWrites() > written, "the loop stopped writing: \(written) → \(plantWrites())")
        #expect(agent.mode() == "mpc", "\(agent.mode() ?? "-")")
        #expect(agent.isRunning, "a full disk must not stop the agent: \(agent.log.suffix(2000))")
        let full = history()
        #expect((full["lastError"] as? String ?? "").contains("full"), "\(full)")
        let failed = lines("history writes failing")
        #expect(failed.count == 1, "the journal hears of it once: \(failed)")
        #expect(failed.first?.contains("kept in memory") == true, "\(failed.first ?? "")")

        // Space returns: what was held is written.
        try volume.free()
        let resumedAt = Int64(Date().timeIntervalSince1970 * 1_000_000)
        #expect(eventually(timeout: 15) { commits() > stalled && history()["pending"] as? Int ?? 1 < 100 })
        #expect(eventually(timeout: 5) { lines("history writes resumed").count == 1 }, "\(agent.log.suffix(2000))")
        #expect(history()["dropped"] as? Int == 0, "\(history())")
        Thread.sleep(forTimeInterval: 1)
        #expect(agent.stop() == 0)
        #expect(lines("history writes failing").count == 1)

        let check = try runCommand("/usr/bin/sqlite3", [database, "PRAGMA integrity_check;"])
        #expect(check.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "ok", "\(check.stdout)\(check.stderr)")
        // Nothing the writer held is missing: the noisy level changes every poll (50 ms), so a gap longer than a
        // second inside the full stretch is a loss.
        let reader = try HistoryReader(path: database)
        defer { reader.close() }
        let rows = try reader.samples(tag: "tank1/level", since: fullAt - 2_000_000, until: resumedAt + 1_000_000)
        let gaps = zip(rows, rows.dropFirst()).map { $1.timestamp - $0.timestamp }.filter { $0 > 1_000_000 }
        #expect(rows.count > 60, "\(rows.count) samples of tank1/level across the full stretch")
        #expect(gaps.isEmpty, "gaps (µs) in history across the full stretch: \(gaps)")
        print("full history disk: \(rows.count) samples kept across the full stretch, journal \(failed.first ?? "")")
    }
}
