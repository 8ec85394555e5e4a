import Foundation
import TestSupport
import Testing

/// `edgepilot run` with an OPC UA device against the asyncua simulator, driven through the CLI.
@Suite(.serialized) struct DaemonOPCUATests {
    static func config(endpoint: String, security: String = "", reconnect: String = "200ms") -> String {
        """
        agent:
          control_socket: @DIR@/control.sock
        poll_groups:
          - name: fast
            period: 100ms
            mode: subscribe
            sampling_interval: 50ms
          - name: slow
            period: 200ms
            mode: poll
        history:
          path: @DIR@/history.db
          commit_interval: 100ms
        devices:
          - name: tankplc
            type: opcua
            endpoint: \(endpoint)
            pki_dir: @DIR@/pki
            timeout: 2s
            reconnect_min: \(reconnect)
            reconnect_max: 1s
        \(security)
        tags:
          - name: tank1/level
            device: tankplc
            node: "ns=2;s=QuadTank.h1"
            type: float64
            units: cm
            poll_group: fast
          - name: tank2/level
            device: tankplc
            browse_path: Objects/2:QuadTank/2:h2
            type: double
            poll_group: slow
          - name: pump1/voltage
            device: tankplc
            node: "ns=2;s=QuadTank.v1"
            type: float64
            writable: true
            limits: {min: 0, max: 10}
            poll_group: slow
          - name: sim/int16
            device: tankplc
            node: "ns=2;s=Scalar.Int16"
            type: int16
            writable: true
            limits: {min: -1000, max: 1000}
            poll_group: fast
          - name: sim/int64
            device: tankplc
            node: "ns=2;s=Scalar.Int64"
            type: int64
            poll_group: slow
          - name: sim/uint64
            device: tankplc
            node: "ns=2;s=Scalar.UInt64"
            type: uint64
            poll_group: fast
          - name: sim/byte
            device: tankplc
            node: "ns=2;s=Scalar.Byte"
            type: Byte
            poll_group: slow
          - name: sim/flag
            device: tankplc
            node: "ns=2;s=Scalar.Boolean"
            type: bool
            poll_group: slow
          - name: sim/text
            device: tankplc
            node: "ns=2;s=Scalar.String"
            type: string
            poll_group: fast
          - name: sim/array
            device: tankplc
            node: "ns=2;s=Array.Double"
            type: string
            poll_group: slow
          - name: sim/int16_as_int16
            device: tankplc
            node: "ns=2;s=Scalar.Int32"
            type: int16
            poll_group: slow
          - name: sim/missing
            device: tankplc
            node: "ns=2;s=No.Such.Node"
            type: float64
            poll_group: slow
          - name: sim/missing_path
            device: tankplc
            browse_path: Objects/2:QuadTank/2:h9
            type: float64
            poll_group: fast
        """
    }

    /// Reads a node with the commissioning CLI (its own session), as an independent check of the server's value.
    /// Numeric values arrive as JSON numbers (a string there is a defect) and are returned as their decimal text.
    static func serverValue(_ endpoint: String, _ node: String, pki: String) throws -> (value: String, type: String) {
        let rows = try jsonObject(try edgepilot(["opcua", "read", endpoint, node, "--pki-dir", pki, "--json"]))
        let row = try #require((rows as? [[String: Any]])?.first, "\(rows)")
        let number = try #require(row["value"] as? NSNumber, "not a JSON number: \(row)")
        return ("\(number)", row["type"] as? String ?? "-")
    }

    @Test func subscriptionPollingAndWritesOverBasic256Sha256() throws {
        let dir = try TemporaryDirectory("opcua-agent")
        defer { dir.remove() }
        let sim = try OPCUASimulator(serverPKI: dir.path + "/server-pki")
        defer { sim.kill() }
        try sim.trust(in: dir.path + "/pki")
        let agent = try AgentProcess(config: Self.config(endpoint: sim.endpoint), dir: dir, check: true)
        defer { _ = agent.stop() }

        #expect(
            try eventually(timeout: 15) {
                try agent.tags().values.filter { $0["quality"] as? String == "good" }.count == 10
            },
            "tags: \((try? agent.tags()) ?? [:])\nlog: \(agent.log)")
        let tags = try agent.tags()
        // Every built-in type maps onto its tag type exactly (64-bit values keep every digit).
        #expect(tags["sim/int64"]?["value"] as? Int64 == -9_000_000_000_000_000_000)
        #expect(tags["sim/uint64"]?["value"] as? UInt64 == 18_000_000_000_000_000_000)
        #expect(tags["sim/byte"]?["value"] as? Int == 200)
        #expect(tags["sim/flag"]?["value"] as? Bool == true)
        #expect(tags["sim/text"]?["value"] as? String == "Grüße, OPC UA")
        #expect(tags["sim/array"]?["value"] as? String == "[0.5, 1.5, -2.25]")
        // A value that does not fit the tag's type is a decode error, never a wrapped number.
        #expect(tags["sim/int16_as_int16"]?["quality"] as? String == "decode_error")
        // Server status codes are kept: BadNodeIdUnknown for the node, BadNoMatch for the browse path.
        #expect(tags["sim/missing"]?["quality"] as? String == "device_status")
        #expect((tags["sim/missing"]?["qualityText"] as? String)?.contains("0x80340000") == true)
        #expect((tags["sim/missing_path"]?["qualityText"] as? String)?.contains("0x806F0000") == true)

        // The subscribed level moves with the simulated process; samples carry the server's source timestamps.
        let first = try agent.tag("tank1/level")
        #expect(
            try eventually(timeout: 5) {
                (try agent.tag("tank1/level")["value"] as? Double) != first["value"] as? Double
            })
        let later = try agent.tag("tank1/level")
        #expect((later["timestamp"] as! Int64) > (first["timestamp"] as! Int64))
        let device = try agent.device("tankplc")
        #expect(device["state"] as? String == "connected")
        #expect(device["monitoredItems"] as? Int == 4)
        #expect((device["notifications"] as? Int ?? 0) >= 5)
        #expect((device["polls"] as? Int ?? 0) > 0)

        // Write round trip: the value reaches the server as a Double and reads back.
        let write = try agent.json(["write", "pump1/voltage", "4.5", "--yes"]) as! [String: Any]
        #expect(write["readBack"] as? Double == 4.5)
        #expect(try Self.serverValue(sim.endpoint, "ns=2;s=QuadTank.v1", pki: dir.path + "/pki") == ("4.5", "Double"))
        // An Int16 node gets an Int16 Variant (a Double would be BadTypeMismatch).
        let w16 = try agent.json(["write", "sim/int16", "12", "--yes"]) as! [String: Any]
        #expect(w16["readBack"] as? Int == 12)
        #expect(try Self.serverValue(sim.endpoint, "ns=2;s=Scalar.Int16", pki: dir.path + "/pki") == ("12", "Int16"))

        // Refused writes never reach the server.
        let outside = try agent.cli(["write", "pump1/voltage", "40", "--yes"])
        #expect(outside.status != 0 && outside.stderr.contains("outside the limits"), "\(outside.stderr)")
        let readOnly = try agent.cli(["write", "tank1/level", "1", "--yes"])
        #expect(readOnly.status != 0 && readOnly.stderr.contains("not writable"), "\(readOnly.stderr)")
        #expect(try Self.serverValue(sim.endpoint, "ns=2;s=QuadTank.v1", pki: dir.path + "/pki").value == "4.5")
        let audit = try agent.cli(["audit"]).stdout
        #expect(audit.contains("Variant Double") && audit.contains("Variant Int16") && audit.contains("refused"))
        #expect(agent.stop() == 0)
    }

    /// `deadband: 2%` of a subscribed poll group, end to end: sent as a percent DataChangeFilter, applied by the
    /// server against the node's EURange, refused (and shown by name) for a node without one.
    @Test func percentDeadbandFromTheConfiguration() throws {
        let dir = try TemporaryDirectory("opcua-percent")
        defer { dir.remove() }
        let sim = try OPCUASimulator(serverPKI: dir.path + "/server-pki")
        defer { sim.kill() }
        let config = """
            agent:
              control_socket: @DIR@/control.sock
            poll_groups:
              - name: analog
                period: 100ms
                mode: subscribe
                sampling_interval: 50ms
                deadband: 2%
            history:
              path: @DIR@/history.db
              commit_interval: 100ms
            devices:
              - name: plc
                type: opcua
                endpoint: \(sim.endpoint)
                security_policy: none
                pki_dir: @DIR@/pki
                timeout: 2s
            tags:
              - name: tank/level
                device: plc
                node: "ns=2;s=Analog.Level"
                type: float64
                units: "%"
                poll_group: analog
              - name: tank/setpoint
                device: plc
                node: "ns=2;s=Scalar.Double"
                type: float64
                poll_group: analog
            """
        let agent = try AgentProcess(config: config, dir: dir, check: true)
        defer { _ = agent.stop() }
        func serverWrite(_ v: Double) throws {
            let r = try edgepilot([
                "opcua", "write", sim.endpoint, "ns=2;s=Analog.Level", "\(v)", "--type", "Double", "--security", "none",
            ])
            #expect(r.status == 0, "\(r.stderr)")
        }
        #expect(
            try eventually(timeout: 15) { try agent.tag("tank/level")["value"] as? Double == 50 },
            "\((try? agent.tags()) ?? [:])\n\(agent.log)")
        // The node without an EURange: its monitored item was refused, and the tag says why, by name.
        let refused = try agent.tag("tank/setpoint")
        #expect(refused["quality"] as? String == "device_status")
        #expect((refused["qualityText"] as? String)?.contains("BadFilterNotAllowed") == true, "\(refused)")
        let lastError = try agent.device("plc")["lastError"] as? String ?? ""
        #expect(lastError.contains("tank/setpoint") && lastError.contains("BadFilterNotAllowed"), "\(lastError)")

        // 2 % of EURange 0…100 is 2.0 from the last reported value: 50.5, 51 and 51.5 stay inside it.
        for v in [50.5, 51, 51.5] { try serverWrite(v) }
        let read = try jsonObject(
            try edgepilot(["opcua", "read", sim.endpoint, "ns=2;s=Analog.Level", "--security", "none", "--json"]))
        #expect((read as? [[String: Any]])?.first?["value"] as? Double == 51.5)
        Thread.sleep(forTimeInterval: 0.5)
        #expect(try agent.tag("tank/level")["value"] as? Double == 50)
        try serverWrite(52.5)
        #expect(
            try eventually(timeout: 5) { try agent.tag("tank/level")["value"] as? Double == 52.5 },
            "\((try? agent.tag("tank/level")) ?? [:])")
        #expect(try agent.tag("tank/level")["quality"] as? String == "good")
        #expect(agent.stop() == 0)
    }

    @Test func serverKilledAndRestartedTagsGoBadThenGood() throws {
        let dir = try TemporaryDirectory("opcua-restart")
        defer { dir.remove() }
        var sim = try OPCUASimulator(serverPKI: dir.path + "/server-pki")
        defer { sim.kill() }
        let port = sim.port
        let agent = try AgentProcess(
            config: Self.config(
                endpoint: sim.endpoint, security: "    security_policy: none"), dir: dir, check: true)
        defer { _ = agent.stop() }
        let live = ["tank1/level", "tank2/level", "pump1/voltage", "sim/int16", "sim/uint64"]
        #expect(
            try eventually(timeout: 15) { try live.allSatisfy { try agent.tag($0)["quality"] as? String == "good" } })

        sim.kill()
        // Every tag, subscribed or polled, goes bad: no stale good value survives the loss.
        #expect(
            try eventually(timeout: 10) {
                try agent.tags().values.allSatisfy { $0["quality"] as? String == "disconnected" }
            }, "\((try? agent.tags()) ?? [:])")
        #expect(try agent.device("tankplc")["state"] as? String != "connected")
        sleep(1)
        #expect(try agent.tags().values.allSatisfy { $0["quality"] as? String == "disconnected" })

        sim = try OPCUASimulator(port: port, serverPKI: dir.path + "/server-pki")
        #expect(
            try eventually(timeout: 20) { try live.allSatisfy { try agent.tag($0)["quality"] as? String == "good" } },
            "\((try? agent.tags()) ?? [:])\n\((try? agent.device("tankplc")) ?? [:])")
        let device = try agent.device("tankplc")
        #expect(device["reconnects"] as? Int ?? 0 >= 1)
        #expect(device["state"] as? String == "connected")
        // The restarted server no longer knows the session: status and the journal say it was made again.
        let recovery = device["lastRecovery"] as? String ?? ""
        #expect(recovery.hasPrefix("recreated: ActivateSession refused (BadSessionIdInvalid"), "\(device)")
        #expect(try agent.cli(["status"]).stdout.contains("tankplc: last reconnect: session recreated"))
        #expect(agent.log.contains("session recreated: ActivateSession refused"), "\(agent.log)")
        // Subscribed values flow again after the client recreated the subscription.
        let before = try agent.tag("tank1/level")["timestamp"] as! Int64
        #expect(try eventually(timeout: 5) { (try agent.tag("tank1/level")["timestamp"] as! Int64) > before })
        #expect(agent.isRunning)
    }

    @Test func firstConnectRetriesThroughUntrustedCertificateAndAbsentServer() throws {
        let dir = try TemporaryDirectory("opcua-firstconnect")
        defer { dir.remove() }
        let port = try deadPort()
        let agent = try AgentProcess(
            config: Self.config(endpoint: "opc.tcp://127.0.0.1:\(port)/"), dir: dir, check: true)
        defer { _ = agent.stop() }
        // Nobody listens: tags are disconnected and the driver keeps retrying with backoff.
        #expect(
            try eventually(timeout: 10) {
                let d = try agent.device("tankplc")
                return (d["errors"] as? Int ?? 0) >= 2 && (d["lastError"] as? String)?.contains("connect") == true
            })
        #expect(try agent.tag("tank1/level")["quality"] as? String == "disconnected")

        // The server appears, but its certificate is not trusted yet: it lands in rejected/ and status says what to run.
        let sim = try OPCUASimulator(port: port, serverPKI: dir.path + "/server-pki")
        defer { sim.kill() }
        var lastError = ""
        #expect(
            try eventually(timeout: 10) {
                lastError = try agent.device("tankplc")["lastError"] as? String ?? ""
                return lastError.contains("not trusted")
            }, "\(lastError)")
        let rejected = try FileManager.default.contentsOfDirectory(atPath: dir.path + "/pki/rejected")
        #expect(rejected.count == 1)
        let thumbprint = String(rejected[0].dropLast(4))
        #expect(lastError.contains("edgepilot opcua trust \(thumbprint) --pki-dir \(dir.path)/pki"))
        #expect(try agent.tag("tank1/level")["quality"] as? String == "disconnected")

        let trust = try edgepilot(["opcua", "trust", thumbprint, "--pki-dir", dir.path + "/pki"])
        #expect(trust.status == 0, "\(trust.stderr)")
        #expect(
            try eventually(timeout: 10) { try agent.tag("tank1/level")["quality"] as? String == "good" },
            "\((try? agent.device("tankplc")) ?? [:])")
    }
}
