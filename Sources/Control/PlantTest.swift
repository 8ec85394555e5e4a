/// How a plant test ended (decision 0034).
public enum PlantTestEnd: Sendable, Equatable {
    /// The whole precomputed sequence was applied.
    case completed
    /// The operator stopped it (`loop NAME test stop`, or a mode request during the test).
    case stopped
    /// CV `cv` left its test band (its soft limits unless a band was given) at `value`.
    case cvOutsideBand(cv: Int, value: Double)
}

/// One plant test, ready to run: the moves of every MV for every cycle, precomputed when the test is started (on
/// the caller's thread), so the loop thread only reads a number per MV per cycle and allocates nothing.
///
/// The moves are offsets from the value each MV had when the test began (its base, taken by `ControlLoop` at the
/// cycle the test starts); an MV that is not tested has offsets of zero and so holds its base. Each cycle's output
/// is clamped to the MV's limits and rate-limited against the previous output by `ControlLoop`, so a test can never
/// ask for more than the controller's own limits allow.
public final class PlantTest {
    /// Cycles in the test.
    public let cycles: Int
    public let mvCount: Int
    /// Which MVs move.
    public let tested: [Bool]
    /// Lowest and highest value of each CV tolerated during the test (−∞/∞ = no bound).
    public let bandLow: [Double]
    public let bandHigh: [Double]
    /// Offsets, cycle-major: `offsets[k * mvCount + l]` is MV l's offset at cycle k.
    private let offsets: [Double]
    /// Base value of each MV, set at the cycle the test starts.
    public private(set) var base: [Double]
    /// Cycles applied so far.
    public private(set) var position = 0

    /// `offsets[l]` is MV l's sequence (empty or all zero for an MV that holds); each sequence is truncated or padded
    /// with zeros to `cycles`.
    public init(
        cycles: Int, offsets perMV: [[Double]], bandLow: [Double], bandHigh: [Double]
    ) throws(ControlError) {
        guard cycles > 0 else { throw ControlError(.dimension, "plant test: needs at least one cycle") }
        guard bandLow.count == bandHigh.count else {
            throw ControlError(.dimension, "plant test: \(bandLow.count) band lows and \(bandHigh.count) band highs")
        }
        let nu = perMV.count
        var flat = [Double](repeating: 0, count: cycles * nu)
        var tested = [Bool](repeating: false, count: nu)
        for l in 0..<nu {
            for k in 0..<Swift.min(cycles, perMV[l].count) {
                let v = perMV[l][k]
                guard v.isFinite else { throw ControlError(.dimension, "plant test: offset of MV \(l) not finite") }
                flat[k * nu + l] = v
                if v != 0 { tested[l] = true }
            }
        }
        self.cycles = cycles
        self.mvCount = nu
        self.tested = tested
        self.bandLow = bandLow
        self.bandHigh = bandHigh
        self.offsets = flat
        self.base = [Double](repeating: .nan, count: nu)
    }

    /// Fraction of the sequence applied, 0…1.
    public var progress: Double { Double(position) / Double(cycles) }

    /// Whether every cycle was applied.
    public var finished: Bool { position >= cycles }

    /// Fixes the bases: the MVs applied when the test begins.
    func begin(at outputs: [Double]) {
        for l in 0..<Swift.min(mvCount, outputs.count) { base[l] = outputs[l] }
        position = 0
    }

    /// MV l's value asked for at the current position (before limits).
    @inline(__always)
    func value(_ l: Int) -> Double { base[l] + offsets[Swift.min(position, cycles - 1) * mvCount + l] }

    func advance() { position += 1 }

    /// The first CV outside its band, if any.
    func firstCVOutsideBand(_ measurement: [Double]) -> Int? {
        for i in 0..<Swift.min(measurement.count, bandLow.count)
        where measurement[i] < bandLow[i] || measurement[i] > bandHigh[i] {
            return i
        }
        return nil
    }
}
