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
    public internal(set) var configuration: MPCConfiguration
    /// The QP solved every cycle; its matrices are fixed, its cost and bounds are rewritten each step.
    public let solver: DenseQPSolver
    /// Row-major Hessian and constraint matrix of the condensed QP (for diagnostics and benchmarks).
    public let qpHessian: [Double]
    public let qpConstraintMatrix: [Double]
    public var clock: (() -> UInt64)? {
        didSet { solver.clock = clock }
    }

    let nx: Int
    let nu: Int
    let nd: Int
    let ny: Int
    let np: Int
    let nc: Int
    let nz: Int
    let moveCount: Int
    let slackIndex: [Int]  // per CV, −1 when it has no soft limit
    let boundedInputs: [Int]  // MVs with MV-bound rows, in row order
    let limitRowStart: [Int]  // per CV: first row of its low limit block
    let limitFirstStep: [Int]  // per CV: first prediction step any move can affect
    let hasLow: [Bool]
    let hasHigh: [Bool]
    let hasTarget: [Bool]

    // Prediction data (row-major): CV k,i is row k·ny + i for k = 0 ..< np (step k+1).
    let phi: UnsafeMutablePointer<Double>  // (np·ny) × nx
    let psiU: UnsafeMutablePointer<Double>  // (np·ny) × nu
    let psiD: UnsafeMutablePointer<Double>  // (np·ny) × nd
    let gain: UnsafeMutablePointer<Double>  // moveCount × (np·ny) = Sᵀ·Q
    let dynamicMatrix: UnsafeMutablePointer<Double>  // (np·ny) × moveCount
    let kalman: UnsafeMutablePointer<Double>  // (nx+ny) × ny
    let steadyStateMap: UnsafeMutablePointer<Double>  // nx × (nu+nd) = (I−A)⁻¹[B Bd]
    let a: UnsafeMutablePointer<Double>
    let b: UnsafeMutablePointer<Double>
    let bd: UnsafeMutablePointer<Double>
    let c: UnsafeMutablePointer<Double>

    // Runtime state.
    let xHat: UnsafeMutablePointer<Double>
    let dHat: UnsafeMutablePointer<Double>
    let xNext: UnsafeMutablePointer<Double>
    let lastDisturbance: UnsafeMutablePointer<Double>
    let innovationBuffer: UnsafeMutablePointer<Double>
    let free: UnsafeMutablePointer<Double>  // np·ny free response
    let error: UnsafeMutablePointer<Double>
    let plan: UnsafeMutablePointer<Double>  // last accepted moveCount moves
    let uLast: UnsafeMutablePointer<Double>  // last output
    var initialized = false
    var hasPlan = false

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
}
