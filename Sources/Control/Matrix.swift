/// Dense row-major matrix for build-time linear algebra (discretization, condensing, Riccati).
/// Never used on the per-cycle path, which works on preallocated flat buffers instead.
package struct Matrix: Equatable {
    package var rows: Int
    package var cols: Int
    package var data: [Double]

    package init(rows: Int, cols: Int, repeating value: Double = 0) {
        self.rows = rows
        self.cols = cols
        self.data = [Double](repeating: value, count: rows * cols)
    }

    package static func identity(_ n: Int) -> Matrix {
        var m = Matrix(rows: n, cols: n)
        for i in 0..<n { m[i, i] = 1 }
        return m
    }

    package subscript(_ i: Int, _ j: Int) -> Double {
        get { data[i * cols + j] }
        set { data[i * cols + j] = newValue }
    }

    package var transposed: Matrix {
        var t = Matrix(rows: cols, cols: rows)
        for i in 0..<rows {
            for j in 0..<cols { t[j, i] = self[i, j] }
        }
        return t
    }

    package static func * (lhs: Matrix, rhs: Matrix) -> Matrix {
        precondition(lhs.cols == rhs.rows, "matrix product dimension mismatch")
        var out = Matrix(rows: lhs.rows, cols: rhs.cols)
        for i in 0..<lhs.rows {
            for k in 0..<lhs.cols {
                let a = lhs[i, k]
                if a == 0 { continue }
                for j in 0..<rhs.cols { out.data[i * rhs.cols + j] += a * rhs.data[k * rhs.cols + j] }
            }
        }
        return out
    }

    package static func + (lhs: Matrix, rhs: Matrix) -> Matrix {
        precondition(lhs.rows == rhs.rows && lhs.cols == rhs.cols, "matrix sum dimension mismatch")
        var out = lhs
        for i in 0..<out.data.count { out.data[i] += rhs.data[i] }
        return out
    }

    package static func - (lhs: Matrix, rhs: Matrix) -> Matrix {
        precondition(lhs.rows == rhs.rows && lhs.cols == rhs.cols, "matrix difference dimension mismatch")
        var out = lhs
        for i in 0..<out.data.count { out.data[i] -= rhs.data[i] }
        return out
    }

    package static func * (lhs: Double, rhs: Matrix) -> Matrix {
        var out = rhs
        for i in 0..<out.data.count { out.data[i] *= lhs }
        return out
    }

    /// Largest absolute row sum (induced infinity norm).
    package var normInf: Double {
        var best = 0.0
        for i in 0..<rows {
            var s = 0.0
            for j in 0..<cols { s += abs(self[i, j]) }
            best = Swift.max(best, s)
        }
        return best
    }

    package var isFinite: Bool { data.allSatisfy { $0.isFinite } }

    /// Solves self · X = rhs by Gaussian elimination with partial pivoting; nil if singular.
    package func solve(_ rhs: Matrix) -> Matrix? {
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

    /// Matrix exponential by scaling and squaring with a degree-6 Padé approximant.
    /// Why Padé rather than eigen-decomposition: it is exact enough (relative error ~1e-15 after
    /// scaling to norm ≤ 0.5) for the small, possibly defective matrices of plant models.
    package func exponential() -> Matrix {
        precondition(rows == cols, "exponential of a non-square matrix")
        let norm = normInf
        var squarings = 0
        if norm > 0.5 {
            squarings = Swift.max(0, Int((norm / 0.5).logTwoCeiling))
        }
        let scaled = (1 / Double(1 << squarings)) * self
        let c: [Double] = [1, 0.5, 5.0 / 44, 1.0 / 66, 1.0 / 792, 1.0 / 15840, 1.0 / 665280]
        let identity = Matrix.identity(rows)
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

    /// True when every eigenvalue lies strictly inside the unit circle. Decided by repeated
    /// squaring (A^(2^k) → 0 iff the spectral radius is below one), which needs no eigen-solver.
    package var isSchurStable: Bool {
        if rows == 0 { return true }
        var p = self
        for _ in 0..<40 {
            let norm = p.normInf
            if !norm.isFinite || norm > 1e150 { return false }
            if norm < 1e-9 { return true }
            p = p * p
        }
        return false
    }
}

extension Double {
    /// ⌈log₂(self)⌉ for self ≥ 1, without Foundation.
    fileprivate var logTwoCeiling: Double {
        var value = self
        var k = 0.0
        while value > 1 {
            value /= 2
            k += 1
        }
        return k
    }
}
