/// The loop thread's working arrays, allocated once when the loop is built so that a cycle allocates nothing.
///
/// Only the loop thread touches them once the loop runs; other threads see copies on the `LoopStateBoard`.
struct LoopCycleBuffers {
    /// The MV values last handed to the writer (or, in MANUAL, read back from the PLC); NaN until known.
    let applied: UnsafeMutablePointer<Double>
    /// `applied` as it was at the start of the cycle.
    let previous: UnsafeMutablePointer<Double>
    /// A value the operator set by hand in MANUAL, approached at the rate limit; NaN when none.
    let operatorManual: UnsafeMutablePointer<Double>
    let targetLow: UnsafeMutablePointer<Double>
    let targetHigh: UnsafeMutablePointer<Double>
    let cvValue: UnsafeMutablePointer<Double>
    let cvGood: UnsafeMutablePointer<Bool>
    let dvValue: UnsafeMutablePointer<Double>
    let dvGood: UnsafeMutablePointer<Bool>
    let mvRead: UnsafeMutablePointer<Double>
    let mvGood: UnsafeMutablePointer<Bool>
    /// Whether each MV's last write failed, copied from the writer at the start of the cycle.
    let writeFailed: UnsafeMutablePointer<Bool>
    /// What this cycle hands to the writer, and which MVs it writes.
    let outValue: UnsafeMutablePointer<Double>
    let outWrite: UnsafeMutablePointer<Bool>
    let kpiError: UnsafeMutablePointer<Double>
    /// Per MV, the `LoopKPIAccumulator.MVLimit` bits of this cycle.
    let kpiLimits: UnsafeMutablePointer<UInt8>
    /// Per CV, its value when good, else NaN.
    let kpiCV: UnsafeMutablePointer<Double>

    init(cvs ny: Int, mvs nu: Int, dvs nd: Int) {
        func doubles(_ n: Int) -> UnsafeMutablePointer<Double> { allocateFilled(n, Double.nan) }
        func bools(_ n: Int) -> UnsafeMutablePointer<Bool> { allocateFilled(n, false) }
        applied = doubles(nu)
        previous = doubles(nu)
        operatorManual = doubles(nu)
        targetLow = doubles(ny)
        targetHigh = doubles(ny)
        cvValue = doubles(ny)
        cvGood = bools(ny)
        dvValue = doubles(nd)
        dvGood = bools(nd)
        mvRead = doubles(nu)
        mvGood = bools(nu)
        writeFailed = bools(nu)
        outValue = doubles(nu)
        outWrite = bools(nu)
        kpiError = doubles(ny)
        kpiLimits = allocateFilled(nu, 0)
        kpiCV = doubles(ny)
    }

    func deallocate() {
        for p in [
            applied, previous, operatorManual, targetLow, targetHigh, cvValue, dvValue, mvRead, outValue, kpiError,
            kpiCV,
        ] {
            p.deallocate()
        }
        for p in [cvGood, dvGood, mvGood, writeFailed, outWrite] { p.deallocate() }
        kpiLimits.deallocate()
    }
}

/// `max(n, 1)` elements set to `value`: the loops allocate every array once, when they are built.
func allocateFilled<T>(_ n: Int, _ value: T) -> UnsafeMutablePointer<T> {
    let p = UnsafeMutablePointer<T>.allocate(capacity: max(n, 1))
    p.initialize(repeating: value, count: max(n, 1))
    return p
}
