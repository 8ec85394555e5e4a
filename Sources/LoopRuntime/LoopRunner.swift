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

/// Why a loop changed mode, at the runner's level (the supervisor's reasons plus the runner's own decisions).
enum LoopEventReason: Sendable {
    case supervisor(TransitionReason)
    case operatorRequest
    case startup
    case recovered(healthyNanoseconds: Int64)
    case fallbackManual(TransitionReason)
    case retuned

    var isFault: Bool {
        switch self {
        case .supervisor(let r): return r != .operatorRequest && r != .healthyPeriodElapsed
        case .fallbackManual: return true
        default: return false
        }
    }
}

/// One mode change, recorded by the loop thread in a fixed ring and reported by the writer thread.
struct LoopEvent {
    var from: LoopMode
    var to: LoopMode
    var reason: LoopEventReason
    var wallMicroseconds: Int64
    var bump: Double
}

/// Runs one configured loop in real time: a dedicated thread on an absolute CLOCK_MONOTONIC schedule reads the
/// freshest tag values (quality and age checked), steps the supervised `ControlLoop`, and hands the MV values and
/// the heartbeat to a writer thread, which carries them to the PLC through the device's driver.
///
/// The loop thread never waits on the device, the database, the broker or the CLI: writes, logging and auditing
/// happen on the writer thread, commands arrive through a small mailbox, and the state the CLI and a publisher read
/// is copied out under a lock held only for copying numbers. A cycle allocates nothing (tested with the
/// `CAllocCounter` interposer through `cycleObserver`). Why the writes have their own thread:
/// docs/decisions/0010-real-time-loops.md.
public final class LoopRunner: @unchecked Sendable {
    public let definition: LoopDefinition
    let logger = Logger(label: "edgepilot.loop")
    private let audit: @Sendable (AuditRecord) -> Void
    private let cycleObserver: (@Sendable (_ starting: Bool) -> Void)?

    // Bindings.
    private let cvBindings: [LoopTagBinding]
    private let dvBindings: [LoopTagBinding]
    private let mvBindings: [LoopTagBinding]
    private let heartbeatBinding: LoopTagBinding?
    private let heartbeatRange: (low: UInt64, high: UInt64)
    private let ny: Int
    private let nu: Int
    private let nd: Int
    private let periodNanoseconds: Int64
    private let maxAgeMicroseconds: Int64
    private let healthyPeriodNanoseconds: Int64?
    private let rateUp: [Double]
    private let rateDown: [Double]
    private let mvLow: [Double]
    private let mvHigh: [Double]

    // Loop-thread state (touched only by the loop thread once started).
    private var control: ControlLoop
    private var applied: UnsafeMutablePointer<Double>
    private var previous: UnsafeMutablePointer<Double>
    private var operatorManual: UnsafeMutablePointer<Double>
    private var targetLow: UnsafeMutablePointer<Double>
    private var targetHigh: UnsafeMutablePointer<Double>
    private var cvValue: UnsafeMutablePointer<Double>
    private var cvGood: UnsafeMutablePointer<Bool>
    private var dvValue: UnsafeMutablePointer<Double>
    private var dvGood: UnsafeMutablePointer<Bool>
    private var mvRead: UnsafeMutablePointer<Double>
    private var mvGood: UnsafeMutablePointer<Bool>
    private var writeFailed: UnsafeMutablePointer<Bool>
    private var kpiError: UnsafeMutablePointer<Double>
    private var kpiSaturated: UnsafeMutablePointer<Bool>
    private var requestedMode: LoopMode
    private var started = false
    private var faultShed = true
    private var healthySince: Int64?
    private var pendingReason: LoopEventReason?
    private var suppressedFrom: LoopMode?
    private var resumeAfterSwap: LoopMode?
    private var heartbeat: UInt64 = 0
    private var lastCycleEnd: Int64 = 0

    // Mailboxes from other threads.
    private let commands = Mutex<[Command]>([])
    // A rebuilt controller waiting for the next cycle boundary; guarded by `boardLock`.
    private var pendingSwap: ControlLoop?
    private let tuningState: Mutex<LoopTuning>

    // Board: what readers see, guarded by `boardLock`, written once per cycle.
    private let boardLock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var board = Board()
    private var jitter = SampleRing(capacity: 8192)
    private var cycleTime = SampleRing(capacity: 8192)
    private var solveTime = SampleRing(capacity: 8192)
    private var kpi: LoopKPIAccumulator
    private let boardCV: UnsafeMutablePointer<Double>
    private let boardCVGood: UnsafeMutablePointer<Bool>
    private let boardTargetLow: UnsafeMutablePointer<Double>
    private let boardTargetHigh: UnsafeMutablePointer<Double>
    private let boardMV: UnsafeMutablePointer<Double>
    private let boardDV: UnsafeMutablePointer<Double>
    private let boardDVGood: UnsafeMutablePointer<Bool>
    private let boardWrites: UnsafeMutablePointer<UInt64>
    private let boardWriteErrors: UnsafeMutablePointer<UInt64>
    private let boardWriteFailed: UnsafeMutablePointer<Bool>
    private var lastWriteErrors: [String?]
    private var transitions: [LoopTransitionReport] = []

    // Writer mailbox: the newest MV values and heartbeat; older unwritten ones are replaced (latest wins).
    private let outLock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let outCondition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let outValues: UnsafeMutablePointer<Double>
    private let outDirty: UnsafeMutablePointer<Bool>
    private var outHeartbeat: UInt64 = 0
    private var outHeartbeatDirty = false
    private var outStopping = false

    // Events: single producer (loop thread), single consumer (writer thread).
    private static let eventCapacity = 64
    private let events: UnsafeMutablePointer<LoopEvent>
    private let eventHead = Atomic<Int>(0)
    private let eventTail = Atomic<Int>(0)

    private let stopping = Atomic<Bool>(false)
    private var loopThread: pthread_t?
    private var writerThread: pthread_t?
    private var scheduling = "normal"

    enum Command {
        case mode(LoopMode)
        case setpoint(Int, Double)
        case manual(Int, Double)
        case resetKPIs
    }

    struct Board {
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
        var modeNanoseconds: (Int64, Int64, Int64) = (0, 0, 0)
        var heartbeat: UInt64?
    }

    /// Resolves every tag of `definition` through `bind` and builds the controller; throws a readable reason.
    public init(
        definition d: LoopDefinition, bind: (String) -> LoopTagBinding?,
        audit: @escaping @Sendable (AuditRecord) -> Void = { _ in },
        cycleObserver: (@Sendable (_ starting: Bool) -> Void)? = nil
    ) throws(LoopCommandError) {
        definition = d
        self.audit = audit
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
            heartbeatBinding = nil
            heartbeatRange = (0, 0)
        }
        ny = d.cvs.count
        nu = d.mvs.count
        nd = d.dvs.count
        periodNanoseconds = Int64(d.periodMilliseconds) * 1_000_000
        maxAgeMicroseconds = Int64(d.supervisor.maxInputAgeMilliseconds) * 1000
        healthyPeriodNanoseconds = d.supervisor.healthyPeriodMilliseconds.map { Int64($0) * 1_000_000 }
        let steps = LoopFactory.rateSteps(d)
        rateUp = steps.map(\.up)
        rateDown = steps.map(\.down)
        mvLow = d.mvs.map(\.low)
        mvHigh = d.mvs.map(\.high)
        let tuning = LoopTuning(d)
        tuningState = Mutex(tuning)
        do {
            control = try LoopFactory.build(
                d, tuning: tuning, targets: LoopFactory.targets(d), initialOutputs: d.nominalMVs)
        } catch {
            throw LoopCommandError("loop '\(d.name)': \(error.message)")
        }
        requestedMode = LoopMode(rawValue: d.mode.rawValue) ?? .manual

        func doubles(_ n: Int, _ v: Double) -> UnsafeMutablePointer<Double> {
            let p = UnsafeMutablePointer<Double>.allocate(capacity: max(n, 1))
            p.initialize(repeating: v, count: max(n, 1))
            return p
        }
        func bools(_ n: Int) -> UnsafeMutablePointer<Bool> {
            let p = UnsafeMutablePointer<Bool>.allocate(capacity: max(n, 1))
            p.initialize(repeating: false, count: max(n, 1))
            return p
        }
        func counters(_ n: Int) -> UnsafeMutablePointer<UInt64> {
            let p = UnsafeMutablePointer<UInt64>.allocate(capacity: max(n, 1))
            p.initialize(repeating: 0, count: max(n, 1))
            return p
        }
        applied = doubles(nu, .nan)
        previous = doubles(nu, .nan)
        operatorManual = doubles(nu, .nan)
        targetLow = doubles(ny, .nan)
        targetHigh = doubles(ny, .nan)
        for (i, t) in LoopFactory.targets(d).enumerated() {
            switch t {
            case .setpoint(let sp): (targetLow[i], targetHigh[i]) = (sp, sp)
            case .range(let lo, let hi): (targetLow[i], targetHigh[i]) = (lo, hi)
            }
        }
        cvValue = doubles(ny, .nan)
        cvGood = bools(ny)
        dvValue = doubles(nd, .nan)
        dvGood = bools(nd)
        mvRead = doubles(nu, .nan)
        mvGood = bools(nu)
        writeFailed = bools(nu)
        kpiError = doubles(ny, .nan)
        kpiSaturated = bools(nu)
        boardCV = doubles(ny, .nan)
        boardCVGood = bools(ny)
        boardTargetLow = doubles(ny, .nan)
        boardTargetHigh = doubles(ny, .nan)
        boardMV = doubles(nu, .nan)
        boardDV = doubles(nd, .nan)
        boardDVGood = bools(nd)
        boardWrites = counters(nu)
        boardWriteErrors = counters(nu)
        boardWriteFailed = bools(nu)
        lastWriteErrors = [String?](repeating: nil, count: nu)
        outValues = doubles(nu, .nan)
        outDirty = bools(nu)
        events = .allocate(capacity: Self.eventCapacity)
        let ultimate = d.cvs.map { cv -> Double in
            let ti = d.mvs.first { $0.pid.cv == cv.tag }?.pid.integralSeconds ?? .infinity
            return ti.isFinite ? ti : 60
        }
        let amplitude = d.cvs.map { cv in
            cv.oscillationAmplitude ?? max(0.01, 0.01 * abs(cv.setpoint ?? cv.rangeHigh ?? 1))
        }
        kpi = LoopKPIAccumulator(
            cvs: ny, mvs: nu, windowNanoseconds: Int64(d.kpiWindowMilliseconds) * 1_000_000, amplitude: amplitude,
            ultimatePeriod: ultimate, period: Double(d.periodMilliseconds) / 1000)
        pthread_mutex_init(boardLock, nil)
        pthread_mutex_init(outLock, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(outCondition, &attributes)
        pthread_condattr_destroy(&attributes)
        commands.withLock { $0.reserveCapacity(64) }
        transitions.reserveCapacity(32)
        board.requestedMode = requestedMode
    }

    deinit {
        stop()
        for p in [applied, previous, operatorManual, targetLow, targetHigh, cvValue, dvValue, mvRead, kpiError] {
            p.deallocate()
        }
        kpiSaturated.deallocate()
        for p in [boardCV, boardTargetLow, boardTargetHigh, boardMV, boardDV, outValues] { p.deallocate() }
        for p in [cvGood, dvGood, mvGood, writeFailed, boardCVGood, boardDVGood, boardWriteFailed, outDirty] {
            p.deallocate()
        }
        boardWrites.deallocate()
        boardWriteErrors.deallocate()
        events.deallocate()
        jitter.deallocate()
        cycleTime.deallocate()
        solveTime.deallocate()
        kpi.deallocate()
        pthread_mutex_destroy(boardLock)
        pthread_mutex_destroy(outLock)
        pthread_cond_destroy(outCondition)
        boardLock.deallocate()
        outLock.deallocate()
        outCondition.deallocate()
    }

    // MARK: - Threads

    /// Locks the process's memory once, for loops that ask for it (`lock_memory: true`).
    private static let memoryLock = Mutex<Int32?>(nil)

    /// Starts the loop thread and its writer thread.
    public func start() {
        guard loopThread == nil else { return }
        stopping.store(false, ordering: .releasing)
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
        writerThread = spawn { $0.runWriter() }
        loopThread = spawn { $0.runLoop() }
        logger.notice(
            "loop started",
            metadata: [
                "loop": "\(definition.name)", "period_ms": "\(definition.periodMilliseconds)",
                "mode": "\(requestedMode.rawValue)",
            ])
    }

    private func spawn(_ body: @escaping (LoopRunner) -> Void) -> pthread_t {
        final class Box {
            let runner: LoopRunner
            let body: (LoopRunner) -> Void
            init(_ r: LoopRunner, _ b: @escaping (LoopRunner) -> Void) {
                runner = r
                body = b
            }
        }
        let box = Unmanaged.passRetained(Box(self, body))
        var t = pthread_t()
        let rc = pthread_create(
            &t, nil,
            { raw in
                let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
                box.body(box.runner)
                return nil
            }, box.toOpaque())
        precondition(rc == 0, "cannot create a loop thread: \(rc)")
        return t
    }

    /// Stops writing: the loop thread ends after its current cycle, the writer after its current write. The MVs
    /// keep the last values written (the PLC owns what happens next), and the heartbeat stops changing.
    public func stop() {
        guard let t = loopThread else { return }
        stopping.store(true, ordering: .releasing)
        pthread_join(t, nil)
        loopThread = nil
        pthread_mutex_lock(outLock)
        outStopping = true
        pthread_cond_signal(outCondition)
        pthread_mutex_unlock(outLock)
        if let w = writerThread { pthread_join(w, nil) }
        writerThread = nil
        drainEvents()
        logger.notice("loop stopped; MVs keep their last values", metadata: ["loop": "\(definition.name)"])
    }

    private func runLoop() {
        if let priority = definition.realtimePriority {
            var param = sched_param()
            param.sched_priority = Int32(priority)
            let rc = pthread_setschedparam(pthread_self(), SCHED_FIFO, &param)
            if rc == 0 {
                scheduling = "SCHED_FIFO \(priority)"
            } else {
                scheduling = "normal: SCHED_FIFO \(priority) refused (\(String(cString: strerror(rc))))"
                logger.warning(
                    "realtime priority refused; the loop runs with normal scheduling",
                    metadata: ["loop": "\(definition.name)", "error": "\(String(cString: strerror(rc)))"])
            }
        }
        var release = loopMonotonicNanoseconds() + periodNanoseconds
        lastCycleEnd = release - periodNanoseconds
        while !stopping.load(ordering: .acquiring) {
            sleep(until: release)
            if stopping.load(ordering: .acquiring) { break }
            let wake = loopMonotonicNanoseconds()
            cycleObserver?(true)
            cycle(now: wake, lateness: wake - release)
            cycleObserver?(false)
            let done = loopMonotonicNanoseconds()
            // Absolute schedule: the next release is one period after this one was due, never after it ran. The
            // cycle's deadline is that next release; a cycle that ran past it skips the releases it overlapped.
            release += periodNanoseconds
            var skipped: UInt64 = 0
            if done > release {
                let missed = (done - release) / periodNanoseconds + 1
                release += missed * periodNanoseconds
                skipped = UInt64(missed)
            }
            pthread_mutex_lock(boardLock)
            if skipped > 0 { board.missed &+= 1 }
            board.skipped &+= skipped
            cycleTime.record(done - wake)
            pthread_mutex_unlock(boardLock)
        }
    }

    /// Sleeps on CLOCK_MONOTONIC until `deadline` (absolute), in slices of at most 100 ms so `stop()` is prompt.
    private func sleep(until deadline: Int64) {
        while !stopping.load(ordering: .relaxed) {
            let now = loopMonotonicNanoseconds()
            if now >= deadline { return }
            let target = min(deadline, now + 100_000_000)
            var ts = timespec(tv_sec: Int(target / 1_000_000_000), tv_nsec: Int(target % 1_000_000_000))
            _ = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nil)
        }
    }

    // MARK: - The cycle

    private func cycle(now: Int64, lateness: Int64) {
        let wall = loopWallMicroseconds()
        applyCommands(now: now)
        var swapping = false
        pthread_mutex_lock(boardLock)
        let swap = pendingSwap
        pendingSwap = nil
        pthread_mutex_unlock(boardLock)
        if let swap {
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
            pendingReason = .retuned
            suppressedFrom = resume
        }

        // Inputs: the freshest samples, with quality and age.
        pthread_mutex_lock(boardLock)
        for l in 0..<nu { writeFailed[l] = boardWriteFailed[l] }
        pthread_mutex_unlock(boardLock)
        var healthy = true
        for i in 0..<ny {
            let (value, good, time) = read(cvBindings[i], wall: wall, now: now)
            cvValue[i] = value
            cvGood[i] = good
            if !good { healthy = false }
            control.setMeasurement(i, value: value, good: good, timestamp: time)
        }
        for k in 0..<nd {
            let (value, good, time) = read(dvBindings[k], wall: wall, now: now)
            dvValue[k] = value
            dvGood[k] = good
            if !good { healthy = false }
            control.setDisturbance(k, value: value, good: good, timestamp: time)
        }
        for l in 0..<nu {
            let (value, good, time) = read(mvBindings[l], wall: wall, now: now)
            mvRead[l] = value
            mvGood[l] = good
            // A failed write is a fault while the loop writes; in MANUAL (nothing written) the readback decides.
            let ok = good && (!writeFailed[l] || control.mode == .manual)
            if !ok { healthy = false }
            control.setInputReadback(l, good: ok, timestamp: time)
            if applied[l].isNaN && good { applied[l] = value }
        }
        if healthy {
            if healthySince == nil { healthySince = now }
        } else {
            healthySince = nil
        }
        // A plain loop: a closure over `self` handed to a generic algorithm allocates its context in debug builds.
        var allMVsKnown = true
        for l in 0..<nu where applied[l].isNaN { allMVsKnown = false }

        // MANUAL: the operator owns the MVs. They follow the PLC unless the operator set a value, which is
        // approached at the rate limit.
        let modeBefore = swapping ? (resumeAfterSwap ?? .manual) : control.mode
        for l in 0..<nu {
            previous[l] = applied[l]
            if control.mode == .manual {
                if operatorManual[l].isFinite {
                    control.setManualOutput(l, ramp(l, from: applied[l], to: operatorManual[l]))
                } else if mvGood[l] {
                    control.setManualOutput(l, mvRead[l])
                }
            }
        }

        // Start, and return to the operator's mode after a fault once the inputs stayed healthy long enough.
        if !swapping && resumeAfterSwap == nil && control.mode != requestedMode && healthy && allMVsKnown {
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

        let report = control.step(now: UInt64(now))

        // Mode change bookkeeping.
        var recordedTransition = false
        var holdOutputs = false
        if let t = report.transition, !swapping {
            var reason: LoopEventReason
            if t.reason == .operatorRequest {
                reason = pendingReason ?? .operatorRequest
            } else {
                reason = .supervisor(t.reason)
            }
            pendingReason = nil
            if t.to == .pid && reason.isFault && definition.supervisor.fallback == .manual,
                case .supervisor(let why) = reason
            {
                // Configured to shed straight to MANUAL: hold the MVs where they were and leave PID next cycle.
                for l in 0..<nu where !previous[l].isNaN { control.setManualOutput(l, previous[l]) }
                control.request(.manual)
                pendingReason = .fallbackManual(why)
                suppressedFrom = t.from
                holdOutputs = true
            } else {
                let from = suppressedFrom ?? t.from
                suppressedFrom = nil
                faultShed = reason.isFault
                recordedTransition = true
                var bump = 0.0
                for l in 0..<nu where !previous[l].isNaN {
                    let move = control.outputs[l] - previous[l]
                    let step = move >= 0 ? rateUp[l] : rateDown[l]
                    if step > 0 && step.isFinite { bump = max(bump, abs(move) / step) }
                }
                push(LoopEvent(from: from, to: t.to, reason: reason, wallMicroseconds: wall, bump: bump))
            }
            if t.to != .manual { for l in 0..<nu { operatorManual[l] = .nan } }
        }

        // Outputs: clamp and rate-limit whatever the controller asked for, then hand them to the writer.
        var limitedMoves: UInt64 = 0
        let mode = control.mode
        pthread_mutex_lock(outLock)
        var overrun = false
        for l in 0..<nu {
            guard !previous[l].isNaN else { continue }
            var value: Double
            var write = true
            if holdOutputs || swapping {
                value = previous[l]
            } else if mode == .manual && !operatorManual[l].isFinite {
                value = mvGood[l] ? mvRead[l] : previous[l]
                write = false
            } else {
                value = control.outputs[l]
            }
            let limited = min(max(value, mvLow[l]), mvHigh[l])
            let rated = min(max(limited, previous[l] - rateDown[l]), previous[l] + rateUp[l])
            if write && abs(rated - value) > 1e-9 * max(1, abs(value)) { limitedMoves += 1 }
            if write {
                value = rated
                if outDirty[l] { overrun = true }
                outValues[l] = value
                outDirty[l] = true
            }
            applied[l] = value
            if mode == .manual && operatorManual[l].isFinite && abs(value - operatorManual[l]) < 1e-12 {
                operatorManual[l] = .nan
            }
        }
        if heartbeatBinding != nil {
            heartbeat = heartbeat >= heartbeatRange.high ? heartbeatRange.low : heartbeat + 1
            outHeartbeat = heartbeat
            outHeartbeatDirty = true
        }
        pthread_cond_signal(outCondition)
        pthread_mutex_unlock(outLock)

        // Statistics and KPIs.
        let dt = lastCycleEnd == 0 ? periodNanoseconds : max(0, now - lastCycleEnd)
        lastCycleEnd = now
        let shown = swapping ? modeBefore : mode
        pthread_mutex_lock(boardLock)
        board.cycles &+= 1
        board.limited &+= limitedMoves
        if overrun { board.writeOverruns &+= 1 }
        jitter.record(lateness)
        if let mpc = report.mpc {
            board.status = mpc.status
            board.iterations = mpc.iterations
            board.lastSolveNanoseconds = mpc.solveNanoseconds
            solveTime.record(Int64(mpc.solveNanoseconds))
        }
        switch shown {
        case .manual: board.modeNanoseconds.0 += dt
        case .pid: board.modeNanoseconds.1 += dt
        case .mpc: board.modeNanoseconds.2 += dt
        }
        if recordedTransition || board.modeSince == nil {
            board.mode = shown
            board.modeSince = wall
            if let e = lastPushedReason { board.reason = e }
        }
        board.mode = shown
        board.requestedMode = requestedMode
        for i in 0..<ny {
            boardCV[i] = cvValue[i]
            boardCVGood[i] = cvGood[i]
            boardTargetLow[i] = targetLow[i]
            boardTargetHigh[i] = targetHigh[i]
        }
        for k in 0..<nd {
            boardDV[k] = dvValue[k]
            boardDVGood[k] = dvGood[k]
        }
        for l in 0..<nu { boardMV[l] = applied[l] }
        board.heartbeat = heartbeatBinding == nil ? nil : heartbeat
        for i in 0..<ny {
            let y = cvValue[i]
            kpiError[i] =
                shown == .manual || !cvGood[i]
                ? .nan : (y < targetLow[i] ? targetLow[i] - y : (y > targetHigh[i] ? targetHigh[i] - y : 0))
        }
        for l in 0..<nu {
            let v = applied[l]
            let tolerance = 1e-6 * (mvHigh[l] - mvLow[l])
            kpiSaturated[l] = v <= mvLow[l] + tolerance || v >= mvHigh[l] - tolerance
        }
        kpi.add(
            now: now, dt: dt, mode: shown == .manual ? 0 : (shown == .pid ? 1 : 2), error: kpiError,
            saturated: kpiSaturated)
        pthread_mutex_unlock(boardLock)
    }

    private var lastPushedReason: LoopEventReason?

    @inline(__always)
    private func read(_ b: LoopTagBinding, wall: Int64, now: Int64) -> (Double, Bool, UInt64) {
        let sample = b.table.read(b.index)
        let value = sample.value.doubleValue ?? .nan
        let age = max(0, wall - sample.timestamp)
        let good = sample.quality.isGood && value.isFinite && age <= maxAgeMicroseconds
        let time = now - min(age, now / 1000) * 1000
        return (value, good, UInt64(max(0, time)))
    }

    private func ramp(_ l: Int, from: Double, to: Double) -> Double {
        guard from.isFinite else { return to }
        return min(max(to, from - rateDown[l]), from + rateUp[l])
    }

    private func setTarget(_ i: Int) {
        let target: CVTarget =
            targetLow[i] == targetHigh[i] ? .setpoint(targetLow[i]) : .range(low: targetLow[i], high: targetHigh[i])
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
                    targetLow[i] = value
                    targetHigh[i] = value
                    setTarget(i)
                case .manual(let l, let value):
                    if control.mode == .manual { operatorManual[l] = value }
                case .resetKPIs:
                    pthread_mutex_lock(boardLock)
                    kpi.reset(now: now)
                    pthread_mutex_unlock(boardLock)
                }
            }
            queue.removeAll(keepingCapacity: true)
        }
    }

    private func push(_ event: LoopEvent) {
        lastPushedReason = event.reason
        let head = eventHead.load(ordering: .relaxed)
        let tail = eventTail.load(ordering: .acquiring)
        guard head - tail < Self.eventCapacity else { return }  // writer far behind: drop, never block
        events[head % Self.eventCapacity] = event
        eventHead.store(head + 1, ordering: .releasing)
    }

    // MARK: - Writer thread

    private func runWriter() {
        var values = [Double](repeating: .nan, count: nu)
        var dirty = [Bool](repeating: false, count: nu)
        while true {
            pthread_mutex_lock(outLock)
            while !outStopping && !outHeartbeatDirty && !(0..<nu).contains(where: { outDirty[$0] })
                && eventHead.load(ordering: .acquiring) == eventTail.load(ordering: .relaxed)
            {
                var ts = timespec()
                clock_gettime(CLOCK_MONOTONIC, &ts)
                ts.tv_sec += 1
                pthread_cond_timedwait(outCondition, outLock, &ts)
            }
            if outStopping {
                pthread_mutex_unlock(outLock)
                return
            }
            for l in 0..<nu {
                values[l] = outValues[l]
                dirty[l] = outDirty[l]
                outDirty[l] = false
            }
            let hb = outHeartbeatDirty ? outHeartbeat : nil
            outHeartbeatDirty = false
            pthread_mutex_unlock(outLock)

            for l in 0..<nu where dirty[l] {
                let b = mvBindings[l]
                let d = b.table.definitions[b.index]
                let value: TagValue = d.presentsAsDouble ? .double(values[l]) : .int(Int64(values[l].rounded()))
                do {
                    _ = try b.driver!.writeTag(b.index, value)
                    pthread_mutex_lock(boardLock)
                    boardWrites[l] &+= 1
                    boardWriteFailed[l] = false
                    pthread_mutex_unlock(boardLock)
                } catch {
                    let text = "\(error)"
                    pthread_mutex_lock(boardLock)
                    let first = !boardWriteFailed[l]
                    boardWriteErrors[l] &+= 1
                    boardWriteFailed[l] = true
                    lastWriteErrors[l] = text
                    pthread_mutex_unlock(boardLock)
                    if first {
                        logger.warning(
                            "MV write failed",
                            metadata: ["loop": "\(definition.name)", "tag": "\(d.name)", "error": "\(text)"])
                    }
                }
            }
            if let hb, let b = heartbeatBinding {
                _ = try? b.driver!.writeTag(b.index, .int(Int64(hb)))
            }
            drainEvents()
        }
    }

    private func drainEvents() {
        while true {
            let tail = eventTail.load(ordering: .relaxed)
            guard tail != eventHead.load(ordering: .acquiring) else { return }
            let e = events[tail % Self.eventCapacity]
            eventTail.store(tail + 1, ordering: .releasing)
            let text = describe(e.reason)
            let report = LoopTransitionReport(
                time: e.wallMicroseconds, from: e.from.rawValue, to: e.to.rawValue, reason: text,
                bump: (e.bump * 1000).rounded() / 1000)
            pthread_mutex_lock(boardLock)
            transitions.append(report)
            if transitions.count > 20 { transitions.removeFirst(transitions.count - 20) }
            pthread_mutex_unlock(boardLock)
            let level: Logger.Level = e.reason.isFault ? .warning : .notice
            logger.log(
                level: level, "loop mode \(e.from.rawValue) → \(e.to.rawValue): \(text)",
                metadata: ["loop": "\(definition.name)"])
            audit(
                AuditRecord(
                    timestamp: e.wallMicroseconds, source: "loop:\(definition.name)",
                    tag: "loop/\(definition.name)/mode", value: e.to.rawValue, result: "mode-change",
                    detail: "from \(e.from.rawValue): \(text)"))
        }
    }

    func describe(_ reason: LoopEventReason) -> String {
        func input(_ role: InputRole, _ index: Int) -> String {
            switch role {
            case .controlledVariable: return "CV \(definition.cvs[index].tag)"
            case .manipulatedVariable: return "MV \(definition.mvs[index].tag)"
            case .disturbanceVariable: return "DV \(definition.dvs[index])"
            }
        }
        func supervisor(_ r: TransitionReason) -> String {
            switch r {
            case .operatorRequest: return "operator request"
            case .solverNotOptimal(let n, let status): return "QP not optimal \(n) cycles in a row (\(status.rawValue))"
            case .solveOverBudget(let ns): return "solve took \(Double(ns) / 1000) µs, over the budget"
            case .badQuality(let role, let index): return "bad quality on \(input(role, index))"
            case .staleInput(let role, let index): return "stale \(input(role, index))"
            case .predictionError(let cv): return "prediction error on CV \(definition.cvs[cv].tag)"
            case .healthyPeriodElapsed: return "healthy period elapsed"
            }
        }
        switch reason {
        case .supervisor(let r): return supervisor(r)
        case .operatorRequest: return "operator request"
        case .startup: return "startup: inputs good"
        case .recovered(let ns): return "recovered: inputs healthy for \(Double(ns / 1_000_000) / 1000) s"
        case .fallbackManual(let r): return "fallback to manual: \(supervisor(r))"
        case .retuned: return "retuned"
        }
    }

    // MARK: - Operator commands (any thread)

    /// Asks for a mode; the change happens at the next cycle and is reported with its reason.
    public func requestMode(_ mode: LoopMode) {
        commands.withLock { $0.append(.mode(mode)) }
    }

    /// Changes CV `tag`'s setpoint (a range-controlled CV becomes setpoint-controlled).
    public func setSetpoint(cv tag: String, _ value: Double) throws(LoopCommandError) {
        guard let i = definition.cvs.firstIndex(where: { $0.tag == tag }) else {
            throw LoopCommandError(
                "loop '\(definition.name)' has no CV '\(tag)'; CVs: \(definition.cvs.map(\.tag).joined(separator: ", "))"
            )
        }
        guard value.isFinite else { throw LoopCommandError("setpoint must be a finite number") }
        let cv = definition.cvs[i]
        if value < cv.softLow || value > cv.softHigh {
            throw LoopCommandError(
                "setpoint \(formatDouble(value)) is outside CV '\(tag)' limits \(formatDouble(cv.softLow)) … "
                    + "\(formatDouble(cv.softHigh))")
        }
        commands.withLock { $0.append(.setpoint(i, value)) }
    }

    /// Sets MV `tag` by hand; only in MANUAL, inside the loop's MV limits, approached at the rate limit.
    public func setManual(mv tag: String, _ value: Double) throws(LoopCommandError) {
        guard let l = definition.mvs.firstIndex(where: { $0.tag == tag }) else {
            throw LoopCommandError(
                "loop '\(definition.name)' has no MV '\(tag)'; MVs: \(definition.mvs.map(\.tag).joined(separator: ", "))"
            )
        }
        let mv = definition.mvs[l]
        guard value.isFinite, value >= mv.low, value <= mv.high else {
            throw LoopCommandError(
                "MV '\(tag)' accepts \(formatDouble(mv.low)) … \(formatDouble(mv.high)), not \(value)")
        }
        let mode = withBoard { board.mode }
        guard mode == .manual else {
            throw LoopCommandError(
                "loop '\(definition.name)' is in \(mode.rawValue); switch it to manual first "
                    + "('edgepilot loop \(definition.name) mode manual')")
        }
        commands.withLock { $0.append(.manual(l, value)) }
    }

    /// Validates and applies new tuning: the controller is rebuilt here (on the caller's thread) and swapped in at
    /// a cycle boundary, starting from the applied MVs, so the change is bumpless. Returns the tuning now in force.
    @discardableResult
    public func tune(_ request: LoopTuneRequest) throws(LoopCommandError) -> LoopTuning {
        var tuning = tuningState.withLock { $0 }
        func apply(
            _ values: [String: Double]?, _ names: [String], _ what: String, valid: (Double) -> Bool,
            set: (inout LoopTuning, Int, Double) -> Void
        ) throws(LoopCommandError) {
            for (name, value) in values ?? [:] {
                guard let k = names.firstIndex(of: name) else {
                    throw LoopCommandError("\(what): '\(name)' is not one of \(names.joined(separator: ", "))")
                }
                guard valid(value) else { throw LoopCommandError("\(what) for '\(name)': \(value) is not allowed") }
                set(&tuning, k, value)
            }
        }
        let cvs = definition.cvs.map(\.tag)
        let mvs = definition.mvs.map(\.tag)
        try apply(
            request.cvWeights, cvs, "CV weight", valid: { $0.isFinite && $0 >= 0 }, set: { $0.cvWeights[$1] = $2 })
        try apply(
            request.moveWeights, mvs, "move weight", valid: { $0.isFinite && $0 > 0 }, set: { $0.moveWeights[$1] = $2 })
        try apply(request.pidGains, mvs, "PID gain", valid: { $0.isFinite && $0 > 0 }, set: { $0.pidGains[$1] = $2 })
        try apply(
            request.pidIntegralSeconds, mvs, "PID integral time", valid: { $0 > 0 },
            set: { $0.pidIntegralSeconds[$1] = $2 })
        try apply(
            request.pidDerivativeSeconds, mvs, "PID derivative time", valid: { $0.isFinite && $0 >= 0 },
            set: { $0.pidDerivativeSeconds[$1] = $2 })
        let (outputs, targets) = withBoard { () -> ([Double], [CVTarget]) in
            let outputs = (0..<nu).map { boardMV[$0].isFinite ? boardMV[$0] : definition.nominalMVs[$0] }
            let targets = (0..<ny).map { i -> CVTarget in
                boardTargetLow[i] == boardTargetHigh[i]
                    ? .setpoint(boardTargetLow[i]) : .range(low: boardTargetLow[i], high: boardTargetHigh[i])
            }
            return (outputs, targets)
        }
        let fresh: ControlLoop
        do {
            fresh = try LoopFactory.build(definition, tuning: tuning, targets: targets, initialOutputs: outputs)
        } catch {
            throw LoopCommandError("tuning rejected: \(error.message)")
        }
        tuningState.withLock { $0 = tuning }
        withBoard { pendingSwap = fresh }
        return tuning
    }

    /// Starts a new KPI window.
    public func resetKPIs() { commands.withLock { $0.append(.resetKPIs) } }

    public var tuning: LoopTuning { tuningState.withLock { $0 } }

    // MARK: - Views

    private func withBoard<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(boardLock)
        defer { pthread_mutex_unlock(boardLock) }
        return body()
    }

    /// The loop's current state; copying it holds the loop for microseconds at most.
    public func snapshot() -> LoopSnapshot {
        let d = definition
        return withBoard {
            let j = jitter.summary()
            let c = cycleTime.summary()
            let s = solveTime.summary()
            let unitsOf = { (b: LoopTagBinding) in b.table.definitions[b.index].units }
            let single = { (i: Int) in self.boardTargetLow[i] == self.boardTargetHigh[i] }
            return LoopSnapshot(
                name: d.name, mode: board.mode.rawValue, requestedMode: board.requestedMode.rawValue,
                reason: board.reason.map(describe), modeSince: board.modeSince,
                periodMilliseconds: d.periodMilliseconds,
                cvs: (0..<ny).map { i in
                    LoopCVState(
                        tag: d.cvs[i].tag, value: boardCV[i].isFinite ? boardCV[i] : nil, good: boardCVGood[i],
                        setpoint: single(i) ? boardTargetLow[i] : nil, rangeLow: single(i) ? nil : boardTargetLow[i],
                        rangeHigh: single(i) ? nil : boardTargetHigh[i], units: unitsOf(cvBindings[i]))
                },
                mvs: (0..<nu).map { l in
                    let v = boardMV[l]
                    let tolerance = 1e-6 * (mvHigh[l] - mvLow[l])
                    return LoopMVState(
                        tag: d.mvs[l].tag, value: v.isFinite ? v : nil, low: mvLow[l], high: mvHigh[l],
                        saturated: v.isFinite && (v <= mvLow[l] + tolerance || v >= mvHigh[l] - tolerance),
                        writes: boardWrites[l], writeErrors: boardWriteErrors[l], lastWriteError: lastWriteErrors[l],
                        units: unitsOf(mvBindings[l]))
                },
                dvs: (0..<nd).map { k in
                    LoopDVState(tag: d.dvs[k], value: boardDV[k].isFinite ? boardDV[k] : nil, good: boardDVGood[k])
                },
                solver: LoopSolverState(
                    status: board.status?.rawValue, iterations: board.iterations,
                    lastMicroseconds: Double(board.lastSolveNanoseconds) / 1000, p50Microseconds: Double(s.p50) / 1000,
                    p99Microseconds: Double(s.p99) / 1000, maxMicroseconds: Double(s.max) / 1000),
                timing: LoopTimingState(
                    cycles: board.cycles, jitterP50Microseconds: Double(j.p50) / 1000,
                    jitterP99Microseconds: Double(j.p99) / 1000, jitterMaxMicroseconds: Double(j.max) / 1000,
                    cycleP99Microseconds: Double(c.p99) / 1000, cycleMaxMicroseconds: Double(c.max) / 1000,
                    missedDeadlines: board.missed, skippedCycles: board.skipped, writeOverruns: board.writeOverruns,
                    limitedMoves: board.limited),
                secondsInMode: [
                    "manual": Double(board.modeNanoseconds.0) / 1e9, "pid": Double(board.modeNanoseconds.1) / 1e9,
                    "mpc": Double(board.modeNanoseconds.2) / 1e9,
                ],
                heartbeat: board.heartbeat, scheduling: scheduling, transitions: transitions)
        }
    }

    /// The loop's performance over its rolling window.
    public func kpis() -> LoopKPIReport {
        let d = definition
        return withBoard {
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
                        oscillationIndex: kpi.detector[i], oscillating: kpi.detector[i] > LoopKPIAccumulator.loadLimit)
                },
                mvs: (0..<nu).map { l in LoopMVKPI(tag: d.mvs[l].tag, saturationPercent: 100 * w.saturated[l] / covered)
                })
        }
    }
}
