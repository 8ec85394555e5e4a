import Control

/// Open-loop replay: a model driven by the recorded inputs, its prediction set beside the recorded outputs
/// (decision 0035).
///
/// Every usable stretch of `PreparedData` is simulated on its own, starting at rest at its first sample (state zero
/// in deviations from the stretch's first inputs) with its level the least-squares constant, which is how
/// identification treats a stretch's level; two models replayed on the same data are thus judged by the same rule.
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
            // The stretch's level: the mean residual, the least-squares constant.
            for j in 0..<ny where j < segment.outputs.count {
                var level = 0.0
                for k in 0..<count { level += segment.outputs[j][k] - yHat[j][k] }
                level /= Double(max(1, count))
                for k in 0..<count { yHat[j][k] += level }
            }
            out.append(yHat)
        }
        return out
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
