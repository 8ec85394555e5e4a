import Control

// Dense linear algebra for identification: small matrices (tens of rows) built from long data by
// accumulating sums, so every routine here is O(n³) in a small n and never touches the raw samples.
// The matrix itself is Control's (products, solve, exponential); identification adds what only it needs:
// blocks, Cholesky, symmetric eigen-decomposition and general eigenvalues.

/// Dense row-major matrix: Control's `Matrix`, under the name this module's algorithms use.
typealias DenseMatrix = Matrix

extension Matrix {
    init(rows: Int, cols: Int, data: [Double]) {
        precondition(data.count == rows * cols, "matrix data size mismatch")
        self.init(rows: rows, cols: cols)
        self.data = data
    }

    /// Rows `range` and columns `columns` as a new matrix.
    func block(rows range: Range<Int>, cols columns: Range<Int>) -> DenseMatrix {
        var out = DenseMatrix(rows: range.count, cols: columns.count)
        for i in range {
            for j in columns { out[i - range.lowerBound, j - columns.lowerBound] = self[i, j] }
        }
        return out
    }

    /// Lower Cholesky factor of a symmetric positive semi-definite matrix. A pivot that is not positive
    /// (rank deficiency, e.g. an input that never moved) gets a zero column instead of failing, which is
    /// what a rank-revealing LQ factorisation would give for the subspace step.
    func choleskyLower() -> DenseMatrix {
        precondition(rows == cols, "Cholesky of a non-square matrix")
        let n = rows
        var l = DenseMatrix(rows: n, cols: n)
        var largest = 0.0
        for i in 0..<n { largest = Swift.max(largest, self[i, i]) }
        let floor = largest * 1e-13
        for j in 0..<n {
            var d = self[j, j]
            for k in 0..<j { d -= l[j, k] * l[j, k] }
            if d <= floor { continue }
            let root = d.squareRoot()
            l[j, j] = root
            for i in (j + 1)..<Swift.max(n, j + 1) {
                var s = self[i, j]
                for k in 0..<j { s -= l[i, k] * l[j, k] }
                l[i, j] = s / root
            }
        }
        return l
    }

    /// Solves the symmetric positive (semi-)definite system self·x = b by eigen-decomposition, treating
    /// eigenvalues below `relativeTolerance`·largest as zero (the minimum-norm least-squares solution).
    /// Why: normal equations of poorly excited data are near-singular; a pseudo-inverse degrades gracefully.
    func solveSymmetric(_ b: [Double], relativeTolerance: Double = 1e-12) -> [Double] {
        let (values, vectors) = symmetricEigen()
        let largest = values.map { abs($0) }.max() ?? 0
        var x = [Double](repeating: 0, count: rows)
        for k in 0..<values.count where values[k] > largest * relativeTolerance && values[k] > 0 {
            var projection = 0.0
            for i in 0..<rows { projection += vectors[i, k] * b[i] }
            let scale = projection / values[k]
            for i in 0..<rows { x[i] += scale * vectors[i, k] }
        }
        return x
    }

    /// Pseudo-inverse of a symmetric positive semi-definite matrix (same tolerance rule as solveSymmetric).
    func symmetricPseudoInverse(relativeTolerance: Double = 1e-12) -> DenseMatrix {
        let (values, vectors) = symmetricEigen()
        let largest = values.map { abs($0) }.max() ?? 0
        var out = DenseMatrix(rows: rows, cols: rows)
        for k in 0..<values.count where values[k] > largest * relativeTolerance && values[k] > 0 {
            let inv = 1 / values[k]
            for i in 0..<rows {
                for j in 0..<rows { out[i, j] += vectors[i, k] * vectors[j, k] * inv }
            }
        }
        return out
    }

    /// Eigenvalues (descending) and eigenvectors (columns) of a symmetric matrix by cyclic Jacobi
    /// rotations. Why Jacobi: for the ≤ 100×100 matrices here it is short, robust and accurate to
    /// working precision for small eigenvalues too, which order selection looks at.
    func symmetricEigen() -> (values: [Double], vectors: DenseMatrix) {
        precondition(rows == cols, "eigenvalues of a non-square matrix")
        let n = rows
        var a = self
        var v = DenseMatrix.identity(n)
        for _ in 0..<100 {
            var off = 0.0
            var total = 0.0
            for i in 0..<n {
                for j in 0..<n {
                    total += a[i, j] * a[i, j]
                    if i != j { off += a[i, j] * a[i, j] }
                }
            }
            if off <= 1e-30 * total || off == 0 { break }
            for p in 0..<n {
                for q in (p + 1)..<Swift.max(n, p + 1) {
                    let apq = a[p, q]
                    if abs(apq) < 1e-300 { continue }
                    let theta = (a[q, q] - a[p, p]) / (2 * apq)
                    let t = (theta >= 0 ? 1.0 : -1.0) / (abs(theta) + (theta * theta + 1).squareRoot())
                    let c = 1 / (t * t + 1).squareRoot()
                    let s = t * c
                    for k in 0..<n {
                        let akp = a[k, p]
                        let akq = a[k, q]
                        a[k, p] = c * akp - s * akq
                        a[k, q] = s * akp + c * akq
                    }
                    for k in 0..<n {
                        let apk = a[p, k]
                        let aqk = a[q, k]
                        a[p, k] = c * apk - s * aqk
                        a[q, k] = s * apk + c * aqk
                    }
                    for k in 0..<n {
                        let vkp = v[k, p]
                        let vkq = v[k, q]
                        v[k, p] = c * vkp - s * vkq
                        v[k, q] = s * vkp + c * vkq
                    }
                }
            }
        }
        let order = (0..<n).sorted { a[$0, $0] > a[$1, $1] }
        var vectors = DenseMatrix(rows: n, cols: n)
        for (column, k) in order.enumerated() {
            for i in 0..<n { vectors[i, column] = v[i, k] }
        }
        return (order.map { a[$0, $0] }, vectors)
    }

    /// Eigenvalues of a general real matrix, as (real, imaginary) pairs sorted by descending modulus.
    /// Characteristic polynomial by Faddeev–LeVerrier, roots by Durand–Kerner. Adequate for the small
    /// (n ≤ ~12) well-scaled models identification returns; not a general-purpose eigen-solver.
    func eigenvalues() -> [(re: Double, im: Double)] {
        precondition(rows == cols, "eigenvalues of a non-square matrix")
        let n = rows
        if n == 0 { return [] }
        // p(λ) = λⁿ + c1 λⁿ⁻¹ + … + cn, with M_k = A·M_{k−1} + c_{k−1} I and c_k = −tr(A·M_k)/k.
        var coefficients = [Double](repeating: 0, count: n + 1)
        coefficients[0] = 1
        var m = DenseMatrix(rows: n, cols: n)
        for k in 1...n {
            var next = self * m
            for i in 0..<n { next[i, i] += coefficients[k - 1] }
            m = next
            let am = self * m
            var trace = 0.0
            for i in 0..<n { trace += am[i, i] }
            coefficients[k] = -trace / Double(k)
        }
        return polynomialRoots(coefficients).sorted {
            $0.re * $0.re + $0.im * $0.im > $1.re * $1.re + $1.im * $1.im
        }
    }
}

/// Roots of the monic polynomial with `coefficients` (highest power first) by Durand–Kerner iteration.
func polynomialRoots(_ coefficients: [Double]) -> [(re: Double, im: Double)] {
    let n = coefficients.count - 1
    if n < 1 { return [] }
    var bound = 0.0
    for c in coefficients.dropFirst() { bound = Swift.max(bound, abs(c)) }
    let radius = 1 + bound
    // Starting points on a spiral, not a circle, so no two start symmetric about the real axis.
    var roots = [(re: Double, im: Double)]()
    var start = (re: 0.4, im: 0.9)
    var power = (re: 1.0, im: 0.0)
    for _ in 0..<n {
        power = (power.re * start.re - power.im * start.im, power.re * start.im + power.im * start.re)
        roots.append((power.re * radius * 0.5, power.im * radius * 0.5))
        start = (start.re * 1.0001, start.im)
    }
    func evaluate(_ z: (re: Double, im: Double)) -> (re: Double, im: Double) {
        var value = (re: 1.0, im: 0.0)
        for c in coefficients.dropFirst() {
            value = (value.re * z.re - value.im * z.im + c, value.re * z.im + value.im * z.re)
        }
        return value
    }
    for _ in 0..<2000 {
        var change = 0.0
        for i in 0..<n {
            var denominator = (re: 1.0, im: 0.0)
            for j in 0..<n where j != i {
                let d = (re: roots[i].re - roots[j].re, im: roots[i].im - roots[j].im)
                denominator = (
                    denominator.re * d.re - denominator.im * d.im, denominator.re * d.im + denominator.im * d.re
                )
            }
            let p = evaluate(roots[i])
            let norm = denominator.re * denominator.re + denominator.im * denominator.im
            if norm == 0 { continue }
            let step = (
                re: (p.re * denominator.re + p.im * denominator.im) / norm,
                im: (p.im * denominator.re - p.re * denominator.im) / norm
            )
            roots[i] = (roots[i].re - step.re, roots[i].im - step.im)
            change = Swift.max(change, abs(step.re) + abs(step.im))
        }
        if change < 1e-15 { break }
    }
    // Conjugate pairs come out with tiny imaginary noise on real roots; clean it up.
    return roots.map { abs($0.im) < 1e-10 * Swift.max(1, abs($0.re)) ? ($0.re, 0) : $0 }
}
