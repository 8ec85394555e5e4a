import Foundation
import Tags
import Yams

/// Reads and checks the `sparkplug:` section; every problem is located like the rest of the file.
extension Builder {
    mutating func readSparkplug(_ node: Node) {
        guard var r = MappingReader(node, what: "'sparkplug'", sink: &sink) else { return }
        let at = Location(file: sink.file, line: r.line)
        var ids: [(String, String, Node)] = []
        func id(_ key: String, required: Bool, _ r: inout MappingReader, _ sink: inout DiagnosticSink) -> String? {
            guard let text = r.string(key, required: required, sink: &sink) else { return nil }
            if let v = r.value(key) { ids.append((key, text, v)) }
            return text
        }
        let group = id("group_id", required: true, &r, &sink)
        let node = id("edge_node_id", required: true, &r, &sink)
        let host = id("primary_host_id", required: false, &r, &sink)
        for (key, text, v) in ids {
            if let problem = Self.sparkplugIDProblem(text) {
                sink.error(v.line, v.column, "sparkplug \(key) '\(text)' \(problem)", hint: Self.sparkplugIDHint)
            }
        }
        var settings = SparkplugSettings(groupID: group ?? "", edgeNodeID: node ?? "", primaryHostID: host, brokers: [])
        if let list = r.list("brokers", sink: &sink) {
            for b in list { if let broker = readBroker(b) { settings.brokers.append(broker) } }
        }
        if settings.brokers.isEmpty {
            sink.error(
                r.value("brokers")?.line ?? r.line, 1, "sparkplug needs at least one broker under 'brokers'",
                hint: "e.g. brokers: [{url: mqtt://10.0.0.5:1883}]")
        }
        if let text = r.string("mqtt_version", sink: &sink), let v = r.value("mqtt_version") {
            switch text {
            case "3.1.1", "3", "311": settings.mqttVersion = .v311
            case "5", "5.0": settings.mqttVersion = .v5
            default: sink.error(v.line, v.column, "sparkplug mqtt_version must be 3.1.1 or 5, found '\(text)'")
            }
        }
        if let text = r.string("keepalive", sink: &sink), let v = r.value("keepalive") {
            let seconds = Int(text) ?? UnitParser.milliseconds(text).map { $0 / 1000 }
            if let seconds, (5...65_535).contains(seconds) {
                settings.keepAliveSeconds = seconds
            } else {
                sink.error(
                    v.line, v.column, "sparkplug keepalive must be between 5s and 65535s, found '\(text)'",
                    hint: "write it with a unit, e.g. 30s")
            }
        }
        if let ms = r.duration("reconnect_min", sink: &sink) { settings.reconnectMinMilliseconds = max(10, ms) }
        if let ms = r.duration("startup_delay_max", sink: &sink), let v = r.value("startup_delay_max") {
            if (0...600_000).contains(ms) {
                settings.startupDelayMaxMilliseconds = ms
            } else {
                sink.error(v.line, v.column, "sparkplug startup_delay_max must be between 0s and 10min")
            }
        }
        if let ms = r.duration("reconnect_max", sink: &sink) { settings.reconnectMaxMilliseconds = max(10, ms) }
        if settings.reconnectMaxMilliseconds < settings.reconnectMinMilliseconds {
            sink.error(r.line, 1, "sparkplug reconnect_max is shorter than reconnect_min")
        }
        if let path = r.string("bdseq_path", sink: &sink) { settings.bdSeqPath = resolve(path) }
        if let n = r.value("store_and_forward"),
            var s = MappingReader(n, what: "'sparkplug.store_and_forward'", sink: &sink)
        {
            if let bytes = s.size("max_bytes", sink: &sink) {
                if bytes < 1 << 20, let v = s.value("max_bytes") {
                    sink.error(v.line, v.column, "store_and_forward max_bytes must be at least 1MiB")
                } else {
                    settings.storeAndForward.maxBytes = bytes
                }
            }
            if let n = s.int("max_samples", range: 1000...1_000_000_000, sink: &sink) {
                settings.storeAndForward.maxSamples = n
            }
            if let b = s.bool("confirm_live", sink: &sink) { settings.storeAndForward.confirmLive = b }
            if let n = s.int("unconfirmed_samples", range: 256...1_000_000, sink: &sink) {
                settings.storeAndForward.unconfirmedSamples = n
                if !settings.storeAndForward.confirmLive, let v = s.value("unconfirmed_samples") {
                    sink.warning(v.line, v.column, "unconfirmed_samples has no effect with confirm_live: false")
                }
            }
            s.reportUnknownKeys(sink: &sink)
        }
        if let n = r.value("replay"), var s = MappingReader(n, what: "'sparkplug.replay'", sink: &sink) {
            if let m = s.int("metrics_per_message", range: 1...10_000, sink: &sink) {
                settings.replay.metricsPerMessage = m
            }
            if let rate = s.double("messages_per_second", sink: &sink), let v = s.value("messages_per_second") {
                if rate < 0 {
                    sink.error(v.line, v.column, "replay messages_per_second must be 0 (unthrottled) or more")
                } else {
                    settings.replay.messagesPerSecond = rate
                }
            }
            if let text = s.string("delivery", sink: &sink), let v = s.value("delivery") {
                if let d = ReplayDelivery(rawValue: text) {
                    settings.replay.delivery = d
                } else {
                    sink.error(v.line, v.column, "replay delivery must be in_order or alongside, found '\(text)'")
                }
            }
            s.reportUnknownKeys(sink: &sink)
        }
        if let text = r.string("compression", sink: &sink), let v = r.value("compression") {
            if let c = SparkplugPayloadCompression(rawValue: text.lowercased()) {
                settings.compression = c
            } else {
                sink.error(v.line, v.column, "sparkplug compression must be off, deflate or gzip, found '\(text)'")
            }
        }
        readCommands(&r, into: &settings)
        readTemplates(&r, into: &settings)
        r.reportUnknownKeys(sink: &sink)
        sparkplug = (settings, at)
    }

    /// `commands`, `command_allow_list`, `command_limits`, and the warnings for commands over a broker connection
    /// that does not protect them.
    private mutating func readCommands(_ r: inout MappingReader, into settings: inout SparkplugSettings) {
        if let text = r.string("commands", sink: &sink), let v = r.value("commands") {
            if let policy = SparkplugCommandPolicy(rawValue: text) {
                settings.commands = policy
            } else {
                sink.error(
                    v.line, v.column, "sparkplug commands must be off, read_only_metrics or allow_list, found '\(text)'"
                )
            }
        }
        if let list = r.list("command_allow_list", sink: &sink) {
            for item in list {
                if case .scalar(let name) = item, !name.string.isEmpty {
                    settings.commandAllowList.append(name.string)
                } else {
                    sink.error(item.line, item.column, "command_allow_list entries are metric names")
                }
            }
            if settings.commands != .allowList, let v = r.value("command_allow_list") {
                sink.warning(v.line, v.column, "command_allow_list has no effect unless commands is allow_list")
            }
        } else if settings.commands == .allowList {
            sink.warning(
                r.value("commands")?.line ?? r.line, 1,
                "commands is allow_list but command_allow_list is empty: every remote write is refused")
        }
        if let n = r.value("command_limits"), var s = MappingReader(n, what: "'sparkplug.command_limits'", sink: &sink)
        {
            if let q = s.int("max_queue", range: 1...100_000, sink: &sink) { settings.commandLimits.maxQueue = q }
            if let ms = s.duration("max_age", sink: &sink), let v = s.value("max_age") {
                if (100...600_000).contains(ms) {
                    settings.commandLimits.maxAgeMilliseconds = ms
                } else {
                    sink.error(v.line, v.column, "command_limits max_age must be between 100ms and 10min")
                }
            }
            if let b = s.size("max_payload", sink: &sink), let v = s.value("max_payload") {
                if (1024...(16 << 20)).contains(b) {
                    settings.commandLimits.maxPayloadBytes = Int(b)
                } else {
                    sink.error(v.line, v.column, "command_limits max_payload must be between 1KiB and 16MiB")
                }
            }
            if let m = s.int("max_metrics", range: 1...100_000, sink: &sink) { settings.commandLimits.maxMetrics = m }
            s.reportUnknownKeys(sink: &sink)
        }
        if let n = r.value("scan_rate_limits"),
            var s = MappingReader(n, what: "'sparkplug.scan_rate_limits'", sink: &sink)
        {
            for key in ["min", "max"] {
                guard let ms = s.duration(key, sink: &sink), let v = s.value(key) else { continue }
                if (1...86_400_000).contains(ms) {
                    if key == "min" {
                        settings.scanRateLimits.minimumMilliseconds = ms
                    } else {
                        settings.scanRateLimits.maximumMilliseconds = ms
                    }
                } else {
                    sink.error(v.line, v.column, "scan_rate_limits \(key) must be between 1ms and 24h")
                }
            }
            if settings.scanRateLimits.minimumMilliseconds > settings.scanRateLimits.maximumMilliseconds {
                sink.error(n.line, n.column, "scan_rate_limits min is above max")
            }
            s.reportUnknownKeys(sink: &sink)
        }
        guard settings.commands != .off else { return }
        // Commands are only as trustworthy as the broker connection that carries them.
        let at = r.value("commands")?.line ?? r.line
        for b in settings.brokers {
            let name = "\(b.tls == nil ? "mqtt" : "mqtts")://\(b.host):\(b.port)"
            if b.tls == nil {
                sink.warning(
                    at, 1,
                    "commands are enabled (\(settings.commands.rawValue)) and broker \(name) is not TLS: commands and "
                        + "credentials cross the network in clear text and can be forged on the way",
                    hint: "use mqtts:// with a tls section, or commands: off")
            }
            if b.username == nil && b.tls?.certificateFile == nil {
                sink.warning(
                    at, 1,
                    "commands are enabled (\(settings.commands.rawValue)) and the agent connects to broker \(name) "
                        + "without credentials: a broker that admits anonymous clients lets anyone send commands",
                    hint: "give the broker username/password_file or a client certificate, and ACLs (docs/SECURITY.md)")
            }
        }
    }

    private mutating func readBroker(_ node: Node) -> SparkplugBrokerSettings? {
        guard var r = MappingReader(node, what: "a sparkplug broker", sink: &sink) else { return nil }
        var host: String?
        var port: Int?
        var secure = false
        if let url = r.string("url", sink: &sink), let v = r.value("url") {
            guard let parsed = Self.parseBrokerURL(url) else {
                sink.error(
                    v.line, v.column, "broker url '\(url)' is not mqtt://host[:port] or mqtts://host[:port]",
                    hint: "or give host and port separately")
                r.reportUnknownKeys(sink: &sink)
                return nil
            }
            (host, port, secure) = parsed
            if r.has("host") { sink.error(v.line, v.column, "give a broker either url or host/port, not both") }
        }
        if let h = r.string("host", sink: &sink) { host = h }
        if let p = r.int("port", range: 1...65535, sink: &sink) { port = p }
        var tls: SparkplugTLSSettings?
        if let t = r.value("tls"), var tr = MappingReader(t, what: "a broker's 'tls'", sink: &sink) {
            let ca = tr.string("ca_file", required: true, sink: &sink)
            let cert = tr.string("cert_file", sink: &sink)
            let key = tr.string("key_file", sink: &sink)
            let verify = tr.bool("verify", sink: &sink) ?? true
            for (k, f) in [("ca_file", ca), ("cert_file", cert), ("key_file", key)] {
                guard let f, let v = tr.value(k) else { continue }
                checkReadable(resolve(f), key: k, at: v)
            }
            if (cert == nil) != (key == nil) {
                sink.error(tr.line, 1, "a broker's tls needs both cert_file and key_file for a client certificate")
            }
            if !verify {
                sink.warning(
                    tr.value("verify")?.line ?? tr.line, 1,
                    "tls verify is off: the broker's certificate is not checked (commissioning only)")
            }
            tr.reportUnknownKeys(sink: &sink)
            if let ca {
                tls = SparkplugTLSSettings(
                    caFile: resolve(ca), certificateFile: cert.map(resolve), keyFile: key.map(resolve), verify: verify)
            }
        }
        if secure && tls == nil {
            sink.error(r.line, 1, "an mqtts:// broker needs a 'tls' section with at least ca_file")
        }
        let username = r.string("username", sink: &sink)
        var passwordFile: String?
        if let p = r.string("password_file", sink: &sink), let v = r.value("password_file") {
            passwordFile = resolve(p)
            checkReadable(passwordFile!, key: "password_file", at: v)
            if tls == nil {
                sink.warning(
                    v.line, v.column,
                    "broker password over plain mqtt://: the password crosses the network in clear text",
                    hint: "use mqtts:// with a tls section")
            }
        }
        r.reportUnknownKeys(sink: &sink)
        guard let host, !host.isEmpty else {
            sink.error(r.line, 1, "a sparkplug broker needs 'url' or 'host'")
            return nil
        }
        return SparkplugBrokerSettings(
            host: host, port: port ?? (tls == nil ? 1883 : 8883), tls: tls, username: username,
            passwordFile: passwordFile)
    }

    /// Device ids become topic levels: they follow the same rules as the node's ids.
    mutating func validateSparkplug() {
        guard let (_, at) = sparkplug else { return }
        for (device, deviceAt) in devices {
            if let problem = Self.sparkplugIDProblem(device.name) {
                sink.error(
                    deviceAt.line, deviceAt.column,
                    "device name '\(device.name)' \(problem); with sparkplug configured it is the Sparkplug device id",
                    hint: Self.sparkplugIDHint)
            }
        }
        _ = at
        validateTemplateTypes()
    }

    private func resolve(_ path: String) -> String {
        path.hasPrefix("/") ? path : baseDirectory + "/" + path
    }

    private mutating func checkReadable(_ path: String, key: String, at v: Node) {
        if !FileManager.default.isReadableFile(atPath: path) {
            sink.error(
                v.line, v.column, "\(key) '\(path)' does not exist or is not readable",
                hint: "relative paths are relative to the configuration file's directory")
        }
    }

    static let sparkplugIDHint = "Sparkplug ids are UTF-8 topic levels: no '+', '/' or '#'"

    /// Why `id` cannot be a Sparkplug group, edge node, device or host id (nil if it can).
    static func sparkplugIDProblem(_ id: String) -> String? {
        if id.isEmpty { return "is empty" }
        if let bad = id.first(where: { $0 == "+" || $0 == "/" || $0 == "#" }) { return "contains '\(bad)'" }
        if id.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F || $0 == "\u{FFFD}" }) {
            return "contains a control character or invalid UTF-8"
        }
        if id.utf8.count > 255 { return "is longer than 255 bytes" }
        return nil
    }

    /// `mqtt://host:port`, `tcp://…`, `mqtts://…`, `ssl://…`; default ports 1883 and 8883.
    static func parseBrokerURL(_ url: String) -> (String, Int, Bool)? {
        let parts = url.components(separatedBy: "://")
        guard parts.count == 2 else { return nil }
        let secure: Bool
        switch parts[0].lowercased() {
        case "mqtt", "tcp": secure = false
        case "mqtts", "ssl", "tls": secure = true
        default: return nil
        }
        var rest = parts[1]
        if rest.hasSuffix("/") { rest.removeLast() }
        guard !rest.isEmpty, !rest.contains("/") else { return nil }
        if rest.hasPrefix("[") {
            // IPv6 literal: [::1]:1883
            guard let close = rest.firstIndex(of: "]") else { return nil }
            let host = String(rest[rest.index(after: rest.startIndex)..<close])
            let tail = rest[rest.index(after: close)...]
            if tail.isEmpty { return (host, secure ? 8883 : 1883, secure) }
            guard tail.hasPrefix(":"), let port = Int(tail.dropFirst()), (1...65535).contains(port) else { return nil }
            return (host, port, secure)
        }
        let hp = rest.split(separator: ":", omittingEmptySubsequences: false)
        guard hp.count <= 2, !hp[0].isEmpty else { return nil }
        if hp.count == 1 { return (String(hp[0]), secure ? 8883 : 1883, secure) }
        guard let port = Int(hp[1]), (1...65535).contains(port) else { return nil }
        return (String(hp[0]), port, secure)
    }
}
