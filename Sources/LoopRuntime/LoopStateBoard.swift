import Control
import Foundation
import Tags

/// What other threads see of a loop: mode and reason, CVs, targets, MVs, solver and timing figures, KPIs.
///
/// The loop thread writes it once per cycle under one mutex held only while copying numbers (`publish`); the CLI,
/// the loop's state device and the operator commands read it (`snapshot`, `kpis`). It also carries a retuned
/// controller from the caller's thread to the next cycle boundary.
final class LoopStateBoard: @unchecked Sendable {
    /// The scalar part of the board.
    struct Scalars {
        var mode: LoopMode = .manual
        var requestedMode: LoopMode = .manual
        var reason: LoopEventReason?
        var modeSince: Int64?
        var status: QPStatus?
        var iterations = 0
        var lastSolveNanoseconds: UInt64 = 0
        var cycles: UInt64 = 0
        var missed: UInt64 = 0
        var skipped: UInt64 = 0
        var writeOverruns: UInt64 = 0
        var limited: UInt64 = 0
        var modeNanoseconds: (Int64, Int64, Int64, Int64) = (0, 0, 0, 0)
        var heartbeat: UInt64?
        /// The running plant test's cycles applied and total (0 when none runs).
        var testPosition = 0
        var testCycles = 0
    }

    /// One cycle's figures besides the arrays, for `publish`.
    struct CycleFigures {
        var mode: LoopMode
        var requestedMode: LoopMode
        var transitioned: Bool
        var reason: LoopEventReason?
        var wallMicroseconds: Int64
        var now: Int64
        var elapsed: Int64
        var lateness: Int64
        var limitedMoves: UInt64
        var overrun: Bool
        var mpc: MPCStepResult?
        var heartbeat: UInt64?
        var testPosition: Int
        var testCycles: Int
    }

    private let definition: LoopDefinition
    private let ny: Int
    private let nu: Int
    private let nd: Int
    private let mvLow: [Double]
    private let mvHigh: [Double]
    /// Largest MV move per cycle, up and down: a move this large is at its rate limit.
    private let rateStepUp: [Double]
    private let rateStepDown: [Double]
    private let cvUnits: [String?]
    private let mvUnits: [String?]
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private(set) var scalars = Scalars()
    private let cv: UnsafeMutablePointer<Double>
    private let cvGood: UnsafeMutablePointer<Bool>
    private let targetLow: UnsafeMutablePointer<Double>
    private let targetHigh: UnsafeMutablePointer<Double>
    private let mv: UnsafeMutablePointer<Double>
    private let dv: UnsafeMutablePointer<Double>
    private let dvGood: UnsafeMutablePointer<Bool>
    private var jitter = SampleRing(capacity: 8192)
    private var cycleTime = SampleRing(capacity: 8192)
    private var solveTime = SampleRing(capacity: 8192)
    private var kpi: LoopKPIAccumulator
    /// A rebuilt controller waiting for the next cycle boundary.
    var pendingSwap: ControlLoop?
    /// Why it was rebuilt: the reason the operator's mode resumes with after the swap.
    var pendingSwapReason = LoopEventReason.retuned
    /// The controller a swap replaced: kept here so it is freed by the next rebuild, on that caller's thread,
    /// never on the loop thread.
    var retiredLoop: ControlLoop?
    /// The plant test started last: held here so the loop thread never frees it (decision 0034).
    var currentTest: PlantTest?
    /// The loop dropped `currentTest` before it began (another mode was asked for in the same cycle).
    var testDropped = false

    init(definition d: LoopDefinition, requestedMode: LoopMode, cvUnits: [String?], mvUnits: [String?]) {
        definition = d
        ny = d.cvs.count
        nu = d.mvs.count
        nd = d.dvs.count
        mvLow = d.mvs.map(\.low)
        mvHigh = d.mvs.map(\.high)
        let steps = LoopFactory.rateSteps(d)
        rateStepUp = steps.map(\.up)
        rateStepDown = steps.map(\.down)
        self.cvUnits = cvUnits
        self.mvUnits = mvUnits
        cv = allocateFilled(ny, .nan)
        cvGood = allocateFilled(ny, false)
        targetLow = allocateFilled(ny, .nan)
        targetHigh = allocateFilled(ny, .nan)
        mv = allocateFilled(nu, .nan)
        dv = allocateFilled(nd, .nan)
        dvGood = allocateFilled(nd, false)
        let ultimate = d.cvs.map { cv -> Double in
            let ti = d.mvs.first { $0.pid.cv == cv.tag }?.pid.integralSeconds ?? .infinity
            return ti.isFinite ? ti : 60
        }
        let amplitude = d.cvs.map { cv in
            cv.oscillationAmplitude ?? max(0.01, 0.01 * abs(cv.setpoint ?? cv.rangeHigh ?? 1))
        }
        kpi = LoopKPIAccumulator(
            cvs: ny, mvs: nu, windowNanoseconds: Int64(d.kpiWindowMilliseconds) * 1_000_000, amplitude: amplitude,
            ultimatePeriod: ultimate, period: Double(d.periodMilliseconds) / 1000, softLow: d.cvs.map(\.softLow),
            softHigh: d.cvs.map(\.softHigh), hysteresis: amplitude)
        pthread_mutex_init(mutex, nil)
        scalars.requestedMode = requestedMode
    }

    deinit {
        for p in [cv, targetLow, targetHigh, mv, dv] { p.deallocate() }
        for p in [cvGood, dvGood] { p.deallocate() }
        jitter.deallocate()
        cycleTime.deallocate()
        solveTime.deallocate()
        kpi.deallocate()
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    @inline(__always) func lock() { pthread_mutex_lock(mutex) }
    @inline(__always) func unlock() { pthread_mutex_unlock(mutex) }

    func withLock<T>(_ body: () -> T) -> T {
        lock()
        defer { unlock() }
        return body()
    }

    // MARK: - The loop thread's side

    /// Records how a cycle ended: releases skipped by an overrun, and the time it took.
    func recordCompletion(skipped: UInt64, cycleNanoseconds: Int64) {
        lock()
        if skipped > 0 { scalars.missed &+= 1 }
        scalars.skipped &+= skipped
        cycleTime.record(cycleNanoseconds)
        unlock()
    }

    /// Starts a new KPI window.
    func resetKPIs(now: Int64) {
        lock()
        kpi.reset(now: now)
        unlock()
    }

    /// Copies one cycle's state for readers and adds it to the KPIs; allocates nothing.
    func publish(_ f: CycleFigures, _ b: LoopCycleBuffers) {
        lock()
        defer { unlock() }
        scalars.cycles &+= 1
        scalars.limited &+= f.limitedMoves
        if f.overrun { scalars.writeOverruns &+= 1 }
        jitter.record(f.lateness)
        if let mpc = f.mpc {
            scalars.status = mpc.status
            scalars.iterations = mpc.iterations
            scalars.lastSolveNanoseconds = mpc.solveNanoseconds
            solveTime.record(Int64(mpc.solveNanoseconds))
        }
        switch f.mode {
        case .manual: scalars.modeNanoseconds.0 += f.elapsed
        case .pid: scalars.modeNanoseconds.1 += f.elapsed
        case .mpc: scalars.modeNanoseconds.2 += f.elapsed
        case .test: scalars.modeNanoseconds.3 += f.elapsed
        }
        scalars.testPosition = f.testPosition
        scalars.testCycles = f.testCycles
        if f.transitioned || scalars.modeSince == nil {
            scalars.modeSince = f.wallMicroseconds
            if let r = f.reason { scalars.reason = r }
        }
        scalars.mode = f.mode
        scalars.requestedMode = f.requestedMode
        for i in 0..<ny {
            cv[i] = b.cvValue[i]
            cvGood[i] = b.cvGood[i]
            targetLow[i] = b.targetLow[i]
            targetHigh[i] = b.targetHigh[i]
        }
        for k in 0..<nd {
            dv[k] = b.dvValue[k]
            dvGood[k] = b.dvGood[k]
        }
        for l in 0..<nu { mv[l] = b.applied[l] }
        scalars.heartbeat = f.heartbeat
        for i in 0..<ny {
            let y = b.cvValue[i]
            let (lo, hi) = (b.targetLow[i], b.targetHigh[i])
            b.kpiError[i] =
                f.mode == .manual || f.mode == .test || !b.cvGood[i] ? .nan : (y < lo ? lo - y : (y > hi ? hi - y : 0))
        }
        for i in 0..<ny { b.kpiCV[i] = b.cvGood[i] ? b.cvValue[i] : .nan }
        for l in 0..<nu {
            let v = b.applied[l]
            let tolerance = 1e-6 * (mvHigh[l] - mvLow[l])
            var bits: UInt8 = 0
            if v <= mvLow[l] + tolerance { bits |= LoopKPIAccumulator.MVLimit.low }
            if v >= mvHigh[l] - tolerance { bits |= LoopKPIAccumulator.MVLimit.high }
            // A move as large as the rate allows: the limiter (or the QP's rate constraint) is active.
            let move = v - b.previous[l]
            let step = move >= 0 ? rateStepUp[l] : rateStepDown[l]
            if move != 0 && step > 0 && abs(move) >= step * (1 - 1e-6) { bits |= LoopKPIAccumulator.MVLimit.rate }
            b.kpiLimits[l] = bits
        }
        kpi.add(
            now: f.now, dt: f.elapsed, mode: f.mode == .manual || f.mode == .test ? 0 : (f.mode == .pid ? 1 : 2),
            error: b.kpiError, cv: b.kpiCV, limits: b.kpiLimits)
    }

    // MARK: - Readers (lock held by the caller where said)

    /// MV l as last applied (caller holds the lock); NaN before the loop knew it.
    func appliedMV(_ l: Int) -> Double { mv[l] }

    /// The MVs and CV targets now in force (caller holds the lock), for a bumpless retune.
    func outputsAndTargets(nominal: [Double]) -> ([Double], [CVTarget]) {
        let outputs = (0..<nu).map { mv[$0].isFinite ? mv[$0] : nominal[$0] }
        // Before the first cycle nothing is published yet: the configured targets are the ones in force (a model
        // activated at start-up, from the ledger, is rebuilt then).
        let configured = LoopFactory.targets(definition)
        let targets = (0..<ny).map { i -> CVTarget in
            if targetLow[i].isNaN || targetHigh[i].isNaN { return configured[i] }
            return targetLow[i] == targetHigh[i]
                ? .setpoint(targetLow[i]) : .range(low: targetLow[i], high: targetHigh[i])
        }
        return (outputs, targets)
    }

    /// The loop's current state; copying it holds the loop for microseconds at most.
    func snapshot(events: LoopEventLog, writer: MVWriter, scheduling: String) -> LoopSnapshot {
        let d = definition
        let transitions = events.transitions
        return withLock {
            let j = jitter.summary()
            let c = cycleTime.summary()
            let s = solveTime.summary()
            let single = { (i: Int) in self.targetLow[i] == self.targetHigh[i] }
            return LoopSnapshot(
                name: d.name, mode: scalars.mode.rawValue, requestedMode: scalars.requestedMode.rawValue,
                reason: scalars.reason.map(events.describe), modeSince: scalars.modeSince,
                periodMilliseconds: d.periodMilliseconds,
                cvs: (0..<ny).map { i in
                    LoopCVState(
                        tag: d.cvs[i].tag, value: cv[i].isFinite ? cv[i] : nil, good: cvGood[i],
                        setpoint: single(i) ? targetLow[i] : nil, rangeLow: single(i) ? nil : targetLow[i],
                        rangeHigh: single(i) ? nil : targetHigh[i], units: cvUnits[i])
                },
                mvs: (0..<nu).map { l in
                    let v = mv[l]
                    let tolerance = 1e-6 * (mvHigh[l] - mvLow[l])
                    let outcome = writer.outcome(l)
                    return LoopMVState(
                        tag: d.mvs[l].tag, value: v.isFinite ? v : nil, low: mvLow[l], high: mvHigh[l],
                        saturated: v.isFinite && (v <= mvLow[l] + tolerance || v >= mvHigh[l] - tolerance),
                        writes: outcome.writes, writeErrors: outcome.errors, relimitedWrites: outcome.relimited,
                        lastWriteError: outcome.lastError,
                        units: mvUnits[l])
                },
                dvs: (0..<nd).map { k in
                    LoopDVState(tag: d.dvs[k], value: dv[k].isFinite ? dv[k] : nil, good: dvGood[k])
                },
                solver: LoopSolverState(
                    status: scalars.status?.rawValue, iterations: scalars.iterations,
                    lastMicroseconds: Double(scalars.lastSolveNanoseconds) / 1000,
                    p50Microseconds: Double(s.p50) / 1000, p99Microseconds: Double(s.p99) / 1000,
                    maxMicroseconds: Double(s.max) / 1000),
                timing: LoopTimingState(
                    cycles: scalars.cycles, jitterP50Microseconds: Double(j.p50) / 1000,
                    jitterP99Microseconds: Double(j.p99) / 1000, jitterMaxMicroseconds: Double(j.max) / 1000,
                    cycleP99Microseconds: Double(c.p99) / 1000, cycleMaxMicroseconds: Double(c.max) / 1000,
                    missedDeadlines: scalars.missed, skippedCycles: scalars.skipped,
                    writeOverruns: scalars.writeOverruns, limitedMoves: scalars.limited),
                secondsInMode: [
                    "manual": Double(scalars.modeNanoseconds.0) / 1e9, "pid": Double(scalars.modeNanoseconds.1) / 1e9,
                    "mpc": Double(scalars.modeNanoseconds.2) / 1e9, "test": Double(scalars.modeNanoseconds.3) / 1e9,
                ],
                heartbeat: scalars.heartbeat, scheduling: scheduling, transitions: transitions)
        }
    }

    /// Wake-up lateness and solve-time samples (ns) recorded since `cursor`, copied under the lock (a copy of at
    /// most the two rings, no sorting), for a metrics scraper that buckets them on its own thread.
    func newSamples(
        since cursor: inout LoopSampleCursor, jitter: UnsafeMutableBufferPointer<Int64>,
        solve: UnsafeMutableBufferPointer<Int64>
    ) -> (scalars: Scalars, jitter: Int, solve: Int) {
        withLock {
            (
                scalars, self.jitter.copy(since: &cursor.jitter, into: jitter),
                solveTime.copy(since: &cursor.solve, into: solve)
            )
        }
    }

    /// The loop's performance over its rolling window.
    func kpis() -> LoopKPIReport {
        let d = definition
        return withLock {
            let w = kpi.window()
            let covered = max(w.seconds, 1e-9)
            return LoopKPIReport(
                name: d.name, windowSeconds: Double(d.kpiWindowMilliseconds) / 1000, coveredSeconds: w.seconds,
                serviceFactor: [
                    "manual": w.modes[0] / covered, "pid": w.modes[1] / covered, "mpc": w.modes[2] / covered,
                ],
                cvs: (0..<ny).map { i in
                    LoopCVKPI(
                        tag: d.cvs[i].tag, iae: w.iae[i], iaeTotal: kpi.iaeTotal[i], loadDisturbances: Int(w.loads[i]),
                        oscillationIndex: kpi.detector[i], oscillating: kpi.detector[i] > LoopKPIAccumulator.loadLimit,
                        belowSoftLowPercent: 100 * w.belowSoft[i] / covered,
                        aboveSoftHighPercent: 100 * w.aboveSoft[i] / covered, violations: Int(w.violations[i]),
                        worstViolation: w.worst[i], violating: kpi.violating[i] != 0)
                },
                mvs: (0..<nu).map { l in
                    LoopMVKPI(
                        tag: d.mvs[l].tag, saturationPercent: 100 * w.saturated[l] / covered,
                        atLowPercent: 100 * w.atLow[l] / covered, atHighPercent: 100 * w.atHigh[l] / covered,
                        atRateLimitPercent: 100 * w.atRate[l] / covered)
                })
        }
    }
}
