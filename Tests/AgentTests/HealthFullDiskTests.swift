import Foundation
import TestSupport
import Testing

/// `edgepilot health` when the history volume fills up: a real, small tmpfs under the history database (the test
/// command runs as root, as CI does), filled to the last byte while the agent writes history.
@Suite(.serialized) struct HealthFullDiskTests {
    @Test func aFullHistoryDiskIsCriticalAndClearsWhenSpaceReturns() throws {
        let plant = try QuadTank()
        defer { plant.stop() }
        let volume = try SmallVolume(prefix: "edgepilot-fulldisk")
        defer { volume.unmount() }

        let config = DaemonEndToEndTests.config(port: plant.port).replacingOccurrences(
            of: "path: @DIR@/history.db", with: "path: \(volume.path)/history.db")
        let agent = try AgentProcess(config: config)
        defer { agent.dir.remove() }
        func disk() -> (exit: Int32, check: [String: Any]?) {
            let r = try? agent.cli(["health", "--json"])
            let report = r.flatMap { try? JSONSerialization.jsonObject(with: Data($0.stdout.utf8)) as? [String: Any] }
            let checks = report?["checks"] as? [[String: Any]] ?? []
            return (r?.status ?? -1, checks.first { $0["name"] as? String == "disk" })
        }
        #expect(eventually(timeout: 15) { disk().check?["status"] as? String == "OK" }, "\(String(describing: disk()))")

        try volume.fill()

        var last: (exit: Int32, check: [String: Any]?) = (0, nil)
        #expect(
            eventually(timeout: 15) {
                last = disk()
                return last.check?["status"] as? String == "CRIT" && last.exit == 2
            }, "\(String(describing: last))")
        #expect((last.check?["freePercent"] as? Double ?? 100) < 2)
        let text = try agent.cli(["health"])
        #expect(text.status == 2)
        #expect(text.stdout.contains("history disk"), "\(text.stdout)")
        #expect(agent.isRunning, "a full disk must not stop the agent: \(agent.log)")

        // Space returns: the verdict follows.
        try volume.free()
        #expect(eventually(timeout: 15) { disk().check?["status"] as? String == "OK" }, "\(String(describing: disk()))")
        agent.stop()
    }
}
