import Foundation
import TestSupport
import Testing

/// `edgepilot diag bundle` against a running agent with a loop, the quadruple-tank simulator and a real broker: the
/// archive holds what a support ticket needs, and no password or private key, even one pasted into the config.
@Suite(.serialized) struct DiagBundleTests {
    static let password = "diag-S3cret-pw-0417"
    static let keyBody = "MHcCAQEEIDiagBundleMustNeverCarryThisKeyMaterial0417"

    static func config(modbusPort: Int, brokerPort: Int, dir: String) throws -> String {
        let passwordFile = dir + "/broker.password"
        try (password + "\n").write(toFile: passwordFile, atomically: true, encoding: .utf8)
        // A technician pasted a key into a comment: the bundle must not carry it.
        let pasted = """
            # -----BEGIN EC PRIVATE KEY-----
            # \(keyBody)
            # -----END EC PRIVATE KEY-----

            """
        return pasted
            + LoopDeviceTests.config(modbusPort: modbusPort, brokerPort: brokerPort).replacingOccurrences(
                of: "    - url: mqtt://127.0.0.1:\(brokerPort)\n",
                with:
                    "    - url: mqtt://127.0.0.1:\(brokerPort)\n      username: edge\n      password_file: \(passwordFile)\n"
            )
    }

    /// Extracts `archive` and returns the bundle folder's files by relative path.
    func extract(_ archive: String, into dir: String) throws -> [String: String] {
        let result = try runCommand("/usr/bin/tar", ["-xzf", archive, "-C", dir])
        guard result.status == 0 else { throw PeerError("tar: \(result.stderr)") }
        let folders = try FileManager.default.contentsOfDirectory(atPath: dir).filter {
            $0.hasPrefix("edgepilot-diag-")
        }
        let root = try #require(folders.first.map { dir + "/" + $0 })
        var files: [String: String] = [:]
        let walker = FileManager.default.enumerator(atPath: root)
        while let path = walker?.nextObject() as? String {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: root + "/" + path, isDirectory: &isDirectory),
                !isDirectory.boolValue
            {
                files[path] = try String(contentsOfFile: root + "/" + path, encoding: .utf8)
            }
        }
        return files
    }

    @Test func bundleHoldsTheAgentsStateAndNoSecrets() throws {
        let dir = try TemporaryDirectory("edgepilot-diag")
        defer { dir.remove() }
        let scenario = try SparkplugScenario(
            plant: QuadTank(extraArguments: ["--initial", "12.4", "12.7", "1.8", "1.4"])
        ) { plantPort, brokerPort in
            try! Self.config(modbusPort: plantPort, brokerPort: brokerPort, dir: dir.path)
        }
        defer { scenario.stop() }
        let agent = scenario.agent
        #expect(eventually { (try? agent.mqttStatus())?["sessionState"] as? String == "online" })
        // An operator takes the loop to manual and back: the mode history must show both.
        let manual = try agent.cli(["loop", "tanks", "mode", "manual"])
        #expect(manual.status == 0, "\(manual.status): \(manual.stderr)\n\(agent.log.suffix(2000))")
        #expect(
            eventually { (try? agent.cli(["read", "loop/tanks/mode", "--json"]))?.stdout.contains("manual") == true })
        #expect(try agent.cli(["loop", "tanks", "mode", "pid"]).status == 0)
        var lastHistory = ""
        #expect(
            eventually(timeout: 10) {
                lastHistory = (try? agent.cli(["history", "loop/tanks/mode", "--since", "10m"]))?.stdout ?? ""
                let rows = lastHistory.split(separator: "\n")
                return rows.contains { $0.contains(" manual ") } && rows.last?.contains(" pid ") == true
            }, "\(lastHistory)")

        let archive = dir.path + "/support.tar.gz"
        let result = try agent.cli(["diag", "bundle", "--since", "10m", "-o", archive])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("collecting agent/status.json"), "progress: \(result.stderr)")
        #expect(result.stdout.contains("wrote \(archive)"), "\(result.stdout)")
        let mode = try FileManager.default.attributesOfItem(atPath: archive)[.posixPermissions] as? Int
        #expect(mode == 0o600)

        let out = dir.path + "/extracted"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let files = try extract(archive, into: out)
        for name in [
            "manifest.json", "system.txt", "agent/status.json", "agent/health.json", "agent/loops.json",
            "agent/mqtt.json", "agent/tags.json", "agent/audit.json", "agent/mode-history.json",
            "config/edgepilot.yaml", "journal.txt",
        ] {
            #expect(files[name] != nil, "\(name) missing; have \(files.keys.sorted())")
        }
        let manifest =
            try JSONSerialization.jsonObject(with: Data((files["manifest.json"] ?? "").utf8)) as? [String: Any]
        let listed = (manifest?["files"] as? [[String: Any]]) ?? []
        #expect(listed.count == files.count - 1)
        #expect(listed.allSatisfy { $0["error"] == nil || $0["path"] as? String == "journal.txt" }, "\(listed)")

        // The audit trail has the two mode commands, the mode history both transitions, in order.
        #expect(files["agent/audit.json"]?.contains("loop/tanks/mode") == true)
        let history = try JSONSerialization.jsonObject(with: Data((files["agent/mode-history.json"] ?? "").utf8))
        let modes = ((history as? [String: Any])?["loop/tanks/mode"] as? [[String: Any]])?.compactMap {
            ($0["value"] as? [String: Any])?.values.first as? String ?? $0["value"] as? String
        }
        #expect(modes?.suffix(2) == ["manual", "pid"], "\(String(describing: modes))")
        #expect(files["agent/mqtt.json"]?.contains("online") == true)
        #expect(files["agent/status.json"]?.contains("plant") == true)

        // No secret in any file; the config keeps its shape and names the password file, not its content.
        for (name, text) in files {
            #expect(!text.contains(Self.password), "the password is in \(name)")
            #expect(!text.contains(Self.keyBody), "key material is in \(name)")
            #expect(!text.contains("PRIVATE KEY-----"), "a private key block is in \(name)")
        }
        #expect(files["config/edgepilot.yaml"]?.contains("password_file: \(dir.path)/broker.password") == true)
        #expect(files["config/edgepilot.yaml"]?.contains("<redacted>") == true)

        // With the agent stopped, what can be gathered without it still is, and the manifest says why the rest is not.
        agent.stop()
        let offline = dir.path + "/offline.tar.gz"
        let down = try runCommand(
            agent.binary, ["diag", "bundle", "-o", offline, "--socket", agent.socket, "--config", agent.configPath])
        #expect(down.status == 0, "\(down.stderr)")
        let out2 = dir.path + "/offline"
        try FileManager.default.createDirectory(atPath: out2, withIntermediateDirectories: true)
        let offlineFiles = try extract(offline, into: out2)
        #expect(offlineFiles["config/edgepilot.yaml"] != nil)
        #expect(offlineFiles["agent/status.json"] == nil)
        #expect(offlineFiles["manifest.json"]?.contains("agent unreachable") == true)
        for (name, text) in offlineFiles {
            #expect(!text.contains(Self.password) && !text.contains(Self.keyBody), "secret in offline \(name)")
        }
    }
}
