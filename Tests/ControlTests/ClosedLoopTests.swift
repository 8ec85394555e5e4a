import Testing

@testable import Control

/// Closed-loop record of one simulation.
struct Trace {
    var y: [[Double]] = []
    var u: [[Double]] = []
    var statuses: [QPStatus] = []

    /// Largest |y_i − target| over samples `range`.
    func maxError(_ i: Int, _ target: Double, _ range: Range<Int>) -> Double {
        range.map { abs(y[$0][i] - target) }.max() ?? .infinity
    }

    /// Asserts hard MV bounds and per-direction rates held at every sample.
    func checkInputs(_ mvs: [MVSettings], initial: [Double], sourceLocation: SourceLocation = #_sourceLocation) {
        var previous = initial
        for (k, u) in u.enumerated() {
            for l in 0..<mvs.count {
                let lowOK = u[l] >= mvs[l].low - 1e-9
                let highOK = u[l] <= mvs[l].high + 1e-9
                let move = u[l] - previous[l]
                let rateOK = move <= mvs[l].maxIncrease + 1e-9 && -move <= mvs[l].maxDecrease + 1e-9
                #expect(
                    lowOK && highOK && rateOK, "sample \(k), MV \(l): u = \(u[l]), move \(move)",
                    sourceLocation: sourceLocation)
                if !(lowOK && highOK && rateOK) { return }
            }
            previous = u
        }
    }
}

/// Quadruple-tank closed loop: MPC built on the linearization at `v0`, plant nonlinear (RK4) with
/// pump gains scaled by `gainError` and an unmeasured leak from tank 2 switched on at `leakAt`.
func runQuadrupleTank(
    plant nominal: QuadrupleTank, v0: (Double, Double), period: Double = 10, np: Int = 30, nc: Int = 10,
    outputs: [CVSettings], inputs: [MVSettings], gainError: (Double, Double), leakAt: Int?, leak: Double = -1.0,
    steps: Int,
    events: (Int, ModelPredictiveController) throws -> Void = { _, _ in }
) throws -> Trace {
    let model = try nominal.linearModel(voltages: v0, period: period)
    let mpc = try ModelPredictiveController(
        model: model,
        configuration: MPCConfiguration(predictionHorizon: np, controlHorizon: nc, outputs: outputs, inputs: inputs))
    var plant = nominal
    plant.pumpGain = (nominal.pumpGain.0 * gainError.0, nominal.pumpGain.1 * gainError.1)
    var h = plant.steadyState(voltages: v0)
    var u = [v0.0, v0.1]
    var output = u
    var trace = Trace()
    for k in 0..<steps {
        try events(k, mpc)
        let y = [plant.sensorGain * h.0, plant.sensorGain * h.1]
        let result = mpc.step(measurement: y, disturbance: [], appliedInput: u, output: &output)
        trace.statuses.append(result.status)
        u = output
        trace.y.append(y)
        trace.u.append(u)
        let inflow = (leakAt.map { k >= $0 } ?? false) ? leak : 0
        plant.advance(levels: &h, voltages: (u[0], u[1]), inflow: (0, inflow, 0, 0), duration: period)
    }
    return trace
}

@Suite struct ClosedLoopTests {
    static let tankInputs = [
        MVSettings(moveWeight: 0.5, low: 0.5, high: 6, maxIncrease: 0.15, maxDecrease: 0.15),
        MVSettings(moveWeight: 0.5, low: 0.5, high: 6, maxIncrease: 0.15, maxDecrease: 0.15),
    ]

    /// Pump-gain errors of the plant against the model: none, ±20 % on both, +20 % on one pump only.
    static let gainErrors: [(Double, Double)] = [(1, 1), (1.2, 1.2), (0.8, 0.8), (1.2, 1), (1, 1.2)]

    @Test(arguments: gainErrors)
    func minimumPhaseTankTracksWithoutOffset(gainError: (Double, Double)) throws {
        let plant = QuadrupleTank.minimumPhase
        let h0 = plant.steadyState(voltages: (3, 3))
        let y1 = 0.5 * h0.0 + 0.6
        let y2 = 0.5 * h0.1 - 0.4
        let trace = try runQuadrupleTank(
            plant: plant, v0: (3, 3),
            outputs: [CVSettings(target: .setpoint(0.5 * h0.0)), CVSettings(target: .setpoint(0.5 * h0.1))],
            inputs: Self.tankInputs, gainError: gainError, leakAt: 200, steps: 400
        ) { k, mpc in
            if k == 5 {
                try mpc.setTarget(0, .setpoint(y1))
                try mpc.setTarget(1, .setpoint(y2))
            }
        }
        trace.checkInputs(Self.tankInputs, initial: [3, 3])
        #expect(trace.statuses.allSatisfy { $0 == .optimal })
        // Settled before the leak, and again after it: no steady-state offset either time.
        #expect(trace.maxError(0, y1, 180..<200) < 2e-3)
        #expect(trace.maxError(1, y2, 180..<200) < 2e-3)
        #expect(trace.maxError(0, y1, 380..<400) < 2e-3)
        #expect(trace.maxError(1, y2, 380..<400) < 2e-3)
        // The rate limit must have been active during the transient (the test exercises it).
        let biggestMove = zip(trace.u.dropFirst(), trace.u).map { abs($0[0] - $1[0]) }.max() ?? 0
        #expect(biggestMove > 0.15 - 1e-6)
    }

    @Test(arguments: gainErrors)
    func nonMinimumPhaseTankTracksWithoutOffset(gainError: (Double, Double)) throws {
        let plant = QuadrupleTank.nonMinimumPhase
        let v0 = (3.15, 3.15)
        let h0 = plant.steadyState(voltages: v0)
        let y1 = 0.5 * h0.0 + 0.4
        let y2 = 0.5 * h0.1 + 0.2
        let trace = try runQuadrupleTank(
            plant: plant, v0: v0, np: 60, nc: 20,
            outputs: [CVSettings(target: .setpoint(0.5 * h0.0)), CVSettings(target: .setpoint(0.5 * h0.1))],
            inputs: Self.tankInputs, gainError: gainError, leakAt: 400, leak: -0.5, steps: 800
        ) { k, mpc in
            if k == 5 {
                try mpc.setTarget(0, .setpoint(y1))
                try mpc.setTarget(1, .setpoint(y2))
            }
        }
        trace.checkInputs(Self.tankInputs, initial: [3.15, 3.15])
        #expect(trace.statuses.allSatisfy { $0 == .optimal })
        #expect(trace.maxError(0, y1, 370..<400) < 2e-3)
        #expect(trace.maxError(1, y2, 370..<400) < 2e-3)
        #expect(trace.maxError(0, y1, 770..<800) < 2e-3)
        #expect(trace.maxError(1, y2, 770..<800) < 2e-3)
    }

    @Test func softLimitOverridesAnUnreachableSetpointExactly() throws {
        // Setpoint 7.6 V on y1 but a soft high limit at 7.0 V: the exact penalty puts y1 on the
        // limit (not between limit and setpoint), and the transient never crosses it by more than
        // the plant/model mismatch allows.
        let plant = QuadrupleTank.minimumPhase
        let h0 = plant.steadyState(voltages: (3, 3))
        let trace = try runQuadrupleTank(
            plant: plant, v0: (3, 3),
            outputs: [
                CVSettings(target: .setpoint(7.6), softHigh: 7.0), CVSettings(target: .setpoint(0.5 * h0.1)),
            ],
            inputs: Self.tankInputs, gainError: (1, 1), leakAt: nil, steps: 250)
        trace.checkInputs(Self.tankInputs, initial: [3, 3])
        #expect(trace.maxError(0, 7.0, 200..<250) < 2e-3)
        let peak = trace.y.map { $0[0] }.max()!
        #expect(peak < 7.0 + 0.02, "peak \(peak)")
    }

    @Test func softLimitHeldOnACoupledOutputDuringASetpointStep() throws {
        // Raising y2 pushes y1 up through the coupling; y1 is range-controlled with a soft high limit
        // just above where it starts. Without the limit the same run overshoots it (checked too).
        let plant = QuadrupleTank.minimumPhase
        let h0 = plant.steadyState(voltages: (3, 3))
        let limit = 0.5 * h0.0 + 0.1
        func run(softHigh: Double) throws -> Trace {
            try runQuadrupleTank(
                plant: plant, v0: (3, 3),
                outputs: [
                    CVSettings(
                        weight: 0.05, target: .range(low: 0.5 * h0.0 - 1, high: 0.5 * h0.0 + 1), softHigh: softHigh),
                    CVSettings(target: .setpoint(0.5 * h0.1 + 0.8)),
                ],
                inputs: Self.tankInputs, gainError: (1, 1), leakAt: nil, steps: 250)
        }
        let limited = try run(softHigh: limit)
        let peak = limited.y.map { $0[0] }.max()!
        #expect(peak <= limit + 5e-3, "peak \(peak) vs limit \(limit)")
        #expect(limited.maxError(1, 0.5 * h0.1 + 0.8, 220..<250) < 2e-3)
        let free = try run(softHigh: .infinity)
        let freePeak = free.y.map { $0[0] }.max()!
        #expect(freePeak > limit + 0.05, "without the limit y1 peaks at \(freePeak)")
    }

    @Test(arguments: [1.0, 1.2])
    func woodBerryTracksWithoutOffsetUnderFeedDisturbance(gainError: Double) throws {
        let model = try StateSpaceModel.fromTransferFunctions(
            WoodBerry.transferFunctions, period: 1, inputNominal: [1.95, 1.71], outputNominal: [96, 0.5])
        var scaled = WoodBerry.transferFunctions
        for i in 0..<2 { for j in 0..<2 { scaled[i][j]!.gain *= gainError } }
        let plant = try StateSpaceModel.fromTransferFunctions(
            scaled, disturbances: WoodBerry.feedDisturbance, period: 1)
        let inputs = [
            MVSettings(moveWeight: 2, low: 1.2, high: 2.7, maxIncrease: 0.05, maxDecrease: 0.05),
            MVSettings(moveWeight: 2, low: 1.0, high: 2.4, maxIncrease: 0.05, maxDecrease: 0.05),
        ]
        let mpc = try ModelPredictiveController(
            model: model,
            configuration: MPCConfiguration(
                predictionHorizon: 40, controlHorizon: 10,
                outputs: [CVSettings(target: .setpoint(96)), CVSettings(target: .setpoint(0.5))], inputs: inputs))
        var x = [Double](repeating: 0, count: plant.stateCount)
        var u = [1.95, 1.71]
        var output = u
        var trace = Trace()
        for k in 0..<400 {
            if k == 10 { try mpc.setTarget(0, .setpoint(97)) }
            if k == 20 { try mpc.setTarget(1, .setpoint(1.0)) }
            var y = [96.0, 0.5]
            for i in 0..<2 { for s in 0..<plant.stateCount { y[i] += plant.c[i * plant.stateCount + s] * x[s] } }
            let result = mpc.step(measurement: y, disturbance: [], appliedInput: u, output: &output)
            trace.statuses.append(result.status)
            u = output
            trace.y.append(y)
            trace.u.append(u)
            let feed = k >= 200 ? 0.3 : 0.0
            var next = [Double](repeating: 0, count: plant.stateCount)
            for r in 0..<plant.stateCount {
                for s in 0..<plant.stateCount { next[r] += plant.a[r * plant.stateCount + s] * x[s] }
                next[r] += plant.b[r * 2] * (u[0] - 1.95) + plant.b[r * 2 + 1] * (u[1] - 1.71) + plant.bd[r] * feed
            }
            x = next
        }
        trace.checkInputs(inputs, initial: [1.95, 1.71])
        #expect(trace.statuses.allSatisfy { $0 == .optimal })
        #expect(trace.maxError(0, 97, 180..<200) < 1e-3)
        #expect(trace.maxError(1, 1.0, 180..<200) < 1e-3)
        #expect(trace.maxError(0, 97, 380..<400) < 1e-3)
        #expect(trace.maxError(1, 1.0, 380..<400) < 1e-3)
    }

    @Test func measuredDisturbanceFeedforwardBeatsFeedbackAlone() throws {
        // Same feed step, measured vs unmeasured: feedforward must cut the peak deviation.
        func peakDeviation(measured: Bool) throws -> Double {
            let model = try StateSpaceModel.fromTransferFunctions(
                WoodBerry.transferFunctions, disturbances: measured ? WoodBerry.feedDisturbance : [], period: 1)
            let plant = try StateSpaceModel.fromTransferFunctions(
                WoodBerry.transferFunctions, disturbances: WoodBerry.feedDisturbance, period: 1)
            let mpc = try ModelPredictiveController(
                model: model,
                configuration: MPCConfiguration(
                    predictionHorizon: 40, controlHorizon: 10,
                    outputs: [CVSettings(), CVSettings()],
                    inputs: [MVSettings(moveWeight: 0.5), MVSettings(moveWeight: 0.5)]))
            var x = [Double](repeating: 0, count: plant.stateCount)
            var u = [0.0, 0.0]
            var output = u
            var peak = 0.0
            for k in 0..<150 {
                let feed = k >= 10 ? 0.3 : 0.0
                var y = [0.0, 0.0]
                for i in 0..<2 { for s in 0..<plant.stateCount { y[i] += plant.c[i * plant.stateCount + s] * x[s] } }
                _ = mpc.step(measurement: y, disturbance: measured ? [feed] : [], appliedInput: u, output: &output)
                u = output
                peak = max(peak, abs(y[0]), abs(y[1]))
                var next = [Double](repeating: 0, count: plant.stateCount)
                for r in 0..<plant.stateCount {
                    for s in 0..<plant.stateCount { next[r] += plant.a[r * plant.stateCount + s] * x[s] }
                    next[r] += plant.b[r * 2] * u[0] + plant.b[r * 2 + 1] * u[1] + plant.bd[r] * feed
                }
                x = next
            }
            return peak
        }
        let withFeedforward = try peakDeviation(measured: true)
        let feedbackOnly = try peakDeviation(measured: false)
        #expect(withFeedforward < 0.5 * feedbackOnly, "feedforward \(withFeedforward) vs feedback \(feedbackOnly)")
    }
}

@Suite struct MPCInputTests {
    func makeMPC() throws -> ModelPredictiveController {
        try ModelPredictiveController(
            model: QuadrupleTank.minimumPhase.linearModel(voltages: (3, 3), period: 10),
            configuration: MPCConfiguration(
                predictionHorizon: 10, controlHorizon: 3,
                outputs: [CVSettings(target: .setpoint(6.5)), CVSettings(target: .setpoint(6.3))],
                inputs: [
                    MVSettings(low: 0, high: 4, maxIncrease: 0.2, maxDecrease: 0.3),
                    MVSettings(low: 0, high: 4, maxIncrease: 0.2, maxDecrease: 0.3),
                ]))
    }

    @Test func badInputsReturnAStatusAndHold() throws {
        let mpc = try makeMPC()
        var output = [0.0, 0.0]
        let nan = mpc.step(measurement: [.nan, 6], disturbance: [], appliedInput: [3, 3], output: &output)
        #expect(nan.status == .invalidInput && output == [3, 3])
        let wrongSize = mpc.step(measurement: [6], disturbance: [], appliedInput: [3, 3], output: &output)
        #expect(wrongSize.status == .invalidInput)
        let fine = mpc.step(measurement: [6.2, 6.35], disturbance: [], appliedInput: [3, 3], output: &output)
        #expect(fine.status == .optimal)
    }

    @Test func anMVOutsideItsLimitsReturnsAtItsRate() throws {
        // After manual operation the MV sits at 5 V, above its 4 V limit: the QP stays feasible and
        // the MV comes back down by exactly the rate limit per sample.
        let mpc = try makeMPC()
        var output = [0.0, 0.0]
        var u = [5.0, 3.0]
        for _ in 0..<3 {
            let r = mpc.step(measurement: [6.2, 6.35], disturbance: [], appliedInput: u, output: &output)
            #expect(r.status == .optimal)
            #expect(abs(output[0] - (u[0] - 0.3)) < 1e-9)
            u = output
        }
        #expect(throws: ControlError.self) { try mpc.setSoftLimits(0, low: 5, high: 7) }  // no rows at build
        #expect(throws: ControlError.self) { try mpc.setTarget(0, .range(low: 2, high: 1)) }
    }
}
