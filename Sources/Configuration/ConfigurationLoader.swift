import Foundation
import Tags
import Yams

/// A configuration that passed validation, with the warnings found on the way and where each tag was defined.
public struct LoadedConfiguration: Sendable {
    public var configuration: AgentConfiguration
    public var warnings: [ConfigDiagnostic]
    /// File and line of each tag's definition, for messages that point back at the config.
    public var tagLocations: [String: ConfigDiagnostic]
}

/// Reads the agent's YAML configuration (and the CSV register maps it names) into a validated `AgentConfiguration`.
public enum ConfigurationLoader {
    /// Loads and validates the file at `path`; throws every problem found, each with file and line.
    public static func load(contentsOf path: String) throws(ConfigurationError) -> LoadedConfiguration {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError([
                ConfigDiagnostic(
                    file: path, line: 0, message: "cannot read the configuration file: \(describe(error))",
                    hint: "check that the file exists and that this user may read it")
            ])
        }
        let directory = (path as NSString).deletingLastPathComponent
        return try parse(yaml: text, file: path, baseDirectory: directory.isEmpty ? "." : directory)
    }

    /// Validates YAML text; `baseDirectory` resolves relative `tag_files` paths.
    public static func parse(
        yaml: String, file: String, baseDirectory: String = "."
    ) throws(ConfigurationError) -> LoadedConfiguration {
        var sink = DiagnosticSink(file: file)
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw ConfigurationError([yamlDiagnostic(error, file: file)])
        } catch {
            throw ConfigurationError([ConfigDiagnostic(file: file, line: 0, message: describe(error))])
        }
        guard let root, var top = MappingReader(root, what: "the configuration", sink: &sink) else {
            sink.error(1, 1, "the configuration is empty", hint: "start from Config/demo-plant.yaml")
            throw ConfigurationError(sink.diagnostics)
        }
        var builder = Builder(sink: sink, baseDirectory: baseDirectory)
        builder.read(&top)
        top.reportUnknownKeys(sink: &builder.sink)
        builder.validate()
        guard !builder.sink.hasErrors else { throw ConfigurationError(builder.sink.diagnostics) }
        var configuration = AgentConfiguration(
            devices: builder.devices.map {
                var device = $0.0
                device.writeLimits = builder.writeLimits
                return device
            }, tags: builder.tags.map(\.0),
            pollGroups: builder.pollGroups.map(\.0), history: builder.history,
            controlSocketPath: builder.controlSocket, logLevel: builder.logLevel)
        configuration.readOnlyGroup = builder.readOnlyGroup
        configuration.loops = LoopValidator.withSpans(builder.loops.map(\.0), tags: builder.tags.map(\.0))
        configuration.monitors = builder.monitors.map(\.0)
        configuration.sparkplug = builder.sparkplug?.0
        configuration.metrics = builder.metrics
        var locations: [String: ConfigDiagnostic] = [:]
        for (tag, location) in builder.tags {
            locations[tag.name] = ConfigDiagnostic(
                file: location.file, line: location.line, message: "tag '\(tag.name)' is defined here")
        }
        return LoadedConfiguration(
            configuration: configuration, warnings: builder.sink.diagnostics.filter { $0.severity == .warning },
            tagLocations: locations)
    }

    static func yamlDiagnostic(_ error: YamlError, file: String) -> ConfigDiagnostic {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _):
            let detail = context.map { " \($0.text)" } ?? ""
            return ConfigDiagnostic(
                file: file, line: mark.line, column: mark.column, message: "invalid YAML: \(problem)\(detail)",
                hint: "check indentation (spaces only) and that every 'key: value' has a space after the colon")
        default:
            return ConfigDiagnostic(file: file, line: 0, message: "invalid YAML: \(error)")
        }
    }

    static func describe(_ error: Error) -> String {
        (error as NSError).localizedDescription
    }
}

/// Where something was defined: a file and a line.
struct Location: Hashable {
    var file: String
    var line: Int
    var column: Int = 1
}

/// Accumulates the model while reading, with the location of everything for cross-checks.
struct Builder {
    var sink: DiagnosticSink
    let baseDirectory: String
    var devices: [(DeviceDefinition, Location)] = []
    var tags: [(TagDefinition, Location)] = []
    var pollGroups: [(PollGroup, Location)] = []
    var history = HistorySettings(path: "/var/lib/edgepilot/history.db")
    var controlSocket = AgentConfiguration.defaultControlSocketPath
    var readOnlyGroup: String? = AgentConfiguration.defaultReadOnlyGroup
    var logLevel = LogLevel.info
    var loops: [(LoopDefinition, Location)] = []
    var monitors: [(MonitorDefinition, Location, [String: Location])] = []
    var sparkplug: (SparkplugSettings, Location)?
    /// Where each device of `sparkplug.templates.types` is listed, by `<type>|<device>` (checked once tags are read).
    var sparkplugTypeLocations: [String: Location] = [:]
    var metrics: MetricsSettings?
    var writeLimits = DeviceWriteLimits()

    init(sink: DiagnosticSink, baseDirectory: String) {
        self.sink = sink
        self.baseDirectory = baseDirectory
    }

    mutating func read(_ top: inout MappingReader) {
        if let agent = top.value("agent"), var r = MappingReader(agent, what: "'agent'", sink: &sink) {
            if let path = r.string("control_socket", sink: &sink) { controlSocket = path }
            readReadOnlyGroup(&r)
            if let n = r.value("write_limits"), var w = MappingReader(n, what: "'agent.write_limits'", sink: &sink) {
                if let q = w.int("max_queue", range: 1...10_000, sink: &sink) { writeLimits.maxQueue = q }
                if let ms = w.duration("max_age", sink: &sink), let v = w.value("max_age") {
                    if (100...600_000).contains(ms) {
                        writeLimits.maxAgeMilliseconds = ms
                    } else {
                        sink.error(v.line, v.column, "write_limits max_age must be between 100ms and 10min")
                    }
                }
                w.reportUnknownKeys(sink: &sink)
            }
            if let level = r.string("log_level", sink: &sink), let v = r.value("log_level") {
                if let parsed = LogLevel(rawValue: level.lowercased()) {
                    logLevel = parsed
                } else {
                    sink.error(
                        v.line, v.column, "unknown log level '\(level)'",
                        hint: "use one of: \(LogLevel.allCases.map(\.rawValue).joined(separator: ", "))")
                }
            }
            r.reportUnknownKeys(sink: &sink)
        }
        for node in top.list("poll_groups", sink: &sink) ?? [] { readPollGroup(node) }
        if pollGroups.isEmpty {
            pollGroups.append(
                (PollGroup(name: "default", periodMilliseconds: 1000), Location(file: sink.file, line: 0)))
        }
        if let node = top.value("history") { readHistory(node) }
        for node in top.list("devices", sink: &sink) ?? [] { readDevice(node) }
        for node in top.list("tags", sink: &sink) ?? [] { readTag(node) }
        for node in top.list("tag_files", sink: &sink) ?? [] { readTagFile(node) }
        for node in top.list("loops", sink: &sink) ?? [] { readLoop(node) }
        for node in top.list("monitors", sink: &sink) ?? [] { readMonitor(node) }
        if let node = top.value("sparkplug") { readSparkplug(node) }
        if let node = top.value("metrics") { readMetrics(node) }
    }

    /// `agent.read_only_group`: a group name, a numeric gid, or `none` (no read-only socket).
    mutating func readReadOnlyGroup(_ r: inout MappingReader) {
        guard let text = r.string("read_only_group", sink: &sink), let v = r.value("read_only_group") else { return }
        if text.lowercased() == "none" {
            readOnlyGroup = nil
            return
        }
        let nameCharacters = text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "_-.".contains($0)) }
        guard !text.isEmpty, nameCharacters, !text.hasPrefix("-") else {
            sink.error(
                v.line, v.column, "read_only_group '\(text)' is not a group name or number",
                hint: "name the group whose members may only read (e.g. edgepilot-ro), or 'none'")
            return
        }
        readOnlyGroup = text
        if UInt32(text) == nil && getgrnam(text) == nil {
            sink.warning(
                v.line, v.column, "group '\(text)' does not exist on this machine: the agent opens no read-only socket",
                hint: "create it with 'sudo groupadd --system \(text)', or set read_only_group: none")
        }
    }

    mutating func readPollGroup(_ node: Node) {
        guard var r = MappingReader(node, what: "a poll group", sink: &sink) else { return }
        let name = r.string("name", required: true, sink: &sink)
        let period = r.duration("period", required: true, sink: &sink)
        let subscription = readPollGroupMode(&r)
        r.reportUnknownKeys(sink: &sink)
        guard let name, let period else { return }
        if period < 10 {
            sink.error(r.line, 1, "poll group '\(name)' period \(period)ms is below the 10ms minimum")
            return
        }
        var group = PollGroup(name: name, periodMilliseconds: period)
        group.subscription = subscription
        pollGroups.append((group, Location(file: sink.file, line: r.line)))
    }

    mutating func readHistory(_ node: Node) {
        guard var r = MappingReader(node, what: "'history'", sink: &sink) else { return }
        if let path = r.string("path", sink: &sink) { history.path = path }
        if r.has("retention") {
            let text = r.string("retention", sink: &sink)
            history.retentionSeconds =
                text?.lowercased() == "forever" ? nil : r.duration("retention", sink: &sink).map { $0 / 1000 }
        }
        if r.has("max_size") {
            let text = r.string("max_size", sink: &sink)
            history.maxBytes = text?.lowercased() == "unlimited" ? nil : r.size("max_size", sink: &sink)
            if let max = history.maxBytes, max < 1_048_576, let v = r.value("max_size") {
                sink.error(v.line, v.column, "history max_size must be at least 1MiB")
            }
        }
        // The audit trail's own retention: never by max_size while plant history remains (docs/SECURITY.md).
        if r.has("audit_max_rows") {
            let text = r.string("audit_max_rows", sink: &sink)
            history.auditMaxRows =
                text?.lowercased() == "unlimited"
                ? nil : r.int("audit_max_rows", range: 100...100_000_000, sink: &sink) ?? history.auditMaxRows
        }
        if r.has("audit_retention") {
            let text = r.string("audit_retention", sink: &sink)
            history.auditRetentionSeconds =
                text?.lowercased() == "forever" ? nil : r.duration("audit_retention", sink: &sink).map { $0 / 1000 }
        }
        if let ms = r.duration("commit_interval", sink: &sink) {
            if ms < 10 || ms > 60_000, let v = r.value("commit_interval") {
                sink.error(v.line, v.column, "history commit_interval must be between 10ms and 60s")
            } else {
                history.commitIntervalMilliseconds = ms
            }
        }
        r.reportUnknownKeys(sink: &sink)
    }

    mutating func readDevice(_ node: Node) {
        guard var r = MappingReader(node, what: "a device", sink: &sink) else { return }
        let name = r.string("name", required: true, sink: &sink)
        let what = "device '\(name ?? "?")'"
        let kind = r.string("type", required: true, sink: &sink)
        var transport: DeviceTransport?
        var device = DeviceDefinition(name: name ?? "", transport: .modbusTCP(host: "", port: 502))
        switch kind?.lowercased() {
        case "modbus_tcp":
            let host = r.string("host", required: true, sink: &sink)
            let port = r.int("port", range: 1...65535, sink: &sink) ?? 502
            if let host { transport = .modbusTCP(host: host, port: port) }
            device.unitID = r.int("unit_id", range: 0...255, sink: &sink) ?? 1
        case "modbus_rtu":
            let serial = r.string("serial_device", required: true, sink: &sink)
            let baud = r.int("baud", range: 300...921_600, sink: &sink) ?? 19_200
            var parity = SerialParity.even
            if let p = r.string("parity", sink: &sink), let v = r.value("parity") {
                if let parsed = SerialParity(rawValue: p.lowercased()) {
                    parity = parsed
                } else {
                    sink.error(v.line, v.column, "parity must be none, even or odd, found '\(p)'")
                }
            }
            let dataBits = r.int("data_bits", range: 5...8, sink: &sink) ?? 8
            let stopBits = r.int("stop_bits", range: 1...2, sink: &sink) ?? 1
            if let serial {
                transport = .modbusRTU(
                    serialDevice: serial, baud: baud, parity: parity, dataBits: dataBits, stopBits: stopBits)
            }
            device.unitID = r.int("unit_id", range: 1...247, sink: &sink) ?? 1
        case "opcua":
            transport = readOPCUADevice(&r, what: what, device: &device)
        case nil:
            break
        case let other?:
            let v = r.value("type")
            sink.error(
                v?.line ?? r.line, v?.column ?? 1, "\(what) has unknown type '\(other)'",
                hint: "use modbus_tcp, modbus_rtu or opcua")
        }
        if let ms = r.duration("timeout", sink: &sink) {
            if ms < 1 || ms > 60_000 {
                sink.error(r.value("timeout")?.line ?? r.line, 1, "\(what) timeout must be between 1ms and 60s")
            } else {
                device.timeoutMilliseconds = ms
            }
        }
        device.retries = r.int("retries", range: 0...10, sink: &sink) ?? device.retries
        device.maxGap = r.int("max_gap", range: 0...124, sink: &sink) ?? device.maxGap
        device.maxRegistersPerRequest =
            r.int("max_registers_per_request", range: 1...125, sink: &sink) ?? device.maxRegistersPerRequest
        device.maxBitsPerRequest =
            r.int("max_bits_per_request", range: 1...2000, sink: &sink) ?? device.maxBitsPerRequest
        if let ms = r.duration("reconnect_min", sink: &sink) { device.reconnectMinMilliseconds = max(10, ms) }
        if let ms = r.duration("reconnect_max", sink: &sink) { device.reconnectMaxMilliseconds = max(10, ms) }
        if device.reconnectMaxMilliseconds < device.reconnectMinMilliseconds {
            sink.error(r.line, 1, "\(what): reconnect_max is shorter than reconnect_min")
        }
        device.enabled = r.bool("enabled", sink: &sink) ?? true
        r.reportUnknownKeys(sink: &sink)
        guard let name, let transport else { return }
        device.name = name
        device.transport = transport
        devices.append((device, Location(file: sink.file, line: r.line)))
    }

    mutating func readTag(_ node: Node) {
        guard var r = MappingReader(node, what: "a tag", sink: &sink) else { return }
        var fields: [String: (String, Int, Int)] = [:]
        for key in TagFields.all {
            guard let v = r.value(key) else { continue }
            switch v {
            case .scalar(let s): fields[key] = (s.string, v.line, v.column)
            case .mapping where key == "scaling" || key == "limits":
                readNested(v, key: key, into: &fields)
            default:
                sink.error(v.line, v.column, "'\(key)' in a tag must be a single value")
            }
        }
        r.reportUnknownKeys(sink: &sink)
        var source = TagFields(file: sink.file, line: r.line, fields: fields)
        if let tag = source.build(defaultDevice: nil, sink: &sink) {
            tags.append((tag, Location(file: sink.file, line: r.line)))
        }
    }

    private mutating func readNested(_ node: Node, key: String, into fields: inout [String: (String, Int, Int)]) {
        guard var r = MappingReader(node, what: "'\(key)'", sink: &sink) else { return }
        let keys = key == "scaling" ? ["raw_low", "raw_high", "eng_low", "eng_high"] : ["min", "max"]
        for k in keys {
            if let v = r.value(k), case .scalar(let s) = v { fields[k] = (s.string, v.line, v.column) }
        }
        r.reportUnknownKeys(sink: &sink)
    }

    mutating func readTagFile(_ node: Node) {
        guard var r = MappingReader(node, what: "a tag file", sink: &sink) else { return }
        let file = r.string("file", required: true, sink: &sink)
        let device = r.string("device", required: true, sink: &sink)
        let group = r.string("poll_group", sink: &sink)
        r.reportUnknownKeys(sink: &sink)
        guard let file, let device else { return }
        let path = file.hasPrefix("/") ? file : baseDirectory + "/" + file
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            sink.error(
                r.line, 1, "cannot read tag file '\(path)'",
                hint: "paths in tag_files are relative to the configuration file's directory")
            return
        }
        let fileSink = DiagnosticSink(file: path)
        var csvSink = fileSink
        for row in RegisterMapCSV.rows(text, sink: &csvSink) {
            var source = TagFields(file: path, line: row.line, fields: row.fields)
            if source.fields["poll_group"] == nil, let group { source.fields["poll_group"] = (group, row.line, 1) }
            if let tag = source.build(defaultDevice: device, sink: &csvSink) {
                tags.append((tag, Location(file: path, line: row.line)))
            }
        }
        sink.diagnostics += csvSink.diagnostics
    }

    mutating func validate() {
        // A tag without a poll group goes to the one named "default", else to the first one configured.
        let fallback = pollGroups.first { $0.0.name == "default" }?.0.name ?? pollGroups.first?.0.name ?? "default"
        for i in tags.indices where tags[i].0.pollGroup.isEmpty { tags[i].0.pollGroup = fallback }
        ConfigValidator.validate(
            devices: devices, tags: tags, pollGroups: pollGroups, history: history, sink: &sink)
        LoopValidator.validate(loops: loops, tags: tags, pollGroups: pollGroups, devices: devices, sink: &sink)
        validateMonitors()
        validateSparkplug()
    }
}

extension Builder {
    /// `metrics: {listen: HOST:PORT}`: the endpoint is on when the section is present; loopback unless said.
    mutating func readMetrics(_ node: Node) {
        guard var r = MappingReader(node, what: "'metrics'", sink: &sink) else { return }
        var settings = MetricsSettings()
        if let text = r.string("listen", sink: &sink), let v = r.value("listen") {
            if let parsed = Self.parseListen(text) {
                settings = parsed
                if !parsed.isLoopback {
                    sink.warning(
                        v.line, v.column,
                        "metrics listen address \(text) is not loopback: anyone who can reach it reads the plant's "
                            + "figures (device names, loop modes)",
                        hint: "keep 127.0.0.1 and let a local Prometheus or a reverse proxy with TLS expose it")
                }
            } else {
                sink.error(
                    v.line, v.column, "metrics listen address '\(text)' is not HOST:PORT",
                    hint: "an IPv4 address and a port, e.g. 127.0.0.1:\(MetricsSettings.defaultPort)")
            }
        }
        r.reportUnknownKeys(sink: &sink)
        metrics = settings
    }

    /// `127.0.0.1:9464`, `localhost:9464`, `0.0.0.0:9464`; nil unless an IPv4 address and a port 0–65535.
    static func parseListen(_ text: String) -> MetricsSettings? {
        let parts = text.trimmingCharacters(in: .whitespaces).split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let port = Int(parts[1]), (0...65_535).contains(port) else { return nil }
        let host = parts[0] == "localhost" ? "127.0.0.1" : String(parts[0])
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4, octets.allSatisfy({ Int($0).map { (0...255).contains($0) } ?? false }) else {
            return nil
        }
        return MetricsSettings(host: host, port: port)
    }
}
