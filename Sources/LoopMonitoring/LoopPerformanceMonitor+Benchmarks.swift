extension LoopPerformanceMonitor {
    /// Harris (1989), as Desborough and Harris compute it from routine data: an AR model of the error fitted by
    /// least squares gives the error's impulse response ψ; the first d terms are what no controller can remove
    /// with a dead time of d samples, so σ²_mv = σ²_ε·Σ_{k<d} ψ_k², and the index is σ²_mv/σ²_e.
    mutating func harrisIndex() -> Double? {
        let p = settings.arOrder
        let d = settings.delaySamples
        guard validCount > 1 else { return nil }
        let mean = sumError / Double(validCount)
        // Locals, not methods of self: a copy of self alive while `gram` is written would make every write copy it.
        let ring = errorRing
        let n = settings.windowSamples
        let first = next - count + 2 * n
        func e(_ j: Int) -> Double { ring[(first + j) % n] }
        func rowIsComplete(_ j: Int) -> Bool {
            for i in 0...p where !e(j - i).isFinite { return false }
            return true
        }
        for i in 0..<(p * p) { gram[i] = 0 }
        for i in 0..<p { rhs[i] = 0 }
        var rows = 0
        var outputSquares = 0.0
        for j in p..<max(p, count) {
            guard rowIsComplete(j) else { continue }
            let y = e(j) - mean
            for a in 0..<p {
                let xa = e(j - 1 - a) - mean
                rhs[a] += xa * y
                for b in 0...a { gram[a * p + b] += xa * (e(j - 1 - b) - mean) }
            }
            outputSquares += y * y
            rows += 1
        }
        // Fewer than a few rows per coefficient is not a fit.
        guard rows >= 4 * p, outputSquares > 0 else { return nil }
        guard choleskySolve(order: p) else { return nil }
        var residualSquares = 0.0
        for j in p..<count where rowIsComplete(j) {
            var r = e(j) - mean
            for a in 0..<p { r -= rhs[a] * (e(j - 1 - a) - mean) }
            residualSquares += r * r
        }
        let innovation = residualSquares / Double(rows)
        let variance = outputSquares / Double(rows)
        // ψ_0 = 1, ψ_k = Σ a_i ψ_{k−i}: the impulse response of 1/A(q⁻¹).
        var sum = 0.0
        for k in 0..<d {
            var psi = k == 0 ? 1.0 : 0.0
            if k > 0 { for i in 1...min(k, p) { psi += rhs[i - 1] * impulse[k - i] } }
            impulse[k] = psi
            sum += psi * psi
        }
        return min(1, innovation * sum / variance)
    }

    /// Solves gram·x = rhs in place (lower triangle of gram filled), leaving x in rhs; false if not positive
    /// definite (an error that never moves).
    private mutating func choleskySolve(order p: Int) -> Bool {
        var trace = 0.0
        for i in 0..<p { trace += gram[i * p + i] }
        // A whisper of ridge keeps a nearly collinear fit (a slow, smooth error) solvable.
        let ridge = 1e-12 * trace / Double(p)
        for i in 0..<p {
            for j in 0...i {
                var s = gram[i * p + j] + (i == j ? ridge : 0)
                for k in 0..<j { s -= gram[i * p + k] * gram[j * p + k] }
                if i == j {
                    guard s > 0 else { return false }
                    gram[i * p + i] = s.squareRoot()
                } else {
                    gram[i * p + j] = s / gram[j * p + j]
                }
            }
        }
        for i in 0..<p {
            var s = rhs[i]
            for k in 0..<i { s -= gram[i * p + k] * rhs[k] }
            rhs[i] = s / gram[i * p + i]
        }
        for i in stride(from: p - 1, through: 0, by: -1) {
            var s = rhs[i]
            for k in (i + 1)..<p { s -= gram[k * p + i] * rhs[k] }
            rhs[i] = s / gram[i * p + i]
        }
        return true
    }

    /// Horch (1999): with a sticking valve in a self-regulating loop the cross-correlation of controller output and
    /// process value is odd (zero at lag zero, the output ramping while the value stays); an oscillation from the
    /// tuning or a disturbance gives an even one. Measured as the odd part's share of the energy over lags within
    /// half the oscillation's period, estimated from the error's zero crossings: for sines at a phase φ apart it
    /// is sin²φ.
    mutating func stictionIndex() -> Double? {
        // Locals, not methods of self: a copy of self alive while `correlation` is written would make every write
        // copy it.
        let errors = errorRing
        let outputs = outputRing
        let values = processRing
        let n = settings.windowSamples
        let first = next - count + 2 * n
        func e(_ j: Int) -> Double { errors[(first + j) % n] }
        func u(_ j: Int) -> Double { outputs[(first + j) % n] }
        func y(_ j: Int) -> Double { values[(first + j) % n] }
        var crossings = 0
        var lastSign = 0.0
        var meanOutput = 0.0
        var meanProcess = 0.0
        var pairs = 0
        for j in 0..<count {
            let e = e(j)
            guard e.isFinite else { continue }
            let sign: Double = e > 0 ? 1 : (e < 0 ? -1 : 0)
            if sign != 0 && lastSign != 0 && sign != lastSign { crossings += 1 }
            if sign != 0 { lastSign = sign }
            meanOutput += u(j)
            meanProcess += y(j)
            pairs += 1
        }
        guard crossings >= 2, pairs > 0 else { return nil }
        meanOutput /= Double(pairs)
        meanProcess /= Double(pairs)
        // Two crossings per period.
        let halfPeriodSamples = Double(count) / Double(crossings)
        let lags = min(correlation.count / 2, Int(halfPeriodSamples.rounded()))
        guard lags >= 1 else { return nil }
        let total = count
        for slot in 0..<(2 * lags + 1) {
            let lag = slot - lags
            var s = 0.0
            for j in max(0, -lag)..<min(total, total - lag) {
                let output = u(j)
                let value = y(j + lag)
                if output.isFinite && value.isFinite && e(j).isFinite {
                    s += (output - meanOutput) * (value - meanProcess)
                }
            }
            correlation[slot] = s
        }
        var odd = 0.0
        var even = correlation[lags] * correlation[lags]
        for tau in 1...lags {
            let plus = correlation[lags + tau]
            let minus = correlation[lags - tau]
            odd += 2 * ((plus - minus) / 2) * ((plus - minus) / 2)
            even += 2 * ((plus + minus) / 2) * ((plus + minus) / 2)
        }
        guard odd + even > 0 else { return nil }
        return odd / (odd + even)
    }
}
