import Devices

/// The state of one loop at one instant: what `edgepilot loops` shows and what an upstream publisher (Sparkplug)
/// reads. A value: taking it never blocks the loop for longer than copying a few numbers.
public struct LoopSnapshot: Codable, Sendable {
    public var name: String
    /// Who drives the MVs now: manual, pid, mpc, or test while a plant test runs.
    public var mode: String
    /// The mode the operator (or the configuration) asked for; differs from `mode` after a fault shed.
    public var requestedMode: String
    /// Why the loop is in `mode` (the last transition's reason).
    public var reason: String?
    /// When it entered `mode` (µs since the Unix epoch).
    public var modeSince: Int64?
    public var periodMilliseconds: Int
    public var cvs: [LoopCVState]
    public var mvs: [LoopMVState]
    public var dvs: [LoopDVState]
    public var solver: LoopSolverState
    public var timing: LoopTimingState
    /// Seconds spent in each mode since the loop started.
    public var secondsInMode: [String: Double]
    public var heartbeat: UInt64?
    /// Scheduling the loop thread actually got (e.g. "SCHED_FIFO 20" or "normal: SCHED_FIFO refused (EPERM)").
    public var scheduling: String
    /// The most recent mode changes, newest last.
    public var transitions: [LoopTransitionReport]
    /// The model ledger's version in force (decision 0031); nil before the agent registered the loop's model.
    public var modelVersion: Int64? = nil
    /// Rolling prediction NRMSE (worst CV, fraction of its span) of the model in force and of the shadow model, the
    /// shadow's ledger version, and whether the model in force is past `model_alert_nrmse` (decision 0036).
    public var modelNRMSE: Double? = nil
    public var shadowNRMSE: Double? = nil
    public var shadowVersion: Int64? = nil
    public var modelDegraded: Bool? = nil
    /// The running plant test with its progress, or the last one this run of the loop (decision 0034).
    public var test: PlantTestReport? = nil
}

/// One CV as the loop sees it.
public struct LoopCVState: Codable, Sendable {
    public var tag: String
    public var value: Double?
    public var good: Bool
    public var setpoint: Double?
    public var rangeLow: Double?
    public var rangeHigh: Double?
    public var units: String?
}

/// One MV: the value last applied, its limits, and the write path's health.
public struct LoopMVState: Codable, Sendable {
    public var tag: String
    public var value: Double?
    public var low: Double
    public var high: Double
    public var saturated: Bool
    public var writes: UInt64
    public var writeErrors: UInt64
    /// Writes the writer cut to one rate step from the PLC's confirmed value, because the link lagged the loop and
    /// the PLC had not received the loop's previous moves.
    public var relimitedWrites: UInt64
    public var lastWriteError: String?
    public var units: String?
}

/// One measured disturbance.
public struct LoopDVState: Codable, Sendable {
    public var tag: String
    public var value: Double?
    public var good: Bool
}

/// The MPC's last solve and its solve-time distribution (µs).
public struct LoopSolverState: Codable, Sendable {
    public var status: String?
    public var iterations: Int
    public var lastMicroseconds: Double
    public var p50Microseconds: Double
    public var p99Microseconds: Double
    public var maxMicroseconds: Double
}

/// Schedule quality: wake-up lateness against the absolute schedule (µs), cycle time, and deadlines.
public struct LoopTimingState: Codable, Sendable {
    public var cycles: UInt64
    public var jitterP50Microseconds: Double
    public var jitterP99Microseconds: Double
    public var jitterMaxMicroseconds: Double
    public var cycleP99Microseconds: Double
    public var cycleMaxMicroseconds: Double
    /// Cycles that finished after their deadline (the next release).
    public var missedDeadlines: UInt64
    /// Releases skipped because a cycle overran a whole period.
    public var skippedCycles: UInt64
    /// Cycles whose MV values reached the writer before the previous ones had been written.
    public var writeOverruns: UInt64
    /// Moves cut by the final clamp/rate limiter (a controller asked for more than the limits allow).
    public var limitedMoves: UInt64
}

/// One mode change, as history and the CLI show it.
public struct LoopTransitionReport: Codable, Sendable {
    public var time: Int64
    public var from: String
    public var to: String
    public var reason: String
    /// Largest MV move of the switching cycle in rate-limit steps (≤ 1 is bumpless).
    public var bump: Double
}

/// Performance of one loop over its rolling KPI window.
public struct LoopKPIReport: Codable, Sendable {
    public var name: String
    public var windowSeconds: Double
    /// How much of the window the loop has run (less than the window just after start).
    public var coveredSeconds: Double
    /// Fraction of the covered time in each mode; `mpc` is the MPC service factor.
    public var serviceFactor: [String: Double]
    public var cvs: [LoopCVKPI]
    public var mvs: [LoopMVKPI]
}

/// Control quality of one CV.
public struct LoopCVKPI: Codable, Sendable {
    public var tag: String
    /// Integrated absolute error over the window (units × s).
    public var iae: Double
    /// Integrated absolute error since the loop started.
    public var iaeTotal: Double
    /// Load disturbances (error excursions above Hägglund's IAE limit) in the window.
    public var loadDisturbances: Int
    /// Hägglund's detector with exponential forgetting; above 10 the loop oscillates.
    public var oscillationIndex: Double
    public var oscillating: Bool
    /// Time below the soft low / above the soft high limit, percent of the covered window.
    public var belowSoftLowPercent: Double
    public var aboveSoftHighPercent: Double
    /// Constraint-violation events in the window: excursions beyond a soft limit, counted once each (the CV must
    /// come back inside by its hysteresis band, the oscillation amplitude, before another one counts).
    public var violations: Int
    /// Largest distance beyond a soft limit in the window (engineering units), 0 when none.
    public var worstViolation: Double
    /// Whether the CV is in a violation now.
    public var violating: Bool
}

/// How often an MV sat at a limit.
public struct LoopMVKPI: Codable, Sendable {
    public var tag: String
    /// Time at either limit, percent of the covered window.
    public var saturationPercent: Double
    public var atLowPercent: Double
    public var atHighPercent: Double
    /// Time moving at its rate limit.
    public var atRateLimitPercent: Double
}

/// What `edgepilot loop NAME tune` may change; keys are CV or MV tag names.
public struct LoopTuneRequest: Codable, Sendable {
    public var cvWeights: [String: Double]?
    public var moveWeights: [String: Double]?
    public var pidGains: [String: Double]?
    public var pidIntegralSeconds: [String: Double]?
    public var pidDerivativeSeconds: [String: Double]?

    public init(
        cvWeights: [String: Double]? = nil, moveWeights: [String: Double]? = nil, pidGains: [String: Double]? = nil,
        pidIntegralSeconds: [String: Double]? = nil, pidDerivativeSeconds: [String: Double]? = nil
    ) {
        self.cvWeights = cvWeights
        self.moveWeights = moveWeights
        self.pidGains = pidGains
        self.pidIntegralSeconds = pidIntegralSeconds
        self.pidDerivativeSeconds = pidDerivativeSeconds
    }
}
