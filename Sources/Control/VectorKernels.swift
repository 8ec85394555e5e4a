// Small kernels on raw buffers shared by the QP solver and the MPC step (no allocation, no Foundation).

@inline(__always)
func dot(_ a: UnsafePointer<Double>, _ b: UnsafePointer<Double>, _ count: Int) -> Double {
    // Four accumulators: lets the compiler keep independent FMA chains in flight.
    var s0 = 0.0
    var s1 = 0.0
    var s2 = 0.0
    var s3 = 0.0
    var k = 0
    while k + 4 <= count {
        s0 += a[k] * b[k]
        s1 += a[k + 1] * b[k + 1]
        s2 += a[k + 2] * b[k + 2]
        s3 += a[k + 3] * b[k + 3]
        k += 4
    }
    while k < count {
        s0 += a[k] * b[k]
        k += 1
    }
    return (s0 + s1) + (s2 + s3)
}

@inline(__always)
func dot(_ a: UnsafeMutablePointer<Double>, _ b: UnsafeMutablePointer<Double>, _ count: Int) -> Double {
    dot(UnsafePointer(a), UnsafePointer(b), count)
}

@inline(__always)
func allFinite(_ v: UnsafeMutablePointer<Double>, _ count: Int) -> Bool {
    for i in 0..<count where !v[i].isFinite { return false }
    return true
}

/// y[0..<count] += a0·x0 + a1·x1 + a2·x2 + a3·x3, four columns per pass over y.
///
/// Written with SIMD vectors because the compiler does not vectorize the scalar loop along y (it cannot prove
/// that y and the columns do not overlap, and packs the columns' products instead); one pass per four columns
/// also loads and stores y a quarter as often as one pass per column.
@inline(__always)
func accumulate4(
    _ y: UnsafeMutablePointer<Double>, _ x0: UnsafePointer<Double>, _ a0: Double, _ x1: UnsafePointer<Double>,
    _ a1: Double, _ x2: UnsafePointer<Double>, _ a2: Double, _ x3: UnsafePointer<Double>, _ a3: Double, _ count: Int
) {
    let s0 = SIMD4<Double>(repeating: a0)
    let s1 = SIMD4<Double>(repeating: a1)
    let s2 = SIMD4<Double>(repeating: a2)
    let s3 = SIMD4<Double>(repeating: a3)
    var i = 0
    while i + 4 <= count {
        var v = UnsafeRawPointer(y + i).loadUnaligned(as: SIMD4<Double>.self)
        v += s0 * UnsafeRawPointer(x0 + i).loadUnaligned(as: SIMD4<Double>.self)
        v += s1 * UnsafeRawPointer(x1 + i).loadUnaligned(as: SIMD4<Double>.self)
        v += s2 * UnsafeRawPointer(x2 + i).loadUnaligned(as: SIMD4<Double>.self)
        v += s3 * UnsafeRawPointer(x3 + i).loadUnaligned(as: SIMD4<Double>.self)
        UnsafeMutableRawPointer(y + i).storeBytes(of: v, as: SIMD4<Double>.self)
        i += 4
    }
    while i < count {
        y[i] = y[i] + a0 * x0[i] + a1 * x1[i] + a2 * x2[i] + a3 * x3[i]  // the vector lanes' order
        i += 1
    }
}

/// y[0..<count] += a·x (SIMD, as `accumulate4`).
@inline(__always)
func accumulate(_ y: UnsafeMutablePointer<Double>, _ x: UnsafePointer<Double>, _ a: Double, _ count: Int) {
    let s = SIMD4<Double>(repeating: a)
    var i = 0
    while i + 4 <= count {
        var v = UnsafeRawPointer(y + i).loadUnaligned(as: SIMD4<Double>.self)
        v += s * UnsafeRawPointer(x + i).loadUnaligned(as: SIMD4<Double>.self)
        UnsafeMutableRawPointer(y + i).storeBytes(of: v, as: SIMD4<Double>.self)
        i += 4
    }
    while i < count {
        y[i] += a * x[i]
        i += 1
    }
}

/// The largest violation of lower ≤ v ≤ upper above `threshold`, measured as (bound distance)·scale[i] (scale 1
/// when nil): its index (−1 when none), +1 for the lower side or −1 for the upper, and the violation. Ties go to
/// the first index, as a scalar scan with a strict comparison would.
///
/// SIMD over four entries with per-lane best values and indices, because this scan runs after every step of
/// the QP solver over every constraint and the scalar form's branches were a sixth of a long solve's time.
@inline(__always)
func largestViolation(
    _ v: UnsafePointer<Double>, lower: UnsafePointer<Double>, upper: UnsafePointer<Double>,
    scale: UnsafePointer<Double>?, count: Int, threshold: Double
) -> (index: Int, sign: Double, violation: Double) {
    var best = SIMD4<Double>(repeating: threshold)
    // Int64 lanes: the mask of a comparison of Double lanes is a mask of Int64 lanes.
    var bestIndex = SIMD4<Int64>(repeating: -1)
    var index = SIMD4<Int64>(0, 1, 2, 3)
    var i = 0
    while i + 4 <= count {
        let x = UnsafeRawPointer(v + i).loadUnaligned(as: SIMD4<Double>.self)
        let lo = UnsafeRawPointer(lower + i).loadUnaligned(as: SIMD4<Double>.self)
        let hi = UnsafeRawPointer(upper + i).loadUnaligned(as: SIMD4<Double>.self)
        var violation = pointwiseMax(lo - x, x - hi)
        if let scale { violation *= UnsafeRawPointer(scale + i).loadUnaligned(as: SIMD4<Double>.self) }
        let better = violation .> best
        best.replace(with: violation, where: better)
        bestIndex.replace(with: index, where: better)
        index &+= 4
        i += 4
    }
    var chosen = -1
    var worst = threshold
    for lane in 0..<4 where bestIndex[lane] >= 0 {
        let laneIndex = Int(bestIndex[lane])
        if best[lane] > worst || (best[lane] == worst && chosen >= 0 && laneIndex < chosen) {
            worst = best[lane]
            chosen = laneIndex
        }
    }
    while i < count {
        let s = scale?[i] ?? 1
        let violation = Swift.max(lower[i] - v[i], v[i] - upper[i]) * s
        if violation > worst {
            worst = violation
            chosen = i
        }
        i += 1
    }
    guard chosen >= 0 else { return (-1, 1, threshold) }
    return (chosen, lower[chosen] - v[chosen] > v[chosen] - upper[chosen] ? 1 : -1, worst)
}
