/// Who drives a loop's MVs.
public enum LoopMode: String, Sendable, Equatable {
    /// The operator: outputs hold or follow manual values.
    case manual
    /// The single-loop PID controllers (base layer).
    case pid
    /// The multivariable predictive controller.
    case mpc
    /// A plant test: precomputed moves around the MVs' values at its start (decision 0034); it ends back in the mode
    /// it was started from.
    case test
}

/// Which kind of loop input a fault refers to.
public enum InputRole: String, Sendable, Equatable {
    case controlledVariable
    case manipulatedVariable
    case disturbanceVariable
}

/// Why a loop changed mode. Every transition carries exactly one.
public enum TransitionReason: Sendable, Equatable {
    case operatorRequest
    /// The QP was not solved to optimality this many cycles in a row.
    case solverNotOptimal(consecutiveCycles: Int, lastStatus: QPStatus)
    case solveOverBudget(nanoseconds: UInt64)
    case badQuality(InputRole, index: Int)
    case staleInput(InputRole, index: Int)
    /// |measured − predicted| of this CV stayed above its threshold for the configured time.
    case predictionError(cv: Int)
    /// Everything the supervisor checks was healthy for the configured period.
    case healthyPeriodElapsed
    /// The controller driving the loop computed an output for MV `mv` that is not a finite number (issue 15, item
    /// 5): the loop sheds to MANUAL, since neither the PID nor the MPC can be trusted with that MV.
    case nonFiniteOutput(mv: Int)
    /// A plant test ended: completed, stopped by the operator, or a CV left its band (decision 0034).
    case testEnded(PlantTestEnd)
}

/// A mode change with its reason and the time it happened (supervisor clock, nanoseconds).
public struct ModeTransition: Sendable, Equatable {
    public var from: LoopMode
    public var to: LoopMode
    public var reason: TransitionReason
    public var time: UInt64
}

/// Limits the supervisor enforces.
public struct SupervisorSettings: Sendable, Equatable {
    /// Shed MPC after this many consecutive non-optimal solves.
    public var maxNonOptimalCycles: Int
    /// Shed MPC when one solve takes longer than this.
    public var solveBudgetNanoseconds: UInt64
    /// Inputs older than this are stale.
    public var maxInputAgeNanoseconds: UInt64
    /// Shed MPC when a CV's prediction error stays above its threshold this long.
    public var predictionErrorDurationNanoseconds: UInt64
    /// Return from PID to MPC by itself after this long healthy; nil = only on request.
    public var autoReturnAfterNanoseconds: UInt64?

    public init(
        maxNonOptimalCycles: Int = 3, solveBudgetNanoseconds: UInt64 = 5_000_000,
        maxInputAgeNanoseconds: UInt64 = 10_000_000_000, predictionErrorDurationNanoseconds: UInt64 = 60_000_000_000,
        autoReturnAfterNanoseconds: UInt64? = nil
    ) {
        self.maxNonOptimalCycles = maxNonOptimalCycles
        self.solveBudgetNanoseconds = solveBudgetNanoseconds
        self.maxInputAgeNanoseconds = maxInputAgeNanoseconds
        self.predictionErrorDurationNanoseconds = predictionErrorDurationNanoseconds
        self.autoReturnAfterNanoseconds = autoReturnAfterNanoseconds
    }
}

/// What the supervisor sees in one cycle (condensed by `ControlLoop`, or built by a test).
public struct SupervisorObservation: Sendable, Equatable {
    /// Monotonic time, nanoseconds: the injected clock that makes the supervisor deterministic.
    public var now: UInt64
    /// Status of the MPC solve this cycle (also in PID mode, where the MPC runs in shadow); nil if it did not run.
    public var solverStatus: QPStatus?
    public var solveNanoseconds: UInt64
    /// The first bad-quality or stale input, if any.
    public var inputFault: TransitionReason?
    /// A CV whose prediction error is above its threshold now, if any.
    public var predictionErrorCV: Int?
    /// An operator's mode request, if any.
    public var request: LoopMode?

    public init(
        now: UInt64, solverStatus: QPStatus? = nil, solveNanoseconds: UInt64 = 0, inputFault: TransitionReason? = nil,
        predictionErrorCV: Int? = nil, request: LoopMode? = nil
    ) {
        self.now = now
        self.solverStatus = solverStatus
        self.solveNanoseconds = solveNanoseconds
        self.inputFault = inputFault
        self.predictionErrorCV = predictionErrorCV
        self.request = request
    }
}

/// The mode state machine of one loop: MANUAL / PID / MPC, and TEST while a plant test runs. Pure and clock-injected, so every
/// decision is reproducible in a test. MPC sheds to PID on repeated solver failure, an over-budget
/// solve, a bad or stale input, or a persistent prediction error; PID drops to MANUAL when a CV it
/// controls is bad or stale. Returns to MPC on request, or after a healthy period if configured.
public struct Supervisor: Sendable {
    public var settings: SupervisorSettings
    public private(set) var mode: LoopMode
    public private(set) var lastTransition: ModeTransition?
    /// The mode a plant test returns to when it ends: the one it was started from.
    public private(set) var testReturnMode: LoopMode = .manual
    private var nonOptimalCount = 0
    private var predictionErrorSince: UInt64?
    private var healthySince: UInt64?

    public init(settings: SupervisorSettings = SupervisorSettings(), mode: LoopMode = .manual) {
        self.settings = settings
        self.mode = mode
    }

    /// Evaluates one cycle; returns the transition made, if any.
    public mutating func evaluate(_ o: SupervisorObservation) -> ModeTransition? {
        if let requested = o.request, requested != mode {
            return transition(to: requested, .operatorRequest, o.now)
        }
        // Prediction-error persistence is tracked in every mode so it is known on return to MPC.
        if o.predictionErrorCV != nil {
            if predictionErrorSince == nil { predictionErrorSince = o.now }
        } else {
            predictionErrorSince = nil
        }
        let solverHealthy = o.solverStatus == .optimal && o.solveNanoseconds <= settings.solveBudgetNanoseconds
        switch mode {
        case .manual:
            return nil
        case .test:
            // Any bad or stale input ends a test: the data would be useless and nobody watches the plant for it.
            if let fault = o.inputFault { return transition(to: testReturnMode, fault, o.now) }
            return nil
        case .mpc:
            if let fault = o.inputFault { return transition(to: .pid, fault, o.now) }
            if let status = o.solverStatus {
                if status == .optimal {
                    nonOptimalCount = 0
                } else {
                    nonOptimalCount += 1
                    if nonOptimalCount >= settings.maxNonOptimalCycles {
                        return transition(
                            to: .pid, .solverNotOptimal(consecutiveCycles: nonOptimalCount, lastStatus: status), o.now)
                    }
                }
                if o.solveNanoseconds > settings.solveBudgetNanoseconds {
                    return transition(to: .pid, .solveOverBudget(nanoseconds: o.solveNanoseconds), o.now)
                }
            }
            if let cv = o.predictionErrorCV, let since = predictionErrorSince,
                o.now &- since >= settings.predictionErrorDurationNanoseconds
            {
                return transition(to: .pid, .predictionError(cv: cv), o.now)
            }
            return nil
        case .pid:
            if case .badQuality(.controlledVariable, _)? = o.inputFault {
                return transition(to: .manual, o.inputFault!, o.now)
            }
            if case .staleInput(.controlledVariable, _)? = o.inputFault {
                return transition(to: .manual, o.inputFault!, o.now)
            }
            guard let period = settings.autoReturnAfterNanoseconds else { return nil }
            if o.inputFault == nil && o.predictionErrorCV == nil && solverHealthy {
                if healthySince == nil { healthySince = o.now }
                if o.now &- healthySince! >= period { return transition(to: .mpc, .healthyPeriodElapsed, o.now) }
            } else {
                healthySince = nil
            }
            return nil
        }
    }

    /// Sheds the loop to MANUAL for `reason` (a controller's non-finite output), whatever it was doing; nil if it
    /// already was in MANUAL.
    public mutating func shedToManual(_ reason: TransitionReason, now: UInt64) -> ModeTransition? {
        guard mode != .manual else { return nil }
        return transition(to: .manual, reason, now)
    }

    /// Ends a running plant test for `end`, back to the mode it started from; nil when no test runs.
    public mutating func endTest(_ end: PlantTestEnd, now: UInt64) -> ModeTransition? {
        guard mode == .test else { return nil }
        return transition(to: testReturnMode, .testEnded(end), now)
    }

    private mutating func transition(to next: LoopMode, _ reason: TransitionReason, _ now: UInt64) -> ModeTransition {
        if next == .test && mode != .test { testReturnMode = mode }
        let t = ModeTransition(from: mode, to: next, reason: reason, time: now)
        mode = next
        lastTransition = t
        nonOptimalCount = 0
        healthySince = nil
        predictionErrorSince = nil
        return t
    }
}
