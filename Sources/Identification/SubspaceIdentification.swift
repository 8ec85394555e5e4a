import Control

/// An eigenvalue of a discrete model's A (z-plane).
public struct Pole: Sendable, Equatable {
    public var real: Double
    public var imaginary: Double

    public init(real: Double, imaginary: Double) {
        self.real = real
        self.imaginary = imaginary
    }

    public var magnitude: Double { (real * real + imaginary * imaginary).squareRoot() }

    /// −T/ln|z|: the time constant of a real pole in (0, 1), in the data's time unit; nil otherwise.
    public func timeConstant(period: Double) -> Double? {
        guard imaginary == 0, real > 0, real < 1 else { return nil }
        return -period / naturalLog(real)
    }
}

/// A discrete state-space model found by subspace identification, in deviation variables:
/// x[k+1] = A·x[k] + B·u[k], y[k] = C·x[k] + D·u[k] (D = 0 unless feedthrough was asked for).
public struct IdentifiedStateSpace: Sendable, Equatable {
    public var order: Int
    public var inputCount: Int
    public var outputCount: Int
    public var period: Double
    /// Row-major.
    public var a: [Double]
    public var b: [Double]
    public var c: [Double]
    public var d: [Double]
    /// Singular values of the projected future outputs (descending): what order selection looked at.
    public var singularValues: [Double]

    /// Eigenvalues of A, largest modulus first.
    public var poles: [Pole] {
        DenseMatrix(rows: order, cols: order, data: a).eigenvalues().map { Pole(real: $0.re, imaginary: $0.im) }
    }

    /// Steady-state gain C(I − A)⁻¹B + D, outputs × inputs row-major; nil when I − A is singular.
    public var steadyStateGain: [Double]? {
        let n = order
        let iMinusA = DenseMatrix.identity(n) - DenseMatrix(rows: n, cols: n, data: a)
        guard let x = iMinusA.solve(DenseMatrix(rows: n, cols: inputCount, data: b)) else { return nil }
        let g = DenseMatrix(rows: outputCount, cols: n, data: c) * x
        return (0..<g.data.count).map { g.data[$0] + d[$0] }
    }

    /// The Control module's model, for MPC. Throws when D ≠ 0: Control's models have no feedthrough.
    public func stateSpaceModel(inputNominal: [Double]? = nil, outputNominal: [Double]? = nil) throws(ControlError)
        -> StateSpaceModel
    {
        guard d.allSatisfy({ $0 == 0 }) else {
            throw ControlError(.invalidParameter, "identified model has feedthrough (D ≠ 0); Control models have none")
        }
        func rows(_ m: [Double], _ r: Int, _ c: Int) -> [[Double]] {
            (0..<r).map { Array(m[($0 * c)..<(($0 + 1) * c)]) }
        }
        return try StateSpaceModel(
            a: rows(a, order, order), b: rows(b, order, inputCount), c: rows(c, outputCount, order), period: period,
            inputNominal: inputNominal, outputNominal: outputNominal)
    }

    /// Simulated outputs (outputs[j][k]) for inputs[i][k] from `initialState` (zero when nil).
    public func simulate(inputs: [[Double]], initialState: [Double]? = nil) -> [[Double]] {
        let n = order
        let count = inputs.first?.count ?? 0
        var x = initialState ?? [Double](repeating: 0, count: n)
        var y = [[Double]](repeating: [Double](repeating: 0, count: count), count: outputCount)
        var next = [Double](repeating: 0, count: n)
        for k in 0..<count {
            for q in 0..<outputCount {
                var s = 0.0
                for l in 0..<n { s += c[q * n + l] * x[l] }
                for i in 0..<inputCount { s += d[q * inputCount + i] * inputs[i][k] }
                y[q][k] = s
            }
            for r in 0..<n {
                var s = 0.0
                for l in 0..<n { s += a[r * n + l] * x[l] }
                for i in 0..<inputCount { s += b[r * inputCount + i] * inputs[i][k] }
                next[r] = s
            }
            swap(&x, &next)
        }
        return y
    }
}

/// Data for the subspace method: whole segments, the first `estimation` samples of each for fitting.
struct MIMOData {
    struct Segment {
        var inputs: [[Double]]
        var outputs: [[Double]]
        var estimation: Int
        var count: Int { outputs.first?.count ?? 0 }
    }

    var period: Double
    var segments: [Segment]
    var inputCount: Int
    var outputCount: Int
}

/// PO-MOESP subspace identification (Verhaegen 1994): past inputs and outputs as instruments, the
/// observability subspace from an LQ factorisation, A and C from its shift structure, then B, D and the
/// initial states by linear least squares on the simulation error.
///
/// Why PO-MOESP: consistent with coloured output noise without modelling it, few choices (block rows
/// and order), and the LQ factor can be had from the Gram matrix of the block-Hankel data, so one pass
/// over a day of data suffices. Why B and D by simulation error rather than from an estimated state
/// sequence (as N4SID-style regressions do): the model is for prediction over an MPC horizon, and this
/// minimises exactly the free-run error that fit % measures.
struct SubspaceIdentifier {
    var data: MIMOData
    var blockRows: Int
    var feedthrough: Bool

    private var m: Int { data.inputCount }
    private var p: Int { data.outputCount }

    /// Left singular vectors and singular values of L32 (the part of the future outputs explained by
    /// the past, with the future inputs projected out).
    func observabilitySubspace() -> (vectors: DenseMatrix, singularValues: [Double])? {
        let i = blockRows
        let rowsU = i * m
        let rowsY = i * p
        let size = 2 * rowsU + 2 * rowsY
        // Every row of the block-Hankel matrix is one signal at one lag (inputs and outputs, lags 0..<2i),
        // so each Gram entry is a lagged product sum S(σ,ℓ; τ,ℓ') = Σ_j w_σ[j+ℓ]·w_τ[j+ℓ']. Only the entries
        // with ℓ = 0 or ℓ' = 0 are summed over the data; the rest follow from
        // S(ℓ,ℓ') = S(ℓ−1,ℓ'−1) − w_σ[ℓ−1]·w_τ[ℓ'−1] + w_σ[J+ℓ−1]·w_τ[J+ℓ'−1], which makes the pass over
        // a day of data about 2i times cheaper than forming H·Hᵀ column by column.
        let signals = m + p
        let lags = 2 * i
        func row(_ sigma: Int, _ lag: Int) -> Int {
            if sigma < m {
                return lag < i ? rowsU + lag * m + sigma : (lag - i) * m + sigma
            }
            let q = sigma - m
            return lag < i ? 2 * rowsU + lag * p + q : 2 * rowsU + rowsY + (lag - i) * p + q
        }
        var gram = DenseMatrix(rows: size, cols: size)
        var columns = 0
        var lagged = [Double](repeating: 0, count: lags * lags)
        for segment in data.segments {
            let usable = segment.estimation - 2 * i + 1
            guard usable > 0 else { continue }
            columns += usable
            let w = (segment.inputs + segment.outputs).map { Array($0[0..<segment.estimation]) }
            func dot(_ a: Int, _ offsetA: Int, _ b: Int, _ offsetB: Int) -> Double {
                w[a].withUnsafeBufferPointer { x in
                    w[b].withUnsafeBufferPointer { y in
                        var s = 0.0
                        for j in 0..<usable { s += x[j + offsetA] * y[j + offsetB] }
                        return s
                    }
                }
            }
            for sigma in 0..<signals {
                for tau in 0..<signals {
                    for l in 0..<lags {
                        lagged[l] = dot(sigma, 0, tau, l)  // (0, l)
                        lagged[l * lags] = dot(sigma, l, tau, 0)  // (l, 0)
                    }
                    for l in 1..<lags {
                        for k in 1..<lags {
                            lagged[l * lags + k] =
                                lagged[(l - 1) * lags + k - 1] - w[sigma][l - 1] * w[tau][k - 1]
                                + w[sigma][usable + l - 1] * w[tau][usable + k - 1]
                        }
                    }
                    for l in 0..<lags {
                        let r = row(sigma, l)
                        for k in 0..<lags { gram[r, row(tau, k)] += lagged[l * lags + k] }
                    }
                }
            }
            // Centre every Hankel row on this segment's columns: G −= r·rᵀ/J with r the row sums. Why: a
            // segment's mean-removed output differs from the response to its mean-removed input by a
            // constant, different in each segment; left in, past and future outputs share it and it shows
            // as a spurious mode near z = 1. Centring is an LQ step with a per-segment constant "input"
            // taken out first.
            var sums = [Double](repeating: 0, count: size)
            for sigma in 0..<signals {
                var running = 0.0
                for j in 0..<usable { running += w[sigma][j] }
                for l in 0..<lags {
                    if l > 0 { running += w[sigma][usable + l - 1] - w[sigma][l - 1] }
                    sums[row(sigma, l)] = running
                }
            }
            let inverse = 1 / Double(usable)
            for r in 0..<size {
                let scaled = sums[r] * inverse
                for c in 0..<size { gram[r, c] -= scaled * sums[c] }
            }
        }
        guard columns > size else { return nil }
        // H·Hᵀ = L·Lᵀ: the Cholesky factor is the L of the LQ factorisation of H, up to column signs.
        let l = gram.choleskyLower()
        let l32 = l.block(rows: (2 * rowsU + rowsY)..<size, cols: rowsU..<(2 * rowsU + rowsY))
        let (values, vectors) = (l32 * l32.transposed).symmetricEigen()
        return (vectors, values.map { Swift.max($0, 0).squareRoot() })
    }

    /// A and C for `order` states from the observability subspace.
    func systemMatrices(order n: Int, vectors: DenseMatrix, singularValues: [Double]) -> (
        a: DenseMatrix, c: DenseMatrix
    ) {
        let rowsY = blockRows * p
        var gamma = DenseMatrix(rows: rowsY, cols: n)
        for r in 0..<rowsY {
            for k in 0..<n { gamma[r, k] = vectors[r, k] * singularValues[k].squareRoot() }
        }
        let c = gamma.block(rows: 0..<p, cols: 0..<n)
        let upper = gamma.block(rows: 0..<(rowsY - p), cols: 0..<n)
        let lower = gamma.block(rows: p..<rowsY, cols: 0..<n)
        let normal = upper.transposed * upper
        let rhs = upper.transposed * lower
        var a = DenseMatrix(rows: n, cols: n)
        let inverse = normal.symmetricPseudoInverse()
        a = inverse * rhs
        return (a, c)
    }

    /// B, D, and each estimation segment's initial state and output levels, by least squares on the
    /// simulation error. Why levels: a segment's mean-removed output differs from the model's response to
    /// the mean-removed input by a constant (the means of a finite record are not in steady-state ratio),
    /// which a stable model's initial state cannot represent.
    func inputMatrices(a: DenseMatrix, c: DenseMatrix) -> (
        b: [Double], d: [Double], initial: [[Double]], levels: [[Double]]
    ) {
        let n = a.rows
        let bCount = n * m
        let dCount = feedthrough ? p * m : 0
        let perSegment = n + p
        let fitted = data.segments.indices.filter { data.segments[$0].estimation > 0 }
        // The normal equations are block-arrow shaped: B and D couple to everything, each segment's initial
        // state and levels only to B, D and themselves. Each segment's block is eliminated as soon as it is
        // complete (Schur complement), so history cut into many segments costs a small solve per segment
        // instead of one cubic in their number.
        let shared = bCount + dCount
        let unknowns = shared + perSegment
        let slot = shared
        var reduced = DenseMatrix(rows: shared, cols: shared)
        var reducedRhs = [Double](repeating: 0, count: shared)
        var eliminated = [(segment: Int, coupling: DenseMatrix, inverse: DenseMatrix, rhs: [Double])]()
        var indices = [Int](repeating: 0, count: bCount + m + n + 1)
        var values = [Double](repeating: 0, count: bCount + m + n + 1)
        for s in fitted {
            let segment = data.segments[s]
            var normal = DenseMatrix(rows: unknowns, cols: unknowns)
            var rhs = [Double](repeating: 0, count: unknowns)
            // Z_i[k]: state response to u_i through B = I (column r: through e_r); P[k] = C·A^k. Flat
            // buffers, updated in place: this loop runs once per sample of a day of data.
            let nn = n * n
            var z = [Double](repeating: 0, count: m * nn)
            var next = [Double](repeating: 0, count: nn)
            var cz = [Double](repeating: 0, count: m * p * n)
            var power = c.data
            var nextPower = power
            for k in 0..<segment.estimation {
                for i in 0..<m {
                    for q in 0..<p {
                        for col in 0..<n {
                            var sum = 0.0
                            for l in 0..<n { sum += c.data[q * n + l] * z[i * nn + l * n + col] }
                            cz[(i * p + q) * n + col] = sum
                        }
                    }
                }
                for q in 0..<p {
                    var count = 0
                    for r in 0..<n {
                        for i in 0..<m {
                            indices[count] = r * m + i
                            values[count] = cz[(i * p + q) * n + r]
                            count += 1
                        }
                    }
                    if feedthrough {
                        for i in 0..<m {
                            indices[count] = bCount + q * m + i
                            values[count] = segment.inputs[i][k]
                            count += 1
                        }
                    }
                    for r in 0..<n {
                        indices[count] = slot + r
                        values[count] = power[q * n + r]
                        count += 1
                    }
                    indices[count] = slot + n + q
                    values[count] = 1
                    count += 1
                    let y = segment.outputs[q][k]
                    for u in 0..<count {
                        let iu = indices[u]
                        let vu = values[u]
                        rhs[iu] += vu * y
                        for v in 0..<count { normal.data[iu * unknowns + indices[v]] += vu * values[v] }
                    }
                }
                for i in 0..<m {
                    let input = segment.inputs[i][k]
                    for r in 0..<n {
                        for col in 0..<n {
                            var sum = r == col ? input : 0
                            for l in 0..<n { sum += a.data[r * n + l] * z[i * nn + l * n + col] }
                            next[r * n + col] = sum
                        }
                    }
                    for e in 0..<nn { z[i * nn + e] = next[e] }
                }
                for q in 0..<p {
                    for col in 0..<n {
                        var sum = 0.0
                        for l in 0..<n { sum += power[q * n + l] * a.data[l * n + col] }
                        nextPower[q * n + col] = sum
                    }
                }
                swap(&power, &nextPower)
            }
            // [[Nbb, Nbs], [Nsb, Nss]]: reduced += Nbb − Nbs·Nss⁺·Nsb, reducedRhs += rb − Nbs·Nss⁺·rs.
            let coupling = normal.block(rows: 0..<shared, cols: shared..<unknowns)
            let inverse = normal.block(rows: shared..<unknowns, cols: shared..<unknowns).symmetricPseudoInverse()
            let segmentRhs = Array(rhs[shared...])
            let through = coupling * inverse
            let transfer = through * coupling.transposed
            for r in 0..<shared {
                var correction = 0.0
                for k in 0..<perSegment { correction += through[r, k] * segmentRhs[k] }
                reducedRhs[r] += rhs[r] - correction
                for c in 0..<shared { reduced[r, c] += normal[r, c] - transfer[r, c] }
            }
            eliminated.append((s, coupling, inverse, segmentRhs))
        }
        let theta = reduced.solveSymmetric(reducedRhs)
        let b = Array(theta[0..<bCount])
        let d = feedthrough ? Array(theta[bCount..<shared]) : [Double](repeating: 0, count: p * m)
        var initial = [[Double]](repeating: [Double](repeating: 0, count: n), count: data.segments.count)
        var levels = [[Double]](repeating: [Double](repeating: 0, count: p), count: data.segments.count)
        for (s, coupling, inverse, segmentRhs) in eliminated {
            // θs = Nss⁺·(rs − Nsb·θb)
            var residual = segmentRhs
            for k in 0..<perSegment {
                for r in 0..<shared { residual[k] -= coupling[r, k] * theta[r] }
            }
            var solution = [Double](repeating: 0, count: perSegment)
            for k in 0..<perSegment {
                for l in 0..<perSegment { solution[k] += inverse[k, l] * residual[l] }
            }
            initial[s] = Array(solution[0..<n])
            levels[s] = Array(solution[n...])
        }
        return (b, d, initial, levels)
    }

    /// Initial state and output levels of a segment that has no estimation samples, fitted on its own
    /// samples with B and D fixed (as `compare` estimates initial conditions on validation data).
    func initialState(_ model: IdentifiedStateSpace, segment: MIMOData.Segment) -> (state: [Double], levels: [Double]) {
        let n = model.order
        let free = model.simulate(inputs: segment.inputs)
        let a = DenseMatrix(rows: n, cols: n, data: model.a)
        var power = DenseMatrix(rows: p, cols: n, data: model.c)
        let unknowns = n + p
        var normal = DenseMatrix(rows: unknowns, cols: unknowns)
        var rhs = [Double](repeating: 0, count: unknowns)
        var row = [Double](repeating: 0, count: unknowns)
        for k in 0..<segment.count {
            for q in 0..<p {
                let e = segment.outputs[q][k] - free[q][k]
                for r in 0..<n { row[r] = power[q, r] }
                for j in 0..<p { row[n + j] = j == q ? 1 : 0 }
                for r in 0..<unknowns {
                    rhs[r] += row[r] * e
                    for s in 0..<unknowns { normal[r, s] += row[r] * row[s] }
                }
            }
            power = power * a
        }
        let theta = normal.solveSymmetric(rhs)
        return (Array(theta[0..<n]), Array(theta[n...]))
    }
}
