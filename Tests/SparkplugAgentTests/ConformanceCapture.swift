import Foundation
import TestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// One captured life of the edge node, for the conformance suite (docs/SPARKPLUG.md): the daemon is started once
/// against mosquitto, the quadruple-tank plant and the Tahu-decoding Primary Host `Host1`, and driven through what a
/// Sparkplug session meets — births, live data until seq wraps past 255, node data, a DCMD written by alias, an
/// NCMD Rebirth, a device outage (DDEATH, DBIRTH), a broker outage (store and forward, replay), a kill -9 (the
/// broker publishes the Will), a restart and a graceful stop (NDEATH, DISCONNECT) — then a fresh subscriber looks
/// for retained messages. Every assertion of `SparkplugConformanceTests` is checked against this one capture, so
/// the agent starts twice (once after the kill) for more than a hundred assertions.
///
/// Two independent witnesses: what the host decoded with Eclipse Tahu's schema (payloads, QoS as delivered), and
/// mosquitto's own log of the agent's packets (CONNECT flags and Will, PUBLISH QoS and retain as sent, SUBSCRIBE,
/// DISCONNECT).
final class ConformanceCapture: @unchecked Sendable {
    /// One message of node edge1 as the host received it; metrics exactly as decoded (names not filled in).
    struct Message {
        var index: Int
        var topic: String
        var kind: String
        var device: String?
        var qos: Int
        var retain: Bool
        var receivedAt: Int64
        var timestamp: Int64?
        var seq: Int64?
        var metrics: [[String: Any]]
        var error: String?

        var isData: Bool { kind == "NDATA" || kind == "DDATA" }
    }

    static let clientID = "edgepilot-Plant1-edge1"
    static let pumpValue = 3.5

    /// Every message of edge1 the host received, in arrival order.
    let messages: [Message]
    /// Every host log entry (its own commands and connection events included), in order.
    let entries: [[String: Any]]
    /// mosquitto's log, as events of every client (`BrokerLog` per client id).
    let brokerLog: String
    /// What a subscriber that connected after the last NDEATH received: retained messages of the group.
    let retainedAfterwards: [[String: Any]]
    /// The pump voltage the plant held after the DCMD sent by alias.
    let pumpAfterDCMD: Double?
    /// The alias the DCMD was sent with (pump1/voltage's, from the DBIRTH).
    let pumpAlias: Int64?
    /// When the capture started (ms, UTC): nothing the agent sends may claim an earlier time.
    let startedAt: Int64
    /// The exit status of the graceful stop.
    let stopStatus: Int32

    var agent: BrokerLog { BrokerLog(brokerLog, clientID: Self.clientID) }

    /// The capture, made once per test process by the first test that asks.
    static let shared: Result<ConformanceCapture, any Error> = Result { try ConformanceCapture() }

    private init() throws {
        startedAt = Int64(Date().timeIntervalSince1970 * 1000)
        let scenario = try SparkplugScenario(plant: noisyPlant(), host: .init(hostID: "Host1")) { plant, broker in
            SparkplugAgentConfig.text(
                modbusPort: plant, brokerPort: broker, primaryHost: "Host1",
                sparkplugExtra: "  commands: allow_list\n  command_allow_list: [pump1/voltage]\n", pollPeriod: "50ms")
        }
        defer { scenario.stop() }
        let host = scenario.host
        let agent = scenario.agent
        func count(_ kind: String) -> Int { host.count(kind) }

        // Births, then live data until seq wraps (256 messages in one session), and at least one NDATA.
        try host.waitFor("births, NDATA and a seq wrap", timeout: 120) { (ms: [Received]) -> Bool in
            let wrapped = ms.contains { (m: Received) -> Bool in m.kind != "NBIRTH" && m.seq == Int64(0) }
            return wrapped && ms.contains { (m: Received) -> Bool in m.kind == "NDATA" }
        }
        // A DCMD the way a host sends it once it has the births: alias only, no name, no datatype.
        let alias = host.messages.first { $0.kind == "DBIRTH" }?.metric("pump1/voltage")?.int("alias")
        pumpAlias = alias
        if let alias {
            try host.send([
                "cmd": "dcmd", "device": "plant", "metric": "pump1/voltage", "datatype": "Float",
                "value": Self.pumpValue, "alias": alias,
            ])
        }
        var pump: Double?
        _ = eventually(timeout: 15) {
            pump = ((try? scenario.plant.control(["cmd": "get"]))?["v"] as? [Double])?.first
            return pump == Self.pumpValue
        }
        pumpAfterDCMD = pump
        try host.waitFor("the written voltage as DDATA") { (ms: [Received]) -> Bool in
            ms.contains { (m: Received) -> Bool in
                m.kind == "DDATA" && m.metric("pump1/voltage")?.double("value") == Self.pumpValue
            }
        }

        // NCMD Rebirth.
        try host.send(["cmd": "rebirth"])
        try host.waitFor("the rebirth") { (ms: [Received]) -> Bool in ms.filter { $0.kind == "NBIRTH" }.count == 2 }
        try host.waitFor("data after the rebirth") { (ms: [Received]) -> Bool in
            guard let last = ms.last else { return false }
            return !last.isHistorical && last.kind == "DDATA"
        }

        // The device stops answering for 2 s: DDEATH, then DBIRTH when it is back.
        let dbirths = count("DBIRTH")
        try scenario.plant.control(["cmd": "refuse", "seconds": 2])
        try host.waitFor("DDEATH") { (ms: [Received]) -> Bool in ms.contains { $0.kind == "DDEATH" } }
        try host.waitFor("DBIRTH after the outage") { (ms: [Received]) -> Bool in
            ms.filter { $0.kind == "DBIRTH" }.count > dbirths
        }

        // The broker goes away for a while: a new CONNECT (the next bdSeq), births, replay of what was stored.
        scenario.broker.stop()
        usleep(1_500_000)
        try scenario.broker.start()
        try host.waitFor("births after the broker outage", timeout: 30) { (ms: [Received]) -> Bool in
            ms.filter { $0.kind == "NBIRTH" }.count == 3
        }
        try host.waitFor("replay after the broker outage", timeout: 30) { (ms: [Received]) -> Bool in
            let third: Int = ms.lastIndex { $0.kind == "NBIRTH" } ?? ms.count
            return ms[third...].contains { (m: Received) -> Bool in m.isHistorical }
        }

        // kill -9: the broker publishes the Will; the restarted process takes the next bdSeq. (Stopping the broker
        // above made it publish the Will of that session too.)
        let deaths = count("NDEATH")
        agent.kill9()
        try host.waitFor("the Will (NDEATH)") { (ms: [Received]) -> Bool in
            ms.filter { $0.kind == "NDEATH" }.count > deaths
        }
        try agent.start()
        try host.waitFor("births after the restart", timeout: 30) { (ms: [Received]) -> Bool in
            ms.filter { $0.kind == "NBIRTH" }.count == 4
        }
        try host.waitFor("data after the restart") { (ms: [Received]) -> Bool in ms.last?.kind == "DDATA" }

        // Graceful stop: NDEATH, then DISCONNECT.
        stopStatus = agent.stop()
        try host.waitFor("the NDEATH of the stop") { (ms: [Received]) -> Bool in
            ms.filter { $0.kind == "NDEATH" }.count > deaths + 1
        }

        // A subscriber arriving now must find no retained Sparkplug message of the node.
        let probe = try HostRecorder(port: scenario.broker.port, directory: agent.dir.path)
        usleep(1_000_000)
        retainedAfterwards = probe.entries.filter { $0["topic"] != nil }
        probe.stop()

        entries = host.entries
        brokerLog = scenario.broker.log()
        messages = Self.parse(entries)
    }

    private static func parse(_ entries: [[String: Any]]) -> [Message] {
        var out: [Message] = []
        for e in entries {
            guard let topic = e["topic"] as? String else { continue }
            let parts = topic.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            guard parts.count >= 4, parts[1] == "Plant1", parts[3] == "edge1",
                ["NBIRTH", "NDEATH", "NDATA", "DBIRTH", "DDEATH", "DDATA"].contains(parts[2])
            else { continue }
            let payload = e["payload"] as? [String: Any] ?? [:]
            out.append(
                Message(
                    index: out.count, topic: topic, kind: parts[2], device: parts.count > 4 ? parts[4] : nil,
                    qos: e["qos"] as? Int ?? -1, retain: e["retain"] as? Bool ?? false,
                    receivedAt: (e["t"] as? NSNumber)?.int64Value ?? 0,
                    timestamp: (payload["timestamp"] as? NSNumber)?.int64Value,
                    seq: (payload["seq"] as? NSNumber)?.int64Value,
                    metrics: payload["metrics"] as? [[String: Any]] ?? [], error: e["error"] as? String))
        }
        return out
    }

    // MARK: Views of the capture

    func all(_ kind: String) -> [Message] { messages.filter { $0.kind == kind } }

    /// Birth epochs: each NBIRTH with every message up to the next NBIRTH or NDEATH.
    var epochs: [[Message]] {
        var out: [[Message]] = []
        var current: [Message]?
        for m in messages {
            switch m.kind {
            case "NBIRTH":
                if let c = current { out.append(c) }
                current = [m]
            case "NDEATH":
                if let c = current { out.append(c) }
                current = nil
            default:
                current?.append(m)
            }
        }
        if let c = current { out.append(c) }
        return out
    }

    /// Messages that arrived outside any epoch (before the first NBIRTH, or after an NDEATH before the next one).
    var outsideEpochs: [Message] {
        var inEpoch = false
        var out: [Message] = []
        for m in messages {
            if m.kind == "NBIRTH" {
                inEpoch = true
            } else if m.kind == "NDEATH" {
                inEpoch = false
            } else if !inEpoch {
                out.append(m)
            }
        }
        return out
    }

    /// alias → name, from every birth of the capture (aliases are fixed for the life of a configuration).
    var aliasNames: [Int64: String] {
        var out: [Int64: String] = [:]
        for m in messages where m.kind.hasSuffix("BIRTH") {
            for metric in m.metrics {
                if let alias = metric.int("alias"), let name = metric["name"] as? String { out[alias] = name }
            }
        }
        return out
    }

    /// A metric's name, resolved through the births' aliases when it came by alias only.
    func name(_ metric: [String: Any]) -> String? {
        (metric["name"] as? String) ?? metric.int("alias").flatMap { aliasNames[$0] }
    }

    func bdSeq(_ m: Message) -> Int64? {
        m.metrics.first { $0["name"] as? String == "bdSeq" }?.int("value")
    }
}
