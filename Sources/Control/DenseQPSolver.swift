/// Dual active-set solver for the dense strictly convex QP
///
///     minimize ½xᵀHx + fᵀx  subject to  lower ≤ A·x ≤ upper,  variableLower ≤ x ≤ variableUpper,
///
/// in the range-space form of DAQP's least-distance method: the working set W is held as the LDLᵀ
/// factor of its Gram matrix G_W = N_Wᵀ·H⁻¹·N_W (N_W: the normals of W's constraints), grown by one row
/// on an add and downdated on a drop, so a change costs O(q²) plus the constraint's column of the Gram
/// matrix, never O(n²) in the size of the problem.
///
/// H and A are fixed when the solver is built (as they are for a condensed MPC problem); f and all
/// bounds are written into the solver's buffers before each `solve()`. All memory is allocated in
/// `init`; `solve()` allocates nothing. H⁻¹ and A·H⁻¹ are formed once; the working set of one solve,
/// its factor and its multipliers are the starting point of the next (hot start), valid because they
/// depend on H, A and W only. See docs/decisions/0003-qp-solver.md for why this algorithm.
public final class DenseQPSolver {
    public let variableCount: Int
    public let constraintCount: Int
    public var settings: QPSettings
    /// Monotonic clock in nanoseconds, used only for the optional time budget.
    public var clock: (() -> UInt64)?

    /// Linear cost f (length n). Write before `solve()`.
    public let linearCost: UnsafeMutableBufferPointer<Double>
    /// Bounds of A·x (length m); ±infinity for a missing side, equal for an equality.
    public let lower: UnsafeMutableBufferPointer<Double>
    public let upper: UnsafeMutableBufferPointer<Double>
    /// Bounds of x itself (length n).
    public let variableLower: UnsafeMutableBufferPointer<Double>
    public let variableUpper: UnsafeMutableBufferPointer<Double>
    /// The solution of the last solve (length n).
    public var solution: UnsafeBufferPointer<Double> { UnsafeBufferPointer(start: point, count: variableCount) }

    let n: Int
    let m: Int
    /// n + m: constraint ids are 0..<n for the bounds of x, n + i for row i of A.
    let total: Int
    let hessian: UnsafeMutablePointer<Double>  // n×n row-major
    let rows: UnsafeMutablePointer<Double>  // m×n row-major
    let rowInverseNorm: UnsafeMutablePointer<Double>
    /// The normals of all constraints in the factor's coordinates, L⁻¹·[I, Aᵀ] (n × total, L·Lᵀ = H): column i is
    /// L⁻¹·aᵢ, so row k's first n entries are row k of L⁻¹. Every product the solver needs is a sum of its rows
    /// (an axpy over contiguous memory, which vectorizes): Gram entries aᵢᵀ·H⁻¹·aⱼ are products of two columns,
    /// and x₀ = −H⁻¹f is −L⁻ᵀ·(L⁻¹f). Going through L⁻¹ rather than an explicit H⁻¹ keeps the round-off at the
    /// square root of H's condition number, as DAQP's M = A·R⁻¹ does; with H⁻¹ the solutions on soft-constrained
    /// problems (slack weights far above the others) were 1e-8–1e-7 away from quadprog's.
    let normals: UnsafeMutablePointer<Double>
    /// One Gram column per working-set slot (n + 1 slots × total, the last for a candidate that turns out
    /// dependent on a full W): entry i is a_iᵀ·H⁻¹·a_id.
    let columns: UnsafeMutablePointer<Double>
    let slotOf: UnsafeMutablePointer<Int>
    /// The whole Gram matrix [I; A]·H⁻¹·[I; A]ᵀ (total × total) when it takes at most `gramLimit` entries:
    /// an add then copies its column instead of forming it (O(total) instead of O(nnz(a)·total)).
    let gram: UnsafeMutablePointer<Double>?
    /// 2¹⁷ entries, 1 MiB: the Gram matrix of a 360-row problem, above the sizes of the scenarios benchmarked.
    static let gramLimit = 1 << 17
    let activeId: UnsafeMutablePointer<Int>
    let activeSign: UnsafeMutablePointer<Double>
    let isActive: UnsafeMutablePointer<Bool>
    /// Signed multipliers μ of W (x = x₀ + Σ μ_k·H⁻¹a_k); sign·μ ≥ 0 for an inequality.
    let multiplier: UnsafeMutablePointer<Double>
    let factorL: UnsafeMutablePointer<Double>  // unit lower triangular, row-major, stride n
    let factorD: UnsafeMutablePointer<Double>
    let work: UnsafeMutablePointer<Double>
    let work2: UnsafeMutablePointer<Double>
    /// z = L⁻¹·β of the working-set solve, kept across the iterations of one solve: β is fixed within a solve and
    /// an add appends a row of L, so only the rows from the first changed one need forming again.
    let forward: UnsafeMutablePointer<Double>
    /// Leading rows of `forward` still valid for the current W and β.
    var forwardValid = 0
    /// [x₀; A·x₀] for the unconstrained minimum x₀ = −H⁻¹f, then [x; A·x] for the current point.
    let unconstrained: UnsafeMutablePointer<Double>
    let point: UnsafeMutablePointer<Double>
    var q = 0
    /// Drops since the factor of W was last formed from G_W; each is a rank-one update that adds round-off.
    var downdates = 0

    /// - Parameters:
    ///   - hessian: n×n symmetric positive definite, row-major.
    ///   - constraintMatrix: m×n, row-major (empty when m = 0).
    public init(
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
        self.total = n + m
        self.variableCount = n
        self.constraintCount = m
        self.settings = settings
        self.clock = clock
        func buffer(_ count: Int, _ value: Double) -> UnsafeMutableBufferPointer<Double> {
            let b = UnsafeMutableBufferPointer<Double>.allocate(capacity: Swift.max(count, 1))
            b.initialize(repeating: value)
            return b
        }
        func zeros(_ count: Int) -> UnsafeMutablePointer<Double> {
            let p = UnsafeMutablePointer<Double>.allocate(capacity: Swift.max(count, 1))
            p.initialize(repeating: 0, count: Swift.max(count, 1))
            return p
        }
        linearCost = buffer(n, 0)
        lower = buffer(m, -.infinity)
        upper = buffer(m, .infinity)
        variableLower = buffer(n, -.infinity)
        variableUpper = buffer(n, .infinity)
        hessian = zeros(n * n)
        rows = zeros(m * n)
        rowInverseNorm = zeros(m)
        normals = zeros(n * (n + m))
        columns = zeros((n + 1) * (n + m))
        gram = (n + m) * (n + m) <= Self.gramLimit ? zeros((n + m) * (n + m)) : nil
        slotOf = .allocate(capacity: n + 1)
        for k in 0...n { (slotOf + k).initialize(to: k) }
        activeId = .allocate(capacity: n)
        activeId.initialize(repeating: 0, count: n)
        activeSign = zeros(n)
        isActive = .allocate(capacity: n + m)
        isActive.initialize(repeating: false, count: n + m)
        multiplier = zeros(n)
        factorL = zeros(n * n)
        factorD = zeros(n)
        work = zeros(n)
        work2 = zeros(n)
        forward = zeros(n)
        unconstrained = zeros(n + m)
        point = zeros(n + m)
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
        normals.deallocate()
        columns.deallocate()
        gram?.deallocate()
        slotOf.deallocate()
        activeId.deallocate()
        activeSign.deallocate()
        isActive.deallocate()
        multiplier.deallocate()
        factorL.deallocate()
        factorD.deallocate()
        work.deallocate()
        work2.deallocate()
        forward.deallocate()
        unconstrained.deallocate()
        point.deallocate()
    }

    /// Replaces H (same size) and refactors it; the warm start is discarded. Allocation-free.
    public func setHessian(_ h: [Double]) throws(ControlError) {
        try checkSymmetricHessian(h, n)
        // L (row-major lower) into factorL; the factor of W is rebuilt from scratch after.
        try choleskyFactor(h, n, into: factorL)
        for i in 0..<n { for k in 0..<n { hessian[i * n + k] = h[i * n + k] } }
        // L⁻¹ (lower) into the slot storage, which is free until the first add, then as the first n columns of
        // the normals.
        let inverse = columns
        invertLowerFactor(factorL, n, into: inverse)
        for k in 0..<n { for j in 0..<n { normals[k * total + j] = inverse[k * n + j] } }
        formInverseRows()
        resetWarmStart()
    }

    /// Replaces A (same size); the warm start is discarded. Allocation-free.
    public func setConstraintMatrix(_ a: [Double]) throws(ControlError) {
        guard a.count == m * n else {
            throw ControlError(.dimension, "QP: constraint matrix has \(a.count) entries; expected \(m * n)")
        }
        for i in 0..<m {
            var norm = 0.0
            for k in 0..<n {
                let v = a[i * n + k]
                guard v.isFinite else { throw ControlError(.nonFinite, "QP: A[\(i)][\(k)] is \(v)") }
                norm += v * v
            }
            guard norm > 0 else { throw ControlError(.invalidParameter, "QP: row \(i) of A is zero") }
        }
        for i in 0..<m {
            var norm = 0.0
            for k in 0..<n {
                rows[i * n + k] = a[i * n + k]
                norm += a[i * n + k] * a[i * n + k]
            }
            rowInverseNorm[i] = 1 / norm.squareRoot()
        }
        formInverseRows()
        resetWarmStart()
    }

    /// The columns L⁻¹·aᵢ of A's rows after those of L⁻¹, and the Gram matrix when it is kept.
    private func formInverseRows() {
        for i in 0..<m {
            let row = rows + i * n
            // L⁻¹ is lower triangular: row k has k + 1 entries.
            for k in 0..<n { normals[k * total + n + i] = dot(normals + k * total, row, k + 1) }
        }
        guard let gram else { return }
        for id in 0..<total { formColumn(id, into: gram + id * total) }
    }

    /// Gram column of constraint `id`: entry i is a_iᵀ·H⁻¹·a_id = (L⁻¹a_i)ᵀ·(L⁻¹a_id) = Σₖ (L⁻¹a_id)_k·(row k of
    /// the normals).
    func formColumn(_ id: Int, into slot: UnsafeMutablePointer<Double>) {
        for i in 0..<total { slot[i] = 0 }
        // A bound's L⁻¹e_id is zero above row id.
        for k in (id < n ? id : 0)..<n {
            let c = normals[k * total + id]
            if c != 0 { accumulate(slot, normals + k * total, c, total) }
        }
    }

    /// Forgets the working set; the next solve starts from the unconstrained minimum.
    public func resetWarmStart() {
        for k in 0..<q { isActive[activeId[k]] = false }
        q = 0
        downdates = 0
        forwardValid = 0
    }

    /// ½xᵀHx + fᵀx at the current solution.
    public func objective() -> Double {
        var value = 0.0
        for i in 0..<n {
            var hx = 0.0
            for k in 0..<n { hx += hessian[i * n + k] * point[k] }
            value += point[i] * (0.5 * hx + linearCost[i])
        }
        return value
    }

    // MARK: - Solve

    /// Solves with the current f and bounds. Never traps on bad numbers: returns a status instead.
    public func solve() -> QPResult {
        let start = (settings.timeBudgetNanoseconds != nil) ? (clock?() ?? 0) : 0
        if let bad = validateInputs() {
            return QPResult(status: bad, iterations: 0, activeCount: 0, maxViolation: .nan)
        }
        if !settings.warmStart { resetWarmStart() }
        let limit = settings.maxIterations > 0 ? settings.maxIterations : 3 * (n + m) + 50
        var iterations = 0

        // [x₀; A·x₀] for x₀ = −H⁻¹f, through L⁻¹ (see `normals`).
        formUnconstrained()
        forwardValid = 0

        // Hot start: W's factor depends on H, A and W only, so it is still valid; a member whose side lost
        // its bound leaves, and multipliers of inequalities are clamped to the dual-feasible side (any
        // λ ≥ 0 is a dual-feasible point of the least-distance problem).
        var k = 0
        while k < q {
            let id = activeId[k]
            if !target(of: id, sign: activeSign[k]).isFinite {
                remove(at: k)
                iterations += 1
                continue
            }
            if !isEquality(id) && activeSign[k] * multiplier[k] < 0 { multiplier[k] = 0 }
            k += 1
        }
        // After n drops (at most q³/6 ≤ n³/6 multiply-adds, as much as the drops themselves cost) the factor is
        // formed afresh from G_W.
        if downdates >= n && !refactorWorkingSet() { resetWarmStart() }

        while true {
            // The minimizer with W as equalities; a partial step towards it when a multiplier would turn
            // negative, dropping the constraint that blocks.
            solveWorkingSet()
            var blocking = -1
            var alpha = 1.0
            for k in 0..<q where !isEquality(activeId[k]) {
                let s = activeSign[k]
                let wanted = s * work[k]
                if wanted < 0 {
                    let now = Swift.max(s * multiplier[k], 0)
                    let ratio = now / (now - wanted)
                    if ratio < alpha {
                        alpha = ratio
                        blocking = k
                    }
                }
            }
            if blocking >= 0 {
                if let stop = limitReached(iterations, limit, start) { return stopEarly(stop, iterations) }
                for k in 0..<q { multiplier[k] += alpha * (work[k] - multiplier[k]) }
                remove(at: blocking)
                iterations += 1
                continue
            }
            for k in 0..<q { multiplier[k] = work[k] }
            formPoint()
            let (chosen, sign, worst) = mostViolated()
            if chosen < 0 {
                polishSolution()
                if !allFinite(point, n) { return finish(.numericalFailure, iterations, 0) }
                return finish(.optimal, iterations, 0)
            }
            if let stop = limitReached(iterations, limit, start) { return finish(stop, iterations, worst) }
            iterations += 1
            // Add `chosen`; while it depends on W, move the dual along the null direction (the point does not
            // move) and drop the member that blocks, until it is independent.
            var chosenMultiplier = 0.0
            while true {
                switch append(chosen, sign: sign, multiplier: chosenMultiplier) {
                case .added:
                    break
                case .failed:
                    return finish(.numericalFailure, iterations, worst)
                case .dependent:
                    // work2 = G_W⁻¹·g (g: the Gram row of `chosen` against W); raising λ_chosen by t moves μ_W by
                    // −t·sign·work2.
                    var drop = -1
                    var t = Double.infinity
                    for k in 0..<q where !isEquality(activeId[k]) {
                        let s = activeSign[k]
                        let rate = -s * sign * work2[k]
                        if rate < 0 {
                            let ratio = Swift.max(s * multiplier[k], 0) / -rate
                            if ratio < t {
                                t = ratio
                                drop = k
                            }
                        }
                    }
                    if drop < 0 { return finish(.infeasible, iterations, worst) }
                    if let stop = limitReached(iterations, limit, start) { return stopEarly(stop, iterations) }
                    for k in 0..<q { multiplier[k] -= t * sign * work2[k] }
                    chosenMultiplier += t * sign
                    remove(at: drop)
                    iterations += 1
                    continue
                }
                break
            }
        }
    }

    // MARK: - Pieces

    enum AddOutcome { case added, dependent, failed }

    private func finish(_ status: QPStatus, _ iterations: Int, _ violation: Double) -> QPResult {
        QPResult(status: status, iterations: iterations, activeCount: q, maxViolation: violation)
    }

    /// Iteration limit or time budget reached: the current (dual-feasible) point and its violation.
    private func stopEarly(_ status: QPStatus, _ iterations: Int) -> QPResult {
        formPoint()
        let (chosen, _, worst) = mostViolated()
        return finish(status, iterations, chosen < 0 ? 0 : worst)
    }

    @inline(__always)
    private func limitReached(_ iterations: Int, _ limit: Int, _ start: UInt64) -> QPStatus? {
        if iterations >= limit { return .iterationLimit }
        if let budget = settings.timeBudgetNanoseconds, let clock, clock() &- start > budget { return .timeLimit }
        return nil
    }

    private func validateInputs() -> QPStatus? {
        checkQPInputs(
            variables: n, constraints: m, linearCost: linearCost, variableLower: variableLower,
            variableUpper: variableUpper, lower: lower,
            upper: upper)
    }

    @inline(__always)
    func isEquality(_ id: Int) -> Bool {
        id < n ? variableLower[id] == variableUpper[id] : lower[id - n] == upper[id - n]
    }

    /// The value aᵀx takes when the constraint is active on the side `sign` (+1 lower, −1 upper).
    @inline(__always)
    func target(of id: Int, sign: Double) -> Double {
        if id < n { return sign > 0 ? variableLower[id] : variableUpper[id] }
        return sign > 0 ? lower[id - n] : upper[id - n]
    }

    /// [x₀; A·x₀] = −[I; A]·L⁻ᵀ·w with w = L⁻¹f: −Σₖ wₖ·(row k of the normals).
    private func formUnconstrained() {
        let w = work2
        for k in 0..<n { w[k] = -dot(normals + k * total, linearCost.baseAddress!, k + 1) }
        for i in 0..<total { unconstrained[i] = 0 }
        var k = 0
        while k + 4 <= n {
            let c0 = normals + k * total
            accumulate4(
                unconstrained, c0, w[k], c0 + total, w[k + 1], c0 + 2 * total, w[k + 2], c0 + 3 * total, w[k + 3], total
            )
            k += 4
        }
        while k < n {
            accumulate(unconstrained, normals + k * total, w[k], total)
            k += 1
        }
    }

    @inline(__always)
    func column(_ k: Int) -> UnsafeMutablePointer<Double> { columns + slotOf[k] * total }

    /// point = [x; A·x] = [x₀; A·x₀] + Σ μ_k·(Gram column of member k), O((n + m)·q).
    private func formPoint() {
        point.update(from: unconstrained, count: total)
        var k = 0
        while k + 4 <= q {
            accumulate4(
                point, column(k), multiplier[k], column(k + 1), multiplier[k + 1], column(k + 2), multiplier[k + 2],
                column(k + 3), multiplier[k + 3], total)
            k += 4
        }
        while k < q {
            accumulate(point, column(k), multiplier[k], total)
            k += 1
        }
    }

    /// The most violated constraint outside W, measured along its unit normal (id −1: none beyond tolerance).
    /// Members of W meet their targets to round-off, far below the tolerance, so the scan leaves them in and
    /// only a member found on top sends it to the scan that skips them.
    private func mostViolated() -> (id: Int, sign: Double, violation: Double) {
        let bounds = largestViolation(
            point, lower: variableLower.baseAddress!, upper: variableUpper.baseAddress!, scale: nil, count: n,
            threshold: settings.primalTolerance)
        let rows = largestViolation(
            point + n, lower: lower.baseAddress!, upper: upper.baseAddress!, scale: rowInverseNorm, count: m,
            threshold: bounds.violation)
        let (id, sign, worst) = rows.index >= 0 ? (n + rows.index, rows.sign, rows.violation) : bounds
        if id >= 0 && isActive[id] { return mostViolatedOutsideW() }
        return (id, sign, worst)
    }

    /// `mostViolated` with the members of W skipped one by one.
    private func mostViolatedOutsideW() -> (id: Int, sign: Double, violation: Double) {
        var chosen = -1
        var chosenSign = 1.0
        var worst = settings.primalTolerance
        for i in 0..<n where !isActive[i] {
            let v = point[i]
            let below = variableLower[i] - v
            let above = v - variableUpper[i]
            if below > worst {
                worst = below
                chosen = i
                chosenSign = 1
            } else if above > worst {
                worst = above
                chosen = i
                chosenSign = -1
            }
        }
        for i in 0..<m where !isActive[n + i] {
            let ax = point[n + i]
            let scale = rowInverseNorm[i]
            let below = (lower[i] - ax) * scale
            let above = (ax - upper[i]) * scale
            if below > worst {
                worst = below
                chosen = n + i
                chosenSign = 1
            } else if above > worst {
                worst = above
                chosen = n + i
                chosenSign = -1
            }
        }
        return (chosen, chosenSign, worst)
    }

}
