import Foundation
import SparkplugPublisher
import TestSupport
import Testing

/// What MQTT Engine shows for an edge node beyond its tags (issue 13, item 3): the box's identity in NBIRTH and the
/// tag properties Ignition reads in DBIRTH, checked as the independent Tahu host decodes them from mosquitto.
@Suite(.serialized) struct EngineMetricsTests {
    /// NBIRTH names the hardware and the OS as the agent read them from this box; DBIRTH carries each tag's
    /// documentation, tooltip, readOnly, engUnit and engineering range under Ignition's property names.
    @Test func birthsCarryHostIdentityAndIgnitionTagProperties() throws {
        let scenario = try SparkplugScenario(plant: noisyPlant()) { plantPort, brokerPort in
            SparkplugAgentConfig.text(modbusPort: plantPort, brokerPort: brokerPort)
        }
        defer { scenario.stop() }
        try scenario.host.waitFor("NBIRTH and DBIRTH") { ms in ms.contains { $0.kind == "DBIRTH" } }
        let nbirth = try #require(scenario.host.messages.first { $0.kind == "NBIRTH" })
        let box = BoxFiles()
        #expect(nbirth.metric("Properties/Hardware Make")?["value"] as? String == box.vendor)
        #expect(nbirth.metric("Properties/Hardware Model")?["value"] as? String == box.product)
        #expect(nbirth.metric("Properties/OS")?["value"] as? String == box.prettyName)
        #expect(nbirth.metric("Properties/OS Version")?["value"] as? String == box.versionID)
        for name in ["Hardware Make", "Hardware Model", "OS", "OS Version"] {
            #expect(nbirth.metric("Properties/" + name)?["datatype_name"] as? String == "String")
        }
        #expect(nbirth.metric("Properties/Version")?["value"] as? String == "0.1.0", "beside the agent's version")

        let dbirth = try #require(scenario.host.messages.first { $0.kind == "DBIRTH" })
        let voltage = try #require(dbirth.metric("pump1/voltage"))
        #expect(voltage.property("documentation") as? String == "Pump 1 drive voltage")
        #expect(voltage.property("tooltip") as? String == "Pump 1 drive voltage")
        #expect(voltage.property("readOnly") as? Bool == false, "writable: true")
        #expect(voltage.property("engUnit") as? String == "V")
        #expect(voltage.property("engLow") as? Double == 0)
        #expect(voltage.property("engHigh") as? Double == 10)
        let level = try #require(dbirth.metric("tank1/level"))
        #expect(level.property("readOnly") as? Bool == true, "not writable")
        #expect(level.property("documentation") == nil && level.property("tooltip") == nil, "no description")
        let types = (voltage["properties"] as? [String: Any])?.compactMapValues { ($0 as? [String: Any])?["type"] }
        #expect(types?["readOnly"] as? Int == 11, "Boolean")
        #expect(types?["documentation"] as? Int == 12 && types?["tooltip"] as? Int == 12, "String")
    }

    /// NCMD `Node Control/Scan Rate` under `allow_list`: a value inside `scan_rate_limits` changes the poll period
    /// live, is audited with the connection as source and answered by NDATA; one outside is refused and audited,
    /// and the host's tag keeps the rate in force.
    @Test func scanRateIsSetLiveWithinLimitsAuditedAndReported() throws {
        let scenario = try SparkplugScenario(plant: noisyPlant()) { plantPort, brokerPort in
            SparkplugAgentConfig.text(
                modbusPort: plantPort, brokerPort: brokerPort,
                sparkplugExtra: """
                      commands: allow_list
                      command_allow_list: [pump1/voltage, "Node Control/Scan Rate"]
                      scan_rate_limits: {min: 50ms, max: 10s}
                    """)
        }
        defer { scenario.stop() }
        let agent = scenario.agent
        let host = scenario.host
        try host.waitFor("NBIRTH and DBIRTH") { ms in ms.contains { $0.kind == "DBIRTH" } }
        let nbirth = try #require(host.messages.first { $0.kind == "NBIRTH" })
        let declared = try #require(nbirth.metric("Node Control/Scan Rate"))
        #expect(declared["datatype_name"] as? String == "Int64")
        #expect(declared.int("value") == 100, "the fast group's configured period")

        func polls() -> Int {
            let devices = ((try? agent.json(["status"])) as? [String: Any])?["devices"] as? [[String: Any]] ?? []
            return devices.first { $0["name"] as? String == "plant" }?["polls"] as? Int ?? -1
        }
        func scanRateData() -> [Int64] {
            host.messages.filter { $0.kind == "NDATA" }.compactMap { $0.metric("Node Control/Scan Rate")?.int("value") }
        }
        func auditRows() throws -> [[String: Any]] {
            let audit = try agent.cli(["audit", "--json"])
            let rows = try JSONSerialization.jsonObject(with: Data(audit.stdout.utf8)) as? [[String: Any]] ?? []
            return rows.filter { $0["tag"] as? String == "Node Control/Scan Rate" }
        }

        try host.send(["cmd": "ncmd", "metric": "Node Control/Scan Rate", "datatype": "Int64", "value": 2000])
        try host.waitFor("NDATA with the new scan rate") { _ in scanRateData().contains(2000) }
        // At 2 s a period, a 4.5 s window holds at most 3 polls; at the configured 100 ms it would hold ~45.
        usleep(2_100_000)
        let before = polls()
        usleep(4_500_000)
        let during = polls() - before
        #expect(during >= 1 && during <= 3, "polls in 4.5 s at 2000 ms: \(during)")
        let source = "sparkplug:host=none,broker=mqtt://127.0.0.1:\(scenario.broker.port),auth=none"
        #expect(eventually(timeout: 10) { (try? auditRows())?.contains { $0["result"] as? String == "ok" } == true })
        let ok = try #require(try auditRows().first { $0["result"] as? String == "ok" })
        #expect(ok["source"] as? String == source, "\(ok)")
        #expect((ok["detail"] as? String ?? "").contains("2000 ms"), "\(ok)")

        // Below the minimum: refused and audited; the host keeps the rate in force (nothing changed, so no NDATA).
        try host.send(["cmd": "ncmd", "metric": "Node Control/Scan Rate", "datatype": "Int64", "value": 10])
        #expect(
            eventually(timeout: 10) { (try? auditRows())?.contains { $0["result"] as? String == "refused" } == true })
        #expect(scanRateData().last == 2000 && !scanRateData().contains(10))
        let refused = try #require(try auditRows().first { $0["result"] as? String == "refused" })
        #expect((refused["detail"] as? String ?? "").contains("scan_rate_limits"), "\(refused)")
        #expect(refused["source"] as? String == source)

        // Back to a fast rate: applied at once, not after the 2 s wait already scheduled.
        try host.send(["cmd": "ncmd", "metric": "Node Control/Scan Rate", "datatype": "Int64", "value": 100])
        try host.waitFor("NDATA with 100 ms") { _ in scanRateData().last == 100 }
        let fast = polls()
        #expect(eventually(timeout: 3) { polls() - fast >= 10 }, "polling at 100 ms again")
        let status = try agent.mqttStatus()
        #expect(status["commandsWritten"] as? Int == 2)
    }

    /// `startup_delay_max`: the first CONNECT waits a random delay up to it, shown in `mqtt status` (JSON and text);
    /// nothing reaches the broker before it ends, the births follow after.
    @Test func firstConnectWaitsARandomStartupDelayShownInStatus() throws {
        let scenario = try SparkplugScenario(plant: noisyPlant(), startAgent: false) { plantPort, brokerPort in
            SparkplugAgentConfig.text(
                modbusPort: plantPort, brokerPort: brokerPort, sparkplugExtra: "  startup_delay_max: 3s\n")
        }
        defer { scenario.stop() }
        let launched = Int64(Date().timeIntervalSince1970 * 1000)
        try scenario.agent.start()
        let status = try scenario.agent.mqttStatus()
        let delay = try #require(status["startupDelay"] as? Int)
        #expect((0...3000).contains(delay))
        let connectAt = try #require((status["firstConnectAt"] as? NSNumber)?.int64Value) / 1000
        #expect(connectAt >= launched + Int64(delay), "the delay counts from the agent's start")
        let text = try scenario.agent.cli(["mqtt", "status"]).stdout
        #expect(text.contains("startup delay \(delay) ms"), "\(text)")

        try scenario.host.waitFor("NBIRTH after the delay") { ms in ms.contains { $0.kind == "NBIRTH" } }
        let nbirth = try #require(scenario.host.messages.first { $0.kind == "NBIRTH" })
        #expect(nbirth.receivedAt >= connectAt, "NBIRTH at \(nbirth.receivedAt), the delay ends at \(connectAt)")
        #expect(try scenario.agent.mqttStatus()["connects"] as? Int == 1)
    }

    /// Files laid out like `/`: DMI and os-release are read, quotes removed; without them the fields are empty and
    /// the OS falls back to the kernel's name and release.
    @Test func hostIdentityIsReadFromTheBoxAndEmptySafe() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("hostid-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        func put(_ path: String, _ text: String) throws {
            let url = URL(fileURLWithPath: root + path)
            try FileManager.default.createDirectory(
                at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: url, atomically: true, encoding: .utf8)
        }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        #expect(
            HostIdentity.read(root: root) == HostIdentity(hardwareMake: "", hardwareModel: "", os: "", osVersion: ""),
            "nothing to read: empty, never a crash")

        try put("/proc/sys/kernel/ostype", "Linux\n")
        try put("/proc/sys/kernel/osrelease", "6.1.0-18-arm64\n")
        #expect(HostIdentity.read(root: root).os == "Linux", "no os-release: the kernel")
        #expect(HostIdentity.read(root: root).osVersion == "6.1.0-18-arm64")

        try put("/sys/class/dmi/id/sys_vendor", "Advantech\n")
        try put("/sys/class/dmi/id/product_name", "UNO-2271G V2\n")
        try put(
            "/etc/os-release",
            "NAME=\"Debian GNU/Linux\"\n# comment\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID='12'\n")
        #expect(
            HostIdentity.read(root: root)
                == HostIdentity(
                    hardwareMake: "Advantech", hardwareModel: "UNO-2271G V2", os: "Debian GNU/Linux 12 (bookworm)",
                    osVersion: "12"))
    }
}

/// This box's DMI and os-release, read here independently of the agent.
private struct BoxFiles {
    var vendor = ""
    var product = ""
    var prettyName = ""
    var versionID = ""

    init() {
        func file(_ p: String) -> String {
            ((try? String(contentsOfFile: p, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        }
        vendor = file("/sys/class/dmi/id/sys_vendor")
        product = file("/sys/class/dmi/id/product_name")
        var release = file("/etc/os-release")
        if release.isEmpty { release = file("/usr/lib/os-release") }
        for line in release.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { continue }
            let value = parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
            if parts[0] == "PRETTY_NAME" { prettyName = value }
            if parts[0] == "VERSION_ID" { versionID = value }
        }
        var u = utsname()
        uname(&u)
        func text<T>(_ field: T) -> String {
            withUnsafeBytes(of: field) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        if prettyName.isEmpty { prettyName = text(u.sysname) }
        if versionID.isEmpty { versionID = text(u.release) }
    }
}
