/// A loop the agent watches but does not drive (`monitors:`): any loop whose process value, setpoint and
/// controller output are tags, a PID inside a PLC included. Nothing is written; the figures are tags of their own.
public struct MonitorDefinition: Sendable, Hashable {
    public var name: String
    public var pv: String
    public var sp: String
    public var op: String
    /// A tag that is non-zero (true) while the loop is in automatic; nil counts every sample as automatic.
    public var auto: String?
    /// Dead time between the output and the process value, in seconds.
    public var deadTimeSeconds: Double
    /// How often the monitor samples the three tags.
    public var periodMilliseconds: Int
    /// The sliding window the figures are computed over.
    public var windowMilliseconds: Int
    /// The oscillation period the detector looks for (ultimate period); nil = 4 × dead time (at least 4 periods).
    public var oscillationPeriodSeconds: Double?
    /// Acceptable oscillation amplitude in the PV's units; nil = 1 % of the PV tag's span.
    public var amplitude: Double?
    /// The output's range for the saturation test (the OP tag's limits or scaling); nil = never saturated.
    public var outputLow: Double?
    public var outputHigh: Double?

    public init(
        name: String, pv: String, sp: String, op: String, auto: String? = nil, deadTimeSeconds: Double,
        periodMilliseconds: Int = 1000, windowMilliseconds: Int = 3_600_000, oscillationPeriodSeconds: Double? = nil,
        amplitude: Double? = nil
    ) {
        self.name = name
        self.pv = pv
        self.sp = sp
        self.op = op
        self.auto = auto
        self.deadTimeSeconds = deadTimeSeconds
        self.periodMilliseconds = periodMilliseconds
        self.windowMilliseconds = windowMilliseconds
        self.oscillationPeriodSeconds = oscillationPeriodSeconds
        self.amplitude = amplitude
    }

    /// The period the oscillation detector uses.
    public var effectiveOscillationPeriodSeconds: Double {
        oscillationPeriodSeconds ?? max(4 * deadTimeSeconds, 4 * Double(periodMilliseconds) / 1000)
    }
}
