import Foundation
import History
import TestSupport
import Testing

/// The agent as a technician meets it: `edgepilot run` against the plant simulator, driven by the CLI.
@Suite(.serialized) struct DaemonEndToEndTests {
    let edgepilot = productsDirectory.appendingPathComponent("edgepilot").path

    /// A running agent with its own directory, socket and history, stopped at the end of the test.
    final class Agent {
        let dir: TemporaryDirectory
        let process = Process()
        let socket: String
        let configPath: String
        let logPath: String
        let binary: String

        init(binary: String, config: String, environment: [String: String] = [:]) throws {
            self.binary = binary
            dir = try TemporaryDirectory("edgepilot-agent")
            socket = dir.path + "/control.sock"
            configPath = dir.path + "/edgepilot.yaml"
            logPath = dir.path + "/agent.log"
            try write(config: config)
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = ["run", "--config", configPath]
            if !environment.isEmpty {
                process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
            }
            let log = FileHandle(forWritingAtPath: logPath)!
            process.standardOutput = log
            process.standardError = log
            try process.run()
            guard eventually(timeout: 20, { FileManager.default.fileExists(atPath: socket) }) else {
                throw PeerError("the agent did not create its socket; log:\n\(self.log)")
            }
        }

        func write(config: String) throws {
            let text = config.replacingOccurrences(of: "@DIR@", with: dir.path)
            try text.write(toFile: configPath, atomically: true, encoding: .utf8)
        }

        var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

        func cli(_ arguments: [String], input: String? = nil) throws -> CommandResult {
            try runCommand(binary, arguments + ["--socket", socket], input: input)
        }

        func json(_ arguments: [String]) throws -> Any {
            let result = try cli(arguments + ["--json"])
            guard result.status == 0 else { throw PeerError("\(arguments) failed: \(result.stderr)") }
            return try JSONSerialization.jsonObject(with: Data(result.stdout.utf8))
        }

        func tag(_ name: String) throws -> [String: Any] {
            try json(["read", name]) as! [String: Any]
        }

        func status() throws -> [String: Any] { try json(["status"]) as! [String: Any] }

        func device(_ name: String) throws -> [String: Any] {
            (try status()["devices"] as! [[String: Any]]).first { $0["name"] as? String == name }!
        }

        func signal(_ signal: Int32) { kill(process.processIdentifier, signal) }

        func stop() -> Int32 {
            if process.isRunning {
                signal(SIGTERM)
                _ = eventually(timeout: 20) { !process.isRunning }
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            }
            process.waitUntilExit()
            return process.terminationStatus
        }
    }

    static func config(port: Int, extraTags: String = "", secondDevice: Bool = true) -> String {
        var text = """
            agent:
              control_socket: @DIR@/control.sock
              log_level: info
            poll_groups:
              - name: fast
                period: 100ms
            history:
              path: @DIR@/history.db
              commit_interval: 100ms
            devices:
              - name: plant
                type: modbus_tcp
                host: 127.0.0.1
                port: \(port)
                timeout: 500ms
                reconnect_min: 100ms
                reconnect_max: 500ms

            """
        if secondDevice {
            text += """
                  - name: plant_b
                    type: modbus_tcp
                    host: 127.0.0.1
                    port: \(port)
                    timeout: 500ms

                """
        }
        text += """
            tags:
              - name: tank1/level
                device: plant
                area: input_register
                address: 0
                type: float32
                units: cm
              - name: tank3/level
                device: plant
                area: input_register
                address: 4
                type: float32
                order: CDAB
                units: cm
              - name: pump1/voltage
                device: plant
                area: holding_register
                address: 0
                type: float32
                units: V
                writable: true
                limits: {min: 0, max: 10}
              - name: plant/text
                device: plant
                area: holding_register
                address: 46
                type: string(4)

            """
        if secondDevice {
            text += """
                  - name: b/tank2
                    device: plant_b
                    area: input_register
                    address: 2
                    type: float32

                """
        }
        return text + extraTags
    }

    @Test func technicianWorkflowOverTheControlSocket() throws {
        let plant = try QuadTank()
        defer { plant.stop() }
        let agent = try Agent(binary: edgepilot, config: Self.config(port: plant.port))
        defer {
            _ = agent.stop()
            agent.dir.remove()
        }

        // Status: both devices connect and poll.
        #expect(eventually { (try? agent.device("plant")["state"] as? String) == "connected" })
        let status = try agent.status()
        #expect((status["tagCount"] as? Int) == 5)
        #expect((status["pid"] as? Int).map(Int32.init) == agent.process.processIdentifier)

        // Tags: live values with good quality, decoded as the simulator holds them (h3 is word-swapped).
        #expect(eventually { (try? agent.tag("tank3/level")["quality"] as? String) == "good" })
        let truth = try plant.control(["cmd": "get"])
        let levels = truth["h"] as? [Double]
        let h3 = try #require(agent.tag("tank3/level")["value"] as? Double)
        #expect(abs(h3 - (levels?[2] ?? -1)) < 0.5)
        #expect(try agent.tag("plant/text")["value"] as? String == "EP-DEMO1")
        let listed = try agent.json(["tags", "tank*"]) as! [[String: Any]]
        #expect(listed.map { $0["name"] as! String } == ["tank1/level", "tank3/level"])
        let table = try agent.cli(["tags"])
        #expect(table.stdout.contains("tank1/level") && table.stdout.contains("cm") && table.stdout.contains("good"))

        // Write within limits reaches the PLC and is audited.
        let written = try agent.cli(["write", "pump1/voltage", "4.5", "--yes"])
        #expect(written.status == 0, "\(written.stderr)")
        let after = try plant.control(["cmd": "get"])
        let voltages = after["v"] as? [Double]
        #expect(abs((voltages?[0] ?? 0) - 4.5) < 1e-6)

        // Refused writes never reach the PLC: out of limits, not writable, not a number, no confirmation.
        let outOfLimits = try agent.cli(["write", "pump1/voltage", "12", "--yes"])
        #expect(outOfLimits.status != 0 && outOfLimits.stderr.contains("limit"))
        let readOnly = try agent.cli(["write", "tank1/level", "5", "--yes"])
        #expect(readOnly.status != 0 && readOnly.stderr.contains("not configured as writable"))
        let notANumber = try agent.cli(["write", "pump1/voltage", "lots", "--yes"])
        #expect(notANumber.status != 0 && notANumber.stderr.contains("expected a number from 0 to 10 V"))
        let unconfirmed = try agent.cli(["write", "pump1/voltage", "1"])
        #expect(unconfirmed.status != 0 && unconfirmed.stderr.contains("--yes"))
        let still = try plant.control(["cmd": "get"])
        #expect(abs(((still["v"] as? [Double])?[0] ?? 0) - 4.5) < 1e-6)
        #expect(
            eventually {
                let audit = (try? agent.json(["audit"]) as? [[String: Any]]) ?? []
                return audit.map { $0["result"] as? String ?? "" } == ["ok", "refused", "refused", "refused"]
            })

        // History has the samples, as CSV too.
        #expect(
            eventually { ((try? agent.json(["history", "tank1/level", "--since", "1m"]) as? [Any])?.count ?? 0) > 0 })
        let csv = try agent.cli(["history", "pump1/voltage", "--since", "1m", "--csv"])
        #expect(csv.stdout.hasPrefix("timestamp,value,quality\n") && csv.stdout.contains(",4.5,good"))

        // Unknown tags get a helpful answer.
        let unknown = try agent.cli(["read", "tank1/levle"])
        #expect(unknown.status != 0 && unknown.stderr.contains("no tag named 'tank1/levle'"))

        // SIGTERM: clean exit, history flushed to disk.
        #expect(agent.stop() == 0)
        let reader = try HistoryReader(path: agent.dir.path + "/history.db")
        #expect(try reader.samples(tag: "pump1/voltage", since: 0).contains { $0.value == .real(4.5) })
        #expect(try reader.audit(since: 0).count == 4)
    }

    @Test func reloadKeepsUnaffectedDevicesAndRejectsBadConfig() throws {
        let plant = try QuadTank()
        defer { plant.stop() }
        let agent = try Agent(binary: edgepilot, config: Self.config(port: plant.port))
        defer {
            _ = agent.stop()
            agent.dir.remove()
        }
        #expect(eventually { (try? agent.device("plant_b")["state"] as? String) == "connected" })
        let connectsBefore = try agent.device("plant_b")["connects"] as? Int

        // A bad file is rejected with its errors logged; the old configuration keeps running.
        try agent.write(config: Self.config(port: plant.port) + "  - name: broken\n    device: nowhere\n")
        agent.signal(SIGHUP)
        #expect(eventually { agent.log.contains("reload rejected") })
        #expect(agent.log.contains("edgepilot.yaml:"))
        #expect(agent.process.isRunning)
        #expect(try agent.status()["reloads"] as? Int == 0)
        #expect(try agent.tag("tank1/level")["quality"] as? String == "good")

        // A good file adds a tag to one device; the other device keeps its connection.
        let extra = """
              - name: tank2/level
                device: plant
                area: input_register
                address: 2
                type: float32

            """
        try agent.write(config: Self.config(port: plant.port, extraTags: extra))
        agent.signal(SIGHUP)
        #expect(eventually { (try? agent.status()["reloads"] as? Int) == 1 })
        #expect(eventually { (try? agent.tag("tank2/level")["quality"] as? String) == "good" })
        #expect(agent.log.contains("kept plant_b") && agent.log.contains("restarted plant"))
        #expect(try agent.device("plant_b")["connects"] as? Int == connectsBefore)
        #expect(try agent.tag("b/tank2")["quality"] as? String == "good")
    }

    @Test func deviceDropShowsInStatusAndRecovers() throws {
        let plant = try QuadTank()
        defer { plant.stop() }
        let agent = try Agent(binary: edgepilot, config: Self.config(port: plant.port, secondDevice: false))
        defer {
            _ = agent.stop()
            agent.dir.remove()
        }
        #expect(eventually { (try? agent.tag("tank1/level")["quality"] as? String) == "good" })
        try plant.control(["cmd": "refuse", "seconds": 2])
        try plant.control(["cmd": "drop"])
        #expect(eventually { (try? agent.tag("tank1/level")["quality"] as? String) == "disconnected" })
        #expect(eventually { (try? agent.device("plant")["lastError"] as? String) != nil })
        #expect(eventually(timeout: 15) { (try? agent.tag("tank1/level")["quality"] as? String) == "good" })
    }

    /// systemd's side of the notify protocol: a datagram socket that records what the agent sends.
    @Test func speaksSystemdNotifyProtocol() throws {
        let plant = try QuadTank()
        defer { plant.stop() }
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.path + "/notify.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() { raw[i] = b }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        try #require(bound == 0)
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var messages: [String] = []
        func receive(until condition: () -> Bool) -> Bool {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let deadline = Date().addingTimeInterval(15)
            while Date() < deadline && !condition() {
                let n = recv(fd, &buffer, buffer.count, 0)
                if n > 0 { messages.append(String(decoding: buffer[..<n], as: UTF8.self)) }
            }
            return condition()
        }
        let agent = try Agent(
            binary: edgepilot, config: Self.config(port: plant.port, secondDevice: false),
            environment: ["NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"])
        defer {
            _ = agent.stop()
            agent.dir.remove()
        }
        #expect(receive { messages.contains { $0.hasPrefix("READY=1\nSTATUS=") } })
        // Pings at half of WATCHDOG_USEC: several within a second.
        #expect(receive { messages.filter { $0 == "WATCHDOG=1" }.count >= 3 })
        agent.signal(SIGHUP)
        #expect(receive { messages.contains { $0.hasPrefix("RELOADING=1") } })
        #expect(receive { messages.filter { $0.hasPrefix("READY=1") }.count >= 2 })
        agent.signal(SIGTERM)
        #expect(receive { messages.contains { $0.hasPrefix("STOPPING=1") } })
        #expect(agent.stop() == 0)
    }

    @Test func cliExplainsWhenTheAgentIsNotRunning() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let result = try runCommand(edgepilot, ["status", "--socket", dir.path + "/none.sock"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("the agent is not running"))
        #expect(result.stderr.contains("systemctl start edgepilot"))
    }

    @Test func configCheckReportsErrorsWithLocations() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let path = dir.path + "/bad.yaml"
        try "devices:\n  - name: a\n    type: modbus_tcp\n    host: x\n    colour: red\n".write(
            toFile: path, atomically: true, encoding: .utf8)
        let bad = try runCommand(edgepilot, ["config", "check", path])
        #expect(bad.status == 1)
        #expect(bad.stderr.contains("\(path):5:5: error: unknown key 'colour' in a device"))
        let json = try runCommand(edgepilot, ["config", "check", path, "--json"])
        let report = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as! [String: Any]
        #expect(report["ok"] as? Bool == false)
        let demo = try runCommand(edgepilot, ["config", "check", repositoryRoot.path + "/Config/demo-plant.yaml"])
        #expect(demo.status == 0 && demo.stdout.contains("OK (1 device, 16 tags)"))
    }

    @Test func modbusProbeReadsWithoutTheAgent() throws {
        let plant = try QuadTank()
        defer { plant.stop() }
        let result = try runCommand(
            edgepilot,
            [
                "modbus", "probe", "--host", "127.0.0.1", "--port", String(plant.port), "--unit", "1", "--area",
                "holding", "--address", "30", "--count", "2", "--type", "int32", "--json",
            ])
        #expect(result.status == 0, "\(result.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as! [String: Any]
        #expect(json["decoded"] as? [String] == ["-123456"])
        let failed = try runCommand(
            edgepilot, ["modbus", "probe", "--host", "127.0.0.1", "--port", String(try deadPort()), "--address", "0"])
        #expect(failed.status != 0 && failed.stderr.contains("probe failed"))
    }
}
