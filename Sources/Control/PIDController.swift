/// Whether the output rises (reverse) or falls (direct) when the measurement is below the setpoint.
public enum ControllerAction: Sendable, Equatable {
    /// Output increases when the measurement is below setpoint (e.g. heating, level by inflow).
    case reverse
    /// Output increases when the measurement is above setpoint (e.g. cooling, level by outflow).
    case direct
}

/// Tuning and limits of a PID controller (ISA form, time in the same unit as `period`).
public struct PIDSettings: Sendable, Equatable {
    public var gain: Double
    /// Integral time; infinity disables integral action.
    public var integralTime: Double
    /// Derivative time; 0 disables derivative action.
    public var derivativeTime: Double
    /// Derivative filter: time constant = derivativeTime / filterRatio.
    public var filterRatio: Double
    /// Setpoint weight in the proportional term (1 = error, 0 = I-PD).
    public var setpointWeight: Double
    public var action: ControllerAction
    public var outputLow: Double
    public var outputHigh: Double
    /// Largest output change per sample, up and down; infinity = unlimited.
    public var maxIncrease: Double
    public var maxDecrease: Double
    /// Back-calculation tracking time; nil uses √(Ti·Td) or Ti when there is no derivative.
    public var trackingTime: Double?
    /// Sample period.
    public var period: Double

    public init(
        gain: Double, integralTime: Double, derivativeTime: Double = 0, filterRatio: Double = 10,
        setpointWeight: Double = 1, action: ControllerAction = .reverse, outputLow: Double = -.infinity,
        outputHigh: Double = .infinity, maxIncrease: Double = .infinity, maxDecrease: Double = .infinity,
        trackingTime: Double? = nil, period: Double
    ) {
        self.gain = gain
        self.integralTime = integralTime
        self.derivativeTime = derivativeTime
        self.filterRatio = filterRatio
        self.setpointWeight = setpointWeight
        self.action = action
        self.outputLow = outputLow
        self.outputHigh = outputHigh
        self.maxIncrease = maxIncrease
        self.maxDecrease = maxDecrease
        self.trackingTime = trackingTime
        self.period = period
    }

    /// Largest accepted gain, in output units per measurement unit.
    public static let maximumGain = 1e6
    /// Largest accepted derivative time, in the unit of `period`.
    public static let maximumDerivativeTime = 1e6

    func validate() throws(ControlError) {
        // The bounds are far outside any plant's tuning; they keep the arithmetic finite (a gain of 1e300 with an
        // integral time of 1e-300 once made the output NaN).
        guard gain.isFinite && gain > 0 && gain <= Self.maximumGain else {
            throw ControlError(
                .invalidParameter,
                "PID: gain is \(gain); expected > 0 and ≤ \(Self.maximumGain) (use action for the sign)")
        }
        guard !integralTime.isNaN && (integralTime == .infinity || integralTime >= period / 10) else {
            throw ControlError(
                .invalidParameter,
                "PID: integral time is \(integralTime); expected ≥ a tenth of the period (\(period / 10)), ∞ = off")
        }
        guard derivativeTime.isFinite && derivativeTime >= 0 && derivativeTime <= Self.maximumDerivativeTime else {
            throw ControlError(
                .invalidParameter,
                "PID: derivative time is \(derivativeTime); expected 0 … \(Self.maximumDerivativeTime)")
        }
        guard filterRatio.isFinite && filterRatio > 0 else {
            throw ControlError(.invalidParameter, "PID: filter ratio is \(filterRatio); expected finite > 0")
        }
        guard setpointWeight.isFinite && setpointWeight >= 0 && setpointWeight <= 1 else {
            throw ControlError(.invalidParameter, "PID: setpoint weight is \(setpointWeight); expected 0 … 1")
        }
        guard !outputLow.isNaN && !outputHigh.isNaN && outputLow < outputHigh else {
            throw ControlError(
                .invalidParameter, "PID: output limits [\(outputLow), \(outputHigh)]; expected low < high")
        }
        guard maxIncrease > 0 && maxDecrease > 0 else {
            throw ControlError(.invalidParameter, "PID: rate limits must be > 0 (∞ = unlimited)")
        }
        guard period.isFinite && period > 0 else {
            throw ControlError(.invalidParameter, "PID: period is \(period); expected finite > 0")
        }
        if let t = trackingTime, !(t.isFinite && t > 0) {
            throw ControlError(.invalidParameter, "PID: tracking time is \(t); expected finite > 0")
        }
    }
}

/// Positional PID with derivative on the filtered measurement, setpoint weighting, output and rate
/// limits, back-calculation anti-windup, and bumpless manual/tracking operation.
///
/// Output u = bias-free sum P + I + D with P = K·(b·r − y), D filtered −K·Td·dy/dt (signs flipped
/// for direct action). While not in automatic, `track(output:measurement:)` makes the integral
/// absorb whatever drives the MV (operator, MPC), so the first automatic output continues from it.
public struct PIDController: Sendable {
    public private(set) var settings: PIDSettings
    /// True while the controller computes the output itself.
    public private(set) var isAutomatic = false
    public private(set) var output: Double
    private var integral: Double
    private var derivative = 0.0
    private var lastMeasurement: Double?

    public init(settings: PIDSettings, initialOutput: Double) throws(ControlError) {
        try settings.validate()
        guard initialOutput.isFinite else { throw ControlError(.nonFinite, "PID: initial output is \(initialOutput)") }
        self.settings = settings
        self.output = initialOutput
        self.integral = initialOutput
    }

    /// Whether the last `update` computed an output that is not a finite number (then it held the last output); the
    /// loop sheds to MANUAL on it rather than drive an MV with a dead controller.
    public private(set) var outputWasNonFinite = false

    /// Retunes; the integral is re-based so the output does not jump.
    public mutating func retune(_ newSettings: PIDSettings, setpoint: Double, measurement: Double) throws(ControlError)
    {
        try newSettings.validate()
        settings = newSettings
        if setpoint.isFinite && measurement.isFinite {
            integral = output - proportional(setpoint: setpoint, measurement: measurement) - derivative
        }
    }

    private var sign: Double { settings.action == .reverse ? 1 : -1 }

    private func proportional(setpoint: Double, measurement: Double) -> Double {
        sign * settings.gain * (settings.setpointWeight * setpoint - measurement)
    }

    /// Switches to automatic; the next `update` continues from the current output.
    public mutating func setAutomatic(setpoint: Double, measurement: Double) {
        if !isAutomatic && setpoint.isFinite && measurement.isFinite {
            integral = output - proportional(setpoint: setpoint, measurement: measurement) - derivative
            lastMeasurement = measurement
        }
        isAutomatic = true
    }

    /// Leaves automatic; the output stays where it is until `track` moves it.
    public mutating func setManual() {
        isAutomatic = false
    }

    /// Follows an output set by someone else (operator, MPC) so a later switch to automatic is bumpless.
    /// The derivative filter and measurement history are kept current too.
    public mutating func track(output external: Double, setpoint: Double, measurement: Double) {
        guard external.isFinite else { return }
        if measurement.isFinite {
            updateDerivative(measurement)
            if setpoint.isFinite {
                integral = external - proportional(setpoint: setpoint, measurement: measurement) - derivative
            }
        }
        output = external
    }

    /// One automatic cycle: returns the new output (limited in value and rate). Non-finite inputs
    /// hold the previous output.
    public mutating func update(setpoint: Double, measurement: Double) -> Double {
        guard isAutomatic, setpoint.isFinite, measurement.isFinite else { return output }
        updateDerivative(measurement)
        let p = proportional(setpoint: setpoint, measurement: measurement)
        let error = sign * (setpoint - measurement)
        let h = settings.period
        let unlimited = p + integral + derivative
        outputWasNonFinite = !unlimited.isFinite
        // min/max let NaN through: a sum that is not a number holds the last output instead.
        var limited =
            unlimited.isNaN ? output : Swift.min(Swift.max(unlimited, settings.outputLow), settings.outputHigh)
        limited = Swift.min(Swift.max(limited, output - settings.maxDecrease), output + settings.maxIncrease)
        if settings.integralTime.isFinite {
            let ti = settings.integralTime
            let tt =
                settings.trackingTime
                ?? (settings.derivativeTime > 0 ? (ti * settings.derivativeTime).squareRoot() : ti)
            // Back-calculation: the integral is pulled toward what the limits let through, so it
            // cannot wind up while the output is saturated or rate limited.
            integral += settings.gain * h / ti * error + h / tt * (limited - unlimited)
        }
        if !derivative.isFinite { derivative = 0 }
        if !integral.isFinite {
            // Re-based on what went out, as a switch to automatic would, so the next cycle starts from it.
            integral = p.isFinite ? limited - p - derivative : limited
            if !integral.isFinite { integral = limited }
        }
        output = limited
        return limited
    }

    private mutating func updateDerivative(_ measurement: Double) {
        defer { lastMeasurement = measurement }
        guard settings.derivativeTime > 0, let last = lastMeasurement else { return }
        let tf = settings.derivativeTime / settings.filterRatio
        let h = settings.period
        // Backward-Euler discretization of K·Td·s/(Tf·s + 1) acting on −y: stable for every h.
        derivative =
            tf / (tf + h) * derivative
            - sign * settings.gain * settings.derivativeTime / (tf + h) * (measurement - last)
    }
}
