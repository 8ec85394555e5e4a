/// Checks of a configuration before anything is built, and the estimator gain computed at build time.
extension ModelPredictiveController {
    static func validate(_ configuration: MPCConfiguration) throws(ControlError) {
        for (i, cv) in configuration.outputs.enumerated() {
            guard cv.weight.isFinite && cv.weight >= 0 else {
                throw ControlError(.invalidParameter, "MPC: CV \(i) weight is \(cv.weight); expected finite ≥ 0")
            }
            try checkTarget(cv.target, cv: i)
            guard !cv.softLow.isNaN && !cv.softHigh.isNaN && cv.softLow <= cv.softHigh else {
                throw ControlError(
                    .invalidParameter, "MPC: CV \(i) soft limits [\(cv.softLow), \(cv.softHigh)]; expected low ≤ high")
            }
            if let p = cv.limitPenalty, !(p.isFinite && p > 0) {
                throw ControlError(.invalidParameter, "MPC: CV \(i) limit penalty is \(p); expected finite > 0")
            }
        }
        for (l, mv) in configuration.inputs.enumerated() {
            guard mv.moveWeight.isFinite && mv.moveWeight > 0 else {
                throw ControlError(
                    .invalidParameter,
                    "MPC: MV \(l) move weight is \(mv.moveWeight); expected finite > 0 (keeps H definite)")
            }
            try checkBounds(mv, mv: l)
            guard mv.targetWeight.isFinite && mv.targetWeight >= 0 else {
                throw ControlError(
                    .invalidParameter, "MPC: MV \(l) target weight is \(mv.targetWeight); expected finite ≥ 0")
            }
            if let t = mv.target, !t.isFinite {
                throw ControlError(.invalidParameter, "MPC: MV \(l) target is \(t); expected a finite value")
            }
        }
    }

    static func checkTarget(_ target: CVTarget, cv i: Int) throws(ControlError) {
        switch target {
        case .setpoint(let v):
            guard v.isFinite else {
                throw ControlError(.invalidParameter, "MPC: CV \(i) setpoint is \(v); expected finite")
            }
        case .range(let lo, let hi):
            guard lo.isFinite && hi.isFinite && lo <= hi else {
                throw ControlError(.invalidParameter, "MPC: CV \(i) range [\(lo), \(hi)]; expected finite low ≤ high")
            }
        }
    }

    static func checkBounds(_ mv: MVSettings, mv l: Int) throws(ControlError) {
        guard !mv.low.isNaN && !mv.high.isNaN && mv.low <= mv.high else {
            throw ControlError(.invalidParameter, "MPC: MV \(l) bounds [\(mv.low), \(mv.high)]; expected low ≤ high")
        }
        guard mv.maxIncrease > 0 && mv.maxDecrease > 0 else {
            throw ControlError(
                .invalidParameter,
                "MPC: MV \(l) rate limits up \(mv.maxIncrease) / down \(mv.maxDecrease); expected both > 0")
        }
    }

    static func kalmanGain(model: StateSpaceModel, tuning: EstimatorTuning) throws(ControlError) -> Matrix {
        let nx = model.stateCount
        let ny = model.outputCount
        let n = nx + ny
        guard tuning.stateNoise >= 0, tuning.disturbanceNoise > 0, tuning.measurementNoise > 0,
            tuning.stateNoise.isFinite, tuning.disturbanceNoise.isFinite, tuning.measurementNoise.isFinite
        else {
            throw ControlError(
                .invalidParameter,
                "MPC: estimator noises (state \(tuning.stateNoise), disturbance \(tuning.disturbanceNoise), "
                    + "measurement \(tuning.measurementNoise)); expected state ≥ 0 and the others > 0, all finite")
        }
        var ae = Matrix.identity(n)
        var ce = Matrix(rows: ny, cols: n)
        var qe = Matrix(rows: n, cols: n)
        for i in 0..<nx {
            for j in 0..<nx { ae[i, j] = model.a[i * nx + j] }
            qe[i, i] = tuning.stateNoise
        }
        for i in 0..<ny {
            for j in 0..<nx { ce[i, j] = model.c[i * nx + j] }
            ce[i, nx + i] = 1
            qe[nx + i, nx + i] = tuning.disturbanceNoise
        }
        let re = tuning.measurementNoise * Matrix.identity(ny)
        let aeT = ae.transposed
        let ceT = ce.transposed
        // Riccati recursion for the a-priori covariance until it stops changing.
        var p = qe
        for _ in 0..<200_000 {
            let pct = p * ceT
            guard let k = (ce * pct + re).solve((ae * pct).transposed) else {
                throw ControlError(.numerical, "MPC: innovation covariance became singular in the Riccati recursion")
            }
            let next = ae * p * aeT + qe - (ae * pct) * k
            var change = 0.0
            var size = 0.0
            for i in 0..<next.data.count {
                change = Swift.max(change, abs(next.data[i] - p.data[i]))
                size = Swift.max(size, abs(next.data[i]))
            }
            p = next
            guard p.isFinite else { throw ControlError(.numerical, "MPC: Riccati recursion diverged") }
            if change <= 1e-13 * Swift.max(size, 1) {
                // Filter-form gain L = P·Cᵀ·(C·P·Cᵀ + R)⁻¹, applied to the measured innovation.
                let pct2 = p * ceT
                guard let lT = (ce * pct2 + re).solve(pct2.transposed) else {
                    throw ControlError(.numerical, "MPC: innovation covariance is singular")
                }
                return lT.transposed
            }
        }
        throw ControlError(.numerical, "MPC: Riccati recursion did not converge (is the augmented model detectable?)")
    }
}
