// The working set's LDLᵀ factor: its solve, its growth by one member, its downdate when one leaves, its
// refactoring from the Gram columns, and the refinement of the solution at the optimum. Split from
// DenseQPSolver.swift to keep the algorithm's outer loop readable on its own.

extension DenseQPSolver {
    /// work = μ* with G_W·μ* = β, β_k = target_k − a_kᵀx₀ (from the kept LDLᵀ factor, O(q²); the forward half only
    /// from the first row that changed since the last call).
    func solveWorkingSet() {
        for i in forwardValid..<Swift.max(q, forwardValid) {
            let id = activeId[i]
            forward[i] = target(of: id, sign: activeSign[i]) - unconstrained[id] - dot(factorL + i * n, forward, i)
        }
        forwardValid = q
        for i in 0..<q { work[i] = forward[i] / factorD[i] }
        backSolve()
    }

    /// Lᵀ·μ = work in place, by rows of L (μ_k final, then its multiple of row k leaves the entries before it):
    /// contiguous and vectorized, where the same solve by columns of Lᵀ strides through L.
    func backSolve() {
        var k = q - 1
        while k > 0 {
            accumulate(work, factorL + k * n, -work[k], k)
            k -= 1
        }
    }

    /// One step of iterative refinement of x at the optimum: W's residuals taken from x and the rows of A directly
    /// (O(q·n)), not from the point's A·x part, which sums Gram columns weighted by multipliers and carries their
    /// round-off (1e-11 on soft-constrained problems, which moved a vertex of near-dependent constraints by 4e-8);
    /// then μ += G_W⁻¹·r and x += Σ δ_k·H⁻¹a_k. The A·x part of the point is not updated: it is formed afresh
    /// before it is read again.
    func polishSolution() {
        guard q > 0 else { return }
        for i in 0..<q {
            let id = activeId[i]
            let ax = id < n ? point[id] : dot(rows + (id - n) * n, point, n)
            work[i] = target(of: id, sign: activeSign[i]) - ax
        }
        for i in 0..<q { work[i] -= dot(factorL + i * n, work, i) }
        for i in 0..<q { work[i] /= factorD[i] }
        backSolve()
        var k = 0
        while k + 4 <= q {
            accumulate4(
                point, column(k), work[k], column(k + 1), work[k + 1], column(k + 2), work[k + 2], column(k + 3),
                work[k + 3], n)
            k += 4
        }
        while k < q {
            accumulate(point, column(k), work[k], n)
            k += 1
        }
        for i in 0..<q { multiplier[i] += work[i] }
    }

    /// Appends `id` to W: its Gram column into a free slot, then one new row of the LDLᵀ factor.
    /// `.dependent` leaves work2 = G_W⁻¹·g for the null-direction step and W unchanged.
    func append(_ id: Int, sign: Double, multiplier value: Double) -> AddOutcome {
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
    func refactorWorkingSet() -> Bool {
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
        forwardValid = 0
        return true
    }

    /// Removes member k of W: the rows and columns after it move up and the trailing block of the factor
    /// takes the rank-one update l·d_k·lᵀ that the removed pivot carried (stable: d_k > 0).
    func remove(at k: Int) {
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
        forwardValid = Swift.min(forwardValid, k)
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
