import LoopRuntime
import SparkplugPublisher

/// One request from the technician CLI to the running agent, sent as a JSON line over the control socket.
public struct ControlRequest: Codable, Sendable {
    public enum Command: String, Codable, Sendable {
        case status, tags, read, write, history, audit
        case loops, loopMode, loopSetpoint, loopManual, loopTune
        case mqttStatus, mqttRebirth
        case health
        case configDiff
        /// The model ledger of a loop (decision 0031).
        case loopModelList, loopModelShow, loopModelActivate, loopModelRollback, loopModelAdd, loopModelShadow
        /// Plant tests of a loop (decision 0034).
        case loopTestStart, loopTestStop, loopTestList, loopTestShow
    }

    public var command: Command
    /// Tag name (read, write, history) or glob pattern (tags).
    public var tag: String?
    /// The value to write, as the technician typed it; the agent converts it to the tag's type.
    public var value: String?
    /// Ignored: accepted so that older clients keep working, but the audit trail names the peer the kernel reports
    /// (`SO_PEERCRED`), never what a client says about itself (decision 0024).
    public var source: String?
    /// History range, microseconds since the Unix epoch.
    public var since: Int64?
    public var until: Int64?
    public var limit: Int?
    /// Loop commands: the loop's name (nil = every loop for `loops`), and the tuning to apply.
    public var loop: String?
    public var tune: LoopTuneRequest?
    /// `configDiff`: the configuration file to compare (nil = the file the agent runs from).
    public var path: String? = nil
    /// `loopModelActivate`: activate although the recorded fit is below the loop's threshold.
    public var force: Bool? = nil
    /// `loopModelActivate`, `loopModelRollback`, `loopModelAdd`: the operator's note, kept in the ledger.
    public var note: String? = nil
    /// `loopModelAdd`: the model file's text (its name is in `path`), parsed by the agent against the loop.
    public var text: String? = nil
    /// `loopTestStart`: the test asked for.
    public var plantTest: PlantTestRequest? = nil

    public init(
        command: Command, tag: String? = nil, value: String? = nil, source: String? = nil, since: Int64? = nil,
        until: Int64? = nil, limit: Int? = nil, loop: String? = nil, tune: LoopTuneRequest? = nil
    ) {
        self.loop = loop
        self.tune = tune
        self.command = command
        self.tag = tag
        self.value = value
        self.source = source
        self.since = since
        self.until = until
        self.limit = limit
    }
}

/// The agent's answer: exactly one of the payloads, or an error the CLI prints as is.
public struct ControlResponse: Codable, Sendable {
    public var ok: Bool
    public var error: String?
    public var status: StatusReport?
    public var tags: [TagReport]?
    public var write: WriteReport?
    public var history: [HistoryPoint]?
    public var audit: [AuditReport]?
    public var loops: [LoopSnapshot]?
    public var kpis: [LoopKPIReport]?
    /// `mqtt status` / `mqtt rebirth`: the Sparkplug edge node's state.
    public var mqtt: MQTTStatusReport? = nil
    /// `health`: each component's verdict.
    public var health: HealthReport? = nil
    /// Set on a refusal whose cause is a name that does not exist (see `notFound(_:)`).
    public var notFound: Bool? = nil
    /// `config diff`: what a reload of the file would do.
    public var reloadPreview: ReloadPreview? = nil
    /// Set on a refusal because the peer's role does not allow the command (the CLI exits 1).
    public var forbidden: Bool? = nil
    /// `loop NAME model …`: the loop's model ledger.
    public var models: ModelLedgerReport? = nil
    /// `loop NAME test …`: plant tests, newest first.
    public var tests: [PlantTestReport]? = nil

    public init(
        ok: Bool = true, error: String? = nil, status: StatusReport? = nil, tags: [TagReport]? = nil,
        write: WriteReport? = nil, history: [HistoryPoint]? = nil, audit: [AuditReport]? = nil,
        loops: [LoopSnapshot]? = nil, kpis: [LoopKPIReport]? = nil
    ) {
        self.loops = loops
        self.kpis = kpis
        self.ok = ok
        self.error = error
        self.status = status
        self.tags = tags
        self.write = write
        self.history = history
        self.audit = audit
    }

    public static func failure(_ message: String) -> ControlResponse { ControlResponse(ok: false, error: message) }

    /// A refusal because the peer's role does not allow the request.
    public static func forbidden(_ message: String) -> ControlResponse {
        var response = ControlResponse(ok: false, error: message)
        response.forbidden = true
        return response
    }

    /// A refusal because what was named (a tag, a loop, a file) does not exist: the CLI exits 2, not 1.
    public static func notFound(_ message: String) -> ControlResponse {
        var response = ControlResponse(ok: false, error: message)
        response.notFound = true
        return response
    }
}

/// What `edgepilot status` shows.
public struct StatusReport: Codable, Sendable {
    public var version: String
    public var pid: Int32
    public var configPath: String
    public var startedAt: Int64
    public var uptimeSeconds: Double
    public var reloads: Int
    public var devices: [DeviceReport]
    public var history: HistoryReport
    public var tagCount: Int
    /// The Sparkplug edge node, when configured (backlog, drops, session).
    public var sparkplug: MQTTStatusReport? = nil
    /// The metrics endpoint's address (`HOST:PORT`), when it is on.
    public var metrics: String? = nil

    package init(
        version: String, pid: Int32, configPath: String, startedAt: Int64, uptimeSeconds: Double, reloads: Int,
        devices: [DeviceReport], history: HistoryReport, tagCount: Int, sparkplug: MQTTStatusReport? = nil
    ) {
        self.version = version
        self.pid = pid
        self.configPath = configPath
        self.startedAt = startedAt
        self.uptimeSeconds = uptimeSeconds
        self.reloads = reloads
        self.devices = devices
        self.history = history
        self.tagCount = tagCount
        self.sparkplug = sparkplug
    }
}

/// One device's connection and polling state.
public struct DeviceReport: Codable, Sendable {
    public var name: String
    public var endpoint: String
    public var state: String
    public var connects: UInt64
    public var polls: UInt64
    public var requests: UInt64
    public var errors: UInt64
    public var timeouts: UInt64
    public var exceptions: UInt64
    public var writes: UInt64
    public var lastError: String?
    public var lastErrorAt: Int64?
    public var requestsPerCycle: Int
    public var lastCycleMilliseconds: Double
    /// Connections lost and made again; OPC UA: monitored items and value changes received.
    public var reconnects: UInt64? = nil
    public var monitoredItems: Int? = nil
    public var notifications: UInt64? = nil
    /// OPC UA: how the last reconnect got the session back (reactivated or recreated, and why).
    public var lastRecovery: String? = nil
    /// Writes (CLI, loops, commands) not carried out because they waited in the device's write queue longer than
    /// `agent.write_limits.max_age`, or found it full (`max_queue`); nil for drivers without a queue.
    public var writesExpired: UInt64? = nil
    public var writesDropped: UInt64? = nil
    /// Unix µs since when the device, connected, has not answered (state `not_answering`); nil otherwise.
    public var notAnsweringSince: Int64? = nil

    package init(
        name: String, endpoint: String, state: String, connects: UInt64, polls: UInt64, requests: UInt64,
        errors: UInt64, timeouts: UInt64, exceptions: UInt64, writes: UInt64, lastError: String? = nil,
        lastErrorAt: Int64? = nil, requestsPerCycle: Int, lastCycleMilliseconds: Double, reconnects: UInt64? = nil,
        monitoredItems: Int? = nil, notifications: UInt64? = nil, lastRecovery: String? = nil,
        writesExpired: UInt64? = nil, writesDropped: UInt64? = nil
    ) {
        self.name = name
        self.endpoint = endpoint
        self.state = state
        self.connects = connects
        self.polls = polls
        self.requests = requests
        self.errors = errors
        self.timeouts = timeouts
        self.exceptions = exceptions
        self.writes = writes
        self.lastError = lastError
        self.lastErrorAt = lastErrorAt
        self.requestsPerCycle = requestsPerCycle
        self.lastCycleMilliseconds = lastCycleMilliseconds
        self.reconnects = reconnects
        self.monitoredItems = monitoredItems
        self.notifications = notifications
        self.lastRecovery = lastRecovery
        self.writesExpired = writesExpired
        self.writesDropped = writesDropped
    }
}

/// The history database as `status` reports it.
public struct HistoryReport: Codable, Sendable {
    public var path: String
    public var bytes: Int64
    public var rows: Int64
    public var oldest: Int64?
    public var pending: Int
    public var dropped: UInt64
    public var commits: UInt64
    public var lastError: String?
    /// Audit records dropped because the writer's audit queue was full (a flood of commands); nil from an older
    /// agent.
    public var auditDropped: UInt64? = nil
    /// Audit rows the history holds, and those deleted by audit retention (`history.audit_max_rows`,
    /// `audit_retention`) and, with no plant history left to delete, by the size limit.
    public var auditRows: Int64? = nil
    public var auditDeleted: UInt64? = nil

    package init(
        path: String, bytes: Int64, rows: Int64, oldest: Int64? = nil, pending: Int, dropped: UInt64, commits: UInt64,
        lastError: String? = nil
    ) {
        self.path = path
        self.bytes = bytes
        self.rows = rows
        self.oldest = oldest
        self.pending = pending
        self.dropped = dropped
        self.commits = commits
        self.lastError = lastError
    }
}

/// One tag's current state.
public struct TagReport: Codable, Sendable {
    public var name: String
    public var device: String
    public var type: String
    public var value: JSONValue?
    public var units: String?
    public var quality: String
    public var qualityText: String
    public var timestamp: Int64
    public var writable: Bool

    package init(
        name: String, device: String, type: String, value: JSONValue? = nil, units: String? = nil, quality: String,
        qualityText: String, timestamp: Int64, writable: Bool
    ) {
        self.name = name
        self.device = device
        self.type = type
        self.value = value
        self.units = units
        self.quality = quality
        self.qualityText = qualityText
        self.timestamp = timestamp
        self.writable = writable
    }
}

/// The outcome of a write.
public struct WriteReport: Codable, Sendable {
    public var tag: String
    public var value: JSONValue
    public var result: String
    public var readBack: JSONValue?

    package init(
        tag: String, value: JSONValue, result: String, readBack: JSONValue? = nil
    ) {
        self.tag = tag
        self.value = value
        self.result = result
        self.readBack = readBack
    }
}

/// One stored sample.
public struct HistoryPoint: Codable, Sendable {
    public var timestamp: Int64
    public var value: JSONValue?
    public var quality: String

    package init(
        timestamp: Int64, value: JSONValue? = nil, quality: String
    ) {
        self.timestamp = timestamp
        self.value = value
        self.quality = quality
    }
}

/// One audit entry (a write attempt, with who asked and what happened).
public struct AuditReport: Codable, Sendable {
    public var timestamp: Int64
    public var source: String
    public var tag: String
    public var value: String
    public var result: String
    public var detail: String?

    package init(
        timestamp: Int64, source: String, tag: String, value: String, result: String, detail: String? = nil
    ) {
        self.timestamp = timestamp
        self.source = source
        self.tag = tag
        self.value = value
        self.result = result
        self.detail = detail
    }
}

/// A tag value in JSON, keeping its kind (so `--json` consumers get numbers as numbers).
public enum JSONValue: Codable, Sendable, Equatable, CustomStringConvertible {
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case string(String)

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let i = try? c.decode(Int64.self) {
            self = .int(i)
        } else if let u = try? c.decode(UInt64.self) {
            self = .uint(u)
        } else if let d = try? c.decode(Double.self) {
            self = .double(d)
        } else {
            self = .string(try c.decode(String.self))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .bool(let b): try c.encode(b)
        case .int(let i): try c.encode(i)
        case .uint(let u): try c.encode(u)
        case .double(let d):
            // JSON has no NaN or infinity; a PLC can still send them, so they travel as strings.
            if d.isFinite { try c.encode(d) } else { try c.encode(String(d)) }
        case .string(let s): try c.encode(s)
        }
    }

    public var description: String {
        switch self {
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .uint(let u): return String(u)
        case .double(let d): return String(d)
        case .string(let s): return s
        }
    }
}

/// A loop's model ledger as `edgepilot loop NAME model list|show|activate|rollback|add` shows it.
public struct ModelLedgerReport: Codable, Sendable {
    public var loop: String
    /// The version in force.
    public var active: Int64?
    /// Lowest recorded validation fit an activation accepts without `--force` (%).
    public var minFitPercent: Double
    /// Oldest first (`show`, `activate`, `add`: the one concerned).
    public var versions: [ModelVersionReport]
    /// Newest first.
    public var activations: [ModelActivationReport]
    /// What the command did, in a sentence (activate, rollback, add).
    public var message: String?
    /// The version running in shadow (decision 0036), nil when none.
    public var shadow: Int64? = nil

    package init(
        loop: String, active: Int64?, minFitPercent: Double, versions: [ModelVersionReport],
        activations: [ModelActivationReport], message: String? = nil
    ) {
        self.loop = loop
        self.active = active
        self.minFitPercent = minFitPercent
        self.versions = versions
        self.activations = activations
        self.message = message
    }
}

/// One version of a loop's model.
public struct ModelVersionReport: Codable, Sendable {
    public var id: Int64
    public var hash: String
    /// `file` or `identify`.
    public var source: String
    public var window: String?
    public var dataHash: String?
    public var fitPercent: Double?
    public var fitDetail: String?
    /// µs since the Unix epoch.
    public var createdAt: Int64
    public var createdBy: String
    public var note: String
    public var active: Bool
    /// `show` only: the model itself.
    public var model: LoopModelContent?

    package init(
        id: Int64, hash: String, source: String, window: String?, dataHash: String?, fitPercent: Double?,
        fitDetail: String?, createdAt: Int64, createdBy: String, note: String, active: Bool,
        model: LoopModelContent? = nil
    ) {
        self.id = id
        self.hash = hash
        self.source = source
        self.window = window
        self.dataHash = dataHash
        self.fitPercent = fitPercent
        self.fitDetail = fitDetail
        self.createdAt = createdAt
        self.createdBy = createdBy
        self.note = note
        self.active = active
        self.model = model
    }
}

/// One activation: which version replaced which, when, by whom, and why.
public struct ModelActivationReport: Codable, Sendable {
    public var version: Int64
    public var previous: Int64?
    public var timestamp: Int64
    public var activatedBy: String
    /// `config`, `activate` or `rollback`.
    public var action: String
    public var forced: Bool
    public var note: String

    package init(
        version: Int64, previous: Int64?, timestamp: Int64, activatedBy: String, action: String, forced: Bool,
        note: String
    ) {
        self.version = version
        self.previous = previous
        self.timestamp = timestamp
        self.activatedBy = activatedBy
        self.action = action
        self.forced = forced
        self.note = note
    }
}
