import Control

/// Open-loop replay: a model driven by the recorded inputs, its prediction set beside the recorded outputs
/// (decision 0035).
///
/// Every usable stretch of `PreparedData` is simulated on its own from its first inputs, with its initial state and
/// its output levels the least-squares fit to the stretch (B fixed), which is how identification judges a model on
/// its validation data (`compare` in other tools): a stretch that begins while the plant still moves (a test
/// started soon after the loop) is not charged to the model. Two models replayed on the same data are judged by
/// the same rule.
/// Inputs are the data's inputs in order: the model's MVs first, then its DVs (more data inputs than the model has
/// are ignored, so a model without DV paths is replayed on the same data).
public enum ModelReplay {
    /// The model's prediction of every output: `[segment][output][sample]`, in the data's (offset-free) units.
    public static func simulate(_ model: StateSpaceModel, _ data: PreparedData) -> [[[Double]]] {
        let n = model.stateCount
        let nu = model.inputCount
        let nd = model.disturbanceCount
        let ny = model.outputCount
        var out: [[[Double]]] = []
        out.reserveCapacity(data.segments.count)
        var x = [Double](repeating: 0, count: n)
        var next = [Double](repeating: 0, count: n)
        var du = [Double](repeating: 0, count: nu + nd)
        for segment in data.segments {
            let count = segment.count
            var yHat = [[Double]](repeating: [Double](repeating: 0, count: count), count: ny)
            for i in 0..<n { x[i] = 0 }
            for k in 0..<count {
                for j in 0..<ny {
                    var s = 0.0
                    for i in 0..<n { s += model.c[j * n + i] * x[i] }
                    yHat[j][k] = s
                }
                for i in 0..<(nu + nd) where i < segment.inputs.count {
                    du[i] = segment.inputs[i][k] - segment.inputs[i][0]
                }
                for r in 0..<n {
                    var s = 0.0
                    for i in 0..<n { s += model.a[r * n + i] * x[i] }
                    for l in 0..<nu { s += model.b[r * nu + l] * du[l] }
                    for l in 0..<nd where nu + l < segment.inputs.count { s += model.bd[r * nd + l] * du[nu + l] }
                    next[r] = s
                }
                swap(&x, &next)
            }
            let (x0, levels) = initialState(model, outputs: segment.outputs, zeroState: yHat)
            // The free response of x0, C·Aᵏ·x0, and the levels.
            var state = x0
            for k in 0..<count {
                for j in 0..<ny where j < segment.outputs.count {
                    var s = levels[j]
                    for i in 0..<n { s += model.c[j * n + i] * state[i] }
                    yHat[j][k] += s
                }
                for r in 0..<n {
                    var s = 0.0
                    for i in 0..<n { s += model.a[r * n + i] * state[i] }
                    next[r] = s
                }
                swap(&state, &next)
            }
            out.append(yHat)
        }
        return out
    }

    /// The initial state and per-output levels that best fit `outputs − zeroState` in least squares: regressors
    /// C·Aᵏ for the state and an indicator per output for its level (normal equations, n + ny unknowns).
    static func initialState(
        _ model: StateSpaceModel, outputs: [[Double]], zeroState: [[Double]]
    ) -> (state: [Double], levels: [Double]) {
        let n = model.stateCount
        let ny = min(model.outputCount, outputs.count)
        let unknowns = n + model.outputCount
        var normal = DenseMatrix(rows: unknowns, cols: unknowns)
        var rhs = [Double](repeating: 0, count: unknowns)
        var row = [Double](repeating: 0, count: unknowns)
        // power = C·Aᵏ, advanced one step per sample.
        var power = model.c
        var advanced = power
        let count = outputs.first?.count ?? 0
        for k in 0..<count {
            for q in 0..<ny {
                let e = outputs[q][k] - zeroState[q][k]
                for r in 0..<n { row[r] = power[q * n + r] }
                for j in 0..<model.outputCount { row[n + j] = j == q ? 1 : 0 }
                for r in 0..<unknowns where row[r] != 0 {
                    rhs[r] += row[r] * e
                    for c in 0..<unknowns { normal[r, c] += row[r] * row[c] }
                }
            }
            for q in 0..<model.outputCount {
                for c in 0..<n {
                    var s = 0.0
                    for i in 0..<n { s += power[q * n + i] * model.a[i * n + c] }
                    advanced[q * n + c] = s
                }
            }
            swap(&power, &advanced)
        }
        let theta = normal.solveSymmetric(rhs)
        return (Array(theta[0..<n]), Array(theta[n...]))
    }

    /// Fit % per output over all stretches: 100·(1 − ‖y − ŷ‖/‖y − ȳ‖), as identification reports it.
    public static func fitPercent(_ model: StateSpaceModel, _ data: PreparedData) -> [Double] {
        fitPercent(predicted: simulate(model, data), data)
    }

    /// Fit % per output of an existing prediction (`simulate`'s shape).
    public static func fitPercent(predicted: [[[Double]]], _ data: PreparedData) -> [Double] {
        (0..<data.outputCount).map { j in
            var residuals: [Double] = []
            var measured: [Double] = []
            for (s, segment) in data.segments.enumerated() where j < predicted[s].count {
                for k in 0..<segment.count {
                    residuals.append(segment.outputs[j][k] - predicted[s][j][k])
                    measured.append(segment.outputs[j][k])
                }
            }
            return FitMetrics.fitPercent(residuals: residuals, measured: measured)
        }
    }
}
