/// How one monitored loop is sampled and judged. Times are seconds.
public struct LoopMonitorSettings: Sendable, Equatable {
    /// Seconds between two samples the monitor takes.
    public var samplePeriod: Double
    /// Samples between a change of the controller output and its first effect on the process output, the hold
    /// included (dead time / period + 1): the number of impulse-response terms no controller can cancel.
    public var delaySamples: Int
    /// Samples in the sliding window every figure is computed over.
    public var windowSamples: Int
    /// Order of the autoregressive model fitted to the error for the Harris index.
    public var arOrder: Int
    /// Period of the oscillation the detector looks for (the ultimate period, or the engineer's figure).
    public var oscillationPeriod: Double
    /// Acceptable oscillation amplitude in the PV's units (Hägglund's `a`).
    public var amplitude: Double
    /// Controller output limits; an output within 0.5 % of the span from either counts as saturated.
    public var outputLow: Double?
    public var outputHigh: Double?

    public init(
        samplePeriod: Double, delaySamples: Int, windowSamples: Int, arOrder: Int = 10, oscillationPeriod: Double,
        amplitude: Double, outputLow: Double? = nil, outputHigh: Double? = nil
    ) {
        self.samplePeriod = samplePeriod
        self.delaySamples = max(1, delaySamples)
        self.windowSamples = max(16, windowSamples)
        self.arOrder = max(1, arOrder)
        self.oscillationPeriod = oscillationPeriod
        self.amplitude = amplitude
        self.outputLow = outputLow
        self.outputHigh = outputHigh
    }
}

/// The figures of one monitored loop over its window.
public struct LoopMonitorKPIs: Sendable, Equatable {
    /// Samples in the window (valid or not).
    public var samples = 0
    /// Fraction of the window's samples in automatic with the output off its limits.
    public var serviceFactor = 0.0
    /// Integrated absolute error over the window (PV units × seconds).
    public var iae = 0.0
    /// Variance of the control error over the window.
    public var variance = 0.0
    /// σ²_mv / σ²_e: 1 at minimum variance, towards 0 the further from it; nil until the window holds enough.
    public var harrisIndex: Double?
    /// Hägglund's load-disturbance count (exponentially forgotten over the supervision time).
    public var loadCount = 0.0
    public var oscillating = false
    /// Share of the OP–PV cross-correlation's energy in its odd part (Horch): near 1 for a sticking valve, near 0
    /// for an oscillation the tuning or a disturbance causes; nil when the window holds too little.
    public var stictionIndex: Double?
    /// A sticking valve is indicated: the loop oscillates and the cross-correlation is odd.
    public var stiction = false
    public init() {}
}

/// Performance of one control loop from routine operating data, in fixed memory: rings of the window's error,
/// output and process value, running sums for the service factor, IAE and variance, Hägglund's oscillation
/// detector updated sample by sample, and work arrays for the on-demand Harris index (least-squares AR fit of the
/// error) and Horch's stiction test (cross-correlation of output and process value). Nothing allocates after
/// `init`. One thread owns an instance.
public struct LoopPerformanceMonitor {
    public let settings: LoopMonitorSettings
    var errorRing: [Double]
    var outputRing: [Double]
    var processRing: [Double]
    var inService: [Bool]
    var next = 0
    var count = 0
    // Running sums over the window's finite errors.
    var validCount = 0
    var serviceCount = 0
    var sumError = 0.0
    var sumSquares = 0.0
    var sumAbsolute = 0.0
    var sinceResum = 0
    // Hägglund's detector.
    let iaeLimit: Double
    let forgetting: Double
    var excursion = 0.0
    var lastSign = 0.0
    var loads = 0.0
    // Work arrays for the on-demand figures.
    var gram: [Double]
    var rhs: [Double]
    var impulse: [Double]
    var correlation: [Double]

    /// Hägglund's limits: n_lim load disturbances within the supervision time T_sup = 50·T_u.
    public static let loadLimit = 10.0
    /// The most lags either side the stiction test correlates over.
    public static let maximumLag = 256

    public init(settings: LoopMonitorSettings) {
        self.settings = settings
        let n = settings.windowSamples
        errorRing = [Double](repeating: .nan, count: n)
        outputRing = [Double](repeating: .nan, count: n)
        processRing = [Double](repeating: .nan, count: n)
        inService = [Bool](repeating: false, count: n)
        let p = settings.arOrder
        gram = [Double](repeating: 0, count: p * p)
        rhs = [Double](repeating: 0, count: p)
        impulse = [Double](repeating: 0, count: settings.delaySamples)
        // Lags within a quarter of the window, and at most 256 each side: the test costs window × lags per
        // computation, and a half period longer than 256 samples is sampled far faster than it needs.
        correlation = [Double](repeating: 0, count: 2 * min(n / 4, Self.maximumLag) + 1)
        // IAE_lim = 2a/ω_u, ω_u = 2π/T_u: the IAE of a half period of a sine of amplitude a.
        iaeLimit = settings.amplitude * settings.oscillationPeriod / Double.pi
        forgetting = max(0, 1 - settings.samplePeriod / (50 * settings.oscillationPeriod))
    }

    /// Adds one sample; a NaN in any of PV, SP or OP (bad quality, no value) leaves a gap in the error's figures.
    public mutating func add(pv: Double, sp: Double, op: Double, automatic: Bool) {
        let e = sp - pv
        let n = settings.windowSamples
        if count == n { remove(at: next) } else { count += 1 }
        var saturated = false
        if op.isFinite, let low = settings.outputLow, let high = settings.outputHigh {
            let margin = 0.005 * (high - low)
            saturated = op <= low + margin || op >= high - margin
        }
        errorRing[next] = op.isFinite ? e : .nan
        outputRing[next] = op
        processRing[next] = pv
        inService[next] = automatic && !saturated && e.isFinite
        if inService[next] { serviceCount += 1 }
        if errorRing[next].isFinite {
            validCount += 1
            sumError += e
            sumSquares += e * e
            sumAbsolute += abs(e)
        }
        next = (next + 1) % n
        sinceResum += 1
        // Subtracting leaving samples lets rounding accumulate; a fresh sum once per window bounds it.
        if sinceResum >= n { resum() }
        detect(error: errorRing[(next + n - 1) % n])
    }

    private mutating func remove(at k: Int) {
        if inService[k] { serviceCount -= 1 }
        let e = errorRing[k]
        if e.isFinite {
            validCount -= 1
            sumError -= e
            sumSquares -= e * e
            sumAbsolute -= abs(e)
        }
    }

    private mutating func resum() {
        sinceResum = 0
        validCount = 0
        sumError = 0
        sumSquares = 0
        sumAbsolute = 0
        for k in 0..<count where errorRing[k].isFinite {
            validCount += 1
            sumError += errorRing[k]
            sumSquares += errorRing[k] * errorRing[k]
            sumAbsolute += abs(errorRing[k])
        }
    }

    /// Hägglund (1995): the IAE between two zero crossings of the error above IAE_lim is a load disturbance; more
    /// than n_lim of them within T_sup (exponential forgetting) is an oscillation.
    private mutating func detect(error e: Double) {
        loads *= forgetting
        guard e.isFinite else {
            excursion = 0
            lastSign = 0
            return
        }
        let sign: Double = e > 0 ? 1 : (e < 0 ? -1 : 0)
        if sign != 0 && lastSign != 0 && sign != lastSign {
            if excursion > iaeLimit { loads += 1 }
            excursion = 0
        }
        if sign != 0 { lastSign = sign }
        excursion += abs(e) * settings.samplePeriod
    }

    /// The window's figures; the Harris index and the stiction test are computed here, from the rings.
    public mutating func kpis() -> LoopMonitorKPIs {
        var k = LoopMonitorKPIs()
        k.samples = count
        guard count > 0 else { return k }
        k.serviceFactor = Double(serviceCount) / Double(count)
        k.iae = sumAbsolute * settings.samplePeriod
        if validCount > 1 {
            let mean = sumError / Double(validCount)
            k.variance = max(0, (sumSquares - Double(validCount) * mean * mean) / Double(validCount - 1))
        }
        k.loadCount = loads
        k.oscillating = loads > Self.loadLimit
        k.harrisIndex = harrisIndex()
        k.stictionIndex = stictionIndex()
        k.stiction = k.oscillating && (k.stictionIndex ?? 0) > 0.5
        return k
    }
}
