import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The opt-in metrics endpoint of the real agent against the plant simulator, scraped over HTTP and read with
/// `prometheus_client`'s parser (an independent one), its figures checked against `edgepilot status --json`.
@Suite(.serialized) struct MetricsEndpointTests {
    static let metrics = "metrics:\n  listen: 127.0.0.1:0\n"

    static func device(_ status: [String: Any], _ name: String) -> [String: Any] {
        (status["devices"] as? [[String: Any]] ?? []).first { $0["name"] as? String == name } ?? [:]
    }

    static func number(_ any: Any?) -> Double { (any as? NSNumber)?.doubleValue ?? -1 }

    @Test func offByDefaultTheAgentListensOnNoTCPPort() throws {
        let plant = try QuadTank()
        defer { plant.stop() }
        let agent = try AgentProcess(config: DaemonEndToEndTests.config(port: plant.port))
        defer {
            agent.stop()
            agent.dir.remove()
        }
        let status = try agent.object(["status"])
        #expect(status["metrics"] == nil)
        let pid = try #require((status["pid"] as? NSNumber)?.int32Value)
        #expect(listeningTCPPorts(pid: pid) == [])
    }

    @Test func scrapeAgreesWithStatusAndMovesWithPolls() throws {
        let plant = try QuadTank()
        defer { plant.stop() }
        let agent = try AgentProcess(config: DaemonEndToEndTests.config(port: plant.port) + Self.metrics, check: true)
        defer {
            agent.stop()
            agent.dir.remove()
        }
        #expect(
            eventually { (try? Self.device(agent.object(["status"]), "plant_b")["polls"]).map(Self.number) ?? 0 >= 3 })
        let address = try #require(try agent.object(["status"])["metrics"] as? String, "\(agent.log)")
        #expect(address.hasPrefix("127.0.0.1:"))
        let pid = try #require((try agent.object(["status"])["pid"] as? NSNumber)?.int32Value)
        #expect(listeningTCPPorts(pid: pid) == [Int(address.split(separator: ":")[1])!])

        let before = try agent.object(["status"])
        let scrape = try MetricsScrape(url: "http://\(address)/metrics")
        let after = try agent.object(["status"])
        #expect(scrape.status == 200)
        #expect(scrape.contentType?.hasPrefix("text/plain; version=0.0.4") == true)
        for (name, type) in [
            ("edgepilot_device_polls", "counter"), ("edgepilot_device_connected", "gauge"),
            ("edgepilot_device_poll_duration_seconds", "histogram"), ("edgepilot_history_rows_written", "counter"),
            ("edgepilot_history_queue_depth", "gauge"), ("edgepilot_history_commit_duration_seconds", "histogram"),
            ("edgepilot_history_database_bytes", "gauge"), ("edgepilot_device_last_good_age_seconds", "gauge"),
        ] {
            #expect(scrape.families[name]?.type == type, "\(name): \(String(describing: scrape.families[name]?.type))")
        }
        for device in ["plant", "plant_b"] {
            let d = ["device": device]
            let polls = try #require(scrape.value("edgepilot_device_polls_total", d))
            // Polls move between the two status calls; the scrape lies between them.
            #expect(Self.number(Self.device(before, device)["polls"]) <= polls)
            #expect(polls <= Self.number(Self.device(after, device)["polls"]))
            #expect(scrape.value("edgepilot_device_connected", d) == 1)
            // One poll-duration observation per poll, copied under the same lock as the poll count.
            #expect(scrape.value("edgepilot_device_poll_duration_seconds_count", d) == polls)
            #expect(
                scrape.value("edgepilot_device_poll_duration_seconds_bucket", d.merging(["le": "+Inf"]) { $1 }) == polls
            )
            #expect(
                scrape.value("edgepilot_device_errors_total", d) == Self.number(Self.device(after, device)["errors"]))
            let age = try #require(scrape.value("edgepilot_device_last_good_age_seconds", d))
            #expect(age >= 0 && age < 5)
        }
        let history = try #require(after["history"] as? [String: Any])
        #expect(scrape.value("edgepilot_history_commits_total")! <= Self.number(history["commits"]))
        #expect(
            scrape.value("edgepilot_history_commit_duration_seconds_count")! == scrape.value(
                "edgepilot_history_commits_total")!)
        #expect(scrape.value("edgepilot_history_dropped_total") == Self.number(history["dropped"]))
        #expect(scrape.value("edgepilot_history_database_bytes")! > 0)
        #expect(scrape.value("edgepilot_tags") == Self.number(after["tagCount"]))

        // A second scrape later: counters have moved with the polls.
        let polls0 = try #require(scrape.value("edgepilot_device_polls_total", ["device": "plant"]))
        let rows0 = try #require(scrape.value("edgepilot_history_rows_written_total"))
        Thread.sleep(forTimeInterval: 1)
        let later = try MetricsScrape(url: "http://\(address)/metrics")
        #expect(try #require(later.value("edgepilot_device_polls_total", ["device": "plant"])) >= polls0 + 5)
        #expect(try #require(later.value("edgepilot_history_rows_written_total")) > rows0)
        #expect(later.value("edgepilot_metrics_scrapes_total") == 1)
        #expect(try MetricsScrape(url: "http://\(address)/other").status == 404)
        #expect(try agent.cli(["status"]).stdout.contains("metrics http://\(address)/metrics"))
    }

    @Test func sparkplugSessionAndCountersAgreeWithMQTTStatus() throws {
        let plant = try QuadTank()
        defer { plant.stop() }
        let broker = try MosquittoBroker()
        try broker.start()
        defer { broker.stop() }
        let sparkplug = """
            sparkplug:
              group_id: Plant1
              edge_node_id: edge1
              brokers:
                - url: mqtt://127.0.0.1:\(broker.port)
              reconnect_min: 100ms
              reconnect_max: 500ms

            """
        let agent = try AgentProcess(config: DaemonEndToEndTests.config(port: plant.port) + sparkplug + Self.metrics)
        defer {
            agent.stop()
            agent.dir.remove()
        }
        let address = try #require(try agent.object(["status"])["metrics"] as? String)
        let url = "http://\(address)/metrics"
        #expect(
            eventually(timeout: 15) { (try? agent.mqttStatus())?["sessionState"] as? String == "online" },
            "\(String(describing: try? agent.mqttStatus()))\n\(agent.log)")
        let before = try agent.mqttStatus()
        let scrape = try MetricsScrape(url: url)
        let after = try agent.mqttStatus()
        #expect(scrape.value("edgepilot_sparkplug_session_state", ["state": "online"]) == 1)
        #expect(scrape.value("edgepilot_sparkplug_session_state", ["state": "disconnected"]) == 0)
        #expect(scrape.value("edgepilot_sparkplug_connected") == 1)
        let published = try #require(scrape.value("edgepilot_sparkplug_messages_published_total"))
        #expect(Self.number(before["messagesPublished"]) <= published)
        #expect(published <= Self.number(after["messagesPublished"]))
        #expect(published > 0)
        #expect(scrape.value("edgepilot_sparkplug_births_total") == Self.number(after["births"]))
        #expect(scrape.value("edgepilot_sparkplug_commands_total", ["result": "refused"]) == 0)

        // The broker goes away: the session state follows.
        broker.stop()
        #expect(
            eventually(timeout: 15) {
                (try? MetricsScrape(url: url))?.value("edgepilot_sparkplug_session_state", ["state": "disconnected"])
                    == 1
            })
    }

    @Test func slowAndOversizedClientsStallNeitherTheEndpointNorThePolls() throws {
        let plant = try QuadTank()
        defer { plant.stop() }
        let agent = try AgentProcess(config: DaemonEndToEndTests.config(port: plant.port) + Self.metrics)
        defer {
            agent.stop()
            agent.dir.remove()
        }
        let address = try #require(try agent.object(["status"])["metrics"] as? String)
        let port = Int(address.split(separator: ":")[1])!
        #expect(eventually { (try? Self.device(agent.object(["status"]), "plant")["state"] as? String) == "connected" })

        // A slowloris holds a connection open, one byte every 200 ms, for 6 s; another client sends 64 KiB of headers.
        let slow = try TCPTrickle(port: port)
        let trickle = Thread {
            for _ in 0..<30 {
                slow.send("a")
                usleep(200_000)
            }
        }
        trickle.start()
        let big = try TCPTrickle(port: port)
        big.send("GET /metrics HTTP/1.1\r\nX-Big: " + String(repeating: "b", count: 65_536) + "\r\n\r\n")

        let polls0 = Self.number(Self.device(try agent.object(["status"]), "plant")["polls"])
        let started = Date()
        let scrape = try MetricsScrape(url: "http://\(address)/metrics")
        // The scrape waited behind at most the two bad clients' read limits (2 s each), not the 6 s slowloris.
        #expect(Date().timeIntervalSince(started) < 5.5)
        #expect(scrape.status == 200)
        #expect(try #require(scrape.value("edgepilot_metrics_dropped_connections_total")) >= 1)
        // The polls went on meanwhile (10 per second at 100 ms).
        #expect(Self.number(Self.device(try agent.object(["status"]), "plant")["polls"]) >= polls0 + 5)
        #expect(agent.isRunning)
    }

    @Test func configCheckWarnsOfANonLoopbackAddressAndRejectsAMalformedOne() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let binary = productsDirectory.appendingPathComponent("edgepilot").path
        func check(_ listen: String) throws -> CommandResult {
            let path = dir.path + "/edgepilot.yaml"
            try
                (DaemonEndToEndTests.config(port: 502).replacingOccurrences(of: "@DIR@", with: dir.path)
                + "metrics: {listen: \(listen)}\n").write(toFile: path, atomically: true, encoding: .utf8)
            return try runCommand(binary, ["config", "check", path])
        }
        let open = try check("0.0.0.0:9464")
        #expect(open.status == 0, "\(open.stdout)\(open.stderr)")
        #expect((open.stdout + open.stderr).contains("not loopback"), "\(open.stdout)\(open.stderr)")
        let local = try check("127.0.0.1:9464")
        #expect(local.status == 0)
        #expect(!(local.stdout + local.stderr).contains("not loopback"))
        let bad = try check("localhost")
        #expect(bad.status != 0)
        #expect((bad.stdout + bad.stderr).contains("is not HOST:PORT"), "\(bad.stdout)\(bad.stderr)")
    }
}

/// A TCP client that writes bytes as slowly as its test likes and never reads.
final class TCPTrickle: @unchecked Sendable {
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        guard ok else { throw PeerError("cannot connect to 127.0.0.1:\(port)") }
    }

    deinit { close(fd) }

    func send(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }
}
