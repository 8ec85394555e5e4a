import Foundation
import Testing

@testable import Identification

@Suite struct SignalTests {
    /// Run lengths of a ±1 sequence (the last, cut-off run excluded).
    static func runs(_ x: [Double]) -> [Int] {
        var runs = [Int]()
        var length = 1
        for k in 1..<x.count {
            if x[k] == x[k - 1] {
                length += 1
            } else {
                runs.append(length)
                length = 1
            }
        }
        return runs
    }

    @Test func gbnHoldsAtLeastTheMinimumAndSwitchesWithTheGivenProbability() {
        let gbn = GeneralizedBinaryNoise(amplitude: 2, switchProbability: 0.1, minimumHold: 5, seed: 7)
        let x = gbn.samples(200_000)
        #expect(Set(x) == [2, -2])
        let runs = Self.runs(x)
        #expect(runs.min() == 5)
        // Mean run: hold − 1 + 1/p = 14 samples; 14,000 runs give a standard error near 0.08.
        let mean = Double(runs.reduce(0, +)) / Double(runs.count)
        #expect(abs(mean - gbn.meanSwitchInterval) < 0.4)
        #expect(gbn.meanSwitchInterval == 14)
        // Once the hold is over, each sample switches with probability p.
        let eligible = runs.reduce(0) { $0 + ($1 - 4) }  // samples at which a switch could happen
        let rate = Double(runs.count) / Double(eligible)
        #expect(abs(rate - 0.1) < 0.005)
    }

    @Test func gbnDefaultsFollowTheSettlingTime() {
        let gbn = GeneralizedBinaryNoise(settlingTime: 90, period: 1, amplitude: 1, seed: 1)
        #expect(gbn.minimumHold == 10)
        #expect(abs(gbn.meanSwitchInterval - 30) < 1e-9)
        #expect(GeneralizedBinaryNoise.recommendedDuration(settlingTime: 90) == 540)
        // Settling time shorter than three periods: switch every sample at most.
        let fast = GeneralizedBinaryNoise(settlingTime: 1, period: 1, amplitude: 1, seed: 1)
        #expect(fast.minimumHold == 1 && fast.switchProbability == 1)
    }

    @Test func gbnIsDeterministicAndIndependentAcrossMVs() {
        let gbn = GeneralizedBinaryNoise(amplitude: 1, switchProbability: 0.2, minimumHold: 2, seed: 99)
        #expect(gbn.samples(1000) == gbn.samples(1000))
        let pair = gbn.uncorrelated(2).map { $0.samples(50_000) }
        #expect(pair[0] != pair[1])
        let correlation = zip(pair[0], pair[1]).reduce(0) { $0 + $1.0 * $1.1 } / 50_000
        #expect(abs(correlation) < 0.03)
    }

    @Test func stepTestGoesUpBackDownBack() {
        let step = StepTest(amplitude: 3, hold: 2, delay: 1)
        #expect(step.samples(10) == [0, 3, 3, 0, 0, -3, -3, 0, 0, 3])
        #expect(StepTest(settlingTime: 95, period: 10, amplitude: 1).hold == 10)
    }
}

@Suite struct MetricTests {
    @Test func fitPercentIsHundredForAPerfectModelAndZeroForTheMean() {
        let y = [1.0, 2, 4, 3]
        #expect(FitMetrics.fitPercent(measured: y, simulated: y) == 100)
        #expect(abs(FitMetrics.fitPercent(measured: y, simulated: [2.5, 2.5, 2.5, 2.5])) < 1e-12)
        // ‖y − ŷ‖ = 0.5·‖y − ȳ‖ → 50 %
        let half = y.map { 2.5 + ($0 - 2.5) / 2 }
        #expect(abs(FitMetrics.fitPercent(measured: y, simulated: half) - 50) < 1e-12)
    }

    @Test func whiteResidualsPassAndColouredOrInputDrivenOnesFail() {
        var random = SeededRandom(seed: 5)
        let n = 4000
        let u = GeneralizedBinaryNoise(amplitude: 1, switchProbability: 0.3, seed: 6).samples(n)
        let white = (0..<n).map { _ in random.normal() }
        let good = ResidualAnalysis(residuals: [white], inputs: [[u]])
        #expect(good.isWhite && good.isUncorrelatedWithInputs)
        #expect(good.allowedOutside == 4)  // 20 lags at 95 %: P(X ≤ 4) ≥ 99 %
        var coloured = white
        for k in 1..<n { coloured[k] += 0.8 * coloured[k - 1] }
        #expect(!ResidualAnalysis(residuals: [coloured], inputs: [[u]]).isWhite)
        // A model that missed a delayed input path leaves it in the residuals.
        let missed = (0..<n).map { white[$0] + 0.5 * u[Swift.max(0, $0 - 3)] }
        #expect(!ResidualAnalysis(residuals: [missed], inputs: [[u]]).isUncorrelatedWithInputs)
    }

    /// FNV-1a reference values computed with an independent implementation (Python, little-endian bytes).
    @Test func fingerprintIsFNV1aOfTheSampleBits() {
        var one = DataFingerprint()
        one.combine(1.0)
        #expect(one.value == 0xaab1_6932_29ba_1db8)
        var array = DataFingerprint()
        array.combine([1.0, -2.5, 1e-300])
        #expect(array.value == 0x41c7_b6ac_6d22_6382)
        #expect(array.hex == "41c7b6ac6d226382")
    }

    @Test func fingerprintChangesWithAnySample() throws {
        let u = [[1.0, 2, 3, 4]]
        let y = [[0.5, 0.25, 0.125, 0.0625]]
        let a = try PreparedData(period: 1, inputs: u, outputs: y).fingerprint
        #expect(a == (try PreparedData(period: 1, inputs: u, outputs: y).fingerprint))
        let nudged = [[0.5, 0.25, 0.125.nextUp, 0.0625]]
        #expect(a != (try PreparedData(period: 1, inputs: u, outputs: nudged).fingerprint))
        #expect(a != (try PreparedData(period: 2, inputs: u, outputs: y).fingerprint))
    }

    @Test func elementaryFunctionsMatchLibm() {
        var random = SeededRandom(seed: 3)
        for _ in 0..<10_000 {
            let x = (random.uniform() - 0.5) * 1400
            let e = Foundation.exp(x)
            #expect(abs(naturalExp(x) - e) <= 1e-15 * e)
            let z = Foundation.exp((random.uniform() - 0.5) * 1400)
            #expect(abs(naturalLog(z) - Foundation.log(z)) <= 1e-15 * Swift.max(1, abs(Foundation.log(z))))
        }
        #expect(naturalExp(0) == 1 && naturalLog(1) == 0)
    }

    @Test func eigenvaluesOfSmallMatrices() {
        // Rotation-scaling block (0.9 ± 0.2i) and a real 0.5.
        let m = DenseMatrix(rows: 3, cols: 3, data: [0.9, -0.2, 0, 0.2, 0.9, 0, 0, 0, 0.5])
        let values = m.eigenvalues()
        #expect(abs(values[0].re - 0.9) < 1e-12 && abs(abs(values[0].im) - 0.2) < 1e-12)
        #expect(abs(values[2].re - 0.5) < 1e-12 && values[2].im == 0)
    }
}
