import Foundation

/// The Python Sparkplug host (Tests/SparkplugAgentTests/Peers/spb_host.py), an independent peer that decodes with
/// Eclipse Tahu's schema: it records every message of the node, and sends what a test asks for (STATE, NCMD, DCMD).
/// One recorded Sparkplug message, names resolved from the aliases of the births before it.
public struct Received {
    public var topic: String
    public var kind: String
    public var device: String?
    public var seq: Int64?
    public var qos: Int
    public var receivedAt: Int64
    public var metrics: [[String: Any]]
    /// The algorithm of a compressed payload (DEFLATE or GZIP) and the seq its wrapper carried; nil when plain.
    public var compressed: String? = nil
    public var wrapperSeq: Int64? = nil

    public func metric(_ name: String) -> [String: Any]? { metrics.first { $0["name"] as? String == name } }
    /// Replayed store-and-forward data (every metric historical).
    public var isHistorical: Bool { !metrics.isEmpty && metrics.allSatisfy { ($0["is_historical"] as? Bool) == true } }
}

/// The Python host (Tests/SparkplugAgentTests/Peers/spb_host.py): records, and sends what the test asks.
public final class HostRecorder: @unchecked Sendable {
    public let peer: PythonPeer
    public let outPath: String
    public let commandsPath: String

    public init(
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

    public func stop() { peer.stop() }

    public func send(_ command: [String: Any]) throws {
        var data = try JSONSerialization.data(withJSONObject: command)
        data.append(0x0A)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: commandsPath))
        try h.seekToEnd()
        try h.write(contentsOf: data)
        try h.close()
    }

    public var entries: [[String: Any]] {
        guard let text = try? String(contentsOfFile: outPath, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    /// Every message of node edge1, with metric names filled in from the births' aliases.
    public var messages: [Received] {
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
                    receivedAt: (e["t"] as? NSNumber)?.int64Value ?? 0, metrics: metrics,
                    compressed: e["compressed"] as? String, wrapperSeq: (e["compressed_seq"] as? NSNumber)?.int64Value))
        }
        return out
    }

    public func count(_ kind: String) -> Int { messages.filter { $0.kind == kind }.count }

    public func waitFor(_ what: String, timeout: TimeInterval = 20, _ predicate: ([Received]) -> Bool) throws {
        guard eventually(timeout: timeout, { predicate(messages) }) else {
            let tail = messages.suffix(8).map { "\($0.kind) seq=\($0.seq ?? -1) \($0.metrics.count) metrics" }
            throw PeerError("timed out waiting for \(what); last messages: \(tail)")
        }
    }
}

extension Dictionary where Key == String, Value == Any {
    public func double(_ key: String) -> Double? { (self[key] as? NSNumber)?.doubleValue }
    public func int(_ key: String) -> Int64? { (self[key] as? NSNumber)?.int64Value }
    public func bool(_ key: String) -> Bool? { (self[key] as? NSNumber)?.boolValue }
    public func property(_ key: String) -> Any? {
        ((self["properties"] as? [String: Any])?[key] as? [String: Any])?["value"]
    }
}

/// The quadruple-tank simulator with measurement noise, so every level changes on every poll.
public func noisyPlant() throws -> QuadTank {
    try QuadTank(extraArguments: ["--noise", "0.05", "--seed", "7"])
}

/// seq must go +1 per message (255 → 0) from each NBIRTH on; NDEATH carries none. Returns the first break.
public func seqBreak(_ messages: [Received]) -> String? {
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
