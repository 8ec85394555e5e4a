import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The real daemon against mosquitto over TLS (a CA and a server certificate for 127.0.0.1 made with openssl for the
/// test) with a password: births reach the independent Python host, which connects over TLS too; a wrong password
/// is reported clearly and retried with backoff.
@Suite(.serialized) struct TLSAgentTests {
    /// A TLS-only broker that wants a password: `edge`/`edge-pw` for the agent, `host`/`host-pw` for the host. Its
    /// certificate is `server` (issued for 127.0.0.1) unless another of the PKI's is named.
    private func tlsBroker(certificate: String = "server") throws -> (MosquittoBroker, TestPKI) {
        let broker = try MosquittoBroker()
        let pki = try TestPKI(in: broker.directory)
        let passwords = broker.directory.appendingPathComponent("passwd").path
        try run("/usr/bin/mosquitto_passwd", ["-b", "-c", passwords, "edge", "edge-pw"])
        try run("/usr/bin/mosquitto_passwd", ["-b", passwords, "host", "host-pw"])
        broker.listenerConfig = listenerConfig(pki, passwords: passwords, certificate: certificate)
        try broker.start()
        return (broker, pki)
    }

    private func listenerConfig(_ pki: TestPKI, passwords: String, certificate: String) -> String {
        """
        allow_anonymous false
        password_file \(passwords)
        cafile \(pki.path("ca.crt"))
        certfile \(pki.path("\(certificate).crt"))
        keyfile \(pki.path("\(certificate).key"))
        """
    }

    private func config(modbusPort: Int, brokerPort: Int, caFile: String, passwordFile: String) -> String {
        """
        agent:
          control_socket: @DIR@/control.sock
          log_level: info
        poll_groups:
          - {name: fast, period: 100ms}
        history:
          path: @DIR@/history.db
          commit_interval: 100ms
        devices:
          - {name: plant, type: modbus_tcp, host: 127.0.0.1, port: \(modbusPort), timeout: 500ms}
        tags:
          - {name: tank1/level, device: plant, area: input_register, address: 0, type: float32, units: cm}
        sparkplug:
          group_id: Plant1
          edge_node_id: edge1
          brokers:
            - url: mqtts://127.0.0.1:\(brokerPort)
              tls: {ca_file: \(caFile)}
              username: edge
              password_file: \(passwordFile)
          keepalive: 5s
          reconnect_min: 500ms
          reconnect_max: 2s

        """
    }

    private func passwordFile(_ dir: String, _ password: String) throws -> String {
        let path = dir + "/mqtt-password"
        try (password + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func birthsReachTheHostOverTLSWithAPassword() throws {
        let (tlsBroker, pki) = try tlsBroker()
        let dir = try TemporaryDirectory("edgepilot-tls")
        defer { dir.remove() }
        let scenario = try SparkplugScenario(
            plant: noisyPlant(), broker: tlsBroker,
            host: .init(extraArguments: ["--cafile", pki.path("ca.crt"), "--username", "host", "--password", "host-pw"])
        ) { plantPort, brokerPort in
            config(
                modbusPort: plantPort, brokerPort: brokerPort, caFile: pki.path("ca.crt"),
                passwordFile: try passwordFile(dir.path, "edge-pw"))
        }
        defer { scenario.stop() }
        let broker = scenario.broker
        let agent = scenario.agent
        let host = scenario.host

        try host.waitFor("NBIRTH, DBIRTH and data over TLS") { ms in
            ms.first?.kind == "NBIRTH" && ms.contains { $0.kind == "DBIRTH" } && ms.contains { $0.kind == "DDATA" }
        }
        let dbirth = try #require(host.messages.first { $0.kind == "DBIRTH" })
        #expect(dbirth.metric("tank1/level")?["datatype_name"] as? String == "Float")
        let status = try agent.mqttStatus()
        #expect(status["connected"] as? Bool == true)
        #expect(status["broker"] as? String == "127.0.0.1:\(broker.port)")
        #expect(status["lastError"] == nil)
        // The broker saw a TLS client that logged in as edge.
        #expect(broker.log().contains("as edgepilot-Plant1-edge1"), "\(broker.log().suffix(2000))")
        #expect(broker.log().contains("u'edge'"), "\(broker.log().suffix(2000))")

        // health: the CA the agent trusts expires in 2 days (TestPKI's validity), so WARN with the days left.
        let health = try agent.cli(["health", "--json"])
        let report = try JSONSerialization.jsonObject(with: Data(health.stdout.utf8)) as? [String: Any]
        let checks = report?["checks"] as? [[String: Any]] ?? []
        let ca = try #require(checks.first { $0["component"] as? String == "certificate" }, "\(health.stdout)")
        #expect(ca["name"] as? String == "MQTT 127.0.0.1:\(broker.port) CA")
        #expect(ca["status"] as? String == "WARN")
        #expect((ca["reason"] as? String ?? "").contains("CN=EdgePilot test ca expires in "), "\(ca)")
        let days = (ca["daysLeft"] as? NSNumber)?.doubleValue ?? -1
        #expect(days > 1 && days < 2, "\(ca)")
        #expect(health.status == 1, "\(health.stdout)")
    }

    @Test func aWrongPasswordIsReportedAndRetriedWithBackoff() throws {
        let plant = try noisyPlant()
        defer { plant.stop() }
        let (broker, pki) = try tlsBroker()
        defer { broker.stop() }
        let dir = try TemporaryDirectory("edgepilot-tls")
        defer { dir.remove() }
        let agent = try AgentProcess(
            config: config(
                modbusPort: plant.port, brokerPort: broker.port, caFile: pki.path("ca.crt"),
                passwordFile: try passwordFile(dir.path, "not-the-password")))
        defer { agent.stop() }

        #expect(
            eventually(timeout: 15) {
                ((try? agent.mqttStatus())?["lastError"] as? String)?.contains("refused") == true
            })
        let status = try agent.mqttStatus()
        let lastError = status["lastError"] as? String ?? ""
        // Which broker, what it said, for which client.
        #expect(lastError.contains("127.0.0.1:\(broker.port)"), "\(lastError)")
        #expect(lastError.contains("not authorised") || lastError.contains("bad user name or password"), "\(lastError)")
        #expect(lastError.contains("edgepilot-Plant1-edge1"), "\(lastError)")
        #expect(status["connected"] as? Bool == false && status["connects"] as? Int == 0)
        let text = try agent.cli(["mqtt", "status"]).stdout
        #expect(text.contains("last error: ") && text.contains("refused CONNECT"), "\(text)")
        #expect(agent.log.contains("MQTT connect failed, retrying in"), "\(agent.log.suffix(2000))")

        // Backoff, not a busy loop: attempts seen by the broker in 4 s, with waits of 0.5 s doubling to 2 s (jitter
        // takes up to half off): at most 6 attempts fit; a busy loop would make hundreds.
        // (mosquitto names a refused client "<unknown>"; the agent is the only client of this broker.)
        func attempts() -> Int {
            broker.log().components(separatedBy: "\n").filter { $0.contains("disconnected, not authorised") }.count
        }
        let before = attempts()
        usleep(4_000_000)
        let during = attempts() - before
        print("wrong password: \(during) connection attempts in 4 s")
        #expect(during >= 2 && during <= 8, "\(during) attempts in 4 s; broker log:\n\(broker.log().suffix(1500))")
    }

    /// A broker whose certificate is signed by the trusted CA but issued for another host name (broker.invalid while
    /// the agent connects to 127.0.0.1) is refused: the agent never connects, and `mqtt status` and the journal say
    /// why, with what to check. The same broker with the certificate for 127.0.0.1 is then accepted.
    @Test func aBrokerCertificateForAnotherHostNameIsRefused() throws {
        let plant = try noisyPlant()
        defer { plant.stop() }
        let (broker, pki) = try tlsBroker(certificate: "other-host")
        defer { broker.stop() }
        let dir = try TemporaryDirectory("edgepilot-tls")
        defer { dir.remove() }
        let agent = try AgentProcess(
            config: config(
                modbusPort: plant.port, brokerPort: broker.port, caFile: pki.path("ca.crt"),
                passwordFile: try passwordFile(dir.path, "edge-pw")))
        defer { agent.stop() }

        #expect(
            eventually(timeout: 20) {
                ((try? agent.mqttStatus())?["lastError"] as? String)?.contains("certificate verify failed") == true
            }, "\((try? agent.mqttStatus()) ?? [:])")
        let status = try agent.mqttStatus()
        let lastError = status["lastError"] as? String ?? ""
        #expect(status["connected"] as? Bool == false && status["connects"] as? Int == 0, "\(status)")
        #expect(lastError.contains("127.0.0.1:\(broker.port)"), "\(lastError)")
        // The hint names what to check: the host name in the certificate against the url, and the CA.
        #expect(lastError.contains("issued for 127.0.0.1") && lastError.contains("ca_file"), "\(lastError)")
        #expect(agent.log.contains("certificate verify failed"), "\(agent.log.suffix(2000))")
        #expect(agent.log.contains("issued for 127.0.0.1"), "the journal has the hint: \(agent.log.suffix(2000))")
        // The CONNECT never reached the broker: the handshake failed first.
        #expect(!broker.log().contains("as edgepilot-Plant1-edge1"), "\(broker.log().suffix(2000))")

        // The right certificate on the same port: accepted, without restarting the agent.
        broker.stop()
        broker.listenerConfig = listenerConfig(
            pki, passwords: broker.directory.appendingPathComponent("passwd").path, certificate: "server")
        try broker.start()
        #expect(
            eventually(timeout: 30) { (try? agent.mqttStatus())?["connected"] as? Bool == true },
            "\((try? agent.mqttStatus()) ?? [:])")
        #expect(broker.log().contains("as edgepilot-Plant1-edge1"), "\(broker.log().suffix(2000))")
        #expect((try agent.mqttStatus())["lastError"] == nil)
    }
}
