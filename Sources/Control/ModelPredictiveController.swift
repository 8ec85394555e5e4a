/// Constrained linear MPC in the style of industrial DMC/RMPCT controllers, offset-free through an
/// output-disturbance model and a steady-state Kalman filter.
///
/// Every cycle, `step` (1) predicts the state over the last interval with the MVs actually applied
/// and corrects it with the measured CVs, (2) writes the condensed QP's linear cost and bounds, and
/// (3) solves it with a hot-started `DenseQPSolver`. Everything whose size or value depends only on
/// the model and tuning (prediction matrices, Hessian, constraint matrix, Kalman gain) is computed
/// in `init`; `step` allocates nothing. The formulation is in docs/decisions/0004-mpc-formulation.md.
public final class ModelPredictiveController {
    public let model: StateSpaceModel
    public private(set) var configuration: MPCConfiguration
    /// The QP solved every cycle; its matrices are fixed, its cost and bounds are rewritten each step.
    public let solver: DenseQPSolver
    /// Row-major Hessian and constraint matrix of the condensed QP (for diagnostics and benchmarks).
    public let qpHessian: [Double]
    public let qpConstraintMatrix: [Double]
    public var clock: (() -> UInt64)? {
        didSet { solver.clock = clock }
    }

    private let nx: Int
    private let nu: Int
    private let nd: Int
    private let ny: Int
    private let np: Int
    private let nc: Int
    private let nz: Int
    private let moveCount: Int
    private let slackIndex: [Int]  // per CV, −1 when it has no soft limit
    private let boundedInputs: [Int]  // MVs with MV-bound rows, in row order
    private let limitRowStart: [Int]  // per CV: first row of its low limit block
    private let limitFirstStep: [Int]  // per CV: first prediction step any move can affect
    private let hasLow: [Bool]
    private let hasHigh: [Bool]
    private let hasTarget: [Bool]

    // Prediction data (row-major): CV k,i is row k·ny + i for k = 0 ..< np (step k+1).
    private let phi: UnsafeMutablePointer<Double>  // (np·ny) × nx
    private let psiU: UnsafeMutablePointer<Double>  // (np·ny) × nu
    private let psiD: UnsafeMutablePointer<Double>  // (np·ny) × nd
    private let gain: UnsafeMutablePointer<Double>  // moveCount × (np·ny) = Sᵀ·Q
    private let dynamicMatrix: UnsafeMutablePointer<Double>  // (np·ny) × moveCount
    private let kalman: UnsafeMutablePointer<Double>  // (nx+ny) × ny
    private let steadyStateMap: UnsafeMutablePointer<Double>  // nx × (nu+nd) = (I−A)⁻¹[B Bd]
    private let a: UnsafeMutablePointer<Double>
    private let b: UnsafeMutablePointer<Double>
    private let bd: UnsafeMutablePointer<Double>
    private let c: UnsafeMutablePointer<Double>

    // Runtime state.
    private let xHat: UnsafeMutablePointer<Double>
    private let dHat: UnsafeMutablePointer<Double>
    private let xNext: UnsafeMutablePointer<Double>
    private let lastDisturbance: UnsafeMutablePointer<Double>
    private let innovationBuffer: UnsafeMutablePointer<Double>
    private let free: UnsafeMutablePointer<Double>  // np·ny free response
    private let error: UnsafeMutablePointer<Double>
    private let plan: UnsafeMutablePointer<Double>  // last accepted moveCount moves
    private let uLast: UnsafeMutablePointer<Double>  // last output
    private var initialized = false
    private var hasPlan = false

    /// One-step prediction error of each CV at the last step (measured − predicted).
    public func innovation(_ cv: Int) -> Double { innovationBuffer[cv] }
    /// Estimated output disturbance of each CV.
    public func disturbanceEstimate(_ cv: Int) -> Double { dHat[cv] }
    /// The planned move of MV `mv` at future step `k` (0 = the move applied now).
    public func plannedMove(_ mv: Int, step k: Int) -> Double { plan[k * nu + mv] }

    public init(
        model: StateSpaceModel, configuration: MPCConfiguration, clock: (() -> UInt64)? = nil
    ) throws(ControlError) {
        let nx = model.stateCount
        let nu = model.inputCount
        let nd = model.disturbanceCount
        let ny = model.outputCount
        let np = configuration.predictionHorizon
        let nc = configuration.controlHorizon
        guard np >= 1 else { throw ControlError(.invalidParameter, "MPC: prediction horizon is \(np); expected ≥ 1") }
        guard nc >= 1 && nc <= np else {
            throw ControlError(
                .invalidParameter, "MPC: control horizon is \(nc); expected 1 … \(np) (prediction horizon)")
        }
        guard configuration.outputs.count == ny else {
            throw ControlError(
                .dimension, "MPC: \(configuration.outputs.count) CV settings; the model has \(ny) outputs")
        }
        guard configuration.inputs.count == nu else {
            throw ControlError(.dimension, "MPC: \(configuration.inputs.count) MV settings; the model has \(nu) inputs")
        }
        guard model.isAsymptoticallyStable else {
            throw ControlError(
                .unstable,
                "MPC: the model is not asymptotically stable (an eigenvalue of A on or outside the unit circle); "
                    + "the output-disturbance estimator needs a stable model")
        }
        try Self.validate(configuration)

        self.model = model
        self.configuration = configuration
        self.nx = nx
        self.nu = nu
        self.nd = nd
        self.ny = ny
        self.np = np
        self.nc = nc
        let moveCount = nu * nc
        self.moveCount = moveCount

        var slackIndex = [Int](repeating: -1, count: ny)
        var next = moveCount
        for i in 0..<ny where configuration.outputs[i].softLow.isFinite || configuration.outputs[i].softHigh.isFinite {
            slackIndex[i] = next
            next += 1
        }
        self.slackIndex = slackIndex
        let nz = next
        self.nz = nz
        self.hasLow = configuration.outputs.map { $0.softLow.isFinite }
        self.hasHigh = configuration.outputs.map { $0.softHigh.isFinite }
        self.hasTarget = configuration.inputs.map { $0.target != nil && $0.targetWeight > 0 }
        self.boundedInputs = (0..<nu).filter {
            configuration.inputs[$0].low.isFinite || configuration.inputs[$0].high.isFinite
        }

        // Prediction matrices: Φ rows C·A^k, Ψ rows Σ_{l<k} C·A^l·B (step responses).
        let am = model.matrixA
        let cm = model.matrixC
        var phiM = Matrix(rows: np * ny, cols: nx)
        var psiUM = Matrix(rows: np * ny, cols: nu)
        var psiDM = Matrix(rows: np * ny, cols: nd)
        var power = am  // A^k
        var powerB = model.matrixB  // A^l·B
        var powerBd = model.matrixBd
        var stepU = Matrix(rows: ny, cols: nu)
        var stepD = Matrix(rows: ny, cols: nd)
        for k in 0..<np {
            let cak = cm * power
            stepU = stepU + cm * powerB
            stepD = stepD + cm * powerBd
            for i in 0..<ny {
                for col in 0..<nx { phiM[k * ny + i, col] = cak[i, col] }
                for col in 0..<nu { psiUM[k * ny + i, col] = stepU[i, col] }
                for col in 0..<nd { psiDM[k * ny + i, col] = stepD[i, col] }
            }
            power = power * am
            powerB = am * powerB
            powerBd = am * powerBd
        }
        // Dynamic matrix S: y(k+1) gains Ψ(k+1−i) from move i (i < min(k+1, nc)).
        var s = Matrix(rows: np * ny, cols: moveCount)
        for k in 0..<np {
            for i in 0..<Swift.min(k + 1, nc) {
                for row in 0..<ny {
                    for l in 0..<nu { s[k * ny + row, i * nu + l] = psiUM[(k - i) * ny + row, l] }
                }
            }
        }
        // First step each CV can be moved at all; soft-limit rows before it would only pin the slack.
        var firstStep = [Int](repeating: np, count: ny)
        for i in 0..<ny {
            var scale = 0.0
            for k in 0..<np { for col in 0..<moveCount { scale = Swift.max(scale, abs(s[k * ny + i, col])) } }
            search: for k in 0..<np {
                for col in 0..<moveCount where abs(s[k * ny + i, col]) > 1e-9 * scale {
                    firstStep[i] = k
                    break search
                }
            }
        }
        self.limitFirstStep = firstStep

        // Hessian H = SᵀQS + R + TᵀWT (+ slack block).
        var h = Matrix(rows: nz, cols: nz)
        var g = Matrix(rows: moveCount, cols: np * ny)
        for col in 0..<moveCount {
            for k in 0..<np {
                for i in 0..<ny { g[col, k * ny + i] = s[k * ny + i, col] * configuration.outputs[i].weight }
            }
        }
        for r1 in 0..<moveCount {
            for r2 in r1..<moveCount {
                var v = 0.0
                for row in 0..<(np * ny) { v += g[r1, row] * s[row, r2] }
                h[r1, r2] = v
                h[r2, r1] = v
            }
        }
        for i in 0..<nc {
            for l in 0..<nu {
                h[i * nu + l, i * nu + l] += configuration.inputs[l].moveWeight
                if hasTarget[l] {
                    let w = configuration.inputs[l].targetWeight
                    for i2 in 0..<nc { h[i * nu + l, i2 * nu + l] += w * Double(nc - Swift.max(i, i2)) }
                }
            }
        }
        for i in 0..<ny where slackIndex[i] >= 0 {
            // A small quadratic term keeps H positive definite; exactness comes from the linear penalty.
            h[slackIndex[i], slackIndex[i]] = Swift.max(configuration.outputs[i].weight, 1e-6)
        }

        // Constraint rows: MV bounds (cumulative moves), then CV low limits, then CV high limits.
        var rowsA = [Double]()
        var rowCount = 0
        for l in boundedInputs {
            for jStep in 0..<nc {
                var row = [Double](repeating: 0, count: nz)
                for i in 0...jStep { row[i * nu + l] = 1 }
                rowsA += row
                rowCount += 1
            }
        }
        var limitRowStart = [Int](repeating: 0, count: ny)
        for i in 0..<ny {
            limitRowStart[i] = rowCount
            for side in [1.0, -1.0] where (side > 0 ? hasLow[i] : hasHigh[i]) {
                for k in firstStep[i]..<np {
                    var row = [Double](repeating: 0, count: nz)
                    for col in 0..<moveCount { row[col] = s[k * ny + i, col] }
                    row[slackIndex[i]] = side
                    rowsA += row
                    rowCount += 1
                }
            }
        }
        self.limitRowStart = limitRowStart
        self.qpHessian = h.data
        self.qpConstraintMatrix = rowsA
        self.solver = try DenseQPSolver(
            variables: nz, constraints: rowCount, hessian: h.data, constraintMatrix: rowsA,
            settings: configuration.solver, clock: clock)
        self.clock = clock

        // Steady-state Kalman filter for the augmented model [x; d].
        let kalmanGain = try Self.kalmanGain(model: model, tuning: configuration.estimator)
        let iMinusA = Matrix.identity(nx) - am
        var inputs = Matrix(rows: nx, cols: nu + nd)
        for r in 0..<nx {
            for col in 0..<nu { inputs[r, col] = model.b[r * nu + col] }
            for col in 0..<nd { inputs[r, nu + col] = model.bd[r * nd + col] }
        }
        guard let ssMap = iMinusA.solve(inputs) else {
            throw ControlError(.unstable, "MPC: I − A is singular; the model has an integrator")
        }

        func store(_ values: [Double]) -> UnsafeMutablePointer<Double> {
            let p = UnsafeMutablePointer<Double>.allocate(capacity: Swift.max(values.count, 1))
            p.initialize(repeating: 0, count: Swift.max(values.count, 1))
            for (i, v) in values.enumerated() { p[i] = v }
            return p
        }
        func zeros(_ count: Int) -> UnsafeMutablePointer<Double> {
            store([Double](repeating: 0, count: count))
        }
        phi = store(phiM.data)
        psiU = store(psiUM.data)
        psiD = store(psiDM.data)
        gain = store(g.data)
        dynamicMatrix = store(s.data)
        kalman = store(kalmanGain.data)
        steadyStateMap = store(ssMap.data)
        a = store(model.a)
        b = store(model.b)
        bd = store(model.bd)
        c = store(model.c)
        xHat = zeros(nx)
        dHat = zeros(ny)
        xNext = zeros(nx)
        lastDisturbance = zeros(nd)
        innovationBuffer = zeros(ny)
        free = zeros(np * ny)
        error = zeros(np * ny)
        plan = zeros(moveCount)
        uLast = store(model.inputNominal)
        applyStaticBounds()
    }

    deinit {
        for p in [
            phi, psiU, psiD, gain, dynamicMatrix, kalman, steadyStateMap, a, b, bd, c, xHat, dHat, xNext,
            lastDisturbance, innovationBuffer, free, error, plan, uLast,
        ] {
            p.deallocate()
        }
    }

    private static func validate(_ configuration: MPCConfiguration) throws(ControlError) {
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

    private static func checkTarget(_ target: CVTarget, cv i: Int) throws(ControlError) {
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

    private static func checkBounds(_ mv: MVSettings, mv l: Int) throws(ControlError) {
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

    private func applyStaticBounds() {
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
    private func firstStepBounds(_ l: Int, previous: Double) -> (Double, Double) {
        let mv = configuration.inputs[l]
        let hi = Swift.max(mv.high, previous - mv.maxDecrease)
        let lo = Swift.min(mv.low, previous + mv.maxIncrease)
        return (lo, hi)
    }

    /// Index loops on purpose: `for v in array` goes through an unspecialized iterator in debug
    /// builds, which allocates.
    private func allFinite(_ a: [Double], _ b: [Double], _ c: [Double]) -> Bool {
        for i in 0..<a.count where !a[i].isFinite { return false }
        for i in 0..<b.count where !b[i].isFinite { return false }
        for i in 0..<c.count where !c[i].isFinite { return false }
        return true
    }

    private func shiftPlan() {
        if !hasPlan {
            for k in 0..<moveCount { plan[k] = 0 }
            return
        }
        for k in 0..<(moveCount - nu) { plan[k] = plan[k + nu] }
        for k in (moveCount - nu)..<moveCount { plan[k] = 0 }
    }

    private func estimate(measurement: [Double], disturbance: [Double], appliedInput: [Double]) {
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

    private func buildProblem(appliedInput: [Double]) {
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
