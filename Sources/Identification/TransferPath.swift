import Control

/// The structure of one MV→CV transfer function.
public enum PathKind: String, Sendable, Equatable, CaseIterable {
    /// K·e^(−θs)/(τs + 1)
    case firstOrder
    /// K·e^(−θs)/s (a level: the CV's rate of change is K per unit MV)
    case integrating
    /// K·e^(−θs)/((τ₁s + 1)(τ₂s + 1)), τ₁ ≥ τ₂
    case secondOrder

    /// Parameters estimated for one path of this kind.
    public var parameterCount: Int {
        switch self {
        case .firstOrder: 3
        case .integrating: 2
        case .secondOrder: 4
        }
    }
}

/// Standard deviations of a path's parameters (same units as the parameters), from σ²·(JᵀJ)⁻¹ at the optimum.
public struct PathUncertainty: Sendable, Equatable {
    public var gain: Double
    public var timeConstant: Double
    public var secondTimeConstant: Double
    public var deadTime: Double

    public init(gain: Double, timeConstant: Double, secondTimeConstant: Double, deadTime: Double) {
        self.gain = gain
        self.timeConstant = timeConstant
        self.secondTimeConstant = secondTimeConstant
        self.deadTime = deadTime
    }
}

/// One identified MV→CV transfer function, time in seconds (the data's time unit).
public struct TransferPath: Sendable, Equatable {
    public var kind: PathKind
    /// Steady-state gain (CV units per MV unit); for `integrating`, CV units per second per MV unit.
    public var gain: Double
    /// τ (τ₁ for second order); 0 for integrating.
    public var timeConstant: Double
    /// τ₂ ≤ τ₁ for second order; 0 otherwise.
    public var secondTimeConstant: Double
    public var deadTime: Double
    /// Parameter standard deviations; nil when the fit could not estimate them (singular JᵀJ).
    public var uncertainty: PathUncertainty?

    public init(
        kind: PathKind, gain: Double, timeConstant: Double = 0, secondTimeConstant: Double = 0, deadTime: Double = 0,
        uncertainty: PathUncertainty? = nil
    ) {
        self.kind = kind
        self.gain = gain
        self.timeConstant = timeConstant
        self.secondTimeConstant = secondTimeConstant
        self.deadTime = deadTime
        self.uncertainty = uncertainty
    }

    /// The Control module's FOPDT for first-order paths (what `StateSpaceModel.fromTransferFunctions` takes);
    /// nil for integrating and second-order paths, which that builder does not represent.
    public var firstOrderDeadTime: FirstOrderDeadTime? {
        kind == .firstOrder ? FirstOrderDeadTime(gain: gain, timeConstant: timeConstant, deadTime: deadTime) : nil
    }

    /// Parameters in fitting order: firstOrder [K, τ, θ], integrating [K, θ], secondOrder [K, τ₁, τ₂, θ].
    var parameters: [Double] {
        switch kind {
        case .firstOrder: [gain, timeConstant, deadTime]
        case .integrating: [gain, deadTime]
        case .secondOrder: [gain, timeConstant, secondTimeConstant, deadTime]
        }
    }

    init(kind: PathKind, parameters p: ArraySlice<Double>) {
        let p = Array(p)
        switch kind {
        case .firstOrder: self.init(kind: kind, gain: p[0], timeConstant: p[1], deadTime: p[2])
        case .integrating: self.init(kind: kind, gain: p[0], deadTime: p[1])
        case .secondOrder:
            self.init(
                kind: kind, gain: p[0], timeConstant: Swift.max(p[1], p[2]), secondTimeConstant: Swift.min(p[1], p[2]),
                deadTime: p[3])
        }
    }
}

/// A path discretised exactly for a zero-order-hold input at `period`, dead time included.
///
/// Dead time θ = d·T + f (0 ≤ f < T) is exact, not rounded: during each period the plant sees u[k−d−1]
/// for the first f seconds and u[k−d] for the rest, so x[k+1] = Φ(T)x[k] + Φ(T−f)Γ(f)·u[k−d−1] + Γ(T−f)·u[k−d].
/// That keeps the simulated output continuous in θ, which lets the optimiser refine θ between samples.
struct DiscretePath {
    var order: Int
    var phi: [Double]  // order × order, row-major
    var gammaNow: [Double]  // on u[k−d]
    var gammaBefore: [Double]  // on u[k−d−1]
    var wholeDelay: Int
    /// State at rest for a unit input (nil for integrating paths, which start from 0).
    var restState: [Double]?

    init(_ path: TransferPath, period: Double) {
        let theta = Swift.max(0, path.deadTime)
        var whole = Int(theta / period)
        var fraction = theta - Double(whole) * period
        if fraction >= period * (1 - 1e-12) {
            whole += 1
            fraction = 0
        }
        wholeDelay = whole
        let k = path.gain
        switch path.kind {
        case .firstOrder:
            order = 1
            let tau = Swift.max(path.timeConstant, 1e-12)
            let late = naturalExp(-(period - fraction) / tau)
            let early = naturalExp(-fraction / tau)
            phi = [naturalExp(-period / tau)]
            gammaNow = [k * (1 - late)]
            gammaBefore = [late * k * (1 - early)]
            restState = [k]
        case .integrating:
            order = 1
            phi = [1]
            gammaNow = [k * (period - fraction)]
            gammaBefore = [k * fraction]
            restState = nil
        case .secondOrder:
            order = 2
            let t1 = Swift.max(path.timeConstant, 1e-12)
            let t2 = Swift.max(path.secondTimeConstant, 1e-12)
            // x₁' = (−x₁ + K·u)/τ₁, x₂' = (x₁ − x₂)/τ₂, y = x₂; exact ZOH through the augmented exponential.
            func discretise(_ h: Double) -> (phi: [Double], gamma: [Double]) {
                if h <= 0 { return ([1, 0, 0, 1], [0, 0]) }
                var m = DenseMatrix(rows: 3, cols: 3)
                m[0, 0] = -h / t1
                m[0, 2] = h * k / t1
                m[1, 0] = h / t2
                m[1, 1] = -h / t2
                let e = m.exponential()
                return ([e[0, 0], e[0, 1], e[1, 0], e[1, 1]], [e[0, 2], e[1, 2]])
            }
            let full = discretise(period)
            let late = discretise(period - fraction)
            let early = discretise(fraction)
            phi = full.phi
            gammaNow = late.gamma
            gammaBefore = [
                late.phi[0] * early.gamma[0] + late.phi[1] * early.gamma[1],
                late.phi[2] * early.gamma[0] + late.phi[3] * early.gamma[1],
            ]
            restState = [k, k]
        }
    }

    /// Output over `count` samples from unit initial state `state` with no input: Φᵏ·e_state, last component.
    func freeResponse(fromState state: Int, count: Int) -> [Double] {
        var out = [Double](repeating: 0, count: count)
        if order == 1 {
            var x = 1.0
            for k in 0..<count {
                out[k] = x
                x *= phi[0]
            }
        } else {
            var (x1, x2) = state == 0 ? (1.0, 0.0) : (0.0, 1.0)
            for k in 0..<count {
                out[k] = x2
                (x1, x2) = (phi[0] * x1 + phi[1] * x2, phi[2] * x1 + phi[3] * x2)
            }
        }
        return out
    }

    /// Adds the path's response to `input` over samples 0..<count into `output`. Inputs before the
    /// segment are taken as held at input[0], and the state starts at rest for that input, since a
    /// segment usually starts from a steady operating point and its true earlier history is unknown.
    func simulate(_ input: UnsafeBufferPointer<Double>, count: Int, into output: UnsafeMutableBufferPointer<Double>) {
        guard count > 0 else { return }
        let u0 = input[0]
        let d = wholeDelay
        @inline(__always) func u(_ j: Int) -> Double { j < 0 ? u0 : input[j] }
        if order == 1 {
            var x = (restState?[0] ?? 0) * u0
            let a = phi[0]
            let g0 = gammaNow[0]
            let g1 = gammaBefore[0]
            var k = 0
            // The first d+1 samples read held inputs; after that no index check is needed.
            while k < count && k - d - 1 < 0 {
                output[k] += x
                x = a * x + g0 * u(k - d) + g1 * u(k - d - 1)
                k += 1
            }
            while k < count {
                output[k] += x
                x = a * x + g0 * input[k - d] + g1 * input[k - d - 1]
                k += 1
            }
        } else {
            var x1 = (restState?[0] ?? 0) * u0
            var x2 = (restState?[1] ?? 0) * u0
            let (a11, a12, a21, a22) = (phi[0], phi[1], phi[2], phi[3])
            let (b1, b2) = (gammaNow[0], gammaNow[1])
            let (c1, c2) = (gammaBefore[0], gammaBefore[1])
            for k in 0..<count {
                output[k] += x2
                let now = u(k - d)
                let before = u(k - d - 1)
                let n1 = a11 * x1 + a12 * x2 + b1 * now + c1 * before
                let n2 = a21 * x1 + a22 * x2 + b2 * now + c2 * before
                x1 = n1
                x2 = n2
            }
        }
    }
}
