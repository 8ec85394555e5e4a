/// The nonlinear quadruple-tank process (Johansson 2000), used as a reference plant for closed-loop
/// tests, benchmarks and demos. Levels in cm, pump voltages in V, time in s, outputs y = kc·h (V).
public struct QuadrupleTank: Sendable {
    public var tankArea: (Double, Double, Double, Double) = (28, 32, 28, 32)
    public var outletArea: (Double, Double, Double, Double) = (0.071, 0.057, 0.071, 0.057)
    public var pumpGain: (Double, Double) = (3.33, 3.35)
    public var valveSplit: (Double, Double)
    public var sensorGain = 0.5
    public var gravity = 981.0
    /// Levels are physically bounded (tank height).
    public var maximumLevel = 20.0

    /// Minimum-phase operating point P− (γ = 0.70, 0.60).
    public static var minimumPhase: QuadrupleTank { QuadrupleTank(valveSplit: (0.70, 0.60)) }
    /// Non-minimum-phase operating point P+ (γ = 0.43, 0.34; γ1+γ2 < 1 puts a zero in the right half-plane).
    public static var nonMinimumPhase: QuadrupleTank { QuadrupleTank(valveSplit: (0.43, 0.34)) }

    public init(valveSplit: (Double, Double)) {
        self.valveSplit = valveSplit
    }

    /// dh/dt. `inflow` is an unmeasured extra flow (cm³/s) into each tank, negative for a leak.
    public func derivative(
        levels h: (Double, Double, Double, Double), voltages v: (Double, Double),
        inflow q: (Double, Double, Double, Double) = (0, 0, 0, 0)
    ) -> (Double, Double, Double, Double) {
        let s1 = (2 * gravity * Swift.max(h.0, 0)).squareRoot()
        let s2 = (2 * gravity * Swift.max(h.1, 0)).squareRoot()
        let s3 = (2 * gravity * Swift.max(h.2, 0)).squareRoot()
        let s4 = (2 * gravity * Swift.max(h.3, 0)).squareRoot()
        let f1 = pumpGain.0 * v.0
        let f2 = pumpGain.1 * v.1
        return (
            (-outletArea.0 * s1 + outletArea.2 * s3 + valveSplit.0 * f1 + q.0) / tankArea.0,
            (-outletArea.1 * s2 + outletArea.3 * s4 + valveSplit.1 * f2 + q.1) / tankArea.1,
            (-outletArea.2 * s3 + (1 - valveSplit.1) * f2 + q.2) / tankArea.2,
            (-outletArea.3 * s4 + (1 - valveSplit.0) * f1 + q.3) / tankArea.3
        )
    }

    /// Advances the levels by `duration` with `substeps` classical Runge–Kutta steps, clamping to
    /// the physical range 0…maximumLevel (an overflowing tank spills).
    public func advance(
        levels h: inout (Double, Double, Double, Double), voltages v: (Double, Double),
        inflow q: (Double, Double, Double, Double) = (0, 0, 0, 0), duration: Double, substeps: Int = 10
    ) {
        let dt = duration / Double(substeps)
        func add(_ x: (Double, Double, Double, Double), _ k: (Double, Double, Double, Double), _ s: Double) -> (
            Double, Double, Double, Double
        ) {
            (x.0 + s * k.0, x.1 + s * k.1, x.2 + s * k.2, x.3 + s * k.3)
        }
        for _ in 0..<substeps {
            let k1 = derivative(levels: h, voltages: v, inflow: q)
            let k2 = derivative(levels: add(h, k1, dt / 2), voltages: v, inflow: q)
            let k3 = derivative(levels: add(h, k2, dt / 2), voltages: v, inflow: q)
            let k4 = derivative(levels: add(h, k3, dt), voltages: v, inflow: q)
            h.0 += dt / 6 * (k1.0 + 2 * k2.0 + 2 * k3.0 + k4.0)
            h.1 += dt / 6 * (k1.1 + 2 * k2.1 + 2 * k3.1 + k4.1)
            h.2 += dt / 6 * (k1.2 + 2 * k2.2 + 2 * k3.2 + k4.2)
            h.3 += dt / 6 * (k1.3 + 2 * k2.3 + 2 * k3.3 + k4.3)
            h = (
                Swift.min(Swift.max(h.0, 0), maximumLevel), Swift.min(Swift.max(h.1, 0), maximumLevel),
                Swift.min(Swift.max(h.2, 0), maximumLevel), Swift.min(Swift.max(h.3, 0), maximumLevel)
            )
        }
    }

    /// Steady-state levels for constant voltages (solving the balance equations in closed form).
    public func steadyState(voltages v: (Double, Double)) -> (Double, Double, Double, Double) {
        func level(_ flow: Double, _ outlet: Double) -> Double {
            let velocity = flow / outlet
            return velocity * velocity / (2 * gravity)
        }
        let f1 = pumpGain.0 * v.0
        let f2 = pumpGain.1 * v.1
        let q3 = (1 - valveSplit.1) * f2
        let q4 = (1 - valveSplit.0) * f1
        return (
            level(q3 + valveSplit.0 * f1, outletArea.0), level(q4 + valveSplit.1 * f2, outletArea.1),
            level(q3, outletArea.2), level(q4, outletArea.3)
        )
    }

    /// The linearization around the steady state for `voltages`, discretized exactly at `period`.
    /// Outputs are y = kc·(h1, h2) in volts; nominal values are set to the operating point.
    public func linearModel(voltages v: (Double, Double), period: Double) throws(ControlError) -> StateSpaceModel {
        let h = steadyState(voltages: v)
        let levels = [h.0, h.1, h.2, h.3]
        let areas = [tankArea.0, tankArea.1, tankArea.2, tankArea.3]
        let outlets = [outletArea.0, outletArea.1, outletArea.2, outletArea.3]
        // T_i = (A_i/a_i)·√(2h_i/g) are the linearized time constants of Johansson's paper.
        var t = [Double](repeating: 0, count: 4)
        for i in 0..<4 { t[i] = areas[i] / outlets[i] * (2 * levels[i] / gravity).squareRoot() }
        let a: [[Double]] = [
            [-1 / t[0], 0, areas[2] / (areas[0] * t[2]), 0],
            [0, -1 / t[1], 0, areas[3] / (areas[1] * t[3])],
            [0, 0, -1 / t[2], 0],
            [0, 0, 0, -1 / t[3]],
        ]
        let b: [[Double]] = [
            [valveSplit.0 * pumpGain.0 / areas[0], 0],
            [0, valveSplit.1 * pumpGain.1 / areas[1]],
            [0, (1 - valveSplit.1) * pumpGain.1 / areas[2]],
            [(1 - valveSplit.0) * pumpGain.0 / areas[3], 0],
        ]
        let c: [[Double]] = [[sensorGain, 0, 0, 0], [0, sensorGain, 0, 0]]
        return try StateSpaceModel.discretizing(
            continuousA: a, b: b, c: c, period: period, inputNominal: [v.0, v.1],
            outputNominal: [sensorGain * h.0, sensorGain * h.1])
    }
}

/// The Wood–Berry binary distillation column (Wood and Berry 1973), time in minutes.
/// CVs: top and bottom methanol composition (mol %); MVs: reflux and steam (lb/min);
/// the feed-flow disturbance (lb/min) is the classical unmeasured/measured DV.
public enum WoodBerry {
    public static let transferFunctions: [[FirstOrderDeadTime?]] = [
        [
            FirstOrderDeadTime(gain: 12.8, timeConstant: 16.7, deadTime: 1),
            FirstOrderDeadTime(gain: -18.9, timeConstant: 21.0, deadTime: 3),
        ],
        [
            FirstOrderDeadTime(gain: 6.6, timeConstant: 10.9, deadTime: 7),
            FirstOrderDeadTime(gain: -19.4, timeConstant: 14.4, deadTime: 3),
        ],
    ]
    /// Feed-flow disturbance paths (Wood and Berry 1973).
    public static let feedDisturbance: [[FirstOrderDeadTime?]] = [
        [FirstOrderDeadTime(gain: 3.8, timeConstant: 14.9, deadTime: 8.1)],
        [FirstOrderDeadTime(gain: 4.9, timeConstant: 13.2, deadTime: 3.4)],
    ]
}
