import Foundation
import TestSupport
import Testing

/// The shipped unit file must load in systemd and keep its hardening (exposure ≤ 2.0).
@Suite struct SystemdUnitTests {
    let unit = repositoryRoot.appendingPathComponent("systemd/edgepilot.service")

    /// systemd-analyze checks that ExecStart exists, so verify a copy that points at the built binary.
    func unitWithBuiltBinary() throws -> (TemporaryDirectory, String) {
        let dir = try TemporaryDirectory()
        let text = try String(contentsOf: unit, encoding: .utf8)
            .replacingOccurrences(
                of: "/usr/local/bin/edgepilot", with: productsDirectory.appendingPathComponent("edgepilot").path)
        let path = dir.path + "/edgepilot.service"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return (dir, path)
    }

    @Test func unitVerifies() throws {
        let (dir, path) = try unitWithBuiltBinary()
        defer { dir.remove() }
        let result = try runCommand("/usr/bin/systemd-analyze", ["verify", path])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(!result.stderr.contains("edgepilot.service:"), "\(result.stderr)")
    }

    func exposure(_ path: String) throws -> Double {
        let result = try runCommand("/usr/bin/systemd-analyze", ["security", "--offline=true", path])
        let line = try #require(result.stdout.split(separator: "\n").first { $0.contains("Overall exposure level") })
        let number = line.split(separator: ":").last!.trimmingCharacters(in: .whitespaces).split(separator: " ").first!
        return try #require(Double(number), "\(line)")
    }

    @Test func unitExposureIsAtMostTwo() throws {
        let (dir, path) = try unitWithBuiltBinary()
        defer { dir.remove() }
        #expect(try exposure(path) <= 2.0)
        let service = try String(contentsOf: unit, encoding: .utf8)
        for limit in ["MemoryHigh=", "MemoryMax=", "TasksMax="] { #expect(service.contains("\n" + limit), "\(limit)") }
    }

    /// The shipped IP allow-list example is a valid drop-in for the unit, and applying it narrows the exposure.
    @Test func ipAllowExampleIsAValidDropInThatNarrowsTheUnit() throws {
        let (dir, path) = try unitWithBuiltBinary()
        defer { dir.remove() }
        let dropIn = try String(
            contentsOf: repositoryRoot.appendingPathComponent("systemd/ip-allow.conf"), encoding: .utf8)
        // A unit file may repeat [Service]; appending the drop-in is how systemd merges it.
        let merged = dir.path + "/merged/edgepilot.service"
        try FileManager.default.createDirectory(atPath: dir.path + "/merged", withIntermediateDirectories: true)
        try (String(contentsOfFile: path, encoding: .utf8) + "\n" + dropIn).write(
            toFile: merged, atomically: true, encoding: .utf8)
        let verify = try runCommand("/usr/bin/systemd-analyze", ["verify", merged])
        #expect(verify.status == 0 && !verify.stderr.contains("edgepilot.service:"), "\(verify.stderr)")
        #expect(try exposure(merged) < exposure(path))
    }

    @Test func sysusersDeclaresTheServiceUser() throws {
        let text = try String(
            contentsOf: repositoryRoot.appendingPathComponent("systemd/edgepilot.sysusers"), encoding: .utf8)
        #expect(text.contains("u edgepilot"))
        let service = try String(contentsOf: unit, encoding: .utf8)
        #expect(
            service.contains("User=edgepilot") && service.contains("Type=notify") && service.contains("WatchdogSec="))
    }
}
