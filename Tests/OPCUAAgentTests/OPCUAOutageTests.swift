import Foundation
import TestSupport
import Testing

/// What `edgepilot status` and the journal say while an OPC UA device is away: the reason of the latest attempt with
/// the hint that fixes it, one line for the loss and one for the return however many retries lie between.
@Suite(.serialized) struct OPCUAOutageTests {
    /// Occurrences of `text` in the agent's log (its stderr, what journald receives).
    static func lines(_ log: String, containing text: String) -> Int {
        log.split(separator: "\n").filter { $0.contains(text) }.count
    }

    @Test func serverCertificateChangedWhileRunningShowsTheTrustHintInStatusAndJournal() throws {
        let dir = try TemporaryDirectory("opcua-newcert")
        defer { dir.remove() }
        let pki = dir.path + "/pki"
        var sim = try OPCUASimulator(serverPKI: dir.path + "/server-pki-a")
        defer { sim.kill() }
        try sim.trust(in: pki)
        let port = sim.port
        let agent = try AgentProcess(config: DaemonOPCUATests.config(endpoint: sim.endpoint), dir: dir, check: true)
        defer { _ = agent.stop() }
        #expect(
            try eventually(timeout: 15) { try agent.tag("tank1/level")["quality"] as? String == "good" },
            "\((try? agent.device("tankplc")) ?? [:])\n\(agent.log)")

        // The server is replaced on the same port by one with a new certificate, which the agent does not trust.
        sim.kill()
        sim = try OPCUASimulator(port: port, serverPKI: dir.path + "/server-pki-b")
        var lastError = ""
        #expect(
            try eventually(timeout: 15) {
                lastError = try agent.device("tankplc")["lastError"] as? String ?? ""
                return lastError.contains("not trusted")
            }, "status kept: \(lastError)")
        let rejected = (try? FileManager.default.contentsOfDirectory(atPath: pki + "/rejected")) ?? []
        #expect(rejected.count == 1, "\(rejected)")
        let thumbprint = String(rejected.first?.dropLast(4) ?? "")
        let hint = "edgepilot opcua trust \(thumbprint) --pki-dir \(pki)"
        #expect(lastError.contains(hint), "\(lastError)")
        #expect(try agent.device("tankplc")["state"] as? String != "connected")
        #expect(try agent.tag("tank1/level")["quality"] as? String == "disconnected")

        // The journal gives the same hint, once, however often the agent retries.
        let errors = try agent.device("tankplc")["errors"] as? Int ?? 0
        #expect(try eventually(timeout: 10) { try agent.device("tankplc")["errors"] as? Int ?? 0 >= errors + 3 })
        #expect(Self.lines(agent.log, containing: hint) == 1, "\(agent.log)")

        let trust = try edgepilot(["opcua", "trust", thumbprint, "--pki-dir", pki])
        #expect(trust.status == 0, "\(trust.stderr)")
        #expect(
            try eventually(timeout: 15) { try agent.tag("tank1/level")["quality"] as? String == "good" },
            "\((try? agent.device("tankplc")) ?? [:])")
        let log = agent.log
        #expect(Self.lines(log, containing: "OPC UA device tankplc lost") == 1, "\(log)")
        #expect(Self.lines(log, containing: "OPC UA device tankplc back after") == 1, "\(log)")
    }

    @Test func anOutageWithManyRetriesIsOneLostAndOneBackLine() throws {
        let dir = try TemporaryDirectory("opcua-outage")
        defer { dir.remove() }
        let sim = try OPCUASimulator(serverPKI: dir.path + "/server-pki")
        defer { sim.kill() }
        let proxy = try FaultProxy(targetPort: sim.port)
        defer { proxy.stop() }
        let endpoint = sim.endpoint.replacingOccurrences(of: ":\(sim.port)", with: ":\(proxy.port)")
        let agent = try AgentProcess(
            config: DaemonOPCUATests.config(endpoint: endpoint, security: "    security_policy: none"), dir: dir,
            check: true)
        defer { _ = agent.stop() }
        #expect(
            try eventually(timeout: 15) { try agent.tag("tank1/level")["quality"] as? String == "good" },
            "\((try? agent.device("tankplc")) ?? [:])\n\(agent.log)")

        // The gateway resets the connection and every new one, for many reconnect attempts.
        let before = try agent.device("tankplc")["errors"] as? Int ?? 0
        proxy.set(.reset)
        #expect(
            // Enough attempts that once per distinct reason (reset while connecting, sending or receiving) is
            // clearly fewer lines than once per attempt.
            try eventually(timeout: 30) { try agent.device("tankplc")["errors"] as? Int ?? 0 >= before + 12 },
            "\((try? agent.device("tankplc")) ?? [:])")
        #expect(try agent.tag("tank1/level")["quality"] as? String == "disconnected")
        // Writes retried during the outage: the first failure of the tag is journaled, not every retry.
        for _ in 0..<3 {
            let write = try agent.cli(["write", "pump1/voltage", "1", "--yes"])
            #expect(write.status != 0, "\(write.stdout)")
        }
        proxy.set(.none)
        #expect(
            try eventually(timeout: 15) {
                try agent.tag("tank1/level")["quality"] as? String == "good"
                    && agent.device("tankplc")["state"] as? String == "connected"
            }, "\((try? agent.device("tankplc")) ?? [:])")

        let log = agent.log
        let errors = (try agent.device("tankplc")["errors"] as? Int ?? 0) - before
        #expect(Self.lines(log, containing: "OPC UA device tankplc lost") == 1, "\(log)")
        #expect(Self.lines(log, containing: "OPC UA device tankplc back after") == 1, "\(log)")
        #expect(Self.lines(log, containing: "write pump1/voltage failed") == 1, "\(log)")
        // Each reason once, not once per attempt (no reminder is due within a minute).
        let reasons = log.split(separator: "\n").filter { $0.contains("OPC UA device tankplc still unreachable") }
        #expect(reasons.count == Set(reasons).count, "\(log)")
        let told = Self.lines(log, containing: "OPC UA device tankplc")
        #expect(told < errors, "\(told) journal lines for \(errors) errors:\n\(log)")
    }

    @Test func aRefusedLoginSaysWhichSettingsToCheckInStatusAndJournal() throws {
        let dir = try TemporaryDirectory("opcua-login")
        defer { dir.remove() }
        let sim = try OPCUASimulator(serverPKI: dir.path + "/server-pki")
        defer { sim.kill() }
        try sim.trust(in: dir.path + "/pki")
        let password = dir.path + "/password"
        try "wrong\n".write(toFile: password, atomically: true, encoding: .utf8)
        let agent = try AgentProcess(
            config: DaemonOPCUATests.config(
                endpoint: sim.endpoint, security: "    user: operator\n    password_file: \(password)"),
            dir: dir, check: true)
        defer { _ = agent.stop() }
        let hint = "check the device's user and password_file (\(password))"
        var lastError = ""
        #expect(
            try eventually(timeout: 15) {
                let d = try agent.device("tankplc")
                lastError = d["lastError"] as? String ?? ""
                return lastError.contains(hint) && d["errors"] as? Int ?? 0 >= 3
            }, "\(lastError)")
        #expect(lastError.contains("refused the user operator"), "\(lastError)")
        #expect(Self.lines(agent.log, containing: hint) == 1, "\(agent.log)")
        #expect(try agent.tag("tank1/level")["quality"] as? String == "disconnected")
    }
}
