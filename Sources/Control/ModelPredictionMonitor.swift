/// Rolling prediction error of one model beside a running loop — the model in force, or a candidate in shadow
/// (decision 0036) — in fixed memory: nothing is allocated after construction, so the loop thread can step it
/// every cycle.
///
/// The model runs free on the applied MVs and the measured DVs (deviations from those of its first step). Its
/// prediction of each CV `horizon` cycles ahead is corrected by the output bias seen `horizon` cycles earlier, as the
/// MPC's own output-disturbance model predicts: ŷ(k|k−H) = y(k−H) + ŷfree(k) − ŷfree(k−H). So a constant offset
/// costs nothing, a wrong gain or time constant shows as soon as the MVs move, and an unmeasured disturbance only
/// through what it changes within H cycles. NRMSE per CV = RMS of that error over the last `window` cycles divided
/// by the CV's `scale` (its engineering span; 1 gives the RMSE in engineering units).
public final class ModelPredictionMonitor {
    public let model: StateSpaceModel
    public let horizon: Int
    public let window: Int
    let n: Int
    let nu: Int
    let nd: Int
    let ny: Int
    let scale: [Double]
    var x: [Double]
    var next: [Double]
    /// Free-run outputs and measurements of the last `horizon` + 1 cycles, a ring per CV ([cv][slot]).
    var freeRing: [Double]
    var measuredRing: [Double]
    /// Squared prediction errors of the last `window` cycles, a ring per CV, and their sums.
    var errorRing: [Double]
    var errorSum: [Double]
    var inputOrigin: [Double]
    var disturbanceOrigin: [Double]
    var cycles = 0
    var compared = 0
    /// NRMSE per CV over the window; NaN until a whole window of predictions was compared.
    public private(set) var nrmse: [Double]

    /// `horizon` ≥ 1 cycles ahead, errors over `window` ≥ 1 cycles; `scale` per CV (non-positive or missing = 1).
    public init(model: StateSpaceModel, horizon: Int, window: Int, scale: [Double] = []) {
        self.model = model
        self.horizon = max(1, horizon)
        self.window = max(1, window)
        n = model.stateCount
        nu = model.inputCount
        nd = model.disturbanceCount
        ny = model.outputCount
        self.scale = (0..<model.outputCount).map { j in
            j < scale.count && scale[j].isFinite && scale[j] > 0 ? scale[j] : 1
        }
        x = [Double](repeating: 0, count: n)
        next = [Double](repeating: 0, count: n)
        freeRing = [Double](repeating: 0, count: ny * (self.horizon + 1))
        measuredRing = [Double](repeating: 0, count: ny * (self.horizon + 1))
        errorRing = [Double](repeating: 0, count: ny * self.window)
        errorSum = [Double](repeating: 0, count: ny)
        inputOrigin = [Double](repeating: 0, count: nu)
        disturbanceOrigin = [Double](repeating: 0, count: nd)
        nrmse = [Double](repeating: .nan, count: ny)
    }

    /// The worst CV's NRMSE; NaN until known.
    public var worst: Double {
        guard ny > 0 else { return .nan }
        var w = -Double.infinity
        for j in 0..<ny {
            if nrmse[j].isNaN { return .nan }
            w = Swift.max(w, nrmse[j])
        }
        return w
    }

    /// Forgets everything: the next step starts the model at rest again.
    public func reset() {
        cycles = 0
        compared = 0
        for j in 0..<ny {
            nrmse[j] = .nan
            errorSum[j] = 0
        }
    }

    /// One cycle. `measurement` holds the CVs measured now, `applied` the MVs in force over the last period,
    /// `disturbance` the DVs now (the model's counts of each are read). A non-finite value resets the monitor: the
    /// model cannot be driven through a gap.
    public func step(
        measurement: UnsafePointer<Double>, applied: UnsafePointer<Double>, disturbance: UnsafePointer<Double>
    ) {
        for j in 0..<ny where !measurement[j].isFinite { return reset() }
        for l in 0..<nu where !applied[l].isFinite { return reset() }
        for l in 0..<nd where !disturbance[l].isFinite { return reset() }
        if cycles == 0 {
            for i in 0..<n { x[i] = 0 }
            for l in 0..<nu { inputOrigin[l] = applied[l] }
            for l in 0..<nd { disturbanceOrigin[l] = disturbance[l] }
        } else {
            for r in 0..<n {
                var s = 0.0
                for i in 0..<n { s += model.a[r * n + i] * x[i] }
                for l in 0..<nu { s += model.b[r * nu + l] * (applied[l] - inputOrigin[l]) }
                for l in 0..<nd { s += model.bd[r * nd + l] * (disturbance[l] - disturbanceOrigin[l]) }
                next[r] = s
            }
            for i in 0..<n { x[i] = next[i] }
        }
        let slots = horizon + 1
        let slot = cycles % slots
        // The slot written `horizon` cycles ago.
        let past = (cycles + 1) % slots
        let w = compared % window
        // Once per window the sums are recomputed from the ring, so rounding never accumulates.
        let exact = w == window - 1
        for j in 0..<ny {
            var free = 0.0
            for i in 0..<n { free += model.c[j * n + i] * x[i] }
            freeRing[j * slots + slot] = free
            measuredRing[j * slots + slot] = measurement[j]
            guard cycles >= horizon else { continue }
            let predicted = measuredRing[j * slots + past] + free - freeRing[j * slots + past]
            let e = (measurement[j] - predicted) / scale[j]
            errorSum[j] += e * e - errorRing[j * window + w]
            errorRing[j * window + w] = e * e
            if exact {
                var sum = 0.0
                for k in 0..<window { sum += errorRing[j * window + k] }
                errorSum[j] = sum
            }
            if compared + 1 >= window { nrmse[j] = (Swift.max(0, errorSum[j]) / Double(window)).squareRoot() }
        }
        if cycles >= horizon { compared += 1 }
        cycles += 1
    }

    /// `step` from arrays (tests, benchmarks); the arrays must hold at least the model's counts.
    public func step(measurement: [Double], applied: [Double], disturbance: [Double]) {
        guard measurement.count >= ny, applied.count >= nu, disturbance.count >= nd else { return }
        measurement.withUnsafeBufferPointer { y in
            applied.withUnsafeBufferPointer { u in
                disturbance.withUnsafeBufferPointer { d in
                    // An empty array's base address may be nil; nothing is read from it then.
                    let none = UnsafePointer<Double>(bitPattern: 8)!
                    step(
                        measurement: y.baseAddress ?? none, applied: u.baseAddress ?? none,
                        disturbance: d.baseAddress ?? none)
                }
            }
        }
    }
}
