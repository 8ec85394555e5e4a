import Control
import Identification
import Testing

/// Recovery of known transfer functions from GBN-excited simulated data with measurement noise.
@Suite struct TransferFunctionTests {
    /// Tolerances: gain within 3 %, time constant within 10 %, dead time within 1 s (one period), and every
    /// true parameter within 4 reported standard deviations of its estimate.
    @Test func recoversFirstOrderPlusFractionalDeadTime() throws {
        let period = 1.0
        let truth = FirstOrderDeadTime(gain: 2, timeConstant: 20, deadTime: 7.5)
        let plant = try StateSpaceModel.fromTransferFunctions([[truth]], period: period)
        let u = Plants.gbn(inputs: 1, count: 2400, settlingTime: 90, period: period, amplitude: 1, seed: 11)
        let y = Plants.noisy(Plants.simulate(plant, inputs: u)[0], sigma: 0.05, seed: 12)
        let data = try PreparedData(period: period, inputs: u, outputs: [y])
        let result = try Identifier(options: IdentificationOptions(structure: .fopdt)).identify(data)
        let path = try #require(result.transferFunctions?.first?.paths.first)
        #expect(path.kind == .firstOrder)
        #expect(abs(path.gain - 2) < 0.06)
        #expect(abs(path.timeConstant - 20) < 2)
        #expect(abs(path.deadTime - 7.5) < 1)
        let sd = try #require(path.uncertainty)
        #expect(sd.gain > 0 && abs(path.gain - 2) < 4 * sd.gain)
        #expect(sd.timeConstant > 0 && abs(path.timeConstant - 20) < 4 * sd.timeConstant)
        #expect(sd.deadTime > 0 && abs(path.deadTime - 7.5) < 4 * sd.deadTime)
        #expect(result.outputs[0].validationFitPercent > 90)
        #expect(result.outputs[0].residuals.isWhite)
        #expect(result.outputs[0].residuals.isUncorrelatedWithInputs)
    }

    /// Two MVs onto one CV, fitted jointly.
    @Test func recoversTwoInputsOntoOneOutput() throws {
        let period = 1.0
        let g1 = FirstOrderDeadTime(gain: 1.5, timeConstant: 15, deadTime: 3)
        let g2 = FirstOrderDeadTime(gain: -0.8, timeConstant: 30, deadTime: 10)
        let plant = try StateSpaceModel.fromTransferFunctions([[g1, g2]], period: period)
        let u = Plants.gbn(inputs: 2, count: 3000, settlingTime: 130, period: period, amplitude: 1, seed: 21)
        let y = Plants.noisy(Plants.simulate(plant, inputs: u)[0], sigma: 0.05, seed: 22)
        let data = try PreparedData(period: period, inputs: u, outputs: [y])
        let result = try Identifier(options: IdentificationOptions(structure: .fopdt)).identify(data)
        let paths = try #require(result.transferFunctions?.first?.paths)
        #expect(paths.count == 2)
        for (path, truth) in zip(paths, [g1, g2]) {
            #expect(abs(path.gain - truth.gain) < 0.03 * abs(truth.gain))
            #expect(abs(path.timeConstant - truth.timeConstant) < 0.1 * truth.timeConstant)
            #expect(abs(path.deadTime - truth.deadTime) < 1)
        }
        #expect(result.outputs[0].validationFitPercent > 90)
    }

    /// K·e^(−θs)/s: the automatic structure must choose integrating and recover K and θ.
    @Test func recoversIntegratingPlant() throws {
        let period = 1.0
        let gain = 0.02
        let delay = 5
        let plant = try StateSpaceModel.discretizing(continuousA: [[0]], b: [[gain]], c: [[1]], period: period)
        let u = Plants.gbn(inputs: 1, count: 2400, settlingTime: 60, period: period, amplitude: 1, seed: 31)
        let y = Plants.noisy(
            Plants.simulate(plant, inputs: [Plants.delayed(u[0], by: delay)])[0], sigma: 0.02, seed: 32)
        let data = try PreparedData(period: period, inputs: u, outputs: [y])
        let result = try Identifier().identify(data)
        let path = try #require(result.transferFunctions?.first?.paths.first)
        #expect(path.kind == .integrating)
        #expect(abs(path.gain - gain) < 0.03 * gain)
        #expect(abs(path.deadTime - Double(delay)) < 1)
        #expect(result.outputs[0].validationFitPercent > 90)
    }

    /// K·e^(−θs)/((τ₁s+1)(τ₂s+1)): the automatic structure must choose second order.
    @Test func recoversSecondOrderPlusDeadTime() throws {
        let period = 1.0
        let (k, t1, t2, delay) = (1.0, 25.0, 10.0, 4)
        // x₁' = (−x₁ + K·u)/τ₁, x₂' = (x₁ − x₂)/τ₂, y = x₂
        let plant = try StateSpaceModel.discretizing(
            continuousA: [[-1 / t1, 0], [1 / t2, -1 / t2]], b: [[k / t1], [0]], c: [[0, 1]], period: period)
        let u = Plants.gbn(inputs: 1, count: 3000, settlingTime: 160, period: period, amplitude: 1, seed: 41)
        let y = Plants.noisy(
            Plants.simulate(plant, inputs: [Plants.delayed(u[0], by: delay)])[0], sigma: 0.01, seed: 42)
        let data = try PreparedData(period: period, inputs: u, outputs: [y])
        let result = try Identifier().identify(data)
        let path = try #require(result.transferFunctions?.first?.paths.first)
        #expect(path.kind == .secondOrder)
        #expect(abs(path.gain - k) < 0.03 * k)
        #expect(abs(path.timeConstant - t1) < 0.15 * t1)
        #expect(abs(path.secondTimeConstant - t2) < 0.25 * t2)
        #expect(abs(path.deadTime - Double(delay)) < 2)
        #expect(result.outputs[0].validationFitPercent > 95)
    }

    /// On a true first-order plant the automatic structure keeps first order: extra poles must earn their place.
    @Test func automaticStructureKeepsFirstOrderWhenThatIsEnough() throws {
        let period = 1.0
        let plant = try StateSpaceModel.fromTransferFunctions(
            [[FirstOrderDeadTime(gain: -1.2, timeConstant: 12, deadTime: 2)]], period: period)
        let u = Plants.gbn(inputs: 1, count: 2000, settlingTime: 60, period: period, amplitude: 1, seed: 51)
        let y = Plants.noisy(Plants.simulate(plant, inputs: u)[0], sigma: 0.05, seed: 52)
        let result = try Identifier().identify(PreparedData(period: period, inputs: u, outputs: [y]))
        let chosen = try #require(result.transferFunctions?.first)
        #expect(chosen.paths[0].kind == .firstOrder)
        #expect(chosen.candidates.count >= 3)
        #expect(abs(chosen.paths[0].gain + 1.2) < 0.04)
    }
}

/// Mixed structures on one CV, and the hand-over to Control.
@Suite struct MixedStructureTests {
    /// MV1 acts through one lag, MV2 through two: the automatic structure promotes only MV2's path.
    @Test func promotesOnlyThePathThatNeedsASecondPole() throws {
        let period = 1.0
        let first = try StateSpaceModel.fromTransferFunctions(
            [[FirstOrderDeadTime(gain: 1, timeConstant: 12, deadTime: 2)]], period: period)
        let second = try StateSpaceModel.discretizing(
            continuousA: [[-1.0 / 20, 0], [1.0 / 8, -1.0 / 8]], b: [[-0.7 / 20], [0]], c: [[0, 1]], period: period)
        let u = Plants.gbn(inputs: 2, count: 3000, settlingTime: 130, period: period, amplitude: 1, seed: 91)
        let clean = zip(
            Plants.simulate(first, inputs: [u[0]])[0], Plants.simulate(second, inputs: [Plants.delayed(u[1], by: 3)])[0]
        ).map { $0 + $1 }
        let y = Plants.noisy(clean, sigma: 0.01, seed: 92)
        let result = try Identifier().identify(PreparedData(period: period, inputs: u, outputs: [y]))
        let paths = try #require(result.transferFunctions?.first?.paths)
        #expect(paths.map(\.kind) == [.firstOrder, .secondOrder])
        #expect(abs(paths[0].gain - 1) < 0.03 && abs(paths[0].timeConstant - 12) < 1.2)
        #expect(abs(paths[1].gain + 0.7) < 0.03 && abs(paths[1].deadTime - 3) < 2)
        #expect(abs(paths[1].timeConstant - 20) < 3 && abs(paths[1].secondTimeConstant - 8) < 2)
        // Not all first order: no Control FOPDT model.
        #expect(try result.transferFunctionModel() == nil)
    }

    /// An all-FOPDT result becomes a Control model with the identified steady-state gains.
    @Test func fopdtResultBecomesAControlModel() throws {
        let period = 1.0
        let truth = [[FirstOrderDeadTime(gain: 2, timeConstant: 10, deadTime: 2)]]
        let plant = try StateSpaceModel.fromTransferFunctions(truth, period: period)
        let u = Plants.gbn(inputs: 1, count: 1500, settlingTime: 45, period: period, amplitude: 1, seed: 93)
        let y = Plants.noisy(Plants.simulate(plant, inputs: u)[0], sigma: 0.02, seed: 94)
        let result = try Identifier(options: IdentificationOptions(structure: .fopdt))
            .identify(PreparedData(period: period, inputs: u, outputs: [y]))
        let model = try #require(try result.transferFunctionModel(inputNominal: [50], outputNominal: [20]))
        let gain = try model.steadyStateGain()
        #expect(abs(gain[0] - result.transferFunctions![0].paths[0].gain) < 1e-9)
        #expect(abs(gain[0] - 2) < 0.06)
        #expect(model.inputNominal == [50] && model.outputNominal == [20])
    }
}

/// Data that cannot identify everything must still give what it can, not a crash or NaNs.
@Suite struct DegenerateDataTests {
    /// MV2 never moved: MV1's path is still recovered; MV2's parameters are whatever, but finite.
    @Test func anMVThatNeverMovedDoesNotSpoilTheOthers() throws {
        let period = 1.0
        let plant = try StateSpaceModel.fromTransferFunctions(
            [[FirstOrderDeadTime(gain: 1.5, timeConstant: 10, deadTime: 2)]], period: period)
        let u = Plants.gbn(inputs: 1, count: 1500, settlingTime: 45, period: period, amplitude: 1, seed: 95)
        let y = Plants.noisy(Plants.simulate(plant, inputs: u)[0], sigma: 0.02, seed: 96)
        let flat = [Double](repeating: 4, count: 1500)
        let result = try Identifier(options: IdentificationOptions(structure: .fopdt))
            .identify(PreparedData(period: period, inputs: [u[0], flat], outputs: [y]))
        let paths = try #require(result.transferFunctions?.first?.paths)
        #expect(abs(paths[0].gain - 1.5) < 0.05)
        #expect(abs(paths[0].timeConstant - 10) < 1)
        #expect(paths[1].gain.isFinite && paths[1].timeConstant.isFinite && paths[1].deadTime.isFinite)
        #expect(result.outputs[0].validationFitPercent > 90)
        // Order 3: one lag and two samples of dead time.
        let stateSpace = try Identifier(options: IdentificationOptions(structure: .stateSpace(order: 3)))
            .identify(PreparedData(period: period, inputs: [u[0], flat], outputs: [y]))
        #expect(stateSpace.outputs[0].validationFitPercent > 90)
    }

    @Test func tooLittleDataIsAnError() throws {
        let data = try PreparedData(period: 1, inputs: [[1, -1, 1, -1]], outputs: [[0, 1, 0, 1]])
        #expect(throws: IdentificationError.self) { try Identifier().identify(data) }
    }
}

/// Records longer than the search sample (20,000 estimation samples): the search stages look at the first
/// part only, the final fit at all of it.
@Suite struct LongRecordTests {
    @Test func longRecordUsesTheSearchSampleAndStillRecoversThePlant() throws {
        let period = 1.0
        let truth = FirstOrderDeadTime(gain: -0.6, timeConstant: 25, deadTime: 4.5)
        let plant = try StateSpaceModel.fromTransferFunctions([[truth]], period: period)
        let u = Plants.gbn(inputs: 1, count: 36_000, settlingTime: 110, period: period, amplitude: 1, seed: 97)
        let clean = Plants.simulate(plant, inputs: u)[0]
        let y = Plants.noisy(clean, sigma: 0.05, seed: 98)
        let result = try Identifier(options: IdentificationOptions(structure: .fopdt))
            .identify(PreparedData(period: period, inputs: u, outputs: [y]))
        #expect(result.estimationSamples == 24_000)
        // The noise caps fit %: the true model itself scores this on the validation part.
        let validation = 24_000..<36_000
        let truthFit = FitMetrics.fitPercent(
            residuals: validation.map { y[$0] - clean[$0] }, measured: Array(y[validation]))
        #expect(result.outputs[0].validationFitPercent > truthFit - 0.5)
        let path = try #require(result.transferFunctions?.first?.paths.first)
        #expect(abs(path.gain + 0.6) < 0.01)
        #expect(abs(path.timeConstant - 25) < 1)
        #expect(abs(path.deadTime - 4.5) < 0.5)
    }
}
