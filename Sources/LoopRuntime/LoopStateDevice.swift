import Control
import Devices
import Foundation
import Tags

/// A control loop presented as a device of its own (`loop-<name>`), with tags `loop/<name>/…` for its mode, the
/// reason for it, setpoints, CVs, MVs, health and KPIs.
///
/// Being a device with a tag table is what makes the loop's state reach everything that serves devices, with no
/// second path: history keeps every mode change (with its reason) as a time series, `edgepilot tags` and `read`
/// show it, the Sparkplug publisher births it as a device and publishes its changes by exception, and a write
/// (`edgepilot write`, a Sparkplug DCMD) to `mode`, a setpoint or a manual MV becomes the same loop command
/// `edgepilot loop` sends, with the same checks. Its own thread copies the runner's snapshot into the table (the
/// table's single writer), so the loop thread does nothing more than before.
public final class LoopStateDevice: DeviceDriver, @unchecked Sendable {
    /// What one tag of the loop device shows.
    enum Field: Equatable {
        case mode, requestedMode, reason, solverStatus, solveP99, jitterP99, missedDeadlines, writeErrors
        case modelVersion, modelNRMSE, shadowNRMSE, shadowVersion, modelDegraded
        case cvValue(Int)
        case setpoint(Int)
        case mvValue(Int)
        case serviceFactor
        case iae(Int)
        case oscillating(Int)
        case saturation(Int)
        case belowSoftLow(Int)
        case aboveSoftHigh(Int)
        case violations(Int)
        case worstViolation(Int)
        case atLow(Int)
        case atHigh(Int)
        case atRateLimit(Int)

        /// Health and KPIs move continuously; they are refreshed less often than the state an operator acts on.
        var isSlow: Bool {
            switch self {
            case .solveP99, .jitterP99, .serviceFactor, .iae, .oscillating, .saturation, .modelNRMSE, .shadowNRMSE,
                .belowSoftLow, .aboveSoftHigh, .violations, .worstViolation, .atLow, .atHigh, .atRateLimit:
                return true
            default: return false
            }
        }
    }

    static func deviceName(loop: String) -> String { "loop-\(loop)" }

    public let device: DeviceDefinition
    public let table: TagTable
    package let runner: LoopRunner
    let fields: [Field]
    private let slowEvery: Int
    private let periodNanoseconds: UInt64

    private let worker = ComputedDeviceThread(name: "loop-state")
    private var cond: NSCondition { worker.cond }
    private var stopRequested: Bool { worker.stopRequested }
    private var refreshSoon = false
    private var refreshes: UInt64 = 0
    private var writes: UInt64 = 0

    // Refresh-thread state.
    private var lastTransition: Int64 = 0
    private var textBuffer = [UInt8](repeating: 0, count: 256)

    /// Builds the tag table of `runner`'s loop; `source` gives the configured tag behind a CV or MV (units, deadband).
    package init(
        runner: LoopRunner, feed: ChangeFeed, idBase: Int32, refreshMilliseconds: Int = 1000,
        source: (String) -> TagDefinition?
    ) {
        self.runner = runner
        let d = runner.definition
        let name = Self.deviceName(loop: d.name)
        device = DeviceDefinition(name: name, transport: .agent)
        var defs: [TagDefinition] = []
        var fields: [Field] = []
        func add(
            _ field: Field, _ suffix: String, _ type: TagDataType, units: String? = nil, deadband: Double = 0,
            writable: Bool = false, limits: WriteLimits? = nil, description: String
        ) {
            defs.append(
                TagDefinition(
                    name: "loop/\(d.name)/\(suffix)", device: name, source: .computed(suffix), type: type, units: units,
                    description: description, deadband: deadband, writable: writable, limits: limits,
                    pollGroup: "loop"))
            fields.append(field)
        }
        add(
            .mode, "mode", .string(registers: 8), writable: true,
            description: "mode in force: mpc, pid, manual, or test during a plant test")
        add(.requestedMode, "requested_mode", .string(registers: 8), description: "mode asked for by the operator")
        add(.reason, "reason", .string(registers: 64), description: "why the loop is in its mode")
        add(.solverStatus, "health/solver_status", .string(registers: 16), description: "last MPC solve")
        add(.solveP99, "health/solve_p99", .float64, units: "us", deadband: 5, description: "MPC solve time p99")
        add(.jitterP99, "health/jitter_p99", .float64, units: "us", deadband: 50, description: "wake-up jitter p99")
        add(.missedDeadlines, "health/missed_deadlines", .uint64, description: "cycles that overran their deadline")
        add(.writeErrors, "health/write_errors", .uint64, description: "MV writes the device failed")
        add(.modelVersion, "model/version", .int64, description: "model ledger version in force")
        add(
            .modelNRMSE, "model/nrmse", .float64, deadband: 0.001,
            description: "prediction NRMSE of the model in force (worst CV, fraction of span)")
        add(
            .modelDegraded, "model/degraded", .bool,
            description: "the model in force predicts worse than model_alert_nrmse")
        add(
            .shadowNRMSE, "shadow/nrmse", .float64, deadband: 0.001,
            description: "prediction NRMSE of the shadow model (worst CV, fraction of span)")
        add(.shadowVersion, "shadow/version", .int64, description: "model ledger version running in shadow")
        for (i, cv) in d.cvs.enumerated() {
            let tag = source(cv.tag)
            add(
                .cvValue(i), "cv/\(cv.tag)/value", .float64, units: tag?.units, deadband: tag?.deadband ?? 0,
                description: "CV as the loop reads it")
            add(
                .setpoint(i), "cv/\(cv.tag)/setpoint", .float64, units: tag?.units, writable: true,
                limits: WriteLimits(minimum: cv.softLow, maximum: cv.softHigh), description: "CV setpoint")
            add(.iae(i), "kpi/cv/\(cv.tag)/iae", .float64, deadband: 0.01, description: "IAE over the KPI window")
            add(.oscillating(i), "kpi/cv/\(cv.tag)/oscillating", .bool, description: "Hägglund oscillation detector")
            add(
                .belowSoftLow(i), "kpi/cv/\(cv.tag)/below_soft_low", .float64, units: "%", deadband: 0.1,
                description: "time below the soft low limit over the KPI window")
            add(
                .aboveSoftHigh(i), "kpi/cv/\(cv.tag)/above_soft_high", .float64, units: "%", deadband: 0.1,
                description: "time above the soft high limit over the KPI window")
            add(
                .violations(i), "kpi/cv/\(cv.tag)/violations", .int64,
                description: "soft-limit violation events over the KPI window")
            add(
                .worstViolation(i), "kpi/cv/\(cv.tag)/worst_violation", .float64, units: tag?.units,
                deadband: tag?.deadband ?? 0, description: "largest distance beyond a soft limit over the KPI window")
        }
        for (l, mv) in d.mvs.enumerated() {
            let tag = source(mv.tag)
            add(
                .mvValue(l), "mv/\(mv.tag)/value", .float64, units: tag?.units, deadband: tag?.deadband ?? 0,
                writable: true, limits: WriteLimits(minimum: mv.low, maximum: mv.high),
                description: "MV applied; writable in manual")
            add(
                .saturation(l), "kpi/mv/\(mv.tag)/saturation", .float64, units: "%", deadband: 0.1,
                description: "time at a limit over the KPI window")
            add(
                .atLow(l), "kpi/mv/\(mv.tag)/at_low", .float64, units: "%", deadband: 0.1,
                description: "time at the low limit over the KPI window")
            add(
                .atHigh(l), "kpi/mv/\(mv.tag)/at_high", .float64, units: "%", deadband: 0.1,
                description: "time at the high limit over the KPI window")
            add(
                .atRateLimit(l), "kpi/mv/\(mv.tag)/at_rate_limit", .float64, units: "%", deadband: 0.1,
                description: "time moving at the rate limit over the KPI window")
        }
        add(.serviceFactor, "kpi/service_factor", .float64, deadband: 0.001, description: "fraction of time in MPC")
        self.fields = fields
        table = TagTable(definitions: defs, changes: feed, idBase: idBase)
        periodNanoseconds = UInt64(max(100, refreshMilliseconds)) * 1_000_000
        slowEvery = 10
    }

    // MARK: - DeviceDriver

    public func start() { worker.start { [self] in run() } }

    public func stop() { worker.stop() }

    public var driverStatus: DeviceDriverStatus {
        cond.withLock {
            var s = DeviceDriverStatus()
            s.state = worker.state
            s.polls = refreshes
            s.writes = writes
            return s
        }
    }

    /// A write to `mode`, a setpoint or an MV is a loop command; the caller audits it with its source.
    public func writeTag(_ index: Int, _ value: TagValue) throws(DeviceWriteError) -> DeviceWriteOutcome {
        guard fields.indices.contains(index) else { throw .refused("no such tag") }
        let d = table.definitions[index]
        do throws(LoopCommandError) {
            switch fields[index] {
            case .mode:
                guard case .string(let text) = value,
                    let mode = LoopMode(rawValue: text.trimmingCharacters(in: .whitespaces).lowercased()),
                    mode != .test
                else {
                    throw LoopCommandError("mode must be mpc, pid or manual, not '\(value)'")
                }
                runner.requestMode(mode)
            case .setpoint(let i):
                guard let v = value.doubleValue else { throw LoopCommandError("\(d.name) takes a number") }
                try runner.setSetpoint(cv: runner.definition.cvs[i].tag, v)
            case .mvValue(let l):
                guard let v = value.doubleValue else { throw LoopCommandError("\(d.name) takes a number") }
                try runner.setManual(mv: runner.definition.mvs[l].tag, v)
            default:
                throw LoopCommandError("\(d.name) is read-only")
            }
        } catch {
            throw .refused(error.description)
        }
        cond.withLock {
            writes &+= 1
            refreshSoon = true
            cond.broadcast()
        }
        return DeviceWriteOutcome(detail: "loop \(runner.definition.name): applied at the next cycle", readBack: nil)
    }

    // MARK: - Refresh thread

    private func run() {
        var n = 0
        while true {
            let stopping = cond.withLock { () -> Bool in
                if !stopRequested && !refreshSoon {
                    _ = cond.wait(until: Date(timeIntervalSinceNow: Double(periodNanoseconds) / 1e9))
                }
                if refreshSoon {
                    refreshSoon = false
                    // Commands take effect at the loop's next cycle; show the result, not the state before it.
                    cond.unlock()
                    usleep(useconds_t(min(2000, runner.definition.periodMilliseconds + 20) * 1000))
                    cond.lock()
                }
                return stopRequested
            }
            if stopping { break }
            if refresh(includingSlow: n % slowEvery == 0) { n += 1 }
            cond.withLock { refreshes &+= 1 }
        }
        let now = Self.nowMicros()
        for i in fields.indices { table.markQuality(i, Quality(.outOfService), timestamp: now) }
    }

    /// Copies the loop's state into the table; false before the loop's first cycle, when there is none to copy.
    @discardableResult
    func refresh(includingSlow: Bool) -> Bool {
        let s = runner.snapshot()
        // Before its first cycle the loop has no state to show; its tags keep "waiting for initial data".
        guard s.timing.cycles > 0 else { return false }
        let kpi = includingSlow ? runner.kpis() : nil
        let now = Self.nowMicros()
        // The mode and reason tags change only at mode transitions, each written at the time it happened, so
        // history keeps every one (even several between two refreshes) in order. The first refresh writes the
        // state the loop is in; the transition that put it there (stamped `modeSince`) is then already written.
        let modeIndex = fields.firstIndex(of: .mode)!
        let reasonIndex = fields.firstIndex(of: .reason)!
        if lastTransition == 0, let since = s.modeSince {
            put(text: s.mode, modeIndex, at: since)
            // No reason: the loop is in its configured mode and never changed it.
            put(text: s.reason ?? "", reasonIndex, at: since)
            lastTransition = since
        }
        for t in s.transitions where t.time > lastTransition {
            lastTransition = t.time
            put(text: t.to, modeIndex, at: t.time)
            put(text: t.reason, reasonIndex, at: t.time)
        }
        for (index, field) in fields.enumerated() {
            if field.isSlow && kpi == nil { continue }
            switch field {
            case .mode, .reason: break
            case .requestedMode: put(text: s.requestedMode, index, at: now)
            case .solverStatus: put(text: s.solver.status ?? "none", index, at: now)
            case .solveP99: put(s.solver.p99Microseconds, index, at: now)
            case .jitterP99: put(s.timing.jitterP99Microseconds, index, at: now)
            case .missedDeadlines: put(.uint(s.timing.missedDeadlines), index, at: now)
            case .writeErrors: put(.uint(s.mvs.reduce(0) { $0 &+ $1.writeErrors }), index, at: now)
            case .modelVersion:
                if let version = s.modelVersion { put(.int(version), index, at: now) }
            case .modelNRMSE: put(s.modelNRMSE ?? .nan, index, at: now)
            case .shadowNRMSE: put(s.shadowNRMSE ?? .nan, index, at: now)
            case .modelDegraded: put(.bool(s.modelDegraded ?? false), index, at: now)
            case .shadowVersion:
                if let version = s.shadowVersion {
                    put(.int(version), index, at: now)
                } else {
                    table.markQuality(index, Quality(.waitingForInitialData), timestamp: now)
                }
            case .cvValue(let i):
                let cv = s.cvs[i]
                if let v = cv.value, cv.good {
                    put(v, index, at: now)
                } else {
                    table.markQuality(index, Quality(.stale), timestamp: now)
                }
            case .setpoint(let i): put(s.cvs[i].setpoint ?? .nan, index, at: now)
            case .mvValue(let l): put(s.mvs[l].value ?? .nan, index, at: now)
            case .serviceFactor: put(kpi!.serviceFactor["mpc"] ?? 0, index, at: now)
            case .iae(let i): put(kpi!.cvs[i].iae, index, at: now)
            case .oscillating(let i): put(.bool(kpi!.cvs[i].oscillating), index, at: now)
            case .saturation(let l): put(kpi!.mvs[l].saturationPercent, index, at: now)
            case .belowSoftLow(let i): put(kpi!.cvs[i].belowSoftLowPercent, index, at: now)
            case .aboveSoftHigh(let i): put(kpi!.cvs[i].aboveSoftHighPercent, index, at: now)
            case .violations(let i): put(.int(Int64(kpi!.cvs[i].violations)), index, at: now)
            case .worstViolation(let i): put(kpi!.cvs[i].worstViolation, index, at: now)
            case .atLow(let l): put(kpi!.mvs[l].atLowPercent, index, at: now)
            case .atHigh(let l): put(kpi!.mvs[l].atHighPercent, index, at: now)
            case .atRateLimit(let l): put(kpi!.mvs[l].atRateLimitPercent, index, at: now)
            }
        }
        return true
    }

    private func put(_ value: Double, _ index: Int, at time: Int64) {
        if value.isNaN {
            // A range-controlled CV has no single setpoint; an MV not yet applied has no value.
            table.markQuality(index, Quality(.waitingForInitialData), timestamp: time)
        } else {
            put(.double(value), index, at: time)
        }
    }

    private func put(_ value: SampleValue, _ index: Int, at time: Int64) {
        table.update(index, TagSample(value: value, quality: .good, timestamp: time))
    }

    private func put(text: String, _ index: Int, at time: Int64) {
        let capacity = table.definitions[index].type.textCapacity
        var used = 0
        // Cut at a character boundary so a long reason never ends in half a UTF-8 sequence.
        for ch in text.unicodeScalars {
            let bytes = Array(String(ch).utf8)
            guard used + bytes.count <= capacity else { break }
            for b in bytes {
                textBuffer[used] = b
                used += 1
            }
        }
        textBuffer.withUnsafeBytes { raw in
            _ = table.update(
                index, TagSample(value: .text(length: used), quality: .good, timestamp: time),
                text: UnsafeRawBufferPointer(rebasing: raw[0..<used]))
        }
    }

    static func nowMicros() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
    }
}
