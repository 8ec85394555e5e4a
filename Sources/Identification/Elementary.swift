// Elementary functions and a seeded random generator, written out because the module imports neither
// Foundation nor Glibc: the identification code must run unchanged wherever Control runs.

/// Natural exponential, within a few ulp of libm's for the arguments identification meets (|x| < 700).
/// Why not libm: the module is pure Swift like Control; this is range reduction plus a Taylor series.
@inlinable
func naturalExp(_ x: Double) -> Double {
    if x.isNaN { return x }
    if x > 709.78 { return .infinity }
    if x < -745.1 { return 0 }
    // x = k·ln2 + r with |r| ≤ ln2/2; ln2 split in two parts so k·ln2 is exact for the |k| here.
    let ln2High = 0.693_147_180_369_123_816_49
    let ln2Low = 1.908_214_929_270_587_700_02e-10
    let k = (x * 1.442_695_040_888_963_4).rounded()
    let r = (x - k * ln2High) - k * ln2Low
    // Taylor series to r^13/13! (the remainder is below 2^-53 for |r| ≤ 0.347), in Horner form from the
    // smallest term up, which rounds better than summing terms in order.
    var sum = 1.0
    for n in stride(from: 13, through: 1, by: -1) { sum = 1 + r * sum / Double(n) }
    // Scale by 2^k in two steps so that subnormal results are not flushed early.
    let exponent = Int(k)
    if exponent > 1000 || exponent < -1000 {
        let half = exponent / 2
        return sum * Double(sign: .plus, exponent: half, significand: 1)
            * Double(sign: .plus, exponent: exponent - half, significand: 1)
    }
    return sum * Double(sign: .plus, exponent: exponent, significand: 1)
}

/// Natural logarithm for x > 0 (NaN for x < 0, −∞ at 0): x = m·2^e with m in [√½, √2), then
/// log m = 2·atanh((m−1)/(m+1)) by its odd series, which converges fast on that interval.
@inlinable
func naturalLog(_ x: Double) -> Double {
    if x.isNaN || x < 0 { return .nan }
    if x == 0 { return -.infinity }
    if x.isInfinite { return x }
    var e = Int(x.exponent)
    var m = x.significand  // in [1, 2)
    if m > 1.414_213_562_373_095 {
        m /= 2
        e += 1
    }
    let s = (m - 1) / (m + 1)
    let s2 = s * s
    var term = s
    var sum = s
    var n = 3.0
    while n < 40 {
        term *= s2
        sum += term / n
        n += 2
    }
    return 2 * sum + Double(e) * 0.693_147_180_559_945_3
}

/// Deterministic pseudo-random numbers (xoshiro256**, seeded through SplitMix64), so that a test signal
/// is reproducible from its seed on any machine and in any language that implements the same generator.
public struct SeededRandom: Sendable {
    private var state: (UInt64, UInt64, UInt64, UInt64)

    /// A generator whose whole sequence is fixed by `seed`.
    public init(seed: UInt64) {
        // SplitMix64 spreads any seed (even 0) over the 256-bit state, as the xoshiro authors recommend.
        var z = seed
        func splitMix() -> UInt64 {
            z &+= 0x9E37_79B9_7F4A_7C15
            var x = z
            x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
            x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
            return x ^ (x >> 31)
        }
        state = (splitMix(), splitMix(), splitMix(), splitMix())
    }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        let result = rotateLeft(state.1 &* 5, 7) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = rotateLeft(state.3, 45)
        return result
    }

    /// Uniform in [0, 1), with the 53 bits a Double can hold.
    public mutating func uniform() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }

    /// Standard normal (Marsaglia's polar method: needs only a logarithm and a square root).
    public mutating func normal() -> Double {
        while true {
            let a = 2 * uniform() - 1
            let b = 2 * uniform() - 1
            let s = a * a + b * b
            if s > 0 && s < 1 { return a * (-2 * naturalLog(s) / s).squareRoot() }
        }
    }

    private func rotateLeft(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
}
