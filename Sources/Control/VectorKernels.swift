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
