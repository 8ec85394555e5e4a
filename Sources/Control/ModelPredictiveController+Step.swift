/// What runs every cycle, and the allocation-free changes between cycles: targets, limits, estimation, the QP.
extension ModelPredictiveController {
    // MARK: - Runtime changes (allocation-free)

    /// Changes a CV's setpoint or range.
    public func setTarget(_ cv: Int, _ target: CVTarget) throws(ControlError) {
        try Self.checkTarget(target, cv: cv)
        configuration.outputs[cv].target = target
    }

    /// Changes a CV's soft limits. A side that had no limit when the controller was built has no
    /// constraint rows, so it can only stay infinite.
    public func setSoftLimits(_ cv: Int, low: Double, high: Double) throws(ControlError) {
        guard !low.isNaN && !high.isNaN && low <= high else {
            throw ControlError(.invalidParameter, "MPC: CV \(cv) soft limits [\(low), \(high)]; expected low ≤ high")
        }
        guard (low.isFinite || low == -.infinity) && (high.isFinite || high == .infinity) else {
            throw ControlError(
                .invalidParameter, "MPC: CV \(cv) soft limits [\(low), \(high)] have a wrong-signed infinity")
        }
        guard (hasLow[cv] || !low.isFinite) && (hasHigh[cv] || !high.isFinite) else {
            throw ControlError(
                .invalidParameter,
                "MPC: CV \(cv) had no such soft limit when the controller was built; rebuild to add one")
        }
        configuration.outputs[cv].softLow = low
        configuration.outputs[cv].softHigh = high
    }

    /// Changes an MV's hard bounds and rate limits (same rule as soft limits for missing bounds).
    public func setInputLimits(
        _ mv: Int, low: Double, high: Double, maxIncrease: Double, maxDecrease: Double
    ) throws(ControlError) {
        var settings = configuration.inputs[mv]
        settings.low = low
        settings.high = high
        settings.maxIncrease = maxIncrease
        settings.maxDecrease = maxDecrease
        try Self.checkBounds(settings, mv: mv)
        let hadBounds = boundedInputs.contains(mv)
        guard hadBounds || (!low.isFinite && !high.isFinite) else {
            throw ControlError(
                .invalidParameter, "MPC: MV \(mv) had no bounds when the controller was built; rebuild to add them")
        }
        configuration.inputs[mv] = settings
        applyStaticBounds()
    }

    /// Changes an MV's resting target (its weight is fixed at build time).
    public func setInputTarget(_ mv: Int, _ value: Double) throws(ControlError) {
        guard hasTarget[mv] else {
            throw ControlError(.invalidParameter, "MPC: MV \(mv) was built without a target weight")
        }
        guard value.isFinite else { throw ControlError(.invalidParameter, "MPC: MV \(mv) target is \(value)") }
        configuration.inputs[mv].target = value
    }

    /// Forgets the estimator state; the next step re-initializes it from the measurements.
    public func reset() {
        initialized = false
        hasPlan = false
        solver.resetWarmStart()
    }

    func applyStaticBounds() {
        for i in 0..<nc {
            for l in 0..<nu {
                solver.variableLower[i * nu + l] = -configuration.inputs[l].maxDecrease
                solver.variableUpper[i * nu + l] = configuration.inputs[l].maxIncrease
            }
        }
        for i in 0..<ny where slackIndex[i] >= 0 {
            solver.variableLower[slackIndex[i]] = 0
            solver.variableUpper[slackIndex[i]] = .infinity
            let penalty =
                configuration.outputs[i].limitPenalty
                ?? 1e3 * Double(np) * Swift.max(configuration.outputs[i].weight, 1e-3)
            solver.linearCost[slackIndex[i]] = penalty
        }
    }

    // MARK: - Step

    /// One control cycle.
    /// - Parameters:
    ///   - measurement: CVs measured now (engineering units).
    ///   - disturbance: measured disturbances now (empty when the model has none).
    ///   - appliedInput: the MVs actually applied during the last interval (from the MPC, a PID or
    ///     the operator): the estimator and the move constraints start from them, which is what
    ///     makes entering MPC bumpless.
    ///   - output: receives the MVs to apply now; must have one entry per MV.
    public func step(
        measurement: [Double], disturbance: [Double], appliedInput: [Double], output: inout [Double]
    ) -> MPCStepResult {
        guard measurement.count == ny && disturbance.count == nd && appliedInput.count == nu && output.count == nu
        else {
            // Wrong sizes are a wiring bug, but the control cycle must not trap: report and write nothing.
            return MPCStepResult(status: .invalidInput, iterations: 0, solveNanoseconds: 0, usedFallback: true)
        }
        if !allFinite(measurement, disturbance, appliedInput) {
            for l in 0..<nu { output[l] = appliedInput[l].isFinite ? appliedInput[l] : uLast[l] }
            return MPCStepResult(status: .invalidInput, iterations: 0, solveNanoseconds: 0, usedFallback: true)
        }
        estimate(measurement: measurement, disturbance: disturbance, appliedInput: appliedInput)
        buildProblem(appliedInput: appliedInput)

        let t0 = clock?() ?? 0
        let result = solver.solve()
        let elapsed = (clock?() ?? t0) &- t0
        var usedFallback = false
        let sol = solver.solution
        switch result.status {
        case .optimal:
            for k in 0..<moveCount { plan[k] = sol[k] }
        case .iterationLimit, .timeLimit:
            if result.maxViolation <= 1e-6 {
                for k in 0..<moveCount { plan[k] = sol[k] }
            } else {
                shiftPlan()
                usedFallback = true
            }
        case .infeasible, .numericalFailure, .invalidInput:
            shiftPlan()
            solver.resetWarmStart()
            usedFallback = true
        }
        hasPlan = true
        // Enforce the first move's hard limits once more: the applied move must be feasible even
        // when it comes from a fallback.
        for l in 0..<nu {
            let mv = configuration.inputs[l]
            let move = Swift.min(Swift.max(plan[l], -mv.maxDecrease), mv.maxIncrease)
            let u = appliedInput[l] + move
            let (lo, hi) = firstStepBounds(l, previous: appliedInput[l])
            let value = Swift.min(Swift.max(u, lo), hi)
            output[l] = value
            uLast[l] = value
        }
        return MPCStepResult(
            status: result.status, iterations: result.iterations, solveNanoseconds: elapsed, usedFallback: usedFallback)
    }

    /// Estimator only (no solve): keeps the state current while another controller drives the MVs.
    public func track(measurement: [Double], disturbance: [Double], appliedInput: [Double]) {
        guard measurement.count == ny && disturbance.count == nd && appliedInput.count == nu else { return }
        guard allFinite(measurement, disturbance, appliedInput) else { return }
        estimate(measurement: measurement, disturbance: disturbance, appliedInput: appliedInput)
        hasPlan = false
        for k in 0..<moveCount { plan[k] = 0 }
        for l in 0..<nu { uLast[l] = appliedInput[l] }
    }

    /// MV bounds for the move about to be applied, relaxed when the MV already sits outside them
    /// (after manual or PID operation): it may then only move back, at its full rate.
    @inline(__always)
    func firstStepBounds(_ l: Int, previous: Double) -> (Double, Double) {
        let mv = configuration.inputs[l]
        let hi = Swift.max(mv.high, previous - mv.maxDecrease)
        let lo = Swift.min(mv.low, previous + mv.maxIncrease)
        return (lo, hi)
    }

    /// Index loops on purpose: `for v in array` goes through an unspecialized iterator in debug
    /// builds, which allocates.
    func allFinite(_ a: [Double], _ b: [Double], _ c: [Double]) -> Bool {
        for i in 0..<a.count where !a[i].isFinite { return false }
        for i in 0..<b.count where !b[i].isFinite { return false }
        for i in 0..<c.count where !c[i].isFinite { return false }
        return true
    }

    func shiftPlan() {
        if !hasPlan {
            for k in 0..<moveCount { plan[k] = 0 }
            return
        }
        for k in 0..<(moveCount - nu) { plan[k] = plan[k + nu] }
        for k in (moveCount - nu)..<moveCount { plan[k] = 0 }
    }

    func estimate(measurement: [Double], disturbance: [Double], appliedInput: [Double]) {
        if !initialized {
            // Start at the steady state of the applied inputs with the whole mismatch in d̂: bumpless.
            for r in 0..<nx {
                var v = 0.0
                for l in 0..<nu { v += steadyStateMap[r * (nu + nd) + l] * (appliedInput[l] - model.inputNominal[l]) }
                for l in 0..<nd {
                    v += steadyStateMap[r * (nu + nd) + nu + l] * (disturbance[l] - model.disturbanceNominal[l])
                }
                xHat[r] = v
            }
            for i in 0..<ny {
                dHat[i] = measurement[i] - model.outputNominal[i] - dot(c + i * nx, xHat, nx)
                innovationBuffer[i] = 0
            }
            for l in 0..<nd { lastDisturbance[l] = disturbance[l] }
            initialized = true
            return
        }
        // Predict over the last interval with what was really applied.
        for r in 0..<nx {
            var v = dot(a + r * nx, xHat, nx)
            for l in 0..<nu { v += b[r * nu + l] * (appliedInput[l] - model.inputNominal[l]) }
            for l in 0..<nd { v += bd[r * nd + l] * (lastDisturbance[l] - model.disturbanceNominal[l]) }
            xNext[r] = v
        }
        for r in 0..<nx { xHat[r] = xNext[r] }
        for i in 0..<ny {
            innovationBuffer[i] = measurement[i] - (dot(c + i * nx, xHat, nx) + dHat[i] + model.outputNominal[i])
        }
        for r in 0..<nx {
            var v = 0.0
            for i in 0..<ny { v += kalman[r * ny + i] * innovationBuffer[i] }
            xHat[r] += v
        }
        for k in 0..<ny {
            var v = 0.0
            for i in 0..<ny { v += kalman[(nx + k) * ny + i] * innovationBuffer[i] }
            dHat[k] += v
        }
        for l in 0..<nd { lastDisturbance[l] = disturbance[l] }
    }

    func buildProblem(appliedInput: [Double]) {
        let rowsY = np * ny
        // Free response: what the CVs do if no MV moves from now on.
        for row in 0..<rowsY {
            let i = row % ny
            var v = dot(phi + row * nx, xHat, nx) + dHat[i] + model.outputNominal[i]
            for l in 0..<nu { v += psiU[row * nu + l] * (appliedInput[l] - model.inputNominal[l]) }
            for l in 0..<nd { v += psiD[row * nd + l] * (lastDisturbance[l] - model.disturbanceNominal[l]) }
            free[row] = v
        }
        for row in 0..<rowsY {
            let i = row % ny
            let reference: Double
            switch configuration.outputs[i].target {
            case .setpoint(let sp):
                reference = sp
            case .range(let lo, let hi):
                // Range control: the free response is its own reference inside the range.
                reference = Swift.min(Swift.max(free[row], lo), hi)
            }
            error[row] = free[row] - reference
        }
        let f = solver.linearCost
        for col in 0..<moveCount { f[col] = dot(gain + col * rowsY, error, rowsY) }
        for l in 0..<nu where hasTarget[l] {
            let offset =
                (appliedInput[l] - (configuration.inputs[l].target ?? appliedInput[l]))
                * configuration.inputs[l].targetWeight
            for i in 0..<nc { f[i * nu + l] += Double(nc - i) * offset }
        }
        // MV bound rows, relaxed as in firstStepBounds when the MV starts outside its range.
        var row = 0
        for index in 0..<boundedInputs.count {
            let l = boundedInputs[index]
            let mv = configuration.inputs[l]
            let u = appliedInput[l]
            for jStep in 0..<nc {
                let reach = Double(jStep + 1)
                solver.upper[row] = Swift.max(mv.high - u, -reach * mv.maxDecrease)
                solver.lower[row] = Swift.min(mv.low - u, reach * mv.maxIncrease)
                row += 1
            }
        }
        // CV soft-limit rows: S·Δu ± ε against the limit minus the free response.
        for i in 0..<ny where slackIndex[i] >= 0 {
            row = limitRowStart[i]
            let cv = configuration.outputs[i]
            if hasLow[i] {
                for k in limitFirstStep[i]..<np {
                    solver.lower[row] = cv.softLow - free[k * ny + i]
                    solver.upper[row] = .infinity
                    row += 1
                }
            }
            if hasHigh[i] {
                for k in limitFirstStep[i]..<np {
                    solver.lower[row] = -.infinity
                    solver.upper[row] = cv.softHigh - free[k * ny + i]
                    row += 1
                }
            }
        }
    }
}
