// Figures of merit: fit %, residual tests, and a fingerprint of the data a model came from.

/// Fit % and related measures.
public enum FitMetrics {
    /// 100·(1 − ‖y − ŷ‖/‖y − ȳ‖), as MATLAB's `compare` reports it: 100 is perfect, 0 is no better than the
    /// mean, negative is worse. nan when there are no samples or y is constant.
    public static func fitPercent(measured y: [Double], simulated yHat: [Double]) -> Double {
        precondition(y.count == yHat.count, "fitPercent: measured and simulated differ in length")
        return fitPercent(residuals: (0..<y.count).map { y[$0] - yHat[$0] }, measured: y)
    }

    /// The same from residuals y − ŷ.
    public static func fitPercent(residuals r: [Double], measured y: [Double]) -> Double {
        guard !y.isEmpty, r.count == y.count else { return .nan }
        let mean = y.reduce(0, +) / Double(y.count)
        var spread = 0.0
        var error = 0.0
        for k in 0..<y.count {
            spread += (y[k] - mean) * (y[k] - mean)
            error += r[k] * r[k]
        }
        guard spread > 0 else { return .nan }
        return 100 * (1 - (error / spread).squareRoot())
    }
}

/// Residual tests on validation data: is what the model leaves out white, and unrelated to the inputs?
///
/// Each normalised correlation is compared with the 95 % bound ±1.96/√N. At 95 % one lag in twenty is
/// outside by chance, so a test passes when no more lags are outside than chance gives with 99 %
/// probability (binomial with p = 0.05 over the lags tested) rather than demanding every lag inside.
/// For an output-error model the input cross-correlation is the test that matters: it says the dynamics
/// are right; autocorrelation only says whether the disturbance happens to be white.
public struct ResidualAnalysis: Sendable, Equatable {
    /// Lags tested: 1…lags for the autocorrelation, 0…lags (input leading) for the cross-correlations.
    public var lags: Int
    public var sampleCount: Int
    /// 1.96/√N.
    public var bound: Double
    /// Normalised autocorrelation of the residuals at lags 1…lags.
    public var autocorrelation: [Double]
    /// crossCorrelation[i][τ]: normalised correlation of input i at k with the residual at k+τ, τ = 0…lags.
    public var crossCorrelation: [[Double]]
    /// Lags outside the bound that chance alone explains (99 % binomial quantile), for the autocorrelation
    /// and for each cross-correlation (one more lag).
    public var allowedOutside: Int
    public var allowedCrossOutside: Int
    public var autocorrelationOutside: Int
    public var crossCorrelationOutside: [Int]

    public var isWhite: Bool { autocorrelationOutside <= allowedOutside }
    public var isUncorrelatedWithInputs: Bool {
        crossCorrelationOutside.allSatisfy { $0 <= allowedCrossOutside }
    }

    /// Correlations over segments (never across a gap): residuals[s][k], inputs[s][i][k].
    public init(residuals: [[Double]], inputs: [[[Double]]], lags: Int = 20) {
        let lags = Swift.max(1, lags)
        self.lags = lags
        let n = residuals.reduce(0) { $0 + $1.count }
        sampleCount = n
        bound = n > 0 ? 1.96 / Double(n).squareRoot() : .infinity
        var ee = 0.0
        for r in residuals { for v in r { ee += v * v } }
        var auto = [Double](repeating: 0, count: lags)
        for r in residuals {
            for tau in 1...lags where tau < r.count {
                var s = 0.0
                for k in 0..<(r.count - tau) { s += r[k] * r[k + tau] }
                auto[tau - 1] += s
            }
        }
        autocorrelation = auto.map { ee > 0 ? $0 / ee : 0 }
        let inputCount = inputs.first?.count ?? 0
        var cross = [[Double]](repeating: [Double](repeating: 0, count: lags + 1), count: inputCount)
        for i in 0..<inputCount {
            var uu = 0.0
            for s in 0..<residuals.count {
                let u = inputs[s][i]
                let r = residuals[s]
                let count = Swift.min(u.count, r.count)
                for k in 0..<count { uu += u[k] * u[k] }
                for tau in 0...lags where tau < count {
                    var sum = 0.0
                    for k in 0..<(count - tau) { sum += u[k] * r[k + tau] }
                    cross[i][tau] += sum
                }
            }
            let norm = (uu * ee).squareRoot()
            cross[i] = cross[i].map { norm > 0 ? $0 / norm : 0 }
        }
        crossCorrelation = cross
        let boundValue = bound
        allowedOutside = Self.binomialQuantile(trials: lags, probability: 0.05, level: 0.99)
        autocorrelationOutside = autocorrelation.filter { abs($0) > boundValue }.count
        allowedCrossOutside = Self.binomialQuantile(trials: lags + 1, probability: 0.05, level: 0.99)
        crossCorrelationOutside = cross.map { $0.filter { abs($0) > boundValue }.count }
    }

    /// Smallest k with P(X ≤ k) ≥ level for X ~ Binomial(trials, probability).
    static func binomialQuantile(trials: Int, probability p: Double, level: Double) -> Int {
        var pmf = 1.0
        for _ in 0..<trials { pmf *= 1 - p }
        var cumulative = pmf
        var k = 0
        while cumulative < level && k < trials {
            pmf *= Double(trials - k) / Double(k + 1) * p / (1 - p)
            k += 1
            cumulative += pmf
        }
        return k
    }
}

/// 64-bit FNV-1a over the exact bits of the samples a model was identified from, for the model ledger:
/// the same data gives the same hash on any machine. Not cryptographic; it detects, it does not protect.
public struct DataFingerprint: Sendable, Equatable {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    public init() {}

    public mutating func combine(_ x: UInt64) {
        var v = x
        for _ in 0..<8 {
            value ^= v & 0xff
            value = value &* 0x0000_0100_0000_01b3
            v >>= 8
        }
    }

    public mutating func combine(_ x: Double) { combine(x.bitPattern) }

    public mutating func combine(_ values: [Double]) {
        combine(UInt64(values.count))
        for v in values { combine(v.bitPattern) }
    }

    /// Hex string, 16 digits.
    public var hex: String {
        let digits = Array("0123456789abcdef")
        return String((0..<16).map { digits[Int((value >> UInt64(60 - 4 * $0)) & 0xf)] })
    }
}

extension PreparedData {
    /// Fingerprint of the period and every segment: start time, offsets and samples exactly as prepared.
    public var fingerprint: DataFingerprint {
        var f = DataFingerprint()
        f.combine(period)
        f.combine(UInt64(segments.count))
        for segment in segments {
            f.combine(segment.startTime)
            f.combine(segment.inputOffsets)
            f.combine(segment.outputOffsets)
            for u in segment.inputs { f.combine(u) }
            for y in segment.outputs { f.combine(y) }
        }
        return f
    }
}
