/// What a controlled variable is driven to.
public enum CVTarget: Sendable, Equatable {
    /// Track this value.
    case setpoint(Double)
    /// Any value inside [low, high] is fine; outside, the nearer edge is tracked (range control).
    case range(low: Double, high: Double)
}

/// Per-CV tuning and limits.
public struct CVSettings: Sendable, Equatable {
    /// Weight on the squared tracking error (per engineering unit²), every prediction step.
    public var weight: Double
    public var target: CVTarget
    /// Soft limits, held through slack variables with an exact (linear) penalty: never infeasible,
    /// and met exactly whenever the MVs can meet them. ±infinity disables a side; a side disabled
    /// at build time cannot be enabled later without rebuilding the controller.
    public var softLow: Double
    public var softHigh: Double
    /// Linear penalty per unit of limit violation; nil derives one large enough to be exact in practice.
    public var limitPenalty: Double?

    public init(
        weight: Double = 1, target: CVTarget = .setpoint(0), softLow: Double = -.infinity,
        softHigh: Double = .infinity, limitPenalty: Double? = nil
    ) {
        self.weight = weight
        self.target = target
        self.softLow = softLow
        self.softHigh = softHigh
        self.limitPenalty = limitPenalty
    }
}

/// Per-MV tuning and hard limits (engineering units, rates per sample).
public struct MVSettings: Sendable, Equatable {
    /// Move suppression: weight on each squared move.
    public var moveWeight: Double
    public var low: Double
    public var high: Double
    /// Largest move up / down in one sample (both positive numbers).
    public var maxIncrease: Double
    public var maxDecrease: Double
    /// Optional resting value the MV is drawn to when CVs leave freedom (e.g. an economic target).
    public var target: Double?
    public var targetWeight: Double

    public init(
        moveWeight: Double = 1, low: Double = -.infinity, high: Double = .infinity, maxIncrease: Double = .infinity,
        maxDecrease: Double = .infinity, target: Double? = nil, targetWeight: Double = 0
    ) {
        self.moveWeight = moveWeight
        self.low = low
        self.high = high
        self.maxIncrease = maxIncrease
        self.maxDecrease = maxDecrease
        self.target = target
        self.targetWeight = targetWeight
    }
}

/// Noise intensities for the steady-state Kalman filter of the disturbance-augmented model.
/// Only their ratios matter. `stateNoise` = 0 gives the DMC-like output-bias estimator (the model
/// runs open loop and every mismatch lands in the output disturbance); larger values let the
/// filter also correct the plant states, which rejects input-side disturbances faster.
public struct EstimatorTuning: Sendable, Equatable {
    public var stateNoise: Double
    public var disturbanceNoise: Double
    public var measurementNoise: Double

    public init(stateNoise: Double = 0, disturbanceNoise: Double = 1, measurementNoise: Double = 1) {
        self.stateNoise = stateNoise
        self.disturbanceNoise = disturbanceNoise
        self.measurementNoise = measurementNoise
    }
}

/// Everything needed to build a `ModelPredictiveController` besides the model.
public struct MPCConfiguration: Sendable {
    public var predictionHorizon: Int
    public var controlHorizon: Int
    public var outputs: [CVSettings]
    public var inputs: [MVSettings]
    public var estimator: EstimatorTuning
    public var solver: QPSettings

    public init(
        predictionHorizon: Int, controlHorizon: Int, outputs: [CVSettings], inputs: [MVSettings],
        estimator: EstimatorTuning = EstimatorTuning(), solver: QPSettings = QPSettings()
    ) {
        self.predictionHorizon = predictionHorizon
        self.controlHorizon = controlHorizon
        self.outputs = outputs
        self.inputs = inputs
        self.estimator = estimator
        self.solver = solver
    }
}

/// Result of one controller cycle.
public struct MPCStepResult: Sendable, Equatable {
    /// Status of the QP (or `.invalidInput` when a measurement or input was not finite).
    public var status: QPStatus
    public var iterations: Int
    /// Solve time measured with the controller's clock (0 without a clock).
    public var solveNanoseconds: UInt64
    /// True when the returned MVs came from a fallback (hold, or the shifted previous plan)
    /// rather than from the QP's solution.
    public var usedFallback: Bool
}
