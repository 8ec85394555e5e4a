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

    private let n: Int
    private let m: Int
    /// n + m: constraint ids are 0..<n for the bounds of x, n + i for row i of A.
    private let total: Int
    private let hessian: UnsafeMutablePointer<Double>  // n×n row-major
    private let rows: UnsafeMutablePointer<Double>  // m×n row-major
    private let rowInverseNorm: UnsafeMutablePointer<Double>
    /// [I; A]·H⁻¹ stored by columns (n × total): entry (k, i) is eₖᵀ·H⁻¹·aᵢ, so row k's first n entries are
    /// row k of H⁻¹. Every per-solve product with it is an axpy over contiguous rows, which vectorizes.
    private let inverseColumns: UnsafeMutablePointer<Double>
    /// One Gram column per working-set slot (n + 1 slots × total, the last for a candidate that turns out
    /// dependent on a full W): entry i is a_iᵀ·H⁻¹·a_id.
    private let columns: UnsafeMutablePointer<Double>
    private let slotOf: UnsafeMutablePointer<Int>
    /// The whole Gram matrix [I; A]·H⁻¹·[I; A]ᵀ (total × total) when it takes at most `gramLimit` entries:
    /// an add then copies its column instead of forming it (O(total) instead of O(nnz(a)·total)).
    private let gram: UnsafeMutablePointer<Double>?
    /// 2¹⁷ entries, 1 MiB: the Gram matrix of a 360-row problem, above the sizes of the scenarios benchmarked.
    static let gramLimit = 1 << 17
    private let activeId: UnsafeMutablePointer<Int>
    private let activeSign: UnsafeMutablePointer<Double>
    private let isActive: UnsafeMutablePointer<Bool>
    /// Signed multipliers μ of W (x = x₀ + Σ μ_k·H⁻¹a_k); sign·μ ≥ 0 for an inequality.
    private let multiplier: UnsafeMutablePointer<Double>
    private let factorL: UnsafeMutablePointer<Double>  // unit lower triangular, row-major, stride n
    private let factorD: UnsafeMutablePointer<Double>
    private let work: UnsafeMutablePointer<Double>
    private let work2: UnsafeMutablePointer<Double>
    /// [x₀; A·x₀] for the unconstrained minimum x₀ = −H⁻¹f, then [x; A·x] for the current point.
    private let unconstrained: UnsafeMutablePointer<Double>
    private let point: UnsafeMutablePointer<Double>
    private var q = 0
    /// Drops since the factor of W was last formed from G_W; each is a rank-one update that adds round-off.
    private var downdates = 0

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
        inverseColumns = zeros(n * (n + m))
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
        inverseColumns.deallocate()
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
        unconstrained.deallocate()
        point.deallocate()
    }

    /// Replaces H (same size) and refactors it; the warm start is discarded. Allocation-free.
    public func setHessian(_ h: [Double]) throws(ControlError) {
        try checkSymmetricHessian(h, n)
        // L (row-major lower) into factorL; the factor of W is rebuilt from scratch after.
        try choleskyFactor(h, n, into: factorL)
        for i in 0..<n { for k in 0..<n { hessian[i * n + k] = h[i * n + k] } }
        // L⁻¹ (lower) into the slot storage, which is free until the first add.
        let inverse = columns
        invertLowerFactor(factorL, n, into: inverse)
        // H⁻¹ = L⁻ᵀ·L⁻¹: entry (i, j) = Σ_{k ≥ max(i, j)} L⁻¹[k][i]·L⁻¹[k][j].
        for i in 0..<n {
            for j in i..<n {
                var s = 0.0
                for k in j..<n { s += inverse[k * n + i] * inverse[k * n + j] }
                inverseColumns[i * total + j] = s
                inverseColumns[j * total + i] = s
            }
        }
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

    /// The columns of A·H⁻¹ after those of H⁻¹, and the Gram matrix when it is kept.
    private func formInverseRows() {
        for i in 0..<m {
            let row = rows + i * n
            for j in 0..<n { inverseColumns[j * total + n + i] = dot(inverseColumns + j * total, row, n) }
        }
        guard let gram else { return }
        for id in 0..<total { formColumn(id, into: gram + id * total) }
    }

    /// Gram column of constraint `id`: entry i is a_iᵀ·H⁻¹·a_id = Σₖ a_id,k·(row k of the stored columns).
    private func formColumn(_ id: Int, into slot: UnsafeMutablePointer<Double>) {
        if id < n {
            slot.update(from: inverseColumns + id * total, count: total)
            return
        }
        for i in 0..<total { slot[i] = 0 }
        let a = rows + (id - n) * n
        // MPC rows have plenty of zeros.
        for k in 0..<n where a[k] != 0 {
            accumulate(slot, inverseColumns + k * total, a[k], total)
        }
    }

    /// Forgets the working set; the next solve starts from the unconstrained minimum.
    public func resetWarmStart() {
        for k in 0..<q { isActive[activeId[k]] = false }
        q = 0
        downdates = 0
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

        // [x₀; A·x₀] = −Σₖ fₖ·(row k of the stored [I; A]·H⁻¹ columns), x₀ = −H⁻¹f.
        formUnconstrained()

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

    private enum AddOutcome { case added, dependent, failed }

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
        for i in 0..<n {
            let f = linearCost[i]
            let lo = variableLower[i]
            let hi = variableUpper[i]
            if !f.isFinite || lo.isNaN || hi.isNaN { return .invalidInput }
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

    @inline(__always)
    private func isEquality(_ id: Int) -> Bool {
        id < n ? variableLower[id] == variableUpper[id] : lower[id - n] == upper[id - n]
    }

    /// The value aᵀx takes when the constraint is active on the side `sign` (+1 lower, −1 upper).
    @inline(__always)
    private func target(of id: Int, sign: Double) -> Double {
        if id < n { return sign > 0 ? variableLower[id] : variableUpper[id] }
        return sign > 0 ? lower[id - n] : upper[id - n]
    }

    private func formUnconstrained() {
        for i in 0..<total { unconstrained[i] = 0 }
        var k = 0
        while k + 4 <= n {
            let c0 = inverseColumns + k * total
            accumulate4(
                unconstrained, c0, -linearCost[k], c0 + total, -linearCost[k + 1], c0 + 2 * total,
                -linearCost[k + 2], c0 + 3 * total, -linearCost[k + 3], total)
            k += 4
        }
        while k < n {
            accumulate(unconstrained, inverseColumns + k * total, -linearCost[k], total)
            k += 1
        }
    }

    @inline(__always)
    private func column(_ k: Int) -> UnsafeMutablePointer<Double> { columns + slotOf[k] * total }

    /// work = μ* with G_W·μ* = β, β_k = target_k − a_kᵀx₀ (from the kept LDLᵀ factor, O(q²)).
    private func solveWorkingSet() {
        for i in 0..<q {
            let id = activeId[i]
            work[i] = target(of: id, sign: activeSign[i]) - unconstrained[id] - dot(factorL + i * n, work, i)
        }
        for i in 0..<q { work[i] /= factorD[i] }
        // Lᵀ·μ = work by rows of L (μ_k final, then its multiple of row k leaves the entries before it): contiguous
        // and vectorized, where the same solve by columns of Lᵀ strides through L.
        var k = q - 1
        while k > 0 {
            accumulate(work, factorL + k * n, -work[k], k)
            k -= 1
        }
    }

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

    /// The most violated constraint outside W, measured along its unit normal (nil id: none beyond tolerance).
    private func mostViolated() -> (id: Int, sign: Double, violation: Double) {
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

    /// Appends `id` to W: its Gram column into a free slot, then one new row of the LDLᵀ factor.
    /// `.dependent` leaves work2 = G_W⁻¹·g for the null-direction step and W unchanged.
    private func append(_ id: Int, sign: Double, multiplier value: Double) -> AddOutcome {
        let slot = columns + slotOf[q] * total
        if let gram { slot.update(from: gram + id * total, count: total) } else { formColumn(id, into: slot) }
        // Forward solve L·z = g (g: the Gram row of `id` against W), d = G_id,id − zᵀD⁻¹z; then work = l = D⁻¹z.
        let diagonal = slot[id]
        var d = diagonal
        for k in 0..<q {
            let z = column(k)[id] - dot(factorL + k * n, work, k)
            work[k] = z
            d -= z * z / factorD[k]
        }
        if !d.isFinite || !diagonal.isFinite { return .failed }
        for k in 0..<q { work[k] /= factorD[k] }
        if q < n && d > 1e-12 * diagonal {
            let row = factorL + q * n
            for k in 0..<q { row[k] = work[k] }
            factorD[q] = d
            activeId[q] = id
            activeSign[q] = sign
            multiplier[q] = value
            isActive[id] = true
            q += 1
            return .added
        }
        // Dependent: G_W⁻¹·g = L⁻ᵀ·l.
        var i = q - 1
        while i >= 0 {
            var s = work[i]
            for k in (i + 1)..<Swift.max(q, i + 1) { s -= factorL[k * n + i] * work2[k] }
            work2[i] = s
            i -= 1
        }
        return .dependent
    }

    /// Forms the LDLᵀ factor of G_W afresh from the members' Gram columns (q³/6 multiply-adds), so that the
    /// round-off of the rank-one downdates does not build up across hot-started solves (it showed as 1e-8–1e-7
    /// differences from DAQP on long sequences with soft constraints). False when a pivot is no longer
    /// positive, which the caller answers with a cold start.
    private func refactorWorkingSet() -> Bool {
        for i in 0..<q {
            let id = activeId[i]
            let row = factorL + i * n
            // work2[j] = L_ij·D_j, so that each entry of the row is one dot product with an earlier row.
            for j in 0..<i {
                let l = (column(j)[id] - dot(work2, factorL + j * n, j)) / factorD[j]
                row[j] = l
                work2[j] = l * factorD[j]
            }
            let diagonal = column(i)[id]
            let d = diagonal - dot(work2, row, i)
            guard d.isFinite && d > 1e-12 * diagonal else { return false }
            factorD[i] = d
        }
        downdates = 0
        return true
    }

    /// Removes member k of W: the rows and columns after it move up and the trailing block of the factor
    /// takes the rank-one update l·d_k·lᵀ that the removed pivot carried (stable: d_k > 0).
    private func remove(at k: Int) {
        isActive[activeId[k]] = false
        let freed = slotOf[k]
        var alpha = factorD[k]
        let trailing = q - 1 - k
        let w = work2
        for t in 0..<trailing {
            let old = k + 1 + t
            activeId[k + t] = activeId[old]
            activeSign[k + t] = activeSign[old]
            multiplier[k + t] = multiplier[old]
            slotOf[k + t] = slotOf[old]
            let src = factorL + old * n
            let dst = factorL + (k + t) * n
            w[t] = src[k]
            for j in 0..<k { dst[j] = src[j] }
            for j in 0..<t { dst[k + j] = src[k + 1 + j] }
            factorD[k + t] = factorD[old]
        }
        slotOf[q - 1] = freed
        q -= 1
        downdates += 1
        for t in 0..<trailing {
            let j = k + t
            let p = w[t]
            if p == 0 { continue }
            let dOld = factorD[j]
            let dNew = dOld + alpha * p * p
            let beta = p * alpha / dNew
            alpha = dOld * alpha / dNew
            factorD[j] = dNew
            for s in (t + 1)..<Swift.max(trailing, t + 1) {
                let i = k + s
                w[s] -= p * factorL[i * n + j]
                factorL[i * n + j] += beta * w[s]
            }
        }
    }
}
