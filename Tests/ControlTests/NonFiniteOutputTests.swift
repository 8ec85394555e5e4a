import Control
import Testing

/// Issue 15, item 5: a controller output that is not a finite number sheds the loop to MANUAL with a reason, instead
/// of holding a dead output in PID or MPC.
@Suite struct NonFiniteOutputTests {
    func pid() throws -> PIDController {
        try PIDController(
            settings: PIDSettings(
                gain: 1e6, integralTime: 1, outputLow: 0, outputHigh: 10, maxIncrease: 1, maxDecrease: 1, period: 1),
            initialOutput: 3)
    }

    /// Inputs far apart enough that their difference overflows: the PID says so and holds its output.
    @Test func thePIDSaysWhenItsOutputIsNotANumber() throws {
        var controller = try pid()
        controller.setAutomatic(setpoint: 1, measurement: 1)
        _ = controller.update(setpoint: 1, measurement: 1.5)
        #expect(!controller.outputWasNonFinite)
        let output = controller.update(setpoint: -1e308, measurement: 1e308)
        #expect(controller.outputWasNonFinite)
        #expect(output.isFinite, "held")
    }

    /// The same through a whole loop in PID: it sheds to MANUAL in that cycle, names the MV, keeps every MV at its
    /// last finite value, and stays there.
    @Test func aLoopInPIDShedsToManualOnANonFiniteOutput() throws {
        let plant = QuadrupleTank.minimumPhase
        let mvs = [
            MVSettings(moveWeight: 0.5, low: 0, high: 10, maxIncrease: 1, maxDecrease: 1),
            MVSettings(moveWeight: 0.5, low: 0, high: 10, maxIncrease: 1, maxDecrease: 1),
        ]
        let mpc = try ModelPredictiveController(
            model: plant.linearModel(voltages: (3, 3), period: 10),
            configuration: MPCConfiguration(
                predictionHorizon: 30, controlHorizon: 10,
                outputs: [CVSettings(target: .setpoint(10)), CVSettings(target: .setpoint(10))], inputs: mvs))
        let loop = try ControlLoop(
            mpc: mpc, pids: [pid(), pid()], pairings: [PIDPairing(cv: 0, mv: 0), PIDPairing(cv: 1, mv: 1)],
            supervisor: SupervisorSettings(maxInputAgeNanoseconds: 30_000_000_000), initialOutputs: [3, 3])
        var transitions: [ModeTransition] = []
        for k in 0..<10 {
            let now = UInt64(k) * 1_000_000_000
            // From cycle 5 on, CV 1 reads a value whose error times the gain overflows.
            loop.setMeasurement(0, value: 10, good: true, timestamp: now)
            loop.setMeasurement(1, value: k >= 5 ? 1e308 : 10, good: true, timestamp: now)
            loop.setInputReadback(0, good: true, timestamp: now)
            loop.setInputReadback(1, good: true, timestamp: now)
            if k == 1 { loop.request(.pid) }
            let report = loop.step(now: now)
            if let t = report.transition {
                transitions.append(t)
                #expect(t.to == .pid ? k == 1 : k == 5, "cycle \(k): \(t)")
            }
            let finite = loop.outputs.allSatisfy { $0.isFinite }
            #expect(finite, "cycle \(k): \(loop.outputs)")
        }
        #expect(loop.mode == .manual)
        #expect(transitions.map(\.to) == [.pid, .manual], "\(transitions)")
        #expect(transitions.last?.reason == .nonFiniteOutput(mv: 1))
    }
}
