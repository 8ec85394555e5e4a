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

    @Test func unitExposureIsAtMostTwo() throws {
        let (dir, path) = try unitWithBuiltBinary()
        defer { dir.remove() }
        let result = try runCommand("/usr/bin/systemd-analyze", ["security", "--offline=true", path])
        let line = try #require(result.stdout.split(separator: "\n").first { $0.contains("Overall exposure level") })
        let number = line.split(separator: ":").last!.trimmingCharacters(in: .whitespaces).split(separator: " ").first!
        let exposure = try #require(Double(number))
        #expect(exposure <= 2.0, "\(line)")
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
