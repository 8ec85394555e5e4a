import Foundation
import TestSupport

#if canImport(Glibc)
    import Glibc
#endif

struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// `edgepilot run` as a child process with its own directory; restartable on the same directory and files.
final class SparkplugAgent: @unchecked Sendable {
    let dir: TemporaryDirectory
    let configPath: String
    let logPath: String
    let socket: String
    private(set) var process: SpawnedProcess?
    let binary = productsDirectory.appendingPathComponent("edgepilot").path

    init(config: String) throws {
        dir = try TemporaryDirectory("edgepilot-spb")
        configPath = dir.path + "/edgepilot.yaml"
        logPath = dir.path + "/agent.log"
        socket = dir.path + "/control.sock"
        try config.replacingOccurrences(of: "@DIR@", with: dir.path).write(
            toFile: configPath, atomically: true, encoding: .utf8)
    }

    var historyPath: String { dir.path + "/history.db" }
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func start() throws {
        unlink(socket)
        process = try SpawnedProcess(binary, ["run", "--config", configPath], output: logPath)
        guard eventually(timeout: 20, { FileManager.default.fileExists(atPath: socket) }) else {
            throw Failure("the agent did not create its socket; log:\n\(log)")
        }
    }

    /// SIGTERM: graceful (NDEATH, history flushed).
    @discardableResult
    func stop() -> Int32 {
        defer { process = nil }
        return process?.terminate() ?? 0
    }

    /// kill -9: what a crash or power cut does to the process.
    func kill9() {
        process?.signal(SIGKILL)
        process?.wait()
        process = nil
    }

    func cli(_ arguments: [String]) throws -> CommandResult {
        try runCommand(binary, arguments + ["--socket", socket])
    }

    func json(_ arguments: [String]) throws -> [String: Any] {
        let r = try cli(arguments + ["--json"])
        guard r.status == 0, let j = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        else { throw Failure("\(arguments) failed (\(r.status)): \(r.stderr)\(r.stdout)") }
        return j
    }

    func mqttStatus() throws -> [String: Any] { try json(["mqtt", "status"]) }

    deinit {
        process?.terminate()
        dir.remove()
    }
}

/// One recorded Sparkplug message, names resolved from the aliases of the births before it.
struct Received {
    var topic: String
    var kind: String
    var device: String?
    var seq: Int64?
    var qos: Int
    var receivedAt: Int64
    var metrics: [[String: Any]]

    func metric(_ name: String) -> [String: Any]? { metrics.first { $0["name"] as? String == name } }
    /// Replayed store-and-forward data (every metric historical).
    var isHistorical: Bool { !metrics.isEmpty && metrics.allSatisfy { ($0["is_historical"] as? Bool) == true } }
}

/// The Python host (Tests/SparkplugAgentTests/Peers/spb_host.py): records, and sends what the test asks.
final class HostRecorder: @unchecked Sendable {
    let peer: PythonPeer
    let outPath: String
    let commandsPath: String

    init(
        port: Int, directory: String, hostID: String? = nil, manualState: Bool = false, keepalive: Int = 5,
        extraArguments: [String] = []
    ) throws {
        outPath = directory + "/host-\(UUID().uuidString.prefix(6)).jsonl"
        commandsPath = outPath + ".commands"
        _ = FileManager.default.createFile(atPath: commandsPath, contents: nil)
        var args = [
            "--port", "\(port)", "--group", "Plant1", "--node", "edge1", "--out", outPath, "--commands", commandsPath,
        ]
        if let hostID { args += ["--host-id", hostID] }
        if manualState { args.append("--manual-state") }
        args += ["--keepalive", "\(keepalive)"] + extraArguments
        peer = try PythonPeer(script: "Tests/SparkplugAgentTests/Peers/spb_host.py", arguments: args)
    }

    func stop() { peer.stop() }

    func send(_ command: [String: Any]) throws {
        var data = try JSONSerialization.data(withJSONObject: command)
        data.append(0x0A)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: commandsPath))
        try h.seekToEnd()
        try h.write(contentsOf: data)
        try h.close()
    }

    var entries: [[String: Any]] {
        guard let text = try? String(contentsOfFile: outPath, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    /// Every message of node edge1, with metric names filled in from the births' aliases.
    var messages: [Received] {
        var aliases: [Int64: String] = [:]
        var out: [Received] = []
        for e in entries {
            guard let topic = e["topic"] as? String else { continue }
            let parts = topic.split(separator: "/").map(String.init)
            guard parts.count >= 4, parts[3] == "edge1",
                ["NBIRTH", "NDEATH", "NDATA", "DBIRTH", "DDEATH", "DDATA"].contains(parts[2])
            else { continue }
            let payload = e["payload"] as? [String: Any] ?? [:]
            var metrics = payload["metrics"] as? [[String: Any]] ?? []
            let kind = parts[2]
            for i in metrics.indices {
                let alias = (metrics[i]["alias"] as? NSNumber)?.int64Value
                if let name = metrics[i]["name"] as? String {
                    if let alias, kind.hasSuffix("BIRTH") { aliases[alias] = name }
                } else if let alias, let name = aliases[alias] {
                    metrics[i]["name"] = name
                }
            }
            out.append(
                Received(
                    topic: topic, kind: kind, device: parts.count > 4 ? parts[4] : nil,
                    seq: (payload["seq"] as? NSNumber)?.int64Value, qos: e["qos"] as? Int ?? 0,
                    receivedAt: (e["t"] as? NSNumber)?.int64Value ?? 0, metrics: metrics))
        }
        return out
    }

    func count(_ kind: String) -> Int { messages.filter { $0.kind == kind }.count }

    func waitFor(_ what: String, timeout: TimeInterval = 20, _ predicate: ([Received]) -> Bool) throws {
        guard eventually(timeout: timeout, { predicate(messages) }) else {
            let tail = messages.suffix(8).map { "\($0.kind) seq=\($0.seq ?? -1) \($0.metrics.count) metrics" }
            throw Failure("timed out waiting for \(what); last messages: \(tail)")
        }
    }
}

extension Dictionary where Key == String, Value == Any {
    func double(_ key: String) -> Double? { (self[key] as? NSNumber)?.doubleValue }
    func int(_ key: String) -> Int64? { (self[key] as? NSNumber)?.int64Value }
    func bool(_ key: String) -> Bool? { (self[key] as? NSNumber)?.boolValue }
    func property(_ key: String) -> Any? {
        ((self["properties"] as? [String: Any])?[key] as? [String: Any])?["value"]
    }
}

enum SparkplugAgentConfig {
    /// The quadruple-tank plant's four levels, a writable pump voltage and a raw int16 level.
    static func text(
        modbusPort: Int, brokerPort: Int, primaryHost: String? = nil, metricsPerMessage: Int = 500,
        messagesPerSecond: Double = 20, confirmLive: Bool = true
    ) -> String {
        """
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
            port: \(modbusPort)
            timeout: 500ms
            reconnect_min: 100ms
            reconnect_max: 500ms
        tags:
          - {name: tank1/level, device: plant, area: input_register, address: 0, type: float32, units: cm}
          - {name: tank2/level, device: plant, area: input_register, address: 2, type: float32, units: cm}
          - {name: tank3/level, device: plant, area: input_register, address: 4, type: float32, order: CDAB, units: cm}
          - {name: tank4/level, device: plant, area: input_register, address: 6, type: float32, units: cm}
          - name: pump1/voltage
            device: plant
            area: holding_register
            address: 0
            type: float32
            units: V
            writable: true
            limits: {min: 0, max: 10}
          - {name: tank1/raw, device: plant, area: input_register, address: 100, type: int16}
        sparkplug:
          group_id: Plant1
          edge_node_id: edge1
        \(primaryHost.map { "  primary_host_id: \($0)\n" } ?? "")  brokers:
            - url: mqtt://127.0.0.1:\(brokerPort)
          keepalive: 5s
          reconnect_min: 100ms
          reconnect_max: 500ms
          store_and_forward:
            confirm_live: \(confirmLive)
          replay:
            metrics_per_message: \(metricsPerMessage)
            messages_per_second: \(messagesPerSecond)

        """
    }
}

/// The quadruple-tank simulator with measurement noise, so every level changes on every poll.
func noisyPlant() throws -> QuadTank {
    try QuadTank(extraArguments: ["--noise", "0.05", "--seed", "7"])
}

/// seq must go +1 per message (255 → 0) from each NBIRTH on; NDEATH carries none. Returns the first break.
func seqBreak(_ messages: [Received]) -> String? {
    var last: Int64?
    for (i, m) in messages.enumerated() {
        if m.kind == "NDEATH" {
            last = nil
            continue
        }
        guard let seq = m.seq else { return "message \(i) (\(m.kind)) has no seq" }
        if m.kind == "NBIRTH" {
            if seq != 0 { return "NBIRTH \(i) has seq \(seq)" }
        } else if let l = last, seq != (l + 1) % 256 {
            return "message \(i) (\(m.kind)) has seq \(seq) after \(l)"
        }
        last = seq
    }
    return nil
}
