import Foundation
import MQTT
import Sparkplug
import TestSupport
import Testing

private func nowMs() -> UInt64 { UInt64(Date().timeIntervalSince1970 * 1000) }

/// Wires an `EdgeNodeSession` to an `MQTTClient` the way the agent will: one lock serialises session calls and
/// the publishes they produce, so seq order on the wire is the order the session numbered them.
private final class EdgeNodeDriver: @unchecked Sendable {
    private let lock = NSLock()
    private var session: EdgeNodeSession
    private let store: FileBdSeqStore
    private(set) var client: MQTTClient!
    private(set) var errors: [String] = []

    init(session: EdgeNodeSession, store: FileBdSeqStore, port: Int) throws {
        self.session = session
        self.store = store
        let config = MQTTClientConfiguration(
            brokers: [MQTTBroker(host: "127.0.0.1", port: port)], clientID: "edgepilot-\(UUID().uuidString.prefix(8))",
            keepAlive: 10,
            reconnect: MQTTReconnectPolicy(initialDelay: .milliseconds(100), startupDelayMax: .zero))
        client = try MQTTClient(configuration: config) { [weak self] event in self?.handle(event) }
        client.willProvider = { [weak self] _ in self?.prepareWill() }
    }

    var isOnline: Bool { locked { session.isOnline } }

    private func locked<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    private func prepareWill() -> MQTTMessage {
        locked {
            let will = session.prepareConnect(now: nowMs())
            // Persisted before CONNECT, so a crash right after cannot reuse this bdSeq.
            do { try store.save(session.bdSeq!) } catch { errors.append("bdSeq store: \(error)") }
            return MQTTMessage(topic: will.topic, payload: will.payload, qos: .atLeastOnce, retain: will.retain)
        }
    }

    private func handle(_ event: MQTTClientEvent) {
        switch event {
        case .connected: step { $0.connected(now: nowMs()) }
        case .disconnected: locked { session.connectionLost() }
        case .message(let m): step { try $0.handleMessage(topic: m.topic, payload: m.payload, now: nowMs()) }
        default: break
        }
    }

    /// Runs one session transition and performs its actions under the same lock.
    func step(_ transition: (inout EdgeNodeSession) throws -> [EdgeNodeAction]) {
        locked {
            do {
                perform(try transition(&session))
            } catch {
                errors.append("\(error)")
            }
        }
    }

    private func perform(_ actions: [EdgeNodeAction]) {
        for action in actions {
            do {
                switch action {
                case .publish(let p):
                    try client.publish(
                        MQTTMessage(
                            topic: p.topic, payload: p.payload, qos: p.qos == 1 ? .atLeastOnce : .atMostOnce,
                            retain: p.retain))
                case .subscribe(let topic, let qos):
                    try client.subscribe(topic, qos: qos == 1 ? .atLeastOnce : .atMostOnce)
                case .nextServer:
                    client.moveToNextBroker()
                case .disconnect, .nodeCommand, .deviceCommand:
                    // disconnect: the caller stops the client after shutdown (stop() must not run on the network
                    // thread); commands: nothing to write to in this test.
                    break
                }
            } catch {
                errors.append("\(error)")
            }
        }
    }

    func shutdown() {
        step { $0.shutdown(now: nowMs()) }
        client.stop()
    }
}

/// Reads the JSON lines the Python host writes.
private struct HostLog {
    let path: String
    var entries: [[String: Any]] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }
    var messages: [[String: Any]] { entries.filter { $0["topic"] != nil } }
    func count(_ type: String) -> Int { messages.filter { kind($0) == type }.count }

    func waitFor(_ what: String, timeout: TimeInterval = 10, _ predicate: (HostLog) -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !predicate(self) {
            guard Date() < deadline else { throw TestFailure("timed out waiting for \(what); host saw:\n\(entries)") }
            usleep(20_000)
        }
    }
}

private func kind(_ message: [String: Any]) -> String {
    (message["topic"] as? String)?.split(separator: "/").dropFirst(2).first.map(String.init) ?? ""
}

private func bdSeqOf(_ message: [String: Any]) -> Int64? {
    (message["payload"] as? [String: Any])?.metric("bdSeq")?.int("value")
}

@Suite(.serialized) struct EdgeNodeIntegrationTests {
    @Test func edgeNodeSessionOverMosquittoAsSeenByATahuHost() throws {
        let broker = try MosquittoBroker()
        try broker.start()
        defer { broker.stop() }
        let logPath = broker.directory.appendingPathComponent("host.jsonl").path
        let host = try SpawnedProcess(
            try venvPython(),
            [
                "-W", "ignore", peerScript("sparkplug_host.py"), "--port", "\(broker.port)", "--group", "Plant1",
                "--node", "edge1", "--host-id", "IntegrationHost", "--out", logPath, "--rebirth-after", "3",
                "--duration", "60",
            ], output: broker.directory.appendingPathComponent("host.stderr").path)
        defer { host.terminate() }
        let log = HostLog(path: logPath)
        try log.waitFor("the host's STATE birth") { $0.entries.contains { $0["event"] as? String == "ready" } }

        let store = FileBdSeqStore(path: broker.directory.appendingPathComponent("bdseq").path)
        func makeSession() throws -> EdgeNodeSession {
            var s = try EdgeNodeSession(
                configuration: EdgeNodeConfiguration(
                    groupID: "Plant1", edgeNodeID: "edge1", primaryHostID: "IntegrationHost"),
                nodeMetrics: [
                    SparkplugMetric(
                        name: "Temperature", timestamp: nowMs(), value: .double(21.5),
                        properties: [.engUnit("°C"), .engLow(-20), .engHigh(80)]),
                    SparkplugMetric(name: "Counter", timestamp: nowMs(), value: .int32(-1)),
                ],
                lastBdSeq: store.load())
            _ = try s.addDevice(
                "Pump1",
                metrics: [
                    SparkplugMetric(name: "Flow", timestamp: nowMs(), value: .float(0), properties: [.engUnit("m3/h")]),
                    SparkplugMetric(
                        name: "Level", timestamp: nowMs(), value: .int16(-7), properties: [.quality(.stale)]),
                ], now: nowMs())
            return s
        }

        // Session 1: births gated by STATE, data, rebirth on NCMD, then the connection dies (Will).
        let first = try EdgeNodeDriver(session: try makeSession(), store: store, port: broker.port)
        first.client.start()
        var counter: Int32 = 0
        let deadline = Date().addingTimeInterval(15)
        while log.count("NBIRTH") < 2 || log.messages.last.map(kind) == "NBIRTH"
            || log.messages.last.map(kind) == "DBIRTH"
        {
            guard Date() < deadline else { throw TestFailure("no rebirth; host saw:\n\(log.entries)") }
            // Rebirth requests are coalesced by the session; the driver serves them when due. While one is pending
            // the session takes no data (`isOnline` is false), as the specification asks.
            first.step { $0.serveDueRebirth(now: nowMs()) }
            if first.isOnline {
                counter += 1
                first.step {
                    try $0.updateNode(
                        [SparkplugMetric(name: "Counter", timestamp: nowMs(), value: .int32(counter))], now: nowMs())
                }
                first.step {
                    try $0.updateDevice(
                        "Pump1", [SparkplugMetric(name: "Flow", timestamp: nowMs(), value: .float(Float(counter) / 2))],
                        now: nowMs())
                }
            }
            usleep(30_000)
        }
        first.client.abort()
        try log.waitFor("the Will NDEATH") { $0.count("NDEATH") == 1 }
        #expect(first.errors.isEmpty, "\(first.errors)")

        // Session 2: a new process would read the stored bdSeq; the next CONNECT uses it + 1.
        let second = try EdgeNodeDriver(session: try makeSession(), store: store, port: broker.port)
        second.client.start()
        try log.waitFor("the second session's births") { $0.count("NBIRTH") == 3 && $0.count("DBIRTH") == 3 }
        second.step {
            try $0.updateNode(
                [SparkplugMetric(name: "Temperature", timestamp: nowMs(), value: .double(22))], now: nowMs())
        }
        try log.waitFor("data of the second session") { $0.count("NDATA") > 0 && kind($0.messages.last!) == "NDATA" }
        second.shutdown()
        try log.waitFor("the explicit NDEATH") { $0.count("NDEATH") == 2 }
        #expect(second.errors.isEmpty, "\(second.errors)")
        host.terminate()

        // What the host saw from the node (its own NCMD comes back on the group subscription too).
        let msgs = log.messages.filter { kind($0) != "NCMD" }
        #expect(!msgs.contains { $0["error"] != nil }, "payloads the Tahu schema could not parse: \(msgs)")
        #expect(!msgs.contains { ($0["topic"] as? String)?.hasPrefix("spBv1.0/Plant1/") == false })
        let firstBirth = try #require(msgs.first)
        #expect(kind(firstBirth) == "NBIRTH")
        for m in msgs {
            let k = kind(m)
            #expect(m.bool("retain") == false, "\(k) published retained")
            #expect(m.int("qos") == (k == "NDEATH" ? 1 : 0), "\(k) QoS")
        }

        // NBIRTH content.
        let nbirth = try #require(firstBirth["payload"] as? [String: Any])
        #expect(nbirth.uint("seq") == 0)
        #expect(nbirth.uint("timestamp") != nil)
        let rebirthMetric = try #require(nbirth.metric("Node Control/Rebirth"))
        #expect(rebirthMetric.string("datatype_name") == "Boolean")
        #expect(rebirthMetric.bool("value") == false)
        #expect(rebirthMetric["alias"] is NSNull)
        #expect(nbirth.metric("Node Control/Next Server") != nil)
        #expect(nbirth.metric("bdSeq")?.string("datatype_name") == "Int64")
        let temperature = try #require(nbirth.metric("Temperature"))
        #expect(temperature.string("datatype_name") == "Double")
        #expect(temperature.dict("properties")?.dict("engUnit")?.string("value") == "°C")
        #expect(nbirth.metric("Counter")?.int("value") == -1)
        #expect(nbirth.metrics.allSatisfy { $0.uint("timestamp") != nil })

        // DBIRTH right after NBIRTH, before any data.
        let dbirthMsg = msgs[1]
        #expect(kind(dbirthMsg) == "DBIRTH")
        #expect(dbirthMsg["topic"] as? String == "spBv1.0/Plant1/DBIRTH/edge1/Pump1")
        let dbirth = try #require(dbirthMsg["payload"] as? [String: Any])
        #expect(dbirth.metrics.compactMap { $0.string("name") } == ["Flow", "Level"])
        #expect(dbirth.metric("Level")?.int("value") == -7)
        #expect(dbirth.metric("Level")?.dict("properties")?.dict("Quality")?.uint("value") == 500)

        // NDATA carries the alias declared in NBIRTH and no name.
        let counterAlias = try #require(nbirth.metric("Counter")?.uint("alias"))
        let ndata = try #require(msgs.first { kind($0) == "NDATA" }?["payload"] as? [String: Any])
        #expect(ndata.metrics.first?.uint("alias") == counterAlias)
        #expect(ndata.metrics.first?["name"] is NSNull)

        // seq: continuous from each NBIRTH (0) until the next NBIRTH; NDEATH carries none.
        var expected: UInt64? = nil
        for m in msgs {
            let p = m["payload"] as? [String: Any] ?? [:]
            switch kind(m) {
            case "NBIRTH":
                #expect(p.uint("seq") == 0)
                expected = 1
            case "NDEATH":
                #expect(p["seq"] is NSNull)
                expected = nil
            default:
                #expect(expected != nil, "\(kind(m)) outside a birth")
                #expect(p.uint("seq") == expected, "seq gap at \(m)")
                expected = expected.map { ($0 + 1) % 256 }
            }
        }

        // bdSeq: session 1 (two NBIRTHs: initial and rebirth) and its Will share 0; session 2 uses 1.
        let births = msgs.filter { kind($0) == "NBIRTH" }.map(bdSeqOf)
        let deaths = msgs.filter { kind($0) == "NDEATH" }.map(bdSeqOf)
        #expect(births == [0, 0, 1])
        #expect(deaths == [0, 1], "NDEATHs: \(msgs.filter { kind($0) == "NDEATH" })")
        #expect(store.load() == 1)
        // The rebirth came after the host's NCMD and restarted at seq 0 with all DBIRTHs.
        let entries = log.entries
        let ncmdIndex = try #require(entries.firstIndex { $0["event"] as? String == "ncmd_sent" })
        let secondBirthIndex = try #require(entries.indices.filter { kind(entries[$0]) == "NBIRTH" }.dropFirst().first)
        #expect(ncmdIndex < secondBirthIndex)
        #expect(kind(entries[secondBirthIndex + 1]) == "DBIRTH")
    }
}
