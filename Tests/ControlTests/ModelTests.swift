import Foundation
import Testing

@testable import Control

@Suite struct ModelTests {
    /// Simulates a model's output for a unit step on input `input` applied at sample 0.
    func stepResponse(_ model: StateSpaceModel, input: Int, output: Int, samples: Int) -> [Double] {
        var x = [Double](repeating: 0, count: model.stateCount)
        var y = [Double]()
        for _ in 0..<samples {
            var yi = 0.0
            for k in 0..<model.stateCount { yi += model.c[output * model.stateCount + k] * x[k] }
            y.append(yi)
            var next = [Double](repeating: 0, count: model.stateCount)
            for r in 0..<model.stateCount {
                for k in 0..<model.stateCount { next[r] += model.a[r * model.stateCount + k] * x[k] }
                next[r] += model.b[r * model.inputCount + input]
            }
            x = next
        }
        return y
    }

    @Test func fopdtDiscretizationIsExactAtSamples() throws {
        // 2.5·e^(−2.6 s)/(4s + 1) sampled at T = 1: y(kT) = K·(1 − e^(−(kT − θ)/τ)) for kT > θ.
        let model = try StateSpaceModel.fromTransferFunctions(
            [[FirstOrderDeadTime(gain: 2.5, timeConstant: 4, deadTime: 2.6)]], period: 1)
        let y = stepResponse(model, input: 0, output: 0, samples: 30)
        for k in 0..<30 {
            let t = Double(k)
            let exact = t > 2.6 ? 2.5 * (1 - Foundation.exp(-(t - 2.6) / 4)) : 0
            #expect(abs(y[k] - exact) < 1e-12, "sample \(k): \(y[k]) vs \(exact)")
        }
    }

    @Test func woodBerryHasSharedDelayChainsAndRightGains() throws {
        let model = try StateSpaceModel.fromTransferFunctions(
            WoodBerry.transferFunctions, disturbances: WoodBerry.feedDisturbance, period: 1)
        #expect(model.inputCount == 2 && model.outputCount == 2 && model.disturbanceCount == 1)
        // 4 + 2 lags, chains: input 0 → 7, input 1 → 3, feed → 9 (8.1 min needs 9 past samples).
        #expect(model.stateCount == 6 + 7 + 3 + 9)
        let gain = try model.steadyStateGain()
        let expected = [12.8, -18.9, 6.6, -19.4]
        for k in 0..<4 { #expect(abs(gain[k] - expected[k]) < 1e-9) }
        #expect(model.isAsymptoticallyStable)
        let y = stepResponse(model, input: 0, output: 1, samples: 12)
        #expect(y[7] == 0 && y[8] > 0)  // 7 min dead time, sampled every minute
    }

    @Test func quadrupleTankLinearizationMatchesNonlinearPlant() throws {
        let plant = QuadrupleTank.minimumPhase
        let h = plant.steadyState(voltages: (3, 3))
        #expect(abs(h.0 - 12.4) < 0.3 && abs(h.1 - 12.7) < 0.3 && abs(h.2 - 1.8) < 0.2 && abs(h.3 - 1.4) < 0.2)
        let d = plant.derivative(levels: h, voltages: (3, 3))
        #expect(abs(d.0) + abs(d.1) + abs(d.2) + abs(d.3) < 1e-12)
        let model = try plant.linearModel(voltages: (3, 3), period: 10)
        // Small step on v1: the nonlinear plant's output after 50 s agrees with the linear model.
        var levels = h
        plant.advance(levels: &levels, voltages: (3.05, 3), duration: 50)
        let y = stepResponse(model, input: 0, output: 0, samples: 6)
        #expect(abs(plant.sensorGain * (levels.0 - h.0) - 0.05 * y[5]) < 2e-4)
        // The non-minimum-phase point has the zero in the right half-plane: opposite-sign DC gain determinant.
        let gMin = try model.steadyStateGain()
        let nmp = try QuadrupleTank.nonMinimumPhase.linearModel(voltages: (3.15, 3.15), period: 10)
        let gNmp = try nmp.steadyStateGain()
        #expect(gMin[0] * gMin[3] - gMin[1] * gMin[2] > 0)
        #expect(gNmp[0] * gNmp[3] - gNmp[1] * gNmp[2] < 0)
    }

    @Test func discretizationMatchesMatrixExponential() throws {
        // ẋ = −2x + u: A_d = e^(−2T), B_d = (1 − e^(−2T))/2.
        let model = try StateSpaceModel.discretizing(continuousA: [[-2]], b: [[1]], c: [[1]], period: 0.3)
        #expect(abs(model.a[0] - Foundation.exp(-0.6)) < 1e-14)
        #expect(abs(model.b[0] - (1 - Foundation.exp(-0.6)) / 2) < 1e-14)
    }

    @Test func badModelsGiveClearErrors() {
        func message(_ body: () throws -> Void) -> String {
            do {
                try body()
                return ""
            } catch { return (error as? ControlError)?.message ?? "not a ControlError: \(error)" }
        }
        #expect(
            message { _ = try StateSpaceModel(a: [[1, 0]], b: [[1]], c: [[1]], period: 1) }.contains("A row 0 has 2"))
        #expect(
            message { _ = try StateSpaceModel(a: [[0.5]], b: [[1], [2]], c: [[1]], period: 1) }.contains(
                "B has 2 rows; expected 1"))
        #expect(message { _ = try StateSpaceModel(a: [[.nan]], b: [[1]], c: [[1]], period: 1) }.contains("A element 0"))
        #expect(message { _ = try StateSpaceModel(a: [[0.5]], b: [[1]], c: [[1]], period: 0) }.contains("period"))
        #expect(
            message {
                _ = try StateSpaceModel.fromTransferFunctions(
                    [[FirstOrderDeadTime(gain: 1, timeConstant: -1)]], period: 1)
            }.contains("G[0][0] time constant"))
        #expect(
            message {
                let unstable = try StateSpaceModel(a: [[1.01]], b: [[1]], c: [[1]], period: 1)
                _ = try ModelPredictiveController(
                    model: unstable,
                    configuration: MPCConfiguration(
                        predictionHorizon: 5, controlHorizon: 2, outputs: [CVSettings()], inputs: [MVSettings()]))
            }.contains("not asymptotically stable"))
        #expect(
            message {
                let model = try StateSpaceModel(a: [[0.5]], b: [[1]], c: [[1]], period: 1)
                _ = try ModelPredictiveController(
                    model: model,
                    configuration: MPCConfiguration(
                        predictionHorizon: 5, controlHorizon: 6, outputs: [CVSettings()], inputs: [MVSettings()]))
            }.contains("control horizon is 6"))
        let stable = try? StateSpaceModel(a: [[0.5, 1], [0, 0.9]], b: [[1], [1]], c: [[1, 0]], period: 1)
        #expect(stable?.isAsymptoticallyStable == true)
        let marginal = try? StateSpaceModel(a: [[1, 0], [0, 0.5]], b: [[1], [1]], c: [[1, 0]], period: 1)
        #expect(marginal?.isAsymptoticallyStable == false)
    }
}
