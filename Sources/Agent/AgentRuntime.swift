import Devices
import Foundation
import History
import LocalControl
import Logging
import LoopRuntime
import Metrics
import Modbus
import ModbusDriver
import OPCUADriver
import SparkplugPublisher
import Systemd
import Tags

/// Why the agent could not start.
public struct AgentStartError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// What a reload changed.
public struct ReloadSummary: Sendable, CustomStringConvertible {
    public var kept: [String] = []
    public var restarted: [String] = []
    public var added: [String] = []
    public var removed: [String] = []
    public var ignored: [String] = []

    public var description: String {
        var parts: [String] = []
        if !kept.isEmpty { parts.append("kept \(kept.joined(separator: ", "))") }
        if !restarted.isEmpty { parts.append("restarted \(restarted.joined(separator: ", "))") }
        if !added.isEmpty { parts.append("added \(added.joined(separator: ", "))") }
        if !removed.isEmpty { parts.append("removed \(removed.joined(separator: ", "))") }
        if !ignored.isEmpty { parts.append("needs a restart to apply: \(ignored.joined(separator: "; "))") }
        return parts.isEmpty ? "nothing changed" : parts.joined(separator: "; ")
    }
}

/// The running agent: per-device tag tables and pollers, the history writer, and the answers to CLI requests.
///
/// Drivers write tag tables; the change feed carries reported changes to the history writer (and, later, the
/// publisher); the control socket reads tables and history. A reload swaps one immutable `Generation` for another,
/// restarting only the devices whose definition or tags changed.
public final class AgentRuntime: @unchecked Sendable {
    /// One consistent configuration's worth of running parts.
    struct Generation {
        var configuration: AgentConfiguration
        var directory: TagDirectory
        var tables: [String: TagTable]
        var pollers: [String: ModbusPoller]
        /// Every device's driver: the Modbus pollers above and the OPC UA drivers.
        var drivers: [String: any DeviceDriver] = [:]
        var loops: [String: LoopRunner] = [:]
        /// Each loop's state as a device (`loop-<name>`); also in `tables`, `drivers` and `directory`.
        var loopDevices: [String: LoopStateDevice] = [:]
        /// Each watched loop (`monitors:`) as a device (`monitor-<name>`); also in `tables`, `drivers`, `directory`.
        var monitorDevices: [String: LoopMonitorDevice] = [:]
    }

    public let configPath: String
    public let startedAt = Date()
    /// CLOCK_BOOTTIME when `startedAt` was taken: `health` compares the two clocks' progress to see a clock step.
    let startedAtBootTime = bootTimeMicroseconds()
    let logger = Logger(label: "edgepilot")
    let feed: ChangeFeed
    static let historyConsumer = 0

    private let lock = NSLock()
    private var generation: Generation
    private var nextIDBase: Int32 = 0
    private var reloads = 0
    private let history: HistoryWriter
    /// The model ledger (decision 0031), on its own connection to the history file.
    let ledger: ModelLedger
    private let readerLock = NSLock()
    private var reader: HistoryReader?
    /// The Sparkplug B edge node, when configured (see Sparkplug/EdgeNodePublisher.swift).
    private(set) var sparkplug: EdgeNodePublisher?
    /// The metrics endpoint, when configured, and what its scrapes remember between them.
    private(set) var metricsServer: MetricsServer?
    let metricsCollector = MetricsCollector()

    public init(configuration: AgentConfiguration, configPath: String) throws {
        self.configPath = configPath
        feed = ChangeFeed(consumers: Self.changeFeedConsumers(for: configuration))
        generation = Generation(
            configuration: configuration, directory: TagDirectory(tables: []), tables: [:], pollers: [:])
        let store: HistoryStore
        do {
            store = try HistoryStore(path: configuration.history.path)
        } catch {
            throw AgentStartError(
                "cannot open the history database \(configuration.history.path): \(error)\n"
                    + "check that the directory exists and is writable by this user (the service's StateDirectory)")
        }
        let logger = Logger(label: "edgepilot.history")
        let path = configuration.history.path
        history = HistoryWriter(
            store: store, feed: feed, consumer: Self.historyConsumer, directory: TagDirectory(tables: []),
            configuration: HistoryWriter.Configuration(configuration.history)
        ) { event in
            // Polling and the loops carry on either way; the operator must hear that history has a hole coming.
            switch event {
            case .failing(let error, let held):
                let text =
                    "history writes failing on \(path): \(error); up to \(held) changes are kept in memory and "
                    + "retried, older ones are dropped and counted (edgepilot status)"
                logger.warning("\(text)")
            case .resumed(let seconds, let dropped):
                logger.notice(
                    "history writes resumed after \(String(format: "%.0f", seconds)) s; \(dropped) changes were dropped"
                )
            }
        }
        history.journal = { logger.warning("\($0)") }
        do {
            ledger = try ModelLedger(path: configuration.history.path)
        } catch {
            throw AgentStartError("cannot open the model ledger in \(configuration.history.path): \(error)")
        }
        generation = try build(configuration, keeping: nil)
        sparkplug = try makeSparkplugPublisher(configuration)
        metricsServer = try makeMetricsServer(configuration)
    }

    /// Starts history, then every poller.
    public func start() {
        history.use(directory: generation.directory)
        history.start()
        for driver in generation.drivers.values { driver.start() }
        for loop in generation.loops.values { loop.start() }
        sparkplug?.start()
        metricsServer?.start()
        logger.info(
            "started",
            metadata: [
                "devices": "\(generation.drivers.count)", "tags": "\(generation.directory.count)",
                "history": "\(generation.configuration.history.path)",
            ])
    }

    /// Stops pollers first, so every last change reaches the feed, then flushes and closes history.
    public func stop() {
        let current = lock.withLock { generation }
        metricsServer?.stop()
        // Loops first: no write may follow the stop; the MVs keep their last values and the heartbeat stops.
        for loop in current.loops.values { loop.stop() }
        for driver in current.drivers.values { driver.stop() }
        // After the drivers (their last changes are published or stored), before history (command audits).
        sparkplug?.stop()
        history.stop()
        readerLock.withLock {
            reader?.close()
            reader = nil
        }
        let stats = history.statistics
        logger.info("stopped", metadata: ["history_rows_written": "\(stats.rowsWritten)"])
    }

    /// Applies a new, already validated configuration; unaffected devices keep polling without a gap.
    /// Settings a reload cannot apply (history, control socket, log level, Sparkplug, metrics) stay as they run; the summary
    /// says so.
    public func reload(_ configuration: AgentConfiguration) throws -> ReloadSummary {
        let old = lock.withLock { generation }
        var effective = configuration
        effective.history = old.configuration.history
        effective.controlSocketPath = old.configuration.controlSocketPath
        effective.readOnlyGroup = old.configuration.readOnlyGroup
        effective.logLevel = old.configuration.logLevel
        effective.sparkplug = old.configuration.sparkplug
        effective.metrics = old.configuration.metrics
        let plan = ReloadPlan(from: old.configuration, to: configuration)
        let next = try build(effective, keeping: old, plan: plan)
        for (name, loop) in old.loops where next.loops[name] !== loop { loop.stop() }
        for (name, driver) in old.drivers where next.drivers[name] !== driver { driver.stop() }
        // History must still resolve changes queued by the tables being replaced, so it sees both for now.
        let retired = old.tables.filter { next.tables[$0.key] !== $0.value }.map(\.value)
        history.use(directory: TagDirectory(tables: Array(next.tables.values) + retired))
        sparkplug?.use(sparkplugView(next, retired: retired))
        lock.withLock {
            generation = next
            reloads += 1
        }
        for (name, driver) in next.drivers where old.drivers[name] !== driver { driver.start() }
        for (name, loop) in next.loops where old.loops[name] !== loop { loop.start() }
        return plan.summary
    }

    /// What a reload of `configuration` would do, without doing it.
    func plan(_ configuration: AgentConfiguration) -> ReloadPlan {
        ReloadPlan(from: current.configuration, to: configuration)
    }

    private func build(
        _ configuration: AgentConfiguration, keeping old: Generation?, plan: ReloadPlan? = nil
    ) throws -> Generation {
        var tables: [String: TagTable] = [:]
        var pollers: [String: ModbusPoller] = [:]
        var drivers: [String: any DeviceDriver] = [:]
        for device in configuration.devices {
            let tags = configuration.tags.filter { $0.device == device.name }
            let groups = configuration.pollGroups.filter { g in tags.contains { $0.pollGroup == g.name } }
            if let old, plan?.keepsDevice(device.name) == true, let table = old.tables[device.name],
                let driver = old.drivers[device.name]
            {
                tables[device.name] = table
                pollers[device.name] = old.pollers[device.name]
                drivers[device.name] = driver
                continue
            }
            let table = TagTable(definitions: tags, changes: feed, idBase: nextIDBase)
            nextIDBase += Int32(max(1, tags.count))
            do {
                if case .opcua = device.transport {
                    drivers[device.name] = try OPCUADeviceDriver(device: device, pollGroups: groups, table: table)
                } else {
                    let poller = try ModbusPoller(device: device, pollGroups: groups, table: table)
                    pollers[device.name] = poller
                    drivers[device.name] = poller
                }
            } catch {
                throw AgentStartError("device \(device.name): \(error)")
            }
            tables[device.name] = table
        }
        var generation = Generation(
            configuration: configuration, directory: TagDirectory(tables: Array(tables.values)), tables: tables,
            pollers: pollers)
        generation.drivers = drivers
        generation.loops = try buildLoops(generation, keeping: old, plan: plan)
        for (name, runner) in generation.loops {
            let device: LoopStateDevice
            if let kept = old?.loopDevices[name], kept.runner === runner {
                device = kept
            } else {
                device = LoopStateDevice(
                    runner: runner, feed: feed, idBase: nextIDBase,
                    source: { tag in generation.directory.locate(name: tag).map { $0.table.definitions[$0.index] } })
                nextIDBase += Int32(max(1, device.table.count))
            }
            generation.loopDevices[name] = device
            generation.tables[device.device.name] = device.table
            generation.drivers[device.device.name] = device
        }
        // Monitors may watch the loops' state tags: bind them in a directory that has the loops' devices.
        generation.directory = TagDirectory(tables: Array(generation.tables.values))
        for d in configuration.monitors {
            if let old, plan?.keepsMonitor(d.name) == true, let kept = old.monitorDevices[d.name] {
                // Same definition, same tables: it samples on with its window.
                generation.monitorDevices[d.name] = kept
                generation.tables[kept.device.name] = kept.table
                generation.drivers[kept.device.name] = kept
                continue
            }
            func bind(_ name: String?) -> MonitorTagBinding? {
                guard let name, let (table, index) = generation.directory.locate(name: name) else { return nil }
                return MonitorTagBinding(table: table, index: index)
            }
            guard let pv = bind(d.pv), let sp = bind(d.sp), let op = bind(d.op) else {
                throw AgentStartError("monitor \(d.name): its PV, SP or OP tag has no device")
            }
            let device = LoopMonitorDevice(
                definition: d, pv: pv, sp: sp, op: op, auto: bind(d.auto), feed: feed, idBase: nextIDBase)
            nextIDBase += Int32(max(1, device.table.count))
            generation.monitorDevices[d.name] = device
            generation.tables[device.device.name] = device.table
            generation.drivers[device.device.name] = device
        }
        generation.directory = TagDirectory(tables: Array(generation.tables.values))
        return generation
    }

    /// Keeps a loop whose definition is unchanged and whose devices kept their drivers; builds the others.
    private func buildLoops(
        _ g: Generation, keeping old: Generation?, plan: ReloadPlan?
    ) throws -> [String: LoopRunner] {
        var loops: [String: LoopRunner] = [:]
        for d in g.configuration.loops {
            if let old, plan?.keepsLoop(d.name) == true, let runner = old.loops[d.name] {
                loops[d.name] = runner
                continue
            }
            let runner: LoopRunner
            do {
                runner = try LoopRunner(
                    definition: d,
                    bind: { name in
                        guard let (table, index) = g.directory.locate(name: name) else { return nil }
                        return LoopTagBinding(
                            table: table, index: index, driver: g.drivers[table.definitions[index].device])
                    },
                    audit: { [weak self] in self?.recordAudit($0) })
            } catch {
                throw AgentStartError("\(error)")
            }
            adoptModel(runner)
            adoptShadow(runner)
            loops[d.name] = runner
        }
        return loops
    }

    // MARK: - Views for the control socket and systemd

    var current: Generation { lock.withLock { generation } }
    var reloadCount: Int { lock.withLock { reloads } }
    var historyStatistics: HistoryWriter.Statistics { history.statistics }

    func recordAudit(_ record: AuditRecord) { history.record(audit: record) }

    /// Runs `body` with the read-only history connection, opening it on first use.
    func withHistoryReader<T>(_ body: (HistoryReader) throws -> T) throws -> T {
        try readerLock.withLock {
            if reader == nil { reader = try HistoryReader(path: current.configuration.history.path) }
            return try body(reader!)
        }
    }

    /// A one-line summary for systemd's STATUS=.
    public func statusLine() -> String {
        let g = current
        let connected = g.drivers.values.filter { $0.driverStatus.state == "connected" }.count
        let h = history.statistics
        return "\(connected)/\(g.drivers.count) devices connected, \(g.directory.count) tags, "
            + "\(h.rowsWritten) samples stored"
    }
}
