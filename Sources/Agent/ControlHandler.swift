import Devices
import Foundation
import History
import LocalControl
import LoopRuntime
import Modbus
import ModbusDriver
import OPCUADriver
import SparkplugPublisher
import Systemd
import Tags

/// Answers control-socket requests from the runtime's current state.
///
/// Runs on the control socket's connection threads: it reads tag tables (never blocking their writers), asks a
/// device's poller to carry a write, and queries history on the read-only connection.
extension AgentRuntime {
    /// Most results a `history` or `audit` request returns, whatever `limit` it asks for: one request must not
    /// hold the agent's memory hostage (issue 15); a longer range is read in several requests with `--since`.
    public static let maxQueryRows = 10_000

    /// Answers `request` from `peer`, whose role the server has already checked; `peer` is who the audit names.
    public func handle(_ request: ControlRequest, from peer: ControlPeer) -> ControlResponse {
        switch request.command {
        case .status: return ControlResponse(status: status())
        case .tags: return ControlResponse(tags: tags(matching: request.tag))
        case .read:
            guard let name = request.tag else { return .failure("read needs a tag name") }
            guard let report = tagReport(name) else { return .notFound(unknownTag(name)) }
            return ControlResponse(tags: [report])
        case .write: return write(request, from: peer)
        case .loops, .loopMode, .loopSetpoint, .loopManual, .loopTune: return handleLoop(request, from: peer)
        case .mqttStatus, .mqttRebirth: return handleMQTT(request, from: peer)
        case .health:
            var response = ControlResponse()
            response.health = health()
            return response
        case .history: return historyQuery(request)
        case .configDiff: return reloadPreview(request)
        case .loopModelList, .loopModelShow, .loopModelActivate, .loopModelRollback, .loopModelAdd, .loopModelShadow:
            return handleModel(request, from: peer)
        case .loopTestStart, .loopTestStop, .loopTestList, .loopTestShow:
            return handleTest(request, from: peer)
        case .audit:
            do {
                let rows = try withHistoryReader {
                    try $0.audit(since: request.since ?? 0, limit: min(request.limit ?? 1000, Self.maxQueryRows))
                }
                return ControlResponse(
                    audit: rows.map {
                        AuditReport(
                            timestamp: $0.timestamp, source: $0.source, tag: $0.tag, value: $0.value, result: $0.result,
                            detail: $0.detail.isEmpty ? nil : $0.detail)
                    })
            } catch {
                return .failure("cannot read the audit table: \(error)")
            }
        }
    }

    func status() -> StatusReport {
        let g = current
        let devices = g.configuration.devices.map { device -> DeviceReport in
            let s = g.drivers[device.name]?.driverStatus
            var report = DeviceReport(
                name: device.name, endpoint: endpoint(device.transport), state: s?.state ?? "stopped",
                connects: s?.connects ?? 0, polls: s?.polls ?? 0, requests: s?.requests ?? 0, errors: s?.errors ?? 0,
                timeouts: s?.timeouts ?? 0, exceptions: s?.exceptions ?? 0, writes: s?.writes ?? 0,
                lastError: s?.lastError, lastErrorAt: s?.lastError == nil ? nil : s?.lastErrorTime,
                requestsPerCycle: s?.requestsPerCycle ?? 0,
                lastCycleMilliseconds: Double(s?.lastCycleNanoseconds ?? 0) / 1e6, reconnects: s?.reconnects,
                monitoredItems: s?.monitoredItems, notifications: s?.notifications, lastRecovery: s?.lastRecovery,
                writesExpired: s?.writesExpired, writesDropped: s?.writesDropped)
            report.notAnsweringSince = s?.notAnsweringSince
            return report
        }
        let writer = historyStatistics
        let stored = try? withHistoryReader { try $0.stats() }
        var history = HistoryReport(
            path: g.configuration.history.path, bytes: stored?.bytes ?? 0, rows: stored?.rows ?? 0,
            oldest: stored?.oldestTimestamp, pending: feed.pending(consumer: Self.historyConsumer),
            dropped: writer.feedDropped, commits: writer.commits, lastError: writer.lastError)
        history.auditDropped = writer.auditDropped
        history.auditRows = stored?.auditRows
        history.auditDeleted = writer.retentionDeletedAudit
        var report = StatusReport(
            version: AgentVersion.current, pid: getpid(), configPath: configPath,
            startedAt: Int64(startedAt.timeIntervalSince1970 * 1_000_000),
            uptimeSeconds: Date().timeIntervalSince(startedAt), reloads: reloadCount, devices: devices,
            history: history, tagCount: g.directory.count)
        report.sparkplug = sparkplugStatus()
        report.metrics = metricsServer?.address
        return report
    }

    func tags(matching pattern: String?) -> [TagReport] {
        current.directory.allTags()
            .filter { pattern == nil || fnmatch(pattern!, $0.table.definitions[$0.index].name, 0) == 0 }
            .map { report($0.table, $0.index) }
            .sorted { $0.name < $1.name }
    }

    func tagReport(_ name: String) -> TagReport? {
        current.directory.locate(name: name).map { report($0.table, $0.index) }
    }

    func report(_ table: TagTable, _ index: Int) -> TagReport {
        let d = table.definitions[index]
        let sample = table.read(index)
        return TagReport(
            name: d.name, device: d.device, type: d.type.description,
            value: table.value(of: index, sample).map { JSONValue($0, for: d) }, units: d.units,
            quality: sample.quality.name,
            qualityText: OPCUAValues.describe(sample.quality, of: d), timestamp: sample.timestamp, writable: d.writable)
    }

    func unknownTag(_ name: String) -> String {
        let names = current.directory.allTags().map { $0.table.definitions[$0.index].name }
        let near = names.filter { $0.lowercased().contains(name.lowercased()) }.prefix(5)
        return "no tag named '\(name)'"
            + (near.isEmpty ? "; 'edgepilot tags' lists them" : "; did you mean: \(near.joined(separator: ", "))?")
    }

    /// Audits a request the peer's role does not allow (the server refused it before it reached `handle`).
    public func auditRefusal(_ request: ControlRequest, from peer: ControlPeer) {
        // Named as the command's own audit rows name it, so a refused attempt sorts beside accepted ones.
        let loopPart: [ControlRequest.Command: String] = [
            .loopMode: "mode", .loopSetpoint: "setpoint", .loopManual: "mv", .loopTune: "tune",
            .loopModelActivate: "model", .loopModelRollback: "model", .loopModelAdd: "model", .loopModelShadow: "model",
            .loopTestStart: "test", .loopTestStop: "test",
        ]
        let target =
            request.loop.flatMap { loop in loopPart[request.command].map { "loop/\(loop)/\($0)" } } ?? request.tag
            ?? request.command.rawValue
        recordAudit(
            AuditRecord(
                timestamp: HistoryClock.now(), source: peer.auditSource, tag: target, value: request.value ?? "",
                result: "refused", detail: "\(peer.role) role"))
        logger.warning(
            "control request refused",
            metadata: [
                "command": "\(request.command.rawValue)", "source": "\(peer.auditSource)", "pid": "\(peer.pid)",
                "reason": "\(peer.role) role",
            ])
    }

    func write(_ request: ControlRequest, from peer: ControlPeer) -> ControlResponse {
        guard let name = request.tag, let text = request.value else { return .failure("write needs a tag and a value") }
        // The kernel's word for who asked, never the request's own `source`.
        let source = peer.auditSource
        func audit(_ result: String, _ detail: String) {
            recordAudit(
                AuditRecord(
                    timestamp: HistoryClock.now(), source: source, tag: name, value: text, result: result,
                    detail: detail))
        }
        let g = current
        guard let (table, index) = g.directory.locate(name: name),
            let driver = g.drivers[table.definitions[index].device]
        else {
            audit("refused", "unknown tag")
            return .notFound(unknownTag(name))
        }
        let definition = table.definitions[index]
        guard let value = TagValueParser.parse(text, for: definition) else {
            let expected = TagValueParser.expectation(for: definition)
            audit("refused", "not a valid \(definition.type) value")
            return .failure(
                "'\(BoundedText.truncated(text))' is not a valid value for \(name): expected \(expected)")
        }
        do {
            let result = try driver.writeTag(index, value)
            audit("ok", result.detail)
            logger.notice("write", metadata: ["tag": "\(name)", "value": "\(value)", "source": "\(source)"])
            return ControlResponse(
                write: WriteReport(
                    tag: name, value: JSONValue(value, for: definition), result: "written",
                    readBack: result.readBack.map { JSONValue($0, for: definition) }))
        } catch {
            audit(error.auditResult, "\(error)")
            logger.warning(
                "write \(error.auditResult)",
                metadata: ["tag": "\(name)", "value": "\(text)", "source": "\(source)", "reason": "\(error)"])
            return .failure("\(name): \(BoundedText.truncated("\(error)", maxBytes: BoundedText.detailBytes))")
        }
    }

    func historyQuery(_ request: ControlRequest) -> ControlResponse {
        guard let name = request.tag else { return .failure("history needs a tag name") }
        do {
            let rows = try withHistoryReader {
                try $0.samples(
                    tag: name, since: request.since ?? 0, until: request.until ?? .max,
                    limit: min(request.limit ?? 10_000, Self.maxQueryRows))
            }
            if rows.isEmpty && current.directory.locate(name: name) == nil {
                return .notFound(unknownTag(name))
            }
            let definition = current.directory.locate(name: name).map { $0.table.definitions[$0.index] }
            return ControlResponse(
                history: rows.map {
                    HistoryPoint(
                        timestamp: $0.timestamp, value: JSONValue($0.value, for: definition), quality: $0.quality.name)
                })
        } catch {
            return .failure("cannot read history: \(error)")
        }
    }
}

func endpoint(_ transport: DeviceTransport) -> String {
    switch transport {
    case .modbusTCP(let host, let port): return "modbus-tcp://\(host):\(port)"
    case .modbusRTU(let device, let baud, let parity, let dataBits, let stopBits):
        return "modbus-rtu://\(device)?\(baud)-\(dataBits)\(parity.letter)\(stopBits)"
    case .opcua(let settings): return settings.endpointURL
    case .agent: return "agent"
    }
}

extension JSONValue {
    init(_ value: TagValue) {
        switch value {
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .int(i)
        case .uint(let u): self = .uint(u)
        case .double(let d): self = .double(d)
        case .string(let s): self = .string(s)
        }
    }

    init?(_ value: HistoryValue) {
        switch value {
        case .null: return nil
        case .integer(let i): self = .int(i)
        case .real(let d): self = .double(d)
        case .text(let s): self = .string(s)
        }
    }

    /// A reading as precise as its tag's type: a float32 as its own shortest decimal (2.7517078, not the float64
    /// expansion 2.7517077922821045 the table stores), a scaled integer to 15 significant digits so the scaling's
    /// binary noise (12.300000000000001) does not show. Still a JSON number.
    init(_ value: TagValue, for definition: TagDefinition) {
        if case .double(let x) = value {
            self = .double(Self.asPrecise(x, as: definition))
        } else {
            self.init(value)
        }
    }

    init?(_ value: HistoryValue, for definition: TagDefinition?) {
        if case .real(let x) = value, let definition {
            self = .double(Self.asPrecise(x, as: definition))
        } else {
            self.init(value)
        }
    }

    static func asPrecise(_ x: Double, as d: TagDefinition) -> Double {
        guard x.isFinite else { return x }
        if d.type == .float32 { return Double(Float(x).description) ?? x }
        if d.scaling != nil { return Double(String(format: "%.15g", x)) ?? x }
        return x
    }
}

/// Turns what a technician typed into a value of the tag's type; range and limit checks are the driver's.
public enum TagValueParser {
    public static func parse(_ text: String, for tag: TagDefinition) -> TagValue? {
        let t = text.trimmingCharacters(in: .whitespaces)
        switch tag.type {
        case .bool:
            switch t.lowercased() {
            case "true", "1", "on", "yes": return .bool(true)
            case "false", "0", "off", "no": return .bool(false)
            default: return nil
            }
        case .string: return .string(text)
        case .float32, .float64:
            return Double(t).flatMap { $0.isFinite ? .double($0) : nil }
        default:
            if tag.scaling != nil { return Double(t).flatMap { $0.isFinite ? .double($0) : nil } }
            if let i = Int64(t) { return .int(i) }
            if let u = UInt64(t) { return .uint(u) }
            return nil
        }
    }

    public static func expectation(for tag: TagDefinition) -> String {
        switch tag.type {
        case .bool: return "true or false"
        case .string(let n): return "text of at most \(n * 2) characters"
        default:
            let limits = tag.limits.map { " from \(formatDouble($0.minimum)) to \(formatDouble($0.maximum))" } ?? ""
            return (tag.presentsAsDouble ? "a number" : "a whole number") + limits + (tag.units.map { " \($0)" } ?? "")
        }
    }
}

/// The agent's version, shown by `--version`, `status` and (later) the Sparkplug node metrics.
public enum AgentVersion {
    public static let current = "0.1.0"
}
