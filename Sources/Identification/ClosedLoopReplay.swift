import Control

/// What one closed-loop replay is driven by: the recorded setpoints and measured disturbances of one stretch.
public struct ClosedLoopScenario: Sendable {
    /// `[cv][sample]`; NaN keeps the CV's configured target (`targets`) at that sample.
    public var setpoints: [[Double]]
    /// `[dv][sample]`, engineering units.
    public var disturbances: [[Double]]
    /// The configured target of each CV, used where the recorded setpoint is NaN (a range CV).
    public var targets: [CVTarget]
    /// The MVs and CVs recorded at the stretch's first sample: the plant starts at rest there.
    public var initialInputs: [Double]
    public var initialOutputs: [Double]
    /// Soft limits per CV, for counting violations.
    public var softLow: [Double]
    public var softHigh: [Double]
    public var steps: Int

    public init(
        setpoints: [[Double]], disturbances: [[Double]], targets: [CVTarget], initialInputs: [Double],
        initialOutputs: [Double], softLow: [Double], softHigh: [Double], steps: Int
    ) {
        self.setpoints = setpoints
        self.disturbances = disturbances
        self.targets = targets
        self.initialInputs = initialInputs
        self.initialOutputs = initialOutputs
        self.softLow = softLow
        self.softHigh = softHigh
        self.steps = steps
    }
}

/// The response of one closed-loop replay and its figures.
public struct ClosedLoopRun: Sendable, Equatable {
    /// `[cv][sample]` and `[mv][sample]`: the plant's outputs and the MVs applied.
    public var outputs: [[Double]]
    public var inputs: [[Double]]
    /// `[cv][sample]`: the setpoint in force (NaN for a range CV inside its range's meaning).
    public var setpoints: [[Double]]
    /// Σ |error|·period per CV: error to the setpoint, or the distance outside the range for a range CV.
    public var iae: [Double]
    /// Samples outside the CV's soft limits, and the worst distance outside (0 when none).
    public var violations: [Int]
    public var worstViolation: [Double]
    /// Σ |Δu| per MV.
    public var mvTravel: [Double]
    /// Solve time of every step, as the controller's clock measured it.
    public var solveNanoseconds: [UInt64]
    /// Steps whose QP did not end optimal.
    public var nonOptimalSteps: Int
}

/// Closed-loop replay: a controller driving a plant model through recorded setpoints and disturbances
/// (decision 0035). Pure; the controller's clock (set by the caller) times the solves.
public enum ClosedLoopReplay {
    /// Runs `controller` against `plant` from rest at the scenario's first sample. The plant evolves in deviations
    /// from the initial MVs and DVs, its outputs offset by the initial CVs, so its own operating point is irrelevant.
    public static func run(
        controller: ModelPredictiveController, plant: StateSpaceModel, scenario: ClosedLoopScenario
    ) -> ClosedLoopRun {
        let n = plant.stateCount
        let nu = plant.inputCount
        let ny = plant.outputCount
        let ndPlant = plant.disturbanceCount
        let ndController = controller.model.disturbanceCount
        let steps = scenario.steps
        let period = plant.period
        controller.reset()
        var x = [Double](repeating: 0, count: n)
        var next = [Double](repeating: 0, count: n)
        var y = scenario.initialOutputs
        var applied = scenario.initialInputs
        var command = applied
        var dv = [Double](repeating: 0, count: ndController)
        var run = ClosedLoopRun(
            outputs: [[Double]](repeating: [], count: ny), inputs: [[Double]](repeating: [], count: nu),
            setpoints: [[Double]](repeating: [], count: ny), iae: [Double](repeating: 0, count: ny),
            violations: [Int](repeating: 0, count: ny), worstViolation: [Double](repeating: 0, count: ny),
            mvTravel: [Double](repeating: 0, count: nu), solveNanoseconds: [], nonOptimalSteps: 0)
        run.solveNanoseconds.reserveCapacity(steps)
        // A controller reused for another stretch still holds the targets the last one ended with.
        var current = scenario.targets
        for j in 0..<ny { try? controller.setTarget(j, scenario.targets[j]) }
        func disturbance(_ i: Int, _ k: Int) -> Double {
            i < scenario.disturbances.count && k < scenario.disturbances[i].count ? scenario.disturbances[i][k] : 0
        }
        for k in 0..<steps {
            for j in 0..<ny {
                let recorded = k < scenario.setpoints[j].count ? scenario.setpoints[j][k] : .nan
                let target = recorded.isFinite ? CVTarget.setpoint(recorded) : scenario.targets[j]
                if target != current[j] {
                    // A recorded setpoint passed the agent's checks when it was written.
                    try? controller.setTarget(j, target)
                    current[j] = target
                }
                let error: Double
                switch target {
                case .setpoint(let sp): error = sp - y[j]
                case .range(let low, let high): error = y[j] < low ? low - y[j] : (y[j] > high ? y[j] - high : 0)
                }
                run.iae[j] += abs(error) * period
                let outside = max(scenario.softLow[j] - y[j], y[j] - scenario.softHigh[j], 0)
                if outside > 0 {
                    run.violations[j] += 1
                    run.worstViolation[j] = max(run.worstViolation[j], outside)
                }
                run.outputs[j].append(y[j])
                if case .setpoint(let sp) = target {
                    run.setpoints[j].append(sp)
                } else {
                    run.setpoints[j].append(.nan)
                }
            }
            for i in 0..<ndController { dv[i] = disturbance(i, k) }
            let result = controller.step(measurement: y, disturbance: dv, appliedInput: applied, output: &command)
            run.solveNanoseconds.append(result.solveNanoseconds)
            if result.status != .optimal { run.nonOptimalSteps += 1 }
            for l in 0..<nu {
                run.mvTravel[l] += abs(command[l] - applied[l])
                applied[l] = command[l]
                run.inputs[l].append(applied[l])
            }
            // The plant takes the new MVs for the coming period; its outputs show them from the next sample.
            for r in 0..<n {
                var s = 0.0
                for i in 0..<n { s += plant.a[r * n + i] * x[i] }
                for l in 0..<nu { s += plant.b[r * nu + l] * (applied[l] - scenario.initialInputs[l]) }
                for l in 0..<ndPlant { s += plant.bd[r * ndPlant + l] * (disturbance(l, k) - disturbance(l, 0)) }
                next[r] = s
            }
            swap(&x, &next)
            for j in 0..<ny {
                var s = scenario.initialOutputs[j]
                for i in 0..<n { s += plant.c[j * n + i] * x[i] }
                y[j] = s
            }
        }
        return run
    }

    /// The p-quantile (0…1) of `values` by the nearest-rank rule; 0 when empty.
    public static func quantile(_ values: [UInt64], _ p: Double) -> UInt64 {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        let rank = Int((p * Double(sorted.count)).rounded(.up))
        return sorted[min(sorted.count - 1, max(0, rank - 1))]
    }
}
