import ArgumentParser
import Configuration
import Foundation
import MQTT
import Sparkplug
import Tags

extension MQTTCommand {
    /// `edgepilot mqtt watch`: what Ignition receives from this node, without Ignition. It connects to the node's
    /// first broker with the node's own credentials and TLS, subscribes to the node's topics and decodes every
    /// message — births, data, commands, deaths — resolving aliases through the births it has seen.
    struct Watch: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Decode this node's Sparkplug traffic on the broker: births, data, commands, deaths.",
            discussion: """
                Aliases are resolved from the births seen while watching; `edgepilot mqtt rebirth` makes the node \
                publish them again. With --json (or --format json) every message is one JSON object per line.
                """)

        @Option(name: .long, help: "The agent's configuration: broker, credentials, group and edge node ids.")
        var config: String = "/etc/edgepilot/edgepilot.yaml"
        @Option(name: .long, help: "Stop after this many messages.")
        var count: Int?
        @Option(name: .long, help: "Stop after this many seconds.")
        var seconds: Double?
        @OptionGroup var output: OutputOptions

        func run() throws {
            let loaded: LoadedConfiguration
            do {
                loaded = try ConfigurationLoader.load(contentsOf: config)
            } catch {
                throw CLIError("\(config): \(error)")
            }
            guard let settings = loaded.configuration.sparkplug, let broker = settings.brokers.first else {
                throw CLIError("\(config) has no sparkplug section with a broker")
            }
            var password: String?
            if let file = broker.passwordFile {
                password = try String(contentsOfFile: file, encoding: .utf8)
                    .split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init)
            }
            let tls = broker.tls.map {
                MQTTTLSConfiguration(
                    caFile: $0.caFile, certificateFile: $0.certificateFile, keyFile: $0.keyFile, verifyServer: $0.verify
                )
            }
            let inbox = Inbox()
            let filter = "spBv1.0/\(settings.groupID)/+/\(settings.edgeNodeID)/#"
            let client = try MQTTClient(
                configuration: MQTTClientConfiguration(
                    brokers: [
                        MQTTBroker(
                            host: broker.host, port: broker.port,
                            security: MQTTSecurity(username: broker.username, password: password, tls: tls))
                    ],
                    clientID: "edgepilot-watch-\(getpid())", keepAlive: 30)
            ) { event in inbox.put(event) }
            client.start()
            defer { client.stop() }
            let deadline = seconds.map { Date(timeIntervalSinceNow: $0) } ?? .distantFuture
            var decoder = WatchDecoder()
            var printed = 0
            while count.map({ printed < $0 }) ?? true, Date() < deadline {
                for event in inbox.take(until: min(deadline, Date(timeIntervalSinceNow: 1))) {
                    switch event {
                    case .connected:
                        try? client.subscribe(filter, qos: .atLeastOnce)
                        if !output.json { FileHandle.standardError.write(Data("watching \(filter)\n".utf8)) }
                    case .message(let m):
                        guard count.map({ printed < $0 }) ?? true else { break }
                        let entry = decoder.decode(m)
                        print(output.json ? entry.jsonLine : entry.text)
                        // Line by line, also into a pipe or a file (`| jq`, `> watch.jsonl`).
                        fflush(nil)
                        printed += 1
                    case .connectionFailed(let error, _):
                        FileHandle.standardError.write(Data("\(error)\n".utf8))
                    default: break
                    }
                }
            }
        }
    }
}

/// Client events handed from libmosquitto's thread to the command's.
private final class Inbox: @unchecked Sendable {
    private let cond = NSCondition()
    private var events: [MQTTClientEvent] = []

    func put(_ e: MQTTClientEvent) {
        cond.withLock {
            events.append(e)
            cond.broadcast()
        }
    }

    func take(until deadline: Date) -> [MQTTClientEvent] {
        cond.withLock {
            while events.isEmpty && cond.wait(until: deadline) {}
            defer { events.removeAll() }
            return events
        }
    }
}

/// One decoded message, for text and JSON output.
struct WatchEntry {
    var json: [String: Any]
    var text: String

    var jsonLine: String {
        let data = (try? JSONSerialization.data(withJSONObject: json, options: [.sortedKeys, .withoutEscapingSlashes]))
        return data.map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
}

/// Decodes the node's messages, remembering each birth's aliases and datatypes (per node or device) so data and
/// commands that carry only aliases are shown by name.
struct WatchDecoder {
    private var known: [String: [UInt64: (name: String, type: SparkplugDataType)]] = [:]

    mutating func decode(_ m: MQTTMessage) -> WatchEntry {
        let now = Date()
        let parts = m.topic.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        let kind = parts.count > 2 ? parts[2] : "?"
        let device = parts.count > 4 ? parts[4] : nil
        let scope = device ?? ""
        var json: [String: Any] = [
            "topic": m.topic, "type": kind, "qos": m.qos == .atLeastOnce ? 1 : 0,
            "received": Int64(now.timeIntervalSince1970 * 1000),
        ]
        if let device { json["device"] = device }
        let stamp = ISO8601DateFormatter.string(
            from: now, timeZone: .current, formatOptions: [.withFullTime, .withFractionalSeconds])
        let table = known[scope] ?? [:]
        let payload: SparkplugPayload
        do {
            // `sparkplug.compression`: shown as what Ignition sees once MQTT Engine has decompressed it.
            let (bytes, algorithm) = try SparkplugCompression.decompressIfNeeded(m.payload)
            if let algorithm { json["compressed"] = algorithm.rawValue }
            payload = try SparkplugPayload(decoding: bytes) { name, alias in
                if let alias, let k = table[alias] { return k.type }
                return table.values.first { $0.name == name }?.type
            }
        } catch {
            json["error"] = "\(error)"
            return WatchEntry(json: json, text: "\(stamp) \(kind) \(device ?? "") undecodable: \(error)")
        }
        if kind.hasSuffix("BIRTH") {
            var aliases: [UInt64: (name: String, type: SparkplugDataType)] = [:]
            for metric in payload.metrics {
                if let alias = metric.alias, let name = metric.name { aliases[alias] = (name, metric.dataType) }
            }
            known[scope] = aliases
        }
        let names = known[scope] ?? [:]
        if let seq = payload.seq { json["seq"] = seq }
        if let ts = payload.timestamp { json["timestamp"] = ts }
        var lines = [
            "\(stamp) \(kind)\(device.map { " " + $0 } ?? "")"
                + (payload.seq.map { " seq=\($0)" } ?? "") + " \(payload.metrics.count) metric(s)"
                + (json["compressed"].map { " (\($0) compressed)" } ?? "")
        ]
        var metrics: [[String: Any]] = []
        for metric in payload.metrics {
            let name = metric.name ?? metric.alias.flatMap { names[$0]?.name }
            metrics.append(Self.json(metric, name: name))
            Self.describe(metric, name: name, indent: "  ", into: &lines)
        }
        json["metrics"] = metrics
        return WatchEntry(json: json, text: lines.joined(separator: "\n"))
    }

    /// One metric as JSON; a template's members and parameters nested under `template`.
    static func json(_ metric: SparkplugMetric, name: String?) -> [String: Any] {
        var j: [String: Any] = ["datatype": "\(metric.dataType)"]
        if let name { j["name"] = name }
        if let alias = metric.alias { j["alias"] = alias }
        if let ts = metric.timestamp { j["timestamp"] = ts }
        if metric.isHistorical { j["historical"] = true }
        if case .template(let t)? = metric.value {
            var tj: [String: Any] = [
                "is_definition": t.isDefinition, "members": t.metrics.map { json($0, name: $0.name) },
            ]
            if let v = t.version { tj["version"] = v }
            if let ref = t.templateRef { tj["template_ref"] = ref }
            var params: [String: Any] = [:]
            for p in t.parameters { params[p.name] = p.value.map { text($0) } ?? NSNull() }
            if !params.isEmpty { tj["parameters"] = params }
            j["template"] = tj
            j["value"] = NSNull()
        } else {
            j["value"] = metric.value.map { text($0) } ?? NSNull()
        }
        var props: [String: Any] = [:]
        for p in metric.properties { props[p.key] = p.value.map { text($0) } ?? NSNull() }
        if !props.isEmpty { j["properties"] = props }
        return j
    }

    /// One metric as text lines; a template definition or instance as a heading with its members indented below.
    static func describe(_ metric: SparkplugMetric, name: String?, indent: String, into lines: inout [String]) {
        let label = "\(indent)\(name ?? metric.label)\(metric.alias.map { " (alias \($0))" } ?? "")"
        let historical = metric.isHistorical ? " historical" : ""
        guard case .template(let t)? = metric.value else {
            let value = metric.value.map { text($0) } ?? "null"
            let quality = metric.quality.map { " [quality \($0.rawValue)]" } ?? ""
            lines.append("\(label) = \(value)\(quality)\(historical)")
            return
        }
        let kind = t.isDefinition ? "template definition" : "instance of \(t.templateRef ?? "?")"
        let params = t.parameters.map { "\($0.name)=\($0.value.map { text($0) } ?? "null")" }
        lines.append(
            "\(label): \(kind)" + (t.version.map { " version \($0)" } ?? "")
                + (params.isEmpty ? "" : " (\(params.joined(separator: ", ")))") + historical)
        for member in t.metrics {
            if t.isDefinition {
                lines.append("\(indent)  \(member.label): \(member.dataType)")
            } else {
                describe(member, name: member.name, indent: indent + "  ", into: &lines)
            }
        }
    }

    /// The value as the case's payload, without the case name: `12.5`, `true`, `"text"`.
    static func text(_ v: SparkplugValue) -> String {
        let s = String(describing: v)
        guard let open = s.firstIndex(of: "("), s.hasSuffix(")") else { return s }
        return String(s[s.index(after: open)..<s.index(before: s.endIndex)])
    }
}
