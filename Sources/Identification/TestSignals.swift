// Test signals for plant tests: generalized binary noise (the standard generator) and steps.

/// Generalized binary noise (Tulleken 1990): ±amplitude, switching sign with `switchProbability` at each
/// sample once the current level has been held for `minimumHold` samples.
///
/// A run therefore lasts `minimumHold + F` samples, F geometric with mean (1 − p)/p, so the mean switching
/// interval is `minimumHold − 1 + 1/p` samples. Why a minimum hold: it keeps the power at frequencies the
/// plant can answer and spares the actuator moves too fast to matter.
public struct GeneralizedBinaryNoise: Sendable, Equatable {
    public var amplitude: Double
    /// Probability of a switch at each sample after the minimum hold, in (0, 1].
    public var switchProbability: Double
    /// Samples a level is held at least (≥ 1).
    public var minimumHold: Int
    public var seed: UInt64

    public init(amplitude: Double, switchProbability: Double, minimumHold: Int = 1, seed: UInt64) {
        self.amplitude = amplitude
        self.switchProbability = Swift.min(Swift.max(switchProbability, 1e-9), 1)
        self.minimumHold = Swift.max(1, minimumHold)
        self.seed = seed
    }

    /// Defaults from the settling time the engineer gives (s) and the loop period (s).
    ///
    /// The mean switching interval is settling time / 3: near the dominant time constant (identification
    /// notes: settling ≈ 4–5 time constants plus dead time), leaning long so the data carries the
    /// steady-state gain an MPC needs most. The minimum hold is a third of that interval.
    public init(settlingTime: Double, period: Double, amplitude: Double, seed: UInt64) {
        let mean = Swift.max(1, settlingTime / 3 / period)
        let hold = Swift.max(1, Int((mean / 3).rounded()))
        // mean = hold − 1 + 1/p  ⇒  p = 1 / (mean − hold + 1)
        self.init(
            amplitude: amplitude, switchProbability: 1 / Swift.max(1, mean - Double(hold) + 1), minimumHold: hold,
            seed: seed)
    }

    /// Expected samples between switches: minimumHold − 1 + 1/p.
    public var meanSwitchInterval: Double { Double(minimumHold) - 1 + 1 / switchProbability }

    /// How long to run the test (s): six times the settling time, as DeltaV's automated test does.
    public static func recommendedDuration(settlingTime: Double) -> Double { 6 * settlingTime }

    /// `count` samples, deterministic for the seed; starts at +amplitude.
    public func samples(_ count: Int) -> [Double] {
        var random = SeededRandom(seed: seed)
        var out = [Double]()
        out.reserveCapacity(Swift.max(count, 0))
        var level = amplitude
        var held = 0
        for _ in 0..<Swift.max(count, 0) {
            if held >= minimumHold && random.uniform() < switchProbability {
                level = -level
                held = 0
            }
            out.append(level)
            held += 1
        }
        return out
    }

    /// Generators for several MVs excited at once: same settings, independent seeds, so the sequences are
    /// uncorrelated and each MV's effect can be told apart.
    public func uncorrelated(_ count: Int) -> [GeneralizedBinaryNoise] {
        (0..<count).map { i in
            var copy = self
            copy.seed = seed &+ UInt64(i) &* 0x9E37_79B9_7F4A_7C15
            return copy
        }
    }
}

/// A step test: 0, then +amplitude, 0, −amplitude, 0, … each held `hold` samples after `delay` samples at 0.
/// Up and down steps in turn average out a slow drift and show asymmetry, if any.
public struct StepTest: Sendable, Equatable {
    public var amplitude: Double
    public var hold: Int
    public var delay: Int

    public init(amplitude: Double, hold: Int, delay: Int = 0) {
        self.amplitude = amplitude
        self.hold = Swift.max(1, hold)
        self.delay = Swift.max(0, delay)
    }

    /// Hold = the settling time (identification notes: hold ≥ settling time), in whole samples.
    public init(settlingTime: Double, period: Double, amplitude: Double, delay: Int = 0) {
        self.init(amplitude: amplitude, hold: Int((settlingTime / period).rounded(.up)), delay: delay)
    }

    public func samples(_ count: Int) -> [Double] {
        let pattern = [amplitude, 0, -amplitude, 0]
        return (0..<Swift.max(count, 0)).map { k in
            k < delay ? 0 : pattern[((k - delay) / hold) % pattern.count]
        }
    }
}
