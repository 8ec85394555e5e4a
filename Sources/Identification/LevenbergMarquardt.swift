// Bounded nonlinear least squares for the prediction-error fits.

/// A nonlinear least-squares problem: minimise ½‖r(p)‖² over lower ≤ p ≤ upper.
struct LeastSquaresProblem {
    var lower: [Double]
    var upper: [Double]
    /// Typical magnitude of each parameter: sets finite-difference steps and the convergence test.
    var scale: [Double]
    /// r(p), one entry per estimation sample.
    var residuals: ([Double]) -> [Double]

    var parameterCount: Int { lower.count }

    func clamp(_ p: [Double]) -> [Double] {
        (0..<p.count).map { Swift.min(Swift.max(p[$0], lower[$0]), upper[$0]) }
    }

    /// JᵀJ and Jᵀr at p by finite differences (central when `central`, else forward), plus r and ½‖r‖².
    /// Why finite differences: the simulated output is a recursion through exponentials of the
    /// parameters; differences cost a few extra simulations and cannot get a derivative wrong.
    func normalEquations(at p: [Double], central: Bool, base: [Double]? = nil)
        -> (jtj: DenseMatrix, jtr: [Double], r: [Double], cost: Double)
    {
        let r = base ?? residuals(p)
        let n = p.count
        var columns = [[Double]]()
        columns.reserveCapacity(n)
        for i in 0..<n {
            if lower[i] == upper[i] {
                columns.append([Double](repeating: 0, count: r.count))
                continue
            }
            let h = 1e-6 * Swift.max(abs(p[i]), scale[i])
            var plus = p
            var minus = p
            var width = 0.0
            if central && p[i] - h >= lower[i] && p[i] + h <= upper[i] {
                plus[i] += h
                minus[i] -= h
                width = 2 * h
                let rp = residuals(plus)
                let rm = residuals(minus)
                columns.append((0..<r.count).map { (rp[$0] - rm[$0]) / width })
            } else {
                // One-sided, inward from whichever bound is close.
                let step = p[i] + h <= upper[i] ? h : -h
                plus[i] += step
                let rp = residuals(plus)
                columns.append((0..<r.count).map { (rp[$0] - r[$0]) / step })
            }
        }
        var jtj = DenseMatrix(rows: n, cols: n)
        var jtr = [Double](repeating: 0, count: n)
        for i in 0..<n {
            columns[i].withUnsafeBufferPointer { ci in
                r.withUnsafeBufferPointer { rr in
                    var s = 0.0
                    for k in 0..<rr.count { s += ci[k] * rr[k] }
                    jtr[i] = s
                }
                for j in i..<n {
                    columns[j].withUnsafeBufferPointer { cj in
                        var s = 0.0
                        for k in 0..<ci.count { s += ci[k] * cj[k] }
                        jtj[i, j] = s
                        jtj[j, i] = s
                    }
                }
            }
        }
        return (jtj, jtr, r, Self.halfSquaredNorm(r))
    }

    static func halfSquaredNorm(_ r: [Double]) -> Double {
        var s = 0.0
        for v in r { s += v * v }
        return s / 2
    }
}

/// Levenberg–Marquardt with Marquardt's diagonal scaling and projection onto the bounds.
/// Why LM rather than plain Gauss–Newton: dead time and time constants interact strongly far from the
/// optimum, and the damping keeps each step a descent step there while converging like Gauss–Newton near it.
struct LevenbergMarquardt {
    var maximumIterations = 40
    var relativeTolerance = 1e-10

    func minimize(_ problem: LeastSquaresProblem, from start: [Double]) -> (parameters: [Double], cost: Double) {
        var p = problem.clamp(start)
        var r = problem.residuals(p)
        var cost = LeastSquaresProblem.halfSquaredNorm(r)
        var lambda = 1e-3
        for _ in 0..<maximumIterations {
            let (jtj, jtr, _, _) = problem.normalEquations(at: p, central: false, base: r)
            var improved = false
            var converged = false
            while lambda < 1e10 {
                var damped = jtj
                var largest = 0.0
                for i in 0..<p.count { largest = Swift.max(largest, jtj[i, i]) }
                for i in 0..<p.count { damped[i, i] += lambda * Swift.max(jtj[i, i], largest * 1e-9) }
                let step = damped.solveSymmetric(jtr.map { -$0 })
                let candidate = problem.clamp((0..<p.count).map { p[$0] + step[$0] })
                let rc = problem.residuals(candidate)
                let candidateCost = LeastSquaresProblem.halfSquaredNorm(rc)
                if candidateCost.isFinite && candidateCost < cost {
                    let gain = cost - candidateCost
                    var moved = 0.0
                    for i in 0..<p.count { moved = Swift.max(moved, abs(candidate[i] - p[i]) / problem.scale[i]) }
                    p = candidate
                    r = rc
                    converged = gain <= relativeTolerance * cost || moved < 1e-9
                    cost = candidateCost
                    lambda = Swift.max(lambda / 3, 1e-12)
                    improved = true
                    break
                }
                lambda *= 4
            }
            if !improved || converged { break }
        }
        return (p, cost)
    }
}
