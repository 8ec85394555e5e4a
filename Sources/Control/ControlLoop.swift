/// Pairing of one PID with the MPC's variables: the PID drives MV `mv` from CV `cv`.
public struct PIDPairing: Sendable, Equatable {
    public var cv: Int
    public var mv: Int

    public init(cv: Int, mv: Int) {
        self.cv = cv
        self.mv = mv
    }
}

/// What one `ControlLoop.step` did.
public struct LoopStepReport: Sendable, Equatable {
    public var mode: LoopMode
    /// The mode change made this cycle, with its reason.
    public var transition: ModeTransition?
    /// The MPC's result when it ran (in MPC mode, or in shadow in PID mode).
    public var mpc: MPCStepResult?
}

/// One supervised loop: an MPC, one PID per MV (the base layer it sheds to), and a `Supervisor`.
/// Whatever drives the MVs, the others follow it (PIDs track the output, the MPC's estimator sees the
/// applied MVs), so every switch is bumpless: the first MV change after it is bounded by one rate step.
/// A plant test (`beginTest`) drives the MVs in TEST mode from its precomputed moves and ends back in the mode it
/// started from (decision 0034).
/// Inputs are written with `setMeasurement`/`setInputReadback`/`setDisturbance` before each `step`.
/// Allocation-free per cycle.
public final class ControlLoop {
    public let mpc: ModelPredictiveController
    public private(set) var pids: [PIDController]
    public let pairings: [PIDPairing]
    public private(set) var supervisor: Supervisor
    /// Thresholds of |measured − predicted| per CV for the prediction-error check (∞ = off).
    public var predictionErrorLimits: [Double]
    /// MVs applied last cycle.
    public private(set) var outputs: [Double]
    /// PID setpoints per pairing; by default taken from the MPC target of the paired CV when PID takes over.
    public private(set) var pidSetpoints: [Double]

    private var measurement: [Double]
    private var measurementGood: [Bool]
    private var measurementTime: [UInt64]
    private var readbackGood: [Bool]
    private var readbackTime: [UInt64]
    private var disturbance: [Double]
    private var disturbanceGood: [Bool]
    private var disturbanceTime: [UInt64]
    private var manualOutputs: [Double]
    private var pendingRequest: LoopMode?
    private var mpcOutput: [Double]
    /// The plant test running (TEST mode), or waiting for the next `step` to begin.
    public private(set) var test: PlantTest?
    private var testPending = false
    private var testStopRequested = false
    /// Set by the `step` that dropped a test before it began, because another mode was asked for in the same cycle
    /// (the later request wins); cleared by the next `step`.
    public private(set) var testDropped = false

    public init(
        mpc: ModelPredictiveController, pids: [PIDController], pairings: [PIDPairing],
        supervisor: SupervisorSettings = SupervisorSettings(), initialOutputs: [Double]
    ) throws(ControlError) {
        let ny = mpc.model.outputCount
        let nu = mpc.model.inputCount
        let nd = mpc.model.disturbanceCount
        guard pids.count == pairings.count, pairings.count == nu else {
            throw ControlError(
                .dimension, "loop: \(pids.count) PIDs and \(pairings.count) pairings; expected one per MV (\(nu))")
        }
        guard Set(pairings.map(\.mv)).count == nu,
            pairings.allSatisfy({ $0.mv >= 0 && $0.mv < nu && $0.cv >= 0 && $0.cv < ny })
        else {
            throw ControlError(.dimension, "loop: pairings must use each MV 0..<\(nu) once and CVs 0..<\(ny)")
        }
        guard initialOutputs.count == nu, initialOutputs.allSatisfy(\.isFinite) else {
            throw ControlError(.dimension, "loop: initial outputs must be \(nu) finite values")
        }
        self.mpc = mpc
        self.pids = pids
        self.pairings = pairings
        self.supervisor = Supervisor(settings: supervisor, mode: .manual)
        self.predictionErrorLimits = [Double](repeating: .infinity, count: ny)
        self.outputs = initialOutputs
        self.pidSetpoints = [Double](repeating: .nan, count: nu)
        self.measurement = [Double](repeating: .nan, count: ny)
        self.measurementGood = [Bool](repeating: false, count: ny)
        self.measurementTime = [UInt64](repeating: 0, count: ny)
        self.readbackGood = [Bool](repeating: true, count: nu)
        self.readbackTime = [UInt64](repeating: 0, count: nu)
        self.disturbance = [Double](repeating: 0, count: nd)
        self.disturbanceGood = [Bool](repeating: true, count: nd)
        self.disturbanceTime = [UInt64](repeating: 0, count: nd)
        self.manualOutputs = initialOutputs
        self.mpcOutput = initialOutputs
        for k in 0..<nu { self.pids[k].setManual() }
    }

    public var mode: LoopMode { supervisor.mode }

    /// A CV sample with its quality and timestamp (supervisor clock, ns).
    public func setMeasurement(_ cv: Int, value: Double, good: Bool, timestamp: UInt64) {
        measurement[cv] = value
        measurementGood[cv] = good && value.isFinite
        measurementTime[cv] = timestamp
    }

    /// Quality of an MV's readback (e.g. valve position or the write acknowledgement).
    public func setInputReadback(_ mv: Int, good: Bool, timestamp: UInt64) {
        readbackGood[mv] = good
        readbackTime[mv] = timestamp
    }

    public func setDisturbance(_ dv: Int, value: Double, good: Bool, timestamp: UInt64) {
        disturbance[dv] = value
        disturbanceGood[dv] = good && value.isFinite
        disturbanceTime[dv] = timestamp
    }

    /// The operator's output for MANUAL mode.
    public func setManualOutput(_ mv: Int, _ value: Double) {
        if value.isFinite { manualOutputs[mv] = value }
    }

    /// The operator's PID setpoint for pairing `k` (NaN = take it from the MPC target).
    public func setPIDSetpoint(_ k: Int, _ value: Double) {
        pidSetpoints[k] = value
    }

    /// Asks for a mode; honoured at the next `step`, which reports it with reason `.operatorRequest`.
    public func request(_ mode: LoopMode) {
        pendingRequest = mode
    }

    /// Starts `test` at the next `step`, from the MVs applied then; the loop returns to its current mode when the
    /// test ends. The caller keeps a reference to `test` so that it is never freed by the loop's thread.
    public func beginTest(_ test: PlantTest) {
        guard test.mvCount == outputs.count else { return }
        self.test = test
        testPending = true
        testStopRequested = false
        pendingRequest = .test
    }

    /// Ends the running test at the next `step` (reason `.testEnded(.stopped)`).
    public func stopTest() {
        if test != nil { testStopRequested = true }
    }

    private func firstInputFault(now: UInt64) -> TransitionReason? {
        let maxAge = supervisor.settings.maxInputAgeNanoseconds
        for i in 0..<measurement.count {
            if !measurementGood[i] { return .badQuality(.controlledVariable, index: i) }
            if now &- measurementTime[i] > maxAge { return .staleInput(.controlledVariable, index: i) }
        }
        for l in 0..<readbackGood.count {
            if !readbackGood[l] { return .badQuality(.manipulatedVariable, index: l) }
            if now &- readbackTime[l] > maxAge { return .staleInput(.manipulatedVariable, index: l) }
        }
        for k in 0..<disturbance.count {
            if !disturbanceGood[k] { return .badQuality(.disturbanceVariable, index: k) }
            if now &- disturbanceTime[k] > maxAge { return .staleInput(.disturbanceVariable, index: k) }
        }
        return nil
    }

    private func targetSetpoint(_ cv: Int) -> Double {
        switch mpc.configuration.outputs[cv].target {
        case .setpoint(let sp): return sp
        case .range(let lo, let hi): return Swift.min(Swift.max(measurement[cv], lo), hi)
        }
    }

    /// One cycle at time `now` (nanoseconds, same clock as the input timestamps).
    public func step(now: UInt64) -> LoopStepReport {
        let fault = firstInputFault(now: now)
        var request = pendingRequest
        pendingRequest = nil
        // TEST is entered only with a test to run, never by a bare mode request.
        if request == .test && !testPending { request = nil }
        testDropped = testPending && request != .test
        if testDropped { test = nil }
        let testWanted = testPending && !testDropped
        testPending = false
        let current = supervisor.mode
        // The MPC runs whenever it drives the MVs or could take over (shadow mode), if its inputs are usable.
        var mpcResult: MPCStepResult?
        let mpcWanted =
            current == .mpc || request == .mpc
            || (current == .pid && supervisor.settings.autoReturnAfterNanoseconds != nil)
        if fault == nil && mpcWanted {
            mpcResult = mpc.step(
                measurement: measurement, disturbance: disturbance, appliedInput: outputs, output: &mpcOutput)
        } else if fault == nil {
            mpc.track(measurement: measurement, disturbance: disturbance, appliedInput: outputs)
        }
        var predictionCV: Int?
        if fault == nil {
            for i in 0..<predictionErrorLimits.count where abs(mpc.innovation(i)) > predictionErrorLimits[i] {
                predictionCV = i
                break
            }
        }
        let wasTesting = supervisor.mode == .test
        var transition = supervisor.evaluate(
            SupervisorObservation(
                now: now, solverStatus: mpcResult?.status, solveNanoseconds: mpcResult?.solveNanoseconds ?? 0,
                inputFault: fault, predictionErrorCV: predictionCV, request: request))
        if testWanted && supervisor.mode == .test && !wasTesting { test?.begin(at: outputs) }
        if supervisor.mode == .test, let test {
            let stop = testStopRequested
            testStopRequested = false
            let outside = test.firstCVOutsideBand(measurement)
            var end: PlantTestEnd?
            if stop {
                end = .stopped
            } else if let cv = outside {
                end = .cvOutsideBand(cv: cv, value: measurement[cv])
            } else if test.finished {
                end = .completed
            }
            if let end { transition = supervisor.endTest(end, now: now) }
        }
        if supervisor.mode != .test && test != nil && !testWanted {
            // Back in the mode the test was started from: in MANUAL the MVs return to their values before the test.
            if supervisor.mode == .manual, let test {
                for l in 0..<outputs.count where test.base[l].isFinite { manualOutputs[l] = test.base[l] }
            }
            test = nil
        }

        // A controller output that is not a finite number sheds the loop to MANUAL (issue 15, item 5): the MVs keep
        // their last good values, and the transition says which MV and why.
        var nonFinite: Int?
        switch supervisor.mode {
        case .mpc:
            if let mpcResult, mpcResult.status != .invalidInput {
                // A plain loop: a closure here allocated its context every cycle.
                for l in 0..<outputs.count where !mpcOutput[l].isFinite {
                    nonFinite = l
                    break
                }
                if nonFinite == nil { for l in 0..<outputs.count { outputs[l] = mpcOutput[l] } }
            }
        case .pid:
            for k in 0..<pids.count {
                let cv = pairings[k].cv
                let mv = pairings[k].mv
                let sp = pidSetpoints[k].isNaN ? targetSetpoint(cv) : pidSetpoints[k]
                if !pids[k].isAutomatic { pids[k].setAutomatic(setpoint: sp, measurement: measurement[cv]) }
                let output = pids[k].update(setpoint: sp, measurement: measurement[cv])
                if pids[k].outputWasNonFinite || !output.isFinite {
                    if nonFinite == nil { nonFinite = mv }
                } else {
                    outputs[mv] = output
                }
            }
        case .test:
            if let test {
                let inputs = mpc.configuration.inputs
                for l in 0..<outputs.count {
                    let wanted = Swift.min(Swift.max(test.value(l), inputs[l].low), inputs[l].high)
                    outputs[l] = Swift.min(
                        Swift.max(wanted, outputs[l] - inputs[l].maxDecrease), outputs[l] + inputs[l].maxIncrease)
                }
                test.advance()
            }
        case .manual:
            break
        }
        if let mv = nonFinite, let shed = supervisor.shedToManual(.nonFiniteOutput(mv: mv), now: now) {
            transition = shed
        }
        switch supervisor.mode {
        case .mpc, .pid, .test: break
        case .manual:
            for l in 0..<outputs.count {
                // Manual moves are not rate limited by us: the operator owns the MV.
                outputs[l] = manualOutputs[l]
            }
        }
        // Everyone not driving follows what was applied.
        for k in 0..<pids.count where supervisor.mode != .pid {
            let cv = pairings[k].cv
            let mv = pairings[k].mv
            if pids[k].isAutomatic { pids[k].setManual() }
            let sp = pidSetpoints[k].isNaN ? targetSetpoint(cv) : pidSetpoints[k]
            pids[k].track(output: outputs[mv], setpoint: sp, measurement: measurement[cv])
        }
        if supervisor.mode != .manual {
            for l in 0..<outputs.count { manualOutputs[l] = outputs[l] }
        }
        return LoopStepReport(mode: supervisor.mode, transition: transition, mpc: mpcResult)
    }
}
