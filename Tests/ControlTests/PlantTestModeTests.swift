import Control
import Testing

/// TEST mode of `ControlLoop` (decision 0034): precomputed moves around the MVs' values at the start, inside their
/// limits and rate limits, the other MVs held, and the way back to the previous mode on completion, stop, a CV
/// outside its band or a bad input.
@Suite struct PlantTestModeTests {
    static let rate = 0.1
    static let period: UInt64 = 10_000_000_000

    func makeLoop() throws -> (ControlLoop, QuadrupleTank) {
        let plant = QuadrupleTank.minimumPhase
        let h0 = plant.steadyState(voltages: (3, 3))
        let mv = MVSettings(moveWeight: 0.5, low: 0.5, high: 6, maxIncrease: Self.rate, maxDecrease: Self.rate)
        let mpc = try ModelPredictiveController(
            model: plant.linearModel(voltages: (3, 3), period: 10),
            configuration: MPCConfiguration(
                predictionHorizon: 30, controlHorizon: 10,
                outputs: [CVSettings(target: .setpoint(0.5 * h0.0)), CVSettings(target: .setpoint(0.5 * h0.1))],
                inputs: [mv, mv]))
        func pid() throws -> PIDController {
            try PIDController(
                settings: PIDSettings(
                    gain: 1.5, integralTime: 60, outputLow: 0.5, outputHigh: 6, maxIncrease: Self.rate,
                    maxDecrease: Self.rate, period: 10),
                initialOutput: 3)
        }
        let loop = try ControlLoop(
            mpc: mpc, pids: [pid(), pid()], pairings: [PIDPairing(cv: 0, mv: 0), PIDPairing(cv: 1, mv: 1)],
            supervisor: SupervisorSettings(solveBudgetNanoseconds: .max, maxInputAgeNanoseconds: 30_000_000_000),
            initialOutputs: [3, 3])
        return (loop, plant)
    }

    /// Runs `cycles` cycles on the plant; `before(k)` may change the loop first. Returns the outputs per cycle and
    /// the transitions.
    func run(
        _ loop: ControlLoop, _ plant: QuadrupleTank, cycles: Int, badCV0At: Int? = nil,
        before: (Int) -> Void = { _ in }
    ) -> (outputs: [[Double]], transitions: [(Int, ModeTransition)]) {
        var h = plant.steadyState(voltages: (3, 3))
        var outputs: [[Double]] = []
        var transitions: [(Int, ModeTransition)] = []
        for k in 0..<cycles {
            let now = UInt64(k) * Self.period
            before(k)
            loop.setMeasurement(0, value: plant.sensorGain * h.0, good: k != badCV0At, timestamp: now)
            loop.setMeasurement(1, value: plant.sensorGain * h.1, good: true, timestamp: now)
            loop.setInputReadback(0, good: true, timestamp: now)
            loop.setInputReadback(1, good: true, timestamp: now)
            if let t = loop.step(now: now).transition { transitions.append((k, t)) }
            outputs.append(loop.outputs)
            plant.advance(levels: &h, voltages: (loop.outputs[0], loop.outputs[1]), duration: 10)
        }
        return (outputs, transitions)
    }

    static func gbn(_ amplitude: Double, cycles: Int) -> [Double] {
        // A fixed alternating pattern of holds, so the test knows exactly what was asked for.
        // Holds of 12 cycles: long enough to reach either level at the rate limit (0.8 at 0.1 per cycle).
        (0..<cycles).map { k in (k / 12) % 2 == 0 ? amplitude : -amplitude }
    }

    @Test func aCompletedTestMovesOnlyTheTestedMVWithinItsRateAndReturnsToTheModeItStartedFrom() throws {
        let (loop, plant) = try makeLoop()
        let test = try PlantTest(
            cycles: 60, offsets: [Self.gbn(0.4, cycles: 60), []], bandLow: [-.infinity, -.infinity],
            bandHigh: [.infinity, .infinity])
        var startedAt: Int?
        var base: [Double] = []
        let (outputs, transitions) = run(loop, plant, cycles: 120) { k in
            if k == 2 { loop.request(.mpc) }
            if k == 20 {
                loop.beginTest(test)
                startedAt = k
            }
        }
        let start = try #require(startedAt)
        base = outputs[start - 1]
        let into = try #require(transitions.first { $0.1.to == .test })
        #expect(into.0 == start && into.1.from == .mpc)
        let out = try #require(transitions.first { $0.1.from == .test })
        #expect(out.1.to == .mpc && out.1.reason == .testEnded(.completed))
        // 60 cycles of moves, then the cycle that ends it.
        #expect(out.0 == start + 60)
        for k in start..<out.0 {
            // The MV not tested holds its value from the start; the tested one moves at most one rate step.
            #expect(outputs[k][1] == base[1], "cycle \(k): MV 1 moved to \(outputs[k][1])")
            #expect(abs(outputs[k][0] - outputs[k - 1][0]) <= Self.rate + 1e-12, "cycle \(k)")
            #expect(abs(outputs[k][0] - base[0]) <= 0.4 + 1e-12)
        }
        // It did move: both levels of the signal were reached.
        let moved = outputs[start..<out.0].map { $0[0] - base[0] }
        #expect((moved.max() ?? 0) > 0.39 && (moved.min() ?? 0) < -0.39, "\(moved)")
        #expect(loop.mode == .mpc && loop.test == nil)
    }

    @Test func movesStayInsideTheMVLimits() throws {
        let (loop, plant) = try makeLoop()
        // An offset of +5 from 3 would ask for 8; the MV's high limit is 6.
        let test = try PlantTest(
            cycles: 80, offsets: [[Double](repeating: 5, count: 80), [Double](repeating: -5, count: 80)],
            bandLow: [-.infinity, -.infinity], bandHigh: [.infinity, .infinity])
        let (outputs, transitions) = run(loop, plant, cycles: 90) { k in if k == 1 { loop.beginTest(test) } }
        let end = try #require(transitions.first { $0.1.reason == .testEnded(.completed) })
        #expect(end.0 == 81)
        // Up to the end; back in MANUAL the MVs return to their values before the test (the runner ramps them).
        for k in 1..<end.0 {
            for l in 0..<2 {
                #expect(outputs[k][l] >= 0.5 - 1e-12 && outputs[k][l] <= 6 + 1e-12)
                #expect(abs(outputs[k][l] - outputs[k - 1][l]) <= Self.rate + 1e-12)
            }
        }
        #expect(outputs[70][0] == 6 && outputs[70][1] == 0.5)
        #expect(outputs[81] == [3, 3])
    }

    @Test func aCVLeavingItsBandAbortsTheTestBackToThePreviousMode() throws {
        let (loop, plant) = try makeLoop()
        let h0 = plant.steadyState(voltages: (3, 3))
        let level1 = plant.sensorGain * h0.0
        // Pump 1 up by 2 V raises tank 1 well past a band 0.5 above where it started.
        let test = try PlantTest(
            cycles: 200, offsets: [[Double](repeating: 2, count: 200), []], bandLow: [-.infinity, -.infinity],
            bandHigh: [level1 + 0.5, .infinity])
        let (outputs, transitions) = run(loop, plant, cycles: 150) { k in
            if k == 1 { loop.request(.pid) }
            if k == 5 { loop.beginTest(test) }
        }
        let out = try #require(transitions.first { $0.1.from == .test })
        #expect(out.1.to == .pid)
        guard case .testEnded(.cvOutsideBand(let cv, let value)) = out.1.reason else {
            Issue.record("ended for \(out.1.reason)")
            return
        }
        #expect(cv == 0 && value > level1 + 0.5)
        #expect(out.0 < 150 && loop.mode == .pid)
        // Back under PID: the switch itself did not move the MVs (bumpless), and the PID then drives them.
        #expect(outputs[out.0] == outputs[out.0 - 1] || abs(outputs[out.0][0] - outputs[out.0 - 1][0]) <= Self.rate)
    }

    @Test func aBadInputAbortsATestStartedInManualAndTheMVsGoBackToTheirValuesBeforeIt() throws {
        let (loop, plant) = try makeLoop()
        let test = try PlantTest(
            cycles: 100, offsets: [[Double](repeating: 0.5, count: 100), []], bandLow: [-.infinity, -.infinity],
            bandHigh: [.infinity, .infinity])
        let (outputs, transitions) = run(loop, plant, cycles: 30, badCV0At: 15) { k in
            if k == 3 { loop.beginTest(test) }
        }
        let out = try #require(transitions.first { $0.1.from == .test })
        #expect(out.0 == 15 && out.1.to == .manual)
        #expect(out.1.reason == .badQuality(.controlledVariable, index: 0))
        #expect(outputs[14][0] > 3.4)
        #expect(outputs[15] == [3, 3] && outputs[29] == [3, 3])
    }

    @Test func aModeAskedForInTheSameCycleAsATestWinsAndTheTestIsDroppedBeforeItBegins() throws {
        let (loop, plant) = try makeLoop()
        let test = try PlantTest(
            cycles: 50, offsets: [[Double](repeating: 0.5, count: 50), []], bandLow: [-.infinity, -.infinity],
            bandHigh: [.infinity, .infinity])
        var dropped: [Int] = []
        let (outputs, transitions) = run(loop, plant, cycles: 10) { k in
            if k == 2 {
                loop.beginTest(test)
                loop.request(.pid)
            }
            if k > 0 && loop.testDropped { dropped.append(k - 1) }
        }
        #expect(dropped == [2])
        #expect(!transitions.contains { $0.1.to == .test || $0.1.from == .test })
        #expect(transitions.first?.1.to == .pid && loop.test == nil)
        #expect(outputs.allSatisfy { abs($0[0] - 3) < 0.2 }, "the test's +0.5 was never applied")
    }

    @Test func theOperatorStopsATestAndABareModeRequestNeverEntersTest() throws {
        let (loop, plant) = try makeLoop()
        let test = try PlantTest(
            cycles: 100, offsets: [Self.gbn(0.3, cycles: 100), Self.gbn(-0.3, cycles: 100)],
            bandLow: [-.infinity, -.infinity], bandHigh: [.infinity, .infinity])
        let (_, transitions) = run(loop, plant, cycles: 40) { k in
            if k == 1 { loop.request(.test) }
            if k == 5 { loop.request(.mpc) }
            if k == 10 { loop.beginTest(test) }
            if k == 25 { loop.stopTest() }
        }
        #expect(!transitions.contains { $0.0 < 10 && $0.1.to == .test })
        let out = try #require(transitions.first { $0.1.from == .test })
        #expect(out.0 == 25 && out.1.to == .mpc && out.1.reason == .testEnded(.stopped))
    }
}
