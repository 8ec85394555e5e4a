/// Who drives a loop's MVs, as configured (mirrors `Control.LoopMode`; Tags does not depend on Control).
public enum LoopModeSetting: String, Sendable, Hashable, CaseIterable {
    case manual, pid, mpc
}

/// One controlled variable of a loop: a tag, and what it is driven to.
public struct LoopCVDefinition: Sendable, Hashable {
    public var tag: String
    /// The setpoint; nil when the CV is range-controlled.
    public var setpoint: Double?
    /// Range control: any value inside [low, high] is fine.
    public var rangeLow: Double?
    public var rangeHigh: Double?
    /// MPC weight on the squared tracking error, per (engineering span)²: the controller weighs the error divided
    /// by `span`, so CVs in different units are weighted alike.
    public var weight: Double
    /// The CV's engineering span (tag limits, else its scaling's engineering range, else soft_high − soft_low);
    /// nil = unknown, weights taken per engineering unit.
    public var span: Double? = nil
    public var softLow: Double
    public var softHigh: Double
    /// Oscillation detection (Hägglund): an error excursion larger than this amplitude counts as a load
    /// disturbance; nil = 1 % of the setpoint's magnitude (at least 0.01).
    public var oscillationAmplitude: Double?

    public init(
        tag: String, setpoint: Double? = nil, rangeLow: Double? = nil, rangeHigh: Double? = nil, weight: Double = 1,
        softLow: Double = -.infinity, softHigh: Double = .infinity, oscillationAmplitude: Double? = nil
    ) {
        self.tag = tag
        self.setpoint = setpoint
        self.rangeLow = rangeLow
        self.rangeHigh = rangeHigh
        self.weight = weight
        self.softLow = softLow
        self.softHigh = softHigh
        self.oscillationAmplitude = oscillationAmplitude
    }
}

/// The base-layer PID that drives one MV when the loop is in PID mode.
public struct LoopPIDDefinition: Sendable, Hashable {
    /// The CV (tag name) this PID controls.
    public var cv: String
    public var gain: Double
    /// Integral time in seconds; infinity = no integral action.
    public var integralSeconds: Double
    public var derivativeSeconds: Double
    /// True when the MV must fall as the CV falls below setpoint (e.g. a cooling valve).
    public var directAction: Bool

    public init(
        cv: String, gain: Double, integralSeconds: Double = .infinity, derivativeSeconds: Double = 0,
        directAction: Bool = false
    ) {
        self.cv = cv
        self.gain = gain
        self.integralSeconds = integralSeconds
        self.derivativeSeconds = derivativeSeconds
        self.directAction = directAction
    }
}

/// One manipulated variable: a writable tag with the loop's (tighter) limits and rates, and its fallback PID.
public struct LoopMVDefinition: Sendable, Hashable {
    public var tag: String
    public var low: Double
    public var high: Double
    /// Largest change per second, up and down (engineering units per second).
    public var rateUp: Double
    public var rateDown: Double
    /// Per (engineering span)², like the CV weights.
    public var moveWeight: Double
    public var target: Double?
    public var targetWeight: Double
    public var pid: LoopPIDDefinition
    /// The MV's engineering span (tag limits, else its scaling's engineering range, else high − low); nil = none.
    public var span: Double? = nil

    public init(
        tag: String, low: Double, high: Double, rateUp: Double, rateDown: Double, moveWeight: Double = 1,
        target: Double? = nil, targetWeight: Double = 0, pid: LoopPIDDefinition
    ) {
        self.tag = tag
        self.low = low
        self.high = high
        self.rateUp = rateUp
        self.rateDown = rateDown
        self.moveWeight = moveWeight
        self.target = target
        self.targetWeight = targetWeight
        self.pid = pid
    }
}

/// One first-order-plus-dead-time element K·e^(−θs)/(τs+1), times in seconds.
public struct LoopFOPDT: Sendable, Hashable {
    public var gain: Double
    public var timeConstant: Double
    public var deadTime: Double

    public init(gain: Double, timeConstant: Double, deadTime: Double = 0) {
        self.gain = gain
        self.timeConstant = timeConstant
        self.deadTime = deadTime
    }
}

/// The loop's process model, in engineering units of its tags, around an operating point.
public enum LoopModelDefinition: Sendable, Hashable {
    /// State-space matrices (row lists). `continuous` ones (time in seconds) are discretized at the loop period;
    /// discrete ones must have been identified at the loop period.
    case stateSpace(a: [[Double]], b: [[Double]], bd: [[Double]], c: [[Double]], continuous: Bool)
    /// CVs × MVs (and CVs × DVs) transfer functions; nil = no effect.
    case transferFunctions(gains: [[LoopFOPDT?]], disturbances: [[LoopFOPDT?]])
}

/// Limits the loop's supervisor enforces.
public struct LoopSupervisorDefinition: Sendable, Hashable {
    /// An input older than this is stale (milliseconds).
    public var maxInputAgeMilliseconds: Int
    /// One MPC solve longer than this sheds MPC (microseconds).
    public var solveBudgetMicroseconds: Int
    /// Iteration limit of one MPC solve (the worst case `qpbench` measured for this loop's QPs, with a margin);
    /// a solve that reaches it returns `iterationLimit`, which counts as non-optimal. nil = the solver's default.
    public var maxIterations: Int?
    public var maxNonOptimalCycles: Int
    /// Healthy this long before returning to the operator's mode after a fault (milliseconds); nil = only on request.
    public var healthyPeriodMilliseconds: Int?
    /// Where MPC sheds to on a bad or stale input or solver trouble.
    public var fallback: LoopModeSetting

    public init(
        maxInputAgeMilliseconds: Int = 5000, solveBudgetMicroseconds: Int = 20_000, maxIterations: Int? = nil,
        maxNonOptimalCycles: Int = 3, healthyPeriodMilliseconds: Int? = 10_000, fallback: LoopModeSetting = .pid
    ) {
        self.maxInputAgeMilliseconds = maxInputAgeMilliseconds
        self.solveBudgetMicroseconds = solveBudgetMicroseconds
        self.maxIterations = maxIterations
        self.maxNonOptimalCycles = maxNonOptimalCycles
        self.healthyPeriodMilliseconds = healthyPeriodMilliseconds
        self.fallback = fallback
    }
}

/// One MPC loop with its PID base layer, as configured under `loops:`.
public struct LoopDefinition: Sendable, Hashable {
    public var name: String
    public var periodMilliseconds: Int
    /// The mode the loop goes to once its inputs are good (the operator's mode until changed).
    public var mode: LoopModeSetting
    public var cvs: [LoopCVDefinition]
    public var mvs: [LoopMVDefinition]
    /// Measured disturbances (feedforward): tag names.
    public var dvs: [String]
    public var model: LoopModelDefinition
    /// Operating point of the model: MV, CV and DV values the deviations are taken from.
    public var nominalMVs: [Double]
    public var nominalCVs: [Double]
    public var nominalDVs: [Double]
    public var predictionHorizon: Int
    public var controlHorizon: Int
    /// Estimator noise intensities (see docs/decisions/0004).
    public var stateNoise: Double
    public var disturbanceNoise: Double
    public var measurementNoise: Double
    public var supervisor: LoopSupervisorDefinition
    /// Watchdog register the loop increments every cycle (a writable integer tag); nil = none.
    public var heartbeatTag: String?
    /// SCHED_FIFO priority 1…99 for the loop thread; nil = normal scheduling.
    public var realtimePriority: Int?
    /// Lock the process's memory (mlockall) so the loop never page-faults.
    public var lockMemory: Bool
    /// Length of the rolling window the KPIs are computed over (milliseconds).
    public var kpiWindowMilliseconds: Int
    /// Lowest validation fit (%) an identified model of the ledger may have to be activated without `--force`.
    public var modelMinFitPercent: Double = 70
    /// `loop/NAME/model/degraded` goes on when the model in force predicts the CVs worse than this: the worst CV's
    /// RMS prediction error over the KPI window, as a fraction of its span (decision 0036).
    public var modelAlertNRMSE: Double = 0.05
    /// The ledger version to run in shadow (`shadow:`), the initial value a `model shadow` command may change;
    /// nil = none (decision 0036).
    public var shadowVersion: Int64? = nil

    public init(
        name: String, periodMilliseconds: Int, mode: LoopModeSetting = .manual, cvs: [LoopCVDefinition],
        mvs: [LoopMVDefinition], dvs: [String] = [], model: LoopModelDefinition, nominalMVs: [Double],
        nominalCVs: [Double], nominalDVs: [Double] = [], predictionHorizon: Int, controlHorizon: Int,
        stateNoise: Double = 0, disturbanceNoise: Double = 1, measurementNoise: Double = 1,
        supervisor: LoopSupervisorDefinition = LoopSupervisorDefinition(), heartbeatTag: String? = nil,
        realtimePriority: Int? = nil, lockMemory: Bool = false, kpiWindowMilliseconds: Int = 600_000
    ) {
        self.name = name
        self.periodMilliseconds = periodMilliseconds
        self.mode = mode
        self.cvs = cvs
        self.mvs = mvs
        self.dvs = dvs
        self.model = model
        self.nominalMVs = nominalMVs
        self.nominalCVs = nominalCVs
        self.nominalDVs = nominalDVs
        self.predictionHorizon = predictionHorizon
        self.controlHorizon = controlHorizon
        self.stateNoise = stateNoise
        self.disturbanceNoise = disturbanceNoise
        self.measurementNoise = measurementNoise
        self.supervisor = supervisor
        self.heartbeatTag = heartbeatTag
        self.realtimePriority = realtimePriority
        self.lockMemory = lockMemory
        self.kpiWindowMilliseconds = kpiWindowMilliseconds
    }
}
