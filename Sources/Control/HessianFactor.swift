// The checks of a QP's data and the factorization of its Hessian, shared by `DenseQPSolver` and the reference solver
// the tests check it against, so that the two differ only in the algorithm under test. Raw buffers, no allocation,
// no Foundation.

/// The status a solve must return without iterating, or nil when f and the bounds can be solved: a non-finite cost or
/// a NaN bound is invalid input; an empty range (lower above upper, or a side at the wrong infinity) is infeasible.
func checkQPInputs(
    variables n: Int, constraints m: Int, linearCost: UnsafeMutableBufferPointer<Double>,
    variableLower: UnsafeMutableBufferPointer<Double>,
    variableUpper: UnsafeMutableBufferPointer<Double>, lower: UnsafeMutableBufferPointer<Double>,
    upper: UnsafeMutableBufferPointer<Double>
) -> QPStatus? {
    for i in 0..<n {
        let lo = variableLower[i]
        let hi = variableUpper[i]
        if !linearCost[i].isFinite || lo.isNaN || hi.isNaN { return .invalidInput }
        if lo == .infinity || hi == -.infinity || lo > hi { return .infeasible }
    }
    for i in 0..<m {
        let lo = lower[i]
        let hi = upper[i]
        if lo.isNaN || hi.isNaN { return .invalidInput }
        if lo == .infinity || hi == -.infinity || lo > hi { return .infeasible }
    }
    return nil
}

/// Checks that `h` (n×n, row-major) is finite and symmetric to 1e-10 relative.
func checkSymmetricHessian(_ h: [Double], _ n: Int) throws(ControlError) {
    guard h.count == n * n else {
        throw ControlError(.dimension, "QP: Hessian has \(h.count) entries; expected \(n * n)")
    }
    for i in 0..<n {
        for k in 0..<n {
            let v = h[i * n + k]
            guard v.isFinite else { throw ControlError(.nonFinite, "QP: Hessian[\(i)][\(k)] is \(v)") }
            guard abs(v - h[k * n + i]) <= 1e-10 * (abs(v) + abs(h[k * n + i]) + 1e-300) || v == h[k * n + i]
            else {
                throw ControlError(.invalidParameter, "QP: Hessian is not symmetric at [\(i)][\(k)]")
            }
        }
    }
}

/// Cholesky H = L·Lᵀ into `l` (n×n row-major, lower triangle written); throws when H is not positive definite.
func choleskyFactor(_ h: [Double], _ n: Int, into l: UnsafeMutablePointer<Double>) throws(ControlError) {
    for jj in 0..<n {
        var s = h[jj * n + jj]
        for k in 0..<jj { s -= l[jj * n + k] * l[jj * n + k] }
        guard s > 0 && s.isFinite else {
            throw ControlError(.numerical, "QP: Hessian is not positive definite (pivot \(jj) is \(s))")
        }
        let djj = s.squareRoot()
        l[jj * n + jj] = djj
        for i in (jj + 1)..<Swift.max(n, jj + 1) {
            var t = h[i * n + jj]
            for k in 0..<jj { t -= l[i * n + k] * l[jj * n + k] }
            l[i * n + jj] = t / djj
        }
    }
}

/// L⁻¹ of the lower factor `l` into `inverse` (n×n row-major, zeros above the diagonal), by forward substitution
/// L·w = e_col for each column.
func invertLowerFactor(_ l: UnsafeMutablePointer<Double>, _ n: Int, into inverse: UnsafeMutablePointer<Double>) {
    for col in 0..<n {
        for k in 0..<n {
            if k < col {
                inverse[k * n + col] = 0
                continue
            }
            var s = (k == col) ? 1.0 : 0.0
            for p in col..<k { s -= l[k * n + p] * inverse[p * n + col] }
            inverse[k * n + col] = s / l[k * n + k]
        }
    }
}
