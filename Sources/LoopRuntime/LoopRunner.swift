import Control
import Devices
import Foundation
import History
import Logging
import Synchronization
import Tags

/// Where a loop variable lives: its tag table slot, and the driver that writes it (for MVs and the heartbeat),
/// whatever the device's protocol: a loop may read CVs over OPC UA and write MVs over Modbus.
public struct LoopTagBinding {
    public var table: TagTable
    public var index: Int
    public var driver: (any DeviceDriver)?

    public init(table: TagTable, index: Int, driver: (any DeviceDriver)?) {
        self.table = table
        self.index = index
        self.driver = driver
    }
}

/// A refused loop command, worded for the technician.
public struct LoopCommandError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Runs one configured loop in real time: a dedicated thread on an absolute CLOCK_MONOTONIC schedule reads the
/// freshest tag values (quality and age checked), steps the supervised `ControlLoop`, and hands the MV values and
/// the heartbeat to a writer thread, which carries them to the PLC through the device's driver.
///
/// The runner holds the cycle — the control decisions — and delegates the rest, one job per part: `LoopSchedule`
/// (the loop thread's clock), `MVWriter` (the writer thread and its mailbox), `LoopEventLog` (mode changes to the
/// journal and audit), `LoopStateBoard` (what readers see, statistics and KPIs); operator commands arrive through a
/// small mailbox (LoopRunner+Commands.swift). The loop thread never waits on the device, the database, the broker or
/// the CLI, and a cycle allocates nothing (tested with the `CAllocCounter` interposer through `cycleObserver`). Why
/// the writes have their own thread: docs/decisions/0010-real-time-loops.md.
public final class LoopRunner: @unchecked Sendable {
    public let definition: LoopDefinition
    let logger = Logger(label: "edgepilot.loop")
    private let cycleObserver: (@Sendable (_ starting: Bool) -> Void)?

    // Bindings and fixed figures.
    private let cvBindings: [LoopTagBinding]
    private let dvBindings: [LoopTagBinding]
    private let mvBindings: [LoopTagBinding]
    private let hasHeartbeat: Bool
    private let heartbeatRange: (low: UInt64, high: UInt64)
    let ny: Int
    let nu: Int
    private let nd: Int
    private let maxAgeMicroseconds: Int64
    private let healthyPeriodNanoseconds: Int64?
    private let rateUp: [Double]
    private let rateDown: [Double]
    private let mvLow: [Double]
    private let mvHigh: [Double]

    // The parts.
    private let schedule: LoopSchedule
    private let writer: MVWriter
    private let events: LoopEventLog
    let board: LoopStateBoard
    /// Operator commands waiting for the next cycle.
    let commands = Mutex<[Command]>([])
    let tuningState: Mutex<LoopTuning>
    /// Held while a controller is rebuilt and handed to the loop (retune, model activation), so two rebuilds never
    /// race and the later one always includes the earlier one's change.
    let rebuildLock = NSLock()
    /// The definition in force, with the active model of the ledger in place of the configuration's, and that
    /// model's ledger version (nil until the agent registered it). Guarded by `rebuildLock`.
    var modelDefinition: LoopDefinition
    var modelVersion: Int64?
    /// Prediction error of the model in force and of a shadow candidate (decision 0036).
    let predictions: LoopModelPredictions
    /// The current or last plant test of this runner (callers and the event log; never the loop thread).
    let testRecord = Mutex<PlantTestReport?>(nil)
    let testEndHandler = Mutex<(@Sendable (PlantTestReport) -> Void)?>(nil)

    // Loop-thread state (touched only by the loop thread once started).
    private var control: ControlLoop
    private let buffers: LoopCycleBuffers
    private var requestedMode: LoopMode
    private var started = false
    private var faultShed = true
    private var healthySince: Int64?
    private var pendingReason: LoopEventReason?
    private var suppressedFrom: LoopMode?
    private var resumeAfterSwap: LoopMode?
    private var resumeReason = LoopEventReason.retuned
    private var heartbeat: UInt64 = 0
    private var lastCycleEnd: Int64 = 0
    /// Numbers the loop's writing periods: it grows each time the loop leaves MANUAL, so a write failure from an
    /// earlier period (an outage sat out in MANUAL) is not taken for a fault of the link now.
    private var writeEpoch: UInt64 = 0
    /// Overrun cycles minus clean ones, between zero and `lagLimit`; at `lagLimit` the loop sheds to MANUAL.
    private var lagScore = 0
    /// The plant test started on this controller (loop thread); the board holds it too, so dropping it here frees
    /// nothing.
    private var runningTest: PlantTest?
    private var laggingMV = 0
    /// Net overrun cycles that make the writes "lagging": more than half the cycles overrunning for a while.
    static let lagLimit = 3

    enum Command {
        case mode(LoopMode)
        case setpoint(Int, Double)
        case manual(Int, Double)
        case resetKPIs
        case beginTest(PlantTest)
        case stopTest
    }

    /// Resolves every tag of `definition` through `bind` and builds the controller; throws a readable reason.
    public init(
        definition d: LoopDefinition, bind: (String) -> LoopTagBinding?,
        audit: @escaping @Sendable (AuditRecord) -> Void = { _ in },
        cycleObserver: (@Sendable (_ starting: Bool) -> Void)? = nil
    ) throws(LoopCommandError) {
        definition = d
        self.cycleObserver = cycleObserver
        func resolve(_ name: String, writable: Bool) throws(LoopCommandError) -> LoopTagBinding {
            guard let b = bind(name) else { throw LoopCommandError("loop '\(d.name)': no tag named '\(name)'") }
            if writable && b.driver == nil {
                throw LoopCommandError("loop '\(d.name)': tag '\(name)' has no driver to write it")
            }
            return b
        }
        var cvs: [LoopTagBinding] = []
        for cv in d.cvs { cvs.append(try resolve(cv.tag, writable: false)) }
        var dvs: [LoopTagBinding] = []
        for dv in d.dvs { dvs.append(try resolve(dv, writable: false)) }
        var mvs: [LoopTagBinding] = []
        for mv in d.mvs { mvs.append(try resolve(mv.tag, writable: true)) }
        cvBindings = cvs
        dvBindings = dvs
        mvBindings = mvs
        var heartbeatBinding: LoopTagBinding?
        if let hb = d.heartbeatTag {
            let b = try resolve(hb, writable: true)
            heartbeatBinding = b
            let limits = b.table.definitions[b.index].limits
            let typeMax: Double
            switch b.table.definitions[b.index].type {
            case .int16: typeMax = 32767
            case .uint16: typeMax = 65535
            case .int32: typeMax = 2_147_483_647
            default: typeMax = 4_294_967_295
            }
            heartbeatRange = (
                UInt64(max(0, limits?.minimum ?? 0)), UInt64(min(typeMax, limits?.maximum ?? typeMax))
            )
        } else {
            heartbeatRange = (0, 0)
        }
        hasHeartbeat = heartbeatBinding != nil
        ny = d.cvs.count
        nu = d.mvs.count
        nd = d.dvs.count
        maxAgeMicroseconds = Int64(d.supervisor.maxInputAgeMilliseconds) * 1000
        healthyPeriodNanoseconds = d.supervisor.healthyPeriodMilliseconds.map { Int64($0) * 1_000_000 }
        let steps = LoopFactory.rateSteps(d)
        rateUp = steps.map(\.up)
        rateDown = steps.map(\.down)
        mvLow = d.mvs.map(\.low)
        mvHigh = d.mvs.map(\.high)
        let tuning = LoopTuning(d)
        tuningState = Mutex(tuning)
        modelDefinition = d
        predictions = LoopModelPredictions(definition: d)
        do {
            control = try LoopFactory.build(
                d, tuning: tuning, targets: LoopFactory.targets(d), initialOutputs: d.nominalMVs)
        } catch {
            throw LoopCommandError("loop '\(d.name)': \(error.message)")
        }
        requestedMode = LoopMode(rawValue: d.mode.rawValue) ?? .manual
        buffers = LoopCycleBuffers(cvs: ny, mvs: nu, dvs: nd)
        for (i, t) in LoopFactory.targets(d).enumerated() {
            switch t {
            case .setpoint(let sp): (buffers.targetLow[i], buffers.targetHigh[i]) = (sp, sp)
            case .range(let lo, let hi): (buffers.targetLow[i], buffers.targetHigh[i]) = (lo, hi)
            }
        }
        schedule = LoopSchedule(
            periodNanoseconds: Int64(d.periodMilliseconds) * 1_000_000, realtimePriority: d.realtimePriority,
            loopName: d.name, logger: logger)
        events = LoopEventLog(definition: d, logger: logger, audit: audit)
        writer = MVWriter(
            loopName: d.name, bindings: mvs, heartbeat: heartbeatBinding, events: events, logger: logger,
            rateUp: steps.map(\.up), rateDown: steps.map(\.down))
        let unitsOf = { (b: LoopTagBinding) in b.table.definitions[b.index].units }
        board = LoopStateBoard(
            definition: d, requestedMode: requestedMode, cvUnits: cvs.map(unitsOf), mvUnits: mvs.map(unitsOf))
        commands.withLock { $0.reserveCapacity(64) }
        events.testEnded = { [weak self] outcome, reason, wall in
            self?.testEnded(outcome: outcome, reason: reason, at: wall)
        }
    }

    deinit {
        stop()
        buffers.deallocate()
    }

    // MARK: - Threads

    /// Locks the process's memory once, for loops that ask for it (`lock_memory: true`).
    private static let memoryLock = Mutex<Int32?>(nil)

    /// Starts the loop thread and its writer thread.
    public func start() {
        guard !schedule.isRunning else { return }
        if definition.lockMemory {
            let result = Self.memoryLock.withLock { state -> Int32 in
                if let s = state { return s }
                let rc = mlockall(Int32(MCL_CURRENT | MCL_FUTURE)) == 0 ? 0 : errno
                state = rc
                return rc
            }
            if result != 0 {
                logger.warning(
                    "mlockall refused; memory stays pageable",
                    metadata: ["loop": "\(definition.name)", "error": "\(String(cString: strerror(result)))"])
            }
        }
        writer.start()
        lastCycleEnd = loopMonotonicNanoseconds()
        schedule.start(
            cycle: { [self] wake, lateness in
                cycleObserver?(true)
                cycle(now: wake, lateness: lateness)
                cycleObserver?(false)
            },
            completed: { [board] skipped, nanoseconds in
                board.recordCompletion(skipped: skipped, cycleNanoseconds: nanoseconds)
            })
        logger.notice(
            "loop started",
            metadata: [
                "loop": "\(definition.name)", "period_ms": "\(definition.periodMilliseconds)",
                "mode": "\(requestedMode.rawValue)",
            ])
    }

    /// Stops writing: the loop thread ends after its current cycle, the writer after its current write. The MVs
    /// keep the last values written (the PLC owns what happens next), and the heartbeat stops changing.
    public func stop() {
        guard schedule.isRunning else { return }
        schedule.stop()
        writer.stop()
        events.drain()
        logger.notice("loop stopped; MVs keep their last values", metadata: ["loop": "\(definition.name)"])
    }

    // MARK: - The cycle

    private func cycle(now: Int64, lateness: Int64) {
        let b = buffers
        let wall = loopWallMicroseconds()
        applyCommands(now: now)
        var swapping = false
        board.lock()
        let swap = board.pendingSwap
        let swapReason = board.pendingSwapReason
        board.pendingSwap = nil
        if swap != nil { board.retiredLoop = control }
        board.unlock()
        if let swap {
            resumeReason = swapReason
            // The new controller starts in MANUAL at the applied MVs; the operator's mode resumes next cycle, so
            // every controller in it starts from exactly what is applied (bumpless retune).
            resumeAfterSwap = control.mode == .manual ? nil : control.mode
            control = swap
            swapping = true
            for i in 0..<ny { setTarget(i) }
        }
        if !swapping, let resume = resumeAfterSwap {
            resumeAfterSwap = nil
            control.request(resume)
            pendingReason = resumeReason
            suppressedFrom = resume
        }

        // Inputs: the freshest samples, with quality and age.
        writer.copyFailures(into: b.writeFailed, since: writeEpoch)
        var healthy = lagScore == 0
        for i in 0..<ny {
            let (value, good, time) = read(cvBindings[i], wall: wall, now: now)
            b.cvValue[i] = value
            b.cvGood[i] = good
            if !good { healthy = false }
            control.setMeasurement(i, value: value, good: good, timestamp: time)
        }
        for k in 0..<nd {
            let (value, good, time) = read(dvBindings[k], wall: wall, now: now)
            b.dvValue[k] = value
            b.dvGood[k] = good
            if !good { healthy = false }
            control.setDisturbance(k, value: value, good: good, timestamp: time)
        }
        for l in 0..<nu {
            let (value, good, time) = read(mvBindings[l], wall: wall, now: now)
            b.mvRead[l] = value
            b.mvGood[l] = good
            // A failed write is a fault while the loop writes; in MANUAL (nothing written) the readback decides.
            let ok = good && (!b.writeFailed[l] || control.mode == .manual)
            if !ok { healthy = false }
            control.setInputReadback(l, good: ok, timestamp: time)
            if b.applied[l].isNaN && good { b.applied[l] = value }
        }
        if healthy {
            if healthySince == nil { healthySince = now }
        } else {
            healthySince = nil
        }
        // A plain loop: a closure over `self` handed to a generic algorithm allocates its context in debug builds.
        var allMVsKnown = true
        for l in 0..<nu where b.applied[l].isNaN { allMVsKnown = false }

        // MANUAL: the operator owns the MVs. They follow the PLC unless the operator set a value, which is
        // approached at the rate limit.
        let modeBefore = swapping ? (resumeAfterSwap ?? .manual) : control.mode
        for l in 0..<nu {
            b.previous[l] = b.applied[l]
            if control.mode == .manual {
                if b.operatorManual[l].isFinite {
                    control.setManualOutput(l, ramp(l, from: b.applied[l], to: b.operatorManual[l]))
                } else if b.mvGood[l] {
                    control.setManualOutput(l, b.mvRead[l])
                }
            }
        }

        // Start, and return to the operator's mode after a fault once the inputs stayed healthy long enough.
        if !swapping && resumeAfterSwap == nil && control.mode != requestedMode && control.mode != .test && healthy
            && allMVsKnown
        {
            if !started {
                started = true
                control.request(requestedMode)
                pendingReason = .startup
            } else if faultShed, let period = healthyPeriodNanoseconds, let since = healthySince,
                now - since >= period
            {
                control.request(requestedMode)
                pendingReason = .recovered(healthyNanoseconds: now - since)
            }
        }
        if !started && allMVsKnown && requestedMode == .manual && healthy { started = true }

        // Writes that keep falling behind: every MV the PLC receives is still within its rate of the last one (the
        // writer sees to that), but the PLC no longer gets what the controller decides. Shed to MANUAL, where the
        // loop writes nothing, and drop what waits in the mailbox.
        if lagScore >= Self.lagLimit && control.mode != .manual && !swapping && resumeAfterSwap == nil {
            for l in 0..<nu { control.setManualOutput(l, b.mvGood[l] ? b.mvRead[l] : b.previous[l]) }
            control.request(.manual)
            pendingReason = .writesLagging(mv: laggingMV)
            writer.discardPending()
        }

        let report = control.step(now: UInt64(now))
        let (recordedTransition, holdOutputs) = recordTransition(report.transition, swapping: swapping, wall: wall)

        // Outputs: clamp and rate-limit whatever the controller asked for, then hand them to the writer.
        var limitedMoves: UInt64 = 0
        let mode = control.mode
        for l in 0..<nu {
            b.outWrite[l] = false
            guard !b.previous[l].isNaN else { continue }
            var value: Double
            var write = true
            if holdOutputs || swapping {
                value = b.previous[l]
            } else if mode == .manual && !b.operatorManual[l].isFinite {
                value = b.mvGood[l] ? b.mvRead[l] : b.previous[l]
                write = false
            } else {
                value = control.outputs[l]
            }
            let limited = min(max(value, mvLow[l]), mvHigh[l])
            let rated = min(max(limited, b.previous[l] - rateDown[l]), b.previous[l] + rateUp[l])
            if write && abs(rated - value) > 1e-9 * max(1, abs(value)) { limitedMoves += 1 }
            if write {
                value = rated
                b.outValue[l] = value
                b.outWrite[l] = true
            }
            b.applied[l] = value
            if mode == .manual && b.operatorManual[l].isFinite && abs(value - b.operatorManual[l]) < 1e-12 {
                b.operatorManual[l] = .nan
            }
        }
        var beat: UInt64?
        if hasHeartbeat {
            heartbeat = heartbeat >= heartbeatRange.high ? heartbeatRange.low : heartbeat + 1
            beat = heartbeat
        }
        let overrunMV = writer.post(values: b.outValue, write: b.outWrite, heartbeat: beat, epoch: writeEpoch)
        let overrun = overrunMV != nil
        if let l = overrunMV {
            lagScore = min(lagScore + 1, Self.lagLimit)
            laggingMV = l
        } else if lagScore > 0 {
            lagScore -= 1
        }
        // The writes are posted: the models' predictions cannot delay them.
        var inputsGood = true
        for i in 0..<ny where !b.cvGood[i] { inputsGood = false }
        for k in 0..<nd where !b.dvGood[k] { inputsGood = false }
        predictions.step(
            good: inputsGood, measurement: b.cvValue, applied: b.previous, disturbance: b.dvValue)

        // Statistics and KPIs.
        let dt = lastCycleEnd == 0 ? schedule.periodNanoseconds : max(0, now - lastCycleEnd)
        lastCycleEnd = now
        if mode != .test { runningTest = nil }
        if control.testDropped {
            board.lock()
            board.testDropped = true
            board.unlock()
        }
        board.publish(
            LoopStateBoard.CycleFigures(
                mode: swapping ? modeBefore : mode, requestedMode: requestedMode, transitioned: recordedTransition,
                reason: events.lastPushedReason, wallMicroseconds: wall, now: now, elapsed: dt, lateness: lateness,
                limitedMoves: limitedMoves, overrun: overrun, mpc: report.mpc, heartbeat: beat,
                testPosition: runningTest?.position ?? 0, testCycles: runningTest?.cycles ?? 0),
            b)
    }

    /// Books a mode change the controller made this cycle: its reason, the event for the journal and audit, and a
    /// shed straight to MANUAL where the loop is configured so. Returns whether a transition was recorded, and
    /// whether the outputs must hold where they were this cycle.
    private func recordTransition(
        _ transition: ModeTransition?, swapping: Bool, wall: Int64
    ) -> (recorded: Bool, hold: Bool) {
        guard let t = transition, !swapping else { return (false, false) }
        let b = buffers
        var recorded = false
        var hold = false
        let reason: LoopEventReason =
            t.reason == .operatorRequest ? (pendingReason ?? .operatorRequest) : .supervisor(t.reason)
        pendingReason = nil
        if t.to == .pid && reason.isFault && definition.supervisor.fallback == .manual,
            case .supervisor(let why) = reason
        {
            // Configured to shed straight to MANUAL: hold the MVs where they were and leave PID next cycle.
            for l in 0..<nu where !b.previous[l].isNaN { control.setManualOutput(l, b.previous[l]) }
            control.request(.manual)
            pendingReason = .fallbackManual(why)
            suppressedFrom = t.from
            hold = true
        } else {
            let from = suppressedFrom ?? t.from
            suppressedFrom = nil
            if from == .manual && t.to != .manual { writeEpoch &+= 1 }
            // A controller that computed a non-finite output stays shed until an operator looks at its tuning: a
            // return after a healthy period would only shed again.
            faultShed = reason.isFault && !reason.needsOperator
            recorded = true
            var bump = 0.0
            for l in 0..<nu where !b.previous[l].isNaN {
                let move = control.outputs[l] - b.previous[l]
                let step = move >= 0 ? rateUp[l] : rateDown[l]
                if step > 0 && step.isFinite { bump = max(bump, abs(move) / step) }
            }
            events.push(LoopEvent(from: from, to: t.to, reason: reason, wallMicroseconds: wall, bump: bump))
        }
        if t.to != .manual { for l in 0..<nu { b.operatorManual[l] = .nan } }
        if t.from == .test && t.to == .manual, let test = runningTest {
            // A test started in MANUAL leaves the MVs where they were before it, approached at the rate limit.
            for l in 0..<nu where test.tested[l] && test.base[l].isFinite { b.operatorManual[l] = test.base[l] }
        }
        return (recorded, hold)
    }

    @inline(__always)
    private func read(_ b: LoopTagBinding, wall: Int64, now: Int64) -> (Double, Bool, UInt64) {
        let sample = b.table.read(b.index)
        let value = sample.value.doubleValue ?? .nan
        // Age since the driver last vouched for the value, not since it changed at the source: an MV the PLC has
        // held for an hour is current when the last poll (or a live subscription) says so.
        let age = max(0, wall - max(sample.timestamp, b.table.confirmedAt(b.index)))
        let good = sample.quality.isGood && value.isFinite && age <= maxAgeMicroseconds
        let time = now - min(age, now / 1000) * 1000
        return (value, good, UInt64(max(0, time)))
    }

    private func ramp(_ l: Int, from: Double, to: Double) -> Double {
        guard from.isFinite else { return to }
        return min(max(to, from - rateDown[l]), from + rateUp[l])
    }

    private func setTarget(_ i: Int) {
        let (lo, hi) = (buffers.targetLow[i], buffers.targetHigh[i])
        let target: CVTarget = lo == hi ? .setpoint(lo) : .range(low: lo, high: hi)
        try? control.mpc.setTarget(i, target)
    }

    private func applyCommands(now: Int64) {
        commands.withLock { queue in
            guard !queue.isEmpty else { return }
            for k in 0..<queue.count {
                switch queue[k] {
                case .mode(let m):
                    requestedMode = m
                    if m != control.mode {
                        control.request(m)
                        pendingReason = .operatorRequest
                    }
                    started = true
                case .setpoint(let i, let value):
                    buffers.targetLow[i] = value
                    buffers.targetHigh[i] = value
                    setTarget(i)
                case .manual(let l, let value):
                    if control.mode == .manual { buffers.operatorManual[l] = value }
                case .resetKPIs:
                    board.resetKPIs(now: now)
                case .beginTest(let test):
                    if control.mode != .test {
                        runningTest = test
                        control.beginTest(test)
                        pendingReason = .testStarted
                    }
                case .stopTest:
                    control.stopTest()
                }
            }
            queue.removeAll(keepingCapacity: true)
        }
    }

    // MARK: - Views

    /// The loop's current state; copying it holds the loop for microseconds at most.
    public func snapshot() -> LoopSnapshot {
        var s = board.snapshot(events: events, writer: writer, scheduling: schedule.scheduling)
        s.modelVersion = activeModelVersion
        let figures = predictions.current
        s.modelNRMSE = figures.active.isFinite ? figures.active : nil
        s.shadowNRMSE = figures.shadow.isFinite ? figures.shadow : nil
        s.shadowVersion = figures.shadowVersion
        s.modelDegraded = figures.degraded
        s.test = plantTest
        return s
    }

    /// The loop's performance over its rolling window.
    public func kpis() -> LoopKPIReport { board.kpis() }

    /// The loop's counters and modes, and the wake-up lateness and MPC solve-time samples (ns) recorded since
    /// `cursor` (at most the newest 8,192 of each, what the rings keep) copied into the caller's buffers, all under
    /// one hold of the board's lock, so the counts agree: what a metrics scrape reads. No percentiles are sorted
    /// (unlike `snapshot()`); the loop thread waits at most for the copy.
    package func newSamples(
        since cursor: inout LoopSampleCursor, jitter: UnsafeMutableBufferPointer<Int64>,
        solve: UnsafeMutableBufferPointer<Int64>
    ) -> (counters: LoopCounters, jitter: Int, solve: Int) {
        let (s, j, n) = board.newSamples(since: &cursor, jitter: jitter, solve: solve)
        let counters = LoopCounters(
            mode: s.mode.rawValue, requestedMode: s.requestedMode.rawValue, cycles: s.cycles,
            missedDeadlines: s.missed, skippedCycles: s.skipped, writeOverruns: s.writeOverruns,
            limitedMoves: s.limited, sheds: events.sheds, lastSolveNanoseconds: s.lastSolveNanoseconds)
        return (counters, j, n)
    }
}

/// A scraper's place in a loop's sample rings (`LoopRunner.newSamples`).
package struct LoopSampleCursor: Sendable {
    package var jitter: UInt64 = 0
    package var solve: UInt64 = 0
    package init() {}
}

/// A loop's counters and modes, as `LoopRunner.newSamples` copies them.
package struct LoopCounters: Sendable {
    package var mode: String
    package var requestedMode: String
    package var cycles: UInt64
    package var missedDeadlines: UInt64
    package var skippedCycles: UInt64
    package var writeOverruns: UInt64
    package var limitedMoves: UInt64
    /// Mode changes forced by a fault (bad or stale input, solver trouble, lagging writes).
    package var sheds: UInt64
    package var lastSolveNanoseconds: UInt64
}
