import Control
import Identification
import Testing

/// Open- and closed-loop replay (decision 0035) on a plant whose truth is known.
@Suite("Replay")
struct ReplayTests {
    /// Two MVs onto one CV: gains 2 and −0.8, time constants 20 s and 35 s, dead time 3 s on the first.
    static func plant(gains: (Double, Double) = (2, -0.8)) throws -> StateSpaceModel {
        try StateSpaceModel.fromTransferFunctions(
            [
                [
                    FirstOrderDeadTime(gain: gains.0, timeConstant: 20, deadTime: 3),
                    FirstOrderDeadTime(gain: gains.1, timeConstant: 35),
                ]
            ], period: 1)
    }

    /// The true plant at rest for 100 s, then driven by steps of both MVs held 40–120 s, with measurement noise;
    /// deterministic. `from` drops the samples before it, so the recording can begin while the plant moves.
    static func recording(samples: Int = 2000, noise: Double = 0.02, from start: Int = 0) throws -> PreparedData {
        let model = try plant()
        var state: UInt64 = 0x9e37_79b9_7f4a_7c15
        func random() -> Double {
            state ^= state >> 12
            state ^= state << 25
            state ^= state >> 27
            return Double((state &* 0x2545_f491_4f6c_dd1d) >> 11) / Double(1 << 53)
        }
        var u: [[Double]] = [[], []]
        var level = [3.0, 3.0]
        var next = [100, 117]
        for k in 0..<samples {
            for i in 0..<2 where k == next[i] {
                level[i] = 3 + (random() - 0.5) * 4
                next[i] = k + 40 + Int(random() * 80)
            }
            u[0].append(level[0])
            u[1].append(level[1])
        }
        var x = [Double](repeating: 0, count: model.stateCount)
        var y: [Double] = []
        let n = model.stateCount
        for k in 0..<samples {
            var out = 50.0
            for i in 0..<n { out += model.c[i] * x[i] }
            y.append(out + (random() - 0.5) * 2 * noise)
            var next = [Double](repeating: 0, count: n)
            for r in 0..<n {
                for i in 0..<n { next[r] += model.a[r * n + i] * x[i] }
                for l in 0..<2 { next[r] += model.b[r * 2 + l] * (u[l][k] - 3) }
            }
            x = next
        }
        return try PreparedData(
            period: 1, inputs: u.map { Array($0[start...]) }, outputs: [Array(y[start...])])
    }

    @Test("the true plant fits about 100 %, a model with the wrong gain fits worse")
    func openLoopFit() throws {
        let data = try Self.recording()
        let truth = try #require(ModelReplay.fitPercent(try Self.plant(), data).first)
        let wrong = try #require(ModelReplay.fitPercent(try Self.plant(gains: (1.2, -0.8)), data).first)
        #expect(truth > 98, "true plant fit \(truth) %")
        #expect(wrong < truth - 10, "wrong-gain fit \(wrong) %, true plant \(truth) %")
        let predicted = ModelReplay.simulate(try Self.plant(), data)
        #expect(predicted.count == data.segments.count)
        #expect(predicted[0][0].count == data.segments[0].count)
    }

    /// Recorded data need not begin at rest (a plant test started while the plant still settled): the replay fits
    /// each stretch's initial state, as identification does on its validation data. From rest, the true plant
    /// fitted such a recording at 90 %.
    @Test("a recording that begins mid-transient: the true plant still fits about 100 %")
    func stretchBeginningInMotion() throws {
        let data = try Self.recording(from: 110)
        let truth = try #require(ModelReplay.fitPercent(try Self.plant(), data).first)
        let wrong = try #require(ModelReplay.fitPercent(try Self.plant(gains: (1.2, -0.8)), data).first)
        #expect(truth > 98, "true plant fit \(truth) %")
        #expect(wrong < truth - 10, "wrong-gain fit \(wrong) %, true plant \(truth) %")
    }

    static func controller(model: StateSpaceModel, setpoint: Double) throws -> ModelPredictiveController {
        try ModelPredictiveController(
            model: model,
            configuration: MPCConfiguration(
                predictionHorizon: 60, controlHorizon: 10,
                outputs: [CVSettings(weight: 1, target: .setpoint(setpoint))],
                inputs: [
                    MVSettings(moveWeight: 0.1, low: 0, high: 10, maxIncrease: 0.5, maxDecrease: 0.5),
                    MVSettings(moveWeight: 0.1, low: 0, high: 10, maxIncrease: 0.5, maxDecrease: 0.5),
                ]))
    }

    static func scenario(
        setpoints: [Double], softLow: Double = -.infinity, softHigh: Double = .infinity
    ) -> ClosedLoopScenario {
        ClosedLoopScenario(
            setpoints: [setpoints], disturbances: [], targets: [.setpoint(50)], initialInputs: [3, 3],
            initialOutputs: [50], softLow: [softLow], softHigh: [softHigh], steps: setpoints.count)
    }

    @Test("at rest on its setpoint nothing moves: every sample above a soft high counts, with the exact distance")
    func constraintCounts() throws {
        let model = try Self.plant()
        let steady = [Double](repeating: 50, count: 120)
        let inside = ClosedLoopReplay.run(
            controller: try Self.controller(model: model, setpoint: 50), plant: model,
            scenario: Self.scenario(setpoints: steady, softLow: 49, softHigh: 51))
        #expect(inside.violations == [0])
        #expect(inside.worstViolation == [0])
        #expect(inside.iae[0] < 1e-9)
        let above = ClosedLoopReplay.run(
            controller: try Self.controller(model: model, setpoint: 50), plant: model,
            scenario: Self.scenario(setpoints: steady, softHigh: 49.5))
        #expect(above.violations == [120])
        #expect(abs(above.worstViolation[0] - 0.5) < 1e-6)
        #expect(above.solveNanoseconds.count == 120)
    }

    @Test("a setpoint step: IAE finite, the CV settles on the new setpoint, the MVs travel")
    func setpointStep() throws {
        let model = try Self.plant()
        let setpoints = (0..<400).map { $0 < 20 ? 50.0 : 52.0 }
        let run = ClosedLoopReplay.run(
            controller: try Self.controller(model: model, setpoint: 50), plant: model,
            scenario: Self.scenario(setpoints: setpoints))
        #expect(run.iae[0].isFinite && run.iae[0] > 0)
        #expect(abs(run.outputs[0].last! - 52) < 0.05, "CV ends at \(run.outputs[0].last!)")
        #expect(run.setpoints[0][0] == 50 && run.setpoints[0][399] == 52)
        #expect(run.mvTravel.allSatisfy { $0 > 0 })
        #expect(run.inputs[0].count == 400)
        // An MPC whose model has the wrong gain does worse against the same plant.
        let mismatched = ClosedLoopReplay.run(
            controller: try Self.controller(model: try Self.plant(gains: (0.5, -0.2)), setpoint: 50), plant: model,
            scenario: Self.scenario(setpoints: setpoints))
        #expect(mismatched.iae[0] > run.iae[0])
    }

    @Test("a controller reused for the next stretch starts from that stretch's targets, not the last one's")
    func targetsDoNotLeakBetweenStretches() throws {
        let model = try Self.plant()
        let controller = try Self.controller(model: model, setpoint: 50)
        let step = (0..<300).map { $0 < 20 ? 50.0 : 52.0 }
        _ = ClosedLoopReplay.run(controller: controller, plant: model, scenario: Self.scenario(setpoints: step))
        // No setpoint recorded in the next stretch: the configured target (50) holds there.
        let unrecorded = [Double](repeating: .nan, count: 300)
        let next = ClosedLoopReplay.run(
            controller: controller, plant: model, scenario: Self.scenario(setpoints: unrecorded))
        #expect(abs(next.outputs[0].last! - 50) < 0.05, "CV ends at \(next.outputs[0].last!)")
        #expect(next.iae[0] < 1e-6, "IAE \(next.iae[0])")
    }

    @Test("p99 by nearest rank")
    func quantile() {
        #expect(ClosedLoopReplay.quantile(Array(1...100), 0.99) == 99)
        #expect(ClosedLoopReplay.quantile([], 0.99) == 0)
        #expect(ClosedLoopReplay.quantile([7], 0.99) == 7)
    }
}
