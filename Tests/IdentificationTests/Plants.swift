import Control
import Identification

/// Simulated plants for the identification tests. The truth is built with Control's model builders
/// (an implementation independent of the one being tested) and simulated sample by sample.
enum Plants {
    /// x⁺ = A·x + B·u, y = C·x from rest, inputs[i][k] → outputs[j][k].
    static func simulate(_ model: StateSpaceModel, inputs: [[Double]]) -> [[Double]] {
        let n = model.stateCount
        let m = model.inputCount
        let p = model.outputCount
        let count = inputs[0].count
        var x = [Double](repeating: 0, count: n)
        var y = [[Double]](repeating: [Double](repeating: 0, count: count), count: p)
        for k in 0..<count {
            for j in 0..<p {
                var s = 0.0
                for l in 0..<n { s += model.c[j * n + l] * x[l] }
                y[j][k] = s
            }
            var next = [Double](repeating: 0, count: n)
            for r in 0..<n {
                var s = 0.0
                for l in 0..<n { s += model.a[r * n + l] * x[l] }
                for i in 0..<m { s += model.b[r * m + i] * inputs[i][k] }
                next[r] = s
            }
            x = next
        }
        return y
    }

    /// Delays a signal by whole samples (holding the first value), for dead time on plants built without it.
    static func delayed(_ u: [Double], by samples: Int) -> [Double] {
        (0..<u.count).map { u[Swift.max(0, $0 - samples)] }
    }

    /// Adds white Gaussian noise of standard deviation sigma.
    static func noisy(_ y: [Double], sigma: Double, seed: UInt64) -> [Double] {
        var random = SeededRandom(seed: seed)
        return y.map { $0 + sigma * random.normal() }
    }

    /// GBN inputs for `count` MVs designed from a settling time.
    static func gbn(inputs: Int, count: Int, settlingTime: Double, period: Double, amplitude: Double, seed: UInt64)
        -> [[Double]]
    {
        GeneralizedBinaryNoise(settlingTime: settlingTime, period: period, amplitude: amplitude, seed: seed)
            .uncorrelated(inputs).map { $0.samples(count) }
    }

    /// Linearised quadruple tank at P− (plants.md): continuous A, B, C in deviation variables, y = kc·h (V).
    static func quadrupleTankLinear() -> (a: [[Double]], b: [[Double]], c: [[Double]], timeConstants: [Double]) {
        let area = [28.0, 32, 28, 32]
        let outlet = [0.071, 0.057, 0.071, 0.057]
        let h0 = [12.4, 12.7, 1.8, 1.4]
        let k = [3.33, 3.35]
        let gamma = [0.70, 0.60]
        let g = 981.0
        let kc = 0.5
        let t = (0..<4).map { area[$0] / outlet[$0] * (2 * h0[$0] / g).squareRoot() }
        let a: [[Double]] = [
            [-1 / t[0], 0, area[2] / (area[0] * t[2]), 0],
            [0, -1 / t[1], 0, area[3] / (area[1] * t[3])],
            [0, 0, -1 / t[2], 0],
            [0, 0, 0, -1 / t[3]],
        ]
        let b: [[Double]] = [
            [gamma[0] * k[0] / area[0], 0],
            [0, gamma[1] * k[1] / area[1]],
            [0, (1 - gamma[1]) * k[1] / area[2]],
            [(1 - gamma[0]) * k[0] / area[3], 0],
        ]
        let c: [[Double]] = [[kc, 0, 0, 0], [0, kc, 0, 0]]
        return (a, b, c, t)
    }
}
