@testable import Control

// The solver `DenseQPSolver` replaced (Goldfarb–Idnani in the J = L⁻ᵀQ / R form, see decision 0003), kept in
// the test target only as an independent reference for the random-problem comparison. Not on any product path.

/// Dual active-set solver (Goldfarb–Idnani) for the dense strictly convex QP
///
///     minimize ½xᵀHx + fᵀx  subject to  lower ≤ A·x ≤ upper,  variableLower ≤ x ≤ variableUpper.
///
/// H and A are fixed when the solver is built (as they are for a condensed MPC problem); f and all
/// bounds are written into the solver's buffers before each `solve()`. All memory is allocated in
/// `init`; `solve()` allocates nothing. The Cholesky factor of H is computed once, and the factored
/// working set of one solve is the starting point of the next (a hot start costing O(n·q)).
/// See docs/decisions/0003-qp-solver.md for why this algorithm.
final class GoldfarbIdnaniReference {
    let variableCount: Int
    let constraintCount: Int
    var settings: QPSettings
    /// Monotonic clock in nanoseconds, used only for the optional time budget.
    var clock: (() -> UInt64)?

    /// Linear cost f (length n). Write before `solve()`.
    let linearCost: UnsafeMutableBufferPointer<Double>
    /// Bounds of A·x (length m); ±infinity for a missing side, equal for an equality.
    let lower: UnsafeMutableBufferPointer<Double>
    let upper: UnsafeMutableBufferPointer<Double>
    /// Bounds of x itself (length n).
    let variableLower: UnsafeMutableBufferPointer<Double>
    let variableUpper: UnsafeMutableBufferPointer<Double>
    /// The solution of the last solve (length n).
    var solution: UnsafeBufferPointer<Double> { UnsafeBufferPointer(start: x, count: variableCount) }

    private let n: Int
    private let m: Int
    private let hessian: UnsafeMutablePointer<Double>  // n×n row-major
    private let rows: UnsafeMutablePointer<Double>  // m×n row-major
    private let rowInverseNorm: UnsafeMutablePointer<Double>
    private let jInitial: UnsafeMutablePointer<Double>  // L⁻ᵀ, column-major
    private let j: UnsafeMutablePointer<Double>  // column-major, J·Jᵀ = H⁻¹ always
    private let r: UnsafeMutablePointer<Double>  // column-major upper triangular, Jᵀ·N = [R; 0]
    private let activeId: UnsafeMutablePointer<Int>
    private let activeSign: UnsafeMutablePointer<Double>
    private let isActive: UnsafeMutablePointer<Bool>
    private let lambda: UnsafeMutablePointer<Double>
    private let x: UnsafeMutablePointer<Double>
    private let d: UnsafeMutablePointer<Double>
    private let z: UnsafeMutablePointer<Double>
    private let step: UnsafeMutablePointer<Double>
    private let scratch: UnsafeMutablePointer<Double>
    private var q = 0

    /// - Parameters:
    ///   - hessian: n×n symmetric positive definite, row-major.
    ///   - constraintMatrix: m×n, row-major (empty when m = 0).
    init(
        variables n: Int, constraints m: Int, hessian h: [Double], constraintMatrix a: [Double],
        settings: QPSettings = QPSettings(), clock: (() -> UInt64)? = nil
    ) throws(ControlError) {
        guard n > 0 else { throw ControlError(.dimension, "QP: \(n) variables; expected at least one") }
        guard m >= 0 else { throw ControlError(.dimension, "QP: \(m) constraints; expected ≥ 0") }
        guard h.count == n * n else {
            throw ControlError(.dimension, "QP: Hessian has \(h.count) entries; expected \(n)×\(n) = \(n * n)")
        }
        guard a.count == m * n else {
            throw ControlError(
                .dimension, "QP: constraint matrix has \(a.count) entries; expected \(m)×\(n) = \(m * n)")
        }
        self.n = n
        self.m = m
        self.variableCount = n
        self.constraintCount = m
        self.settings = settings
        self.clock = clock
        func buffer(_ count: Int, _ value: Double) -> UnsafeMutableBufferPointer<Double> {
            let b = UnsafeMutableBufferPointer<Double>.allocate(capacity: Swift.max(count, 1))
            b.initialize(repeating: value)
            return b
        }
        linearCost = buffer(n, 0)
        lower = buffer(m, -.infinity)
        upper = buffer(m, .infinity)
        variableLower = buffer(n, -.infinity)
        variableUpper = buffer(n, .infinity)
        hessian = .allocate(capacity: n * n)
        rows = .allocate(capacity: Swift.max(m * n, 1))
        rowInverseNorm = .allocate(capacity: Swift.max(m, 1))
        jInitial = .allocate(capacity: n * n)
        j = .allocate(capacity: n * n)
        r = .allocate(capacity: n * n)
        r.initialize(repeating: 0, count: n * n)
        activeId = .allocate(capacity: n)
        activeSign = .allocate(capacity: n)
        isActive = .allocate(capacity: n + m)
        isActive.initialize(repeating: false, count: n + m)
        lambda = .allocate(capacity: n + 1)
        x = .allocate(capacity: n)
        x.initialize(repeating: 0, count: n)
        d = .allocate(capacity: n)
        z = .allocate(capacity: n)
        step = .allocate(capacity: n)
        scratch = .allocate(capacity: n * n)
        try setHessian(h)
        try setConstraintMatrix(a)
    }

    deinit {
        linearCost.deallocate()
        lower.deallocate()
        upper.deallocate()
        variableLower.deallocate()
        variableUpper.deallocate()
        hessian.deallocate()
        rows.deallocate()
        rowInverseNorm.deallocate()
        jInitial.deallocate()
        j.deallocate()
        r.deallocate()
        activeId.deallocate()
        activeSign.deallocate()
        isActive.deallocate()
        lambda.deallocate()
        x.deallocate()
        d.deallocate()
        z.deallocate()
        step.deallocate()
        scratch.deallocate()
    }

    /// Replaces H (same size) and refactors it; the warm start is discarded. Allocation-free.
    func setHessian(_ h: [Double]) throws(ControlError) {
        try checkSymmetricHessian(h, n)
        for i in 0..<n * n { hessian[i] = h[i] }
        let l = scratch
        try choleskyFactor(h, n, into: l)
        // J₀ = L⁻ᵀ, column-major: element (k, i) is L⁻¹[i][k], stored at i·n + k, where the row-major L⁻¹ holds it.
        invertLowerFactor(l, n, into: jInitial)
        resetWarmStart()
    }

    /// Replaces A (same size); the warm start is discarded. Allocation-free.
    func setConstraintMatrix(_ a: [Double]) throws(ControlError) {
        guard a.count == m * n else {
            throw ControlError(.dimension, "QP: constraint matrix has \(a.count) entries; expected \(m * n)")
        }
        for i in 0..<m {
            var norm = 0.0
            for k in 0..<n {
                let v = a[i * n + k]
                guard v.isFinite else { throw ControlError(.nonFinite, "QP: A[\(i)][\(k)] is \(v)") }
                rows[i * n + k] = v
                norm += v * v
            }
            guard norm > 0 else { throw ControlError(.invalidParameter, "QP: row \(i) of A is zero") }
            rowInverseNorm[i] = 1 / norm.squareRoot()
        }
        resetWarmStart()
    }

    /// Forgets the working set; the next solve starts from the unconstrained minimum.
    func resetWarmStart() {
        j.update(from: jInitial, count: n * n)
        for k in 0..<q { isActive[activeId[k]] = false }
        q = 0
    }

    /// ½xᵀHx + fᵀx at the current solution.
    func objective() -> Double {
        var value = 0.0
        for i in 0..<n {
            var hx = 0.0
            for k in 0..<n { hx += hessian[i * n + k] * x[k] }
            value += x[i] * (0.5 * hx + linearCost[i])
        }
        return value
    }

    // MARK: - Solve

    /// Solves with the current f and bounds. Never traps on bad numbers: returns a status instead.
    func solve() -> QPResult {
        let start = (settings.timeBudgetNanoseconds != nil) ? (clock?() ?? 0) : 0
        if let bad = validateInputs() {
            return QPResult(status: bad, iterations: 0, activeCount: 0, maxViolation: .nan)
        }
        if !settings.warmStart { resetWarmStart() }
        let limit = settings.maxIterations > 0 ? settings.maxIterations : 3 * (n + m) + 50
        let tolerance = settings.primalTolerance
        var iterations = 0

        // Hot start: the previous working set keeps its factorization; drop entries whose bound
        // disappeared, then drop negative multipliers until the point is dual feasible.
        var k = 0
        while k < q {
            if !bound(of: activeId[k], sign: activeSign[k]).isFinite {
                dropActive(at: k)
                iterations += 1
            } else {
                k += 1
            }
        }
        if q == 0 {
            unconstrainedMinimum()
        } else {
            // solveWorkingSet forms x₀ itself, so it is not formed before.
            while true {
                solveWorkingSet()
                var worst = -1
                var worstValue = 0.0
                for i in 0..<q where lambda[i] < worstValue && !isEquality(activeId[i]) {
                    worst = i
                    worstValue = lambda[i]
                }
                if worst < 0 { break }
                dropActive(at: worst)
                iterations += 1
                if q == 0 {
                    unconstrainedMinimum()
                    break
                }
            }
        }

        while true {
            // Most violated constraint, measured along its unit normal.
            var chosen = -1
            var chosenSign = 1.0
            var worst = tolerance
            for i in 0..<n where !isActive[i] {
                let v = x[i]
                let below = variableLower[i] - v
                if below > worst {
                    worst = below
                    chosen = i
                    chosenSign = 1
                } else {
                    let above = v - variableUpper[i]
                    if above > worst {
                        worst = above
                        chosen = i
                        chosenSign = -1
                    }
                }
            }
            for i in 0..<m where !isActive[n + i] {
                let lo = lower[i]
                let hi = upper[i]
                if lo == -.infinity && hi == .infinity { continue }
                let ax = dot(rows + i * n, x, n)
                let scale = rowInverseNorm[i]
                let below = (lo - ax) * scale
                if below > worst {
                    worst = below
                    chosen = n + i
                    chosenSign = 1
                } else {
                    let above = (ax - hi) * scale
                    if above > worst {
                        worst = above
                        chosen = n + i
                        chosenSign = -1
                    }
                }
            }
            if chosen < 0 {
                if !referenceAllFinite(x, n) { return finish(.numericalFailure, iterations, 0) }
                return finish(.optimal, iterations, 0)
            }
            // Add `chosen`: partial steps drop blocking constraints until a full step adds it.
            var pendingMultiplier = 0.0
            let target = bound(of: chosen, sign: chosenSign)
            while true {
                if iterations >= limit { return finish(.iterationLimit, iterations, worst) }
                if let budget = settings.timeBudgetNanoseconds, let clock, clock() &- start > budget {
                    return finish(.timeLimit, iterations, worst)
                }
                iterations += 1
                computeDirections(constraint: chosen, sign: chosenSign)
                // Blocking multiplier (partial step length).
                var blocking = -1
                var partial = Double.infinity
                for i in 0..<q where step[i] > 0 && !isEquality(activeId[i]) {
                    // Clamp round-off negatives so a step can never go backwards.
                    let ratio = Swift.max(lambda[i], 0) / step[i]
                    if ratio < partial {
                        partial = ratio
                        blocking = i
                    }
                }
                var zz = 0.0
                var dd = 0.0
                for i in 0..<n {
                    dd += d[i] * d[i]
                    if i >= q { zz += d[i] * d[i] }
                }
                if zz <= 1e-14 * dd {
                    // n_p lies in the span of the working set: only the dual can move.
                    if blocking < 0 { return finish(.infeasible, iterations, worst) }
                    for i in 0..<q { lambda[i] -= partial * step[i] }
                    pendingMultiplier += partial
                    dropActive(at: blocking)
                    continue
                }
                let residual = target - chosenSign * normalDot(chosen, x)
                let full = Swift.max(residual / zz, 0)
                let t = Swift.min(partial, full)
                for i in 0..<n { x[i] += t * z[i] }
                for i in 0..<q { lambda[i] -= t * step[i] }
                pendingMultiplier += t
                if full <= partial {
                    if !addActive(constraint: chosen, sign: chosenSign, multiplier: pendingMultiplier) {
                        return finish(.numericalFailure, iterations, worst)
                    }
                    break
                }
                dropActive(at: blocking)
            }
        }
    }

    // MARK: - Pieces

    private func finish(_ status: QPStatus, _ iterations: Int, _ violation: Double) -> QPResult {
        QPResult(status: status, iterations: iterations, activeCount: q, maxViolation: violation)
    }

    private func validateInputs() -> QPStatus? {
        checkQPInputs(
            variables: n, constraints: m, linearCost: linearCost, variableLower: variableLower,
            variableUpper: variableUpper, lower: lower,
            upper: upper)
    }

    @inline(__always)
    private func isEquality(_ id: Int) -> Bool {
        id < n ? variableLower[id] == variableUpper[id] : lower[id - n] == upper[id - n]
    }

    /// Right-hand side b of the oriented constraint sign·aᵀx ≥ b.
    @inline(__always)
    private func bound(of id: Int, sign: Double) -> Double {
        if id < n { return sign > 0 ? variableLower[id] : -variableUpper[id] }
        return sign > 0 ? lower[id - n] : -upper[id - n]
    }

    @inline(__always)
    private func normalDot(_ id: Int, _ v: UnsafeMutablePointer<Double>) -> Double {
        id < n ? v[id] : dot(rows + (id - n) * n, v, n)
    }

    /// x₀ = −H⁻¹f = −J₀·J₀ᵀ·f. J₀ = L⁻ᵀ is upper triangular (column i is zero below row i), so this costs
    /// 2n² flops where the rotated J (J·Jᵀ = H⁻¹ too, but dense) costs 4n².
    private func unconstrainedMinimum() {
        let f = linearCost.baseAddress!
        for i in 0..<n { d[i] = dot(jInitial + i * n, f, i + 1) }
        for k in 0..<n { x[k] = 0 }
        for i in 0..<n {
            let c = -d[i]
            let column = jInitial + i * n
            for k in 0...i { x[k] += c * column[k] }
        }
    }

    /// With x = x₀ on entry: the minimizer on the working set (as equalities) and its multipliers.
    private func solveWorkingSet() {
        unconstrainedMinimum()
        // w = b − Nᵀx₀, then Rᵀy = w, R·λ = y, x = x₀ + J₁·y.
        for i in 0..<q {
            let id = activeId[i]
            let s = activeSign[i]
            var y = bound(of: id, sign: s) - s * normalDot(id, x)
            for k in 0..<i { y -= r[k + i * n] * d[k] }
            d[i] = y / r[i + i * n]
        }
        for i in stride(from: q - 1, through: 0, by: -1) {
            var s = d[i]
            for k in (i + 1)..<Swift.max(q, i + 1) { s -= r[i + k * n] * lambda[k] }
            lambda[i] = s / r[i + i * n]
        }
        for i in 0..<q {
            let c = d[i]
            let column = j + i * n
            for k in 0..<n { x[k] += c * column[k] }
        }
    }

    /// d = Jᵀ·n_p, z = J₂·d₂ (primal direction), step = R⁻¹·d₁ (dual direction).
    private func computeDirections(constraint id: Int, sign: Double) {
        if id < n {
            for i in 0..<n { d[i] = sign * j[i * n + id] }
        } else {
            let row = rows + (id - n) * n
            for i in 0..<n { d[i] = sign * dot(j + i * n, row, n) }
        }
        for k in 0..<n { z[k] = 0 }
        for i in q..<n {
            let c = d[i]
            if c == 0 { continue }
            let column = j + i * n
            for k in 0..<n { z[k] += c * column[k] }
        }
        for i in stride(from: q - 1, through: 0, by: -1) {
            var s = d[i]
            for k in (i + 1)..<Swift.max(q, i + 1) { s -= r[i + k * n] * step[k] }
            step[i] = s / r[i + i * n]
        }
    }

    /// Appends the constraint whose d = Jᵀn_p was computed last; Givens rotations zero d[q+1…].
    private func addActive(constraint id: Int, sign: Double, multiplier: Double) -> Bool {
        var i = n - 1
        while i > q {
            let a = d[i - 1]
            let b = d[i]
            if b != 0 {
                let h = referenceHypot(a, b)
                let c = a / h
                let s = b / h
                d[i - 1] = h
                d[i] = 0
                let c0 = j + (i - 1) * n
                let c1 = j + i * n
                for k in 0..<n {
                    let u = c0[k]
                    let v = c1[k]
                    c0[k] = c * u + s * v
                    c1[k] = -s * u + c * v
                }
            }
            i -= 1
        }
        let diagonal = d[q]
        if !(abs(diagonal) > 1e-13) || !diagonal.isFinite { return false }
        for k in 0...q { r[k + q * n] = d[k] }
        activeId[q] = id
        activeSign[q] = sign
        lambda[q] = multiplier
        isActive[id] = true
        q += 1
        return true
    }

    /// Removes working-set entry `k`, restoring the triangular R with rotations applied to J too.
    private func dropActive(at k: Int) {
        isActive[activeId[k]] = false
        for i in k..<(q - 1) {
            activeId[i] = activeId[i + 1]
            activeSign[i] = activeSign[i + 1]
            lambda[i] = lambda[i + 1]
            let dst = r + i * n
            let src = r + (i + 1) * n
            for row in 0...(i + 1) { dst[row] = src[row] }
        }
        q -= 1
        for i in k..<q {
            let a = r[i + i * n]
            let b = r[(i + 1) + i * n]
            if b == 0 { continue }
            let h = referenceHypot(a, b)
            let c = a / h
            let s = b / h
            for col in i..<q {
                let u = r[i + col * n]
                let v = r[(i + 1) + col * n]
                r[i + col * n] = c * u + s * v
                r[(i + 1) + col * n] = -s * u + c * v
            }
            r[(i + 1) + i * n] = 0
            let c0 = j + i * n
            let c1 = j + (i + 1) * n
            for row in 0..<n {
                let u = c0[row]
                let v = c1[row]
                c0[row] = c * u + s * v
                c1[row] = -s * u + c * v
            }
        }
        // The column that slid out of the triangle must not leak into the next add.
        for row in 0..<n { r[row + q * n] = 0 }
    }
}

private func referenceHypot(_ a: Double, _ b: Double) -> Double {
    let fa = abs(a)
    let fb = abs(b)
    let big = Swift.max(fa, fb)
    if big == 0 { return 0 }
    let small = Swift.min(fa, fb) / big
    return big * (1 + small * small).squareRoot()
}

private func referenceAllFinite(_ v: UnsafeMutablePointer<Double>, _ count: Int) -> Bool {
    for i in 0..<count where !v[i].isFinite { return false }
    return true
}
