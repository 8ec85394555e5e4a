import Foundation
import TestSupport
import Testing

/// `edgepilot health` when the history volume fills up: a real, small tmpfs under the history database (the test
/// command runs as root, as CI does), filled to the last byte while the agent writes history.
@Suite(.serialized) struct HealthFullDiskTests {
    @Test func aFullHistoryDiskIsCriticalAndClearsWhenSpaceReturns() throws {
        let plant = try QuadTank()
        defer { plant.stop() }
        let dir = try TemporaryDirectory("edgepilot-fulldisk")
        defer { dir.remove() }
        let volume = dir.path + "/volume"
        try FileManager.default.createDirectory(atPath: volume, withIntermediateDirectories: true)
        let mount = try runCommand("/bin/mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", volume])
        try #require(mount.status == 0, "mounting a tmpfs needs root: \(mount.stderr)")
        defer { _ = try? runCommand("/bin/umount", ["-l", volume]) }

        let config = DaemonEndToEndTests.config(port: plant.port).replacingOccurrences(
            of: "path: @DIR@/history.db", with: "path: \(volume)/history.db")
        let agent = try AgentProcess(config: config)
        defer { agent.dir.remove() }
        func disk() -> (exit: Int32, check: [String: Any]?) {
            let r = try? agent.cli(["health", "--json"])
            let report = r.flatMap { try? JSONSerialization.jsonObject(with: Data($0.stdout.utf8)) as? [String: Any] }
            let checks = report?["checks"] as? [[String: Any]] ?? []
            return (r?.status ?? -1, checks.first { $0["name"] as? String == "disk" })
        }
        #expect(eventually(timeout: 15) { disk().check?["status"] as? String == "OK" }, "\(String(describing: disk()))")

        // Fill the volume to the last byte.
        let filler = volume + "/filler"
        FileManager.default.createFile(atPath: filler, contents: nil)
        let handle = try #require(FileHandle(forWritingAtPath: filler))
        let chunk = Data(count: 64 * 1024)
        while (try? handle.write(contentsOf: chunk)) != nil {}
        try? handle.close()

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
        try FileManager.default.removeItem(atPath: filler)
        #expect(eventually(timeout: 15) { disk().check?["status"] as? String == "OK" }, "\(String(describing: disk()))")
        agent.stop()
    }
}
