// Dense linear algebra for identification: small matrices (tens of rows) built from long data by
// accumulating sums, so every routine here is O(n³) in a small n and never touches the raw samples.
// Control's Matrix is internal to that module, and identification needs more (symmetric eigenvalues,
// general eigenvalues), so this module keeps its own.

/// Dense row-major matrix.
struct DenseMatrix: Equatable {
    var rows: Int
    var cols: Int
    var data: [Double]

    init(rows: Int, cols: Int, repeating value: Double = 0) {
        self.rows = rows
        self.cols = cols
        self.data = [Double](repeating: value, count: rows * cols)
    }

    init(rows: Int, cols: Int, data: [Double]) {
        precondition(data.count == rows * cols, "matrix data size mismatch")
        self.rows = rows
        self.cols = cols
        self.data = data
    }

    static func identity(_ n: Int) -> DenseMatrix {
        var m = DenseMatrix(rows: n, cols: n)
        for i in 0..<n { m[i, i] = 1 }
        return m
    }

    subscript(_ i: Int, _ j: Int) -> Double {
        get { data[i * cols + j] }
        set { data[i * cols + j] = newValue }
    }

    var transposed: DenseMatrix {
        var t = DenseMatrix(rows: cols, cols: rows)
        for i in 0..<rows {
            for j in 0..<cols { t[j, i] = self[i, j] }
        }
        return t
    }

    /// Rows `range` and columns `columns` as a new matrix.
    func block(rows range: Range<Int>, cols columns: Range<Int>) -> DenseMatrix {
        var out = DenseMatrix(rows: range.count, cols: columns.count)
        for i in range {
            for j in columns { out[i - range.lowerBound, j - columns.lowerBound] = self[i, j] }
        }
        return out
    }

    static func * (lhs: DenseMatrix, rhs: DenseMatrix) -> DenseMatrix {
        precondition(lhs.cols == rhs.rows, "matrix product dimension mismatch")
        var out = DenseMatrix(rows: lhs.rows, cols: rhs.cols)
        for i in 0..<lhs.rows {
            for k in 0..<lhs.cols {
                let a = lhs.data[i * lhs.cols + k]
                if a == 0 { continue }
                for j in 0..<rhs.cols { out.data[i * rhs.cols + j] += a * rhs.data[k * rhs.cols + j] }
            }
        }
        return out
    }

    static func + (lhs: DenseMatrix, rhs: DenseMatrix) -> DenseMatrix {
        var out = lhs
        for i in 0..<out.data.count { out.data[i] += rhs.data[i] }
        return out
    }

    static func - (lhs: DenseMatrix, rhs: DenseMatrix) -> DenseMatrix {
        var out = lhs
        for i in 0..<out.data.count { out.data[i] -= rhs.data[i] }
        return out
    }

    static func * (lhs: Double, rhs: DenseMatrix) -> DenseMatrix {
        var out = rhs
        for i in 0..<out.data.count { out.data[i] *= lhs }
        return out
    }

    var normInf: Double {
        var best = 0.0
        for i in 0..<rows {
            var s = 0.0
            for j in 0..<cols { s += abs(self[i, j]) }
            best = Swift.max(best, s)
        }
        return best
    }

    /// Gaussian elimination with partial pivoting; nil when singular to working precision.
    func solve(_ rhs: DenseMatrix) -> DenseMatrix? {
        precondition(rows == cols && rhs.rows == rows, "solve dimension mismatch")
        let n = rows
        var a = self
        var b = rhs
        let scale = Swift.max(normInf, 1e-300)
        for k in 0..<n {
            var pivot = k
            for i in (k + 1)..<Swift.max(n, k + 1) where abs(a[i, k]) > abs(a[pivot, k]) { pivot = i }
            if abs(a[pivot, k]) <= 1e-14 * scale { return nil }
            if pivot != k {
                for j in 0..<n { a.data.swapAt(k * n + j, pivot * n + j) }
                for j in 0..<b.cols { b.data.swapAt(k * b.cols + j, pivot * b.cols + j) }
            }
            let inv = 1 / a[k, k]
            for i in (k + 1)..<Swift.max(n, k + 1) {
                let factor = a[i, k] * inv
                if factor == 0 { continue }
                for j in k..<n { a[i, j] -= factor * a[k, j] }
                for j in 0..<b.cols { b[i, j] -= factor * b[k, j] }
            }
        }
        for k in stride(from: n - 1, through: 0, by: -1) {
            for j in 0..<b.cols {
                var s = b[k, j]
                for i in (k + 1)..<Swift.max(n, k + 1) { s -= a[k, i] * b[i, j] }
                b[k, j] = s / a[k, k]
            }
        }
        return b
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

    /// Matrix exponential, scaling and squaring with a degree-6 Padé approximant (as Control does).
    func exponential() -> DenseMatrix {
        precondition(rows == cols, "exponential of a non-square matrix")
        let norm = normInf
        var squarings = 0
        var scaledNorm = norm
        while scaledNorm > 0.5 {
            scaledNorm /= 2
            squarings += 1
        }
        let scaled = (1 / Double(1 << squarings)) * self
        let c: [Double] = [1, 0.5, 5.0 / 44, 1.0 / 66, 1.0 / 792, 1.0 / 15840, 1.0 / 665_280]
        let identity = DenseMatrix.identity(rows)
        var power = identity
        var numerator = identity
        var denominator = identity
        for k in 1...6 {
            power = power * scaled
            numerator = numerator + c[k] * power
            denominator = denominator + ((k % 2 == 0) ? c[k] : -c[k]) * power
        }
        var result = denominator.solve(numerator) ?? identity
        for _ in 0..<squarings { result = result * result }
        return result
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
