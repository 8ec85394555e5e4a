/// An error raised while building a model or controller: what was wrong, where, and what was expected.
public struct ControlError: Error, Equatable, CustomStringConvertible, Sendable {
    /// Category of the problem, for programmatic handling.
    public enum Kind: Sendable, Equatable {
        case dimension
        case nonFinite
        case unstable
        case invalidParameter
        case numerical
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

/// One first-order-plus-dead-time transfer function K·e^(−θs)/(τs+1), time in the model's units.
public struct FirstOrderDeadTime: Sendable, Equatable {
    public var gain: Double
    public var timeConstant: Double
    public var deadTime: Double

    public init(gain: Double, timeConstant: Double, deadTime: Double = 0) {
        self.gain = gain
        self.timeConstant = timeConstant
        self.deadTime = deadTime
    }
}

/// Discrete linear time-invariant model in deviation variables around an operating point:
/// x⁺ = A·x + B·(u−u₀) + Bd·(d−d₀),  y = C·x + y₀. No direct feedthrough: a move made at sample k
/// shows in the outputs from sample k+1, which is how sampled process plants behave.
public struct StateSpaceModel: Sendable, Equatable {
    public let stateCount: Int
    public let inputCount: Int
    public let disturbanceCount: Int
    public let outputCount: Int
    /// Sample period, in whatever time unit the model was identified in (seconds, minutes).
    public let period: Double
    /// Row-major matrices.
    public let a: [Double]
    public let b: [Double]
    public let bd: [Double]
    public let c: [Double]
    /// Operating point the deviations are taken from (engineering units).
    public var inputNominal: [Double]
    public var disturbanceNominal: [Double]
    public var outputNominal: [Double]

    /// Builds a model from nested row arrays, checking shapes and finiteness.
    public init(
        a: [[Double]], b: [[Double]], bd: [[Double]] = [], c: [[Double]], period: Double,
        inputNominal: [Double]? = nil, disturbanceNominal: [Double]? = nil, outputNominal: [Double]? = nil
    ) throws(ControlError) {
        let n = a.count
        guard n > 0 else { throw ControlError(.dimension, "model: A has no rows; expected an n×n matrix with n ≥ 1") }
        try Self.checkShape(a, rows: n, cols: n, name: "A")
        guard b.count == n else {
            throw ControlError(.dimension, "model: B has \(b.count) rows; expected \(n) (rows of A)")
        }
        let m = b.first?.count ?? 0
        guard m > 0 else { throw ControlError(.dimension, "model: B has no columns; expected at least one input") }
        try Self.checkShape(b, rows: n, cols: m, name: "B")
        var md = 0
        if !bd.isEmpty {
            guard bd.count == n else {
                throw ControlError(.dimension, "model: Bd has \(bd.count) rows; expected \(n) (rows of A)")
            }
            md = bd[0].count
            try Self.checkShape(bd, rows: n, cols: md, name: "Bd")
        }
        let p = c.count
        guard p > 0 else { throw ControlError(.dimension, "model: C has no rows; expected at least one output") }
        try Self.checkShape(c, rows: p, cols: n, name: "C")
        try self.init(
            flatA: a.flatMap { $0 }, b: b.flatMap { $0 }, bd: bd.flatMap { $0 }, c: c.flatMap { $0 },
            states: n, inputs: m, disturbances: md, outputs: p, period: period,
            inputNominal: inputNominal, disturbanceNominal: disturbanceNominal, outputNominal: outputNominal)
    }

    init(
        flatA: [Double], b: [Double], bd: [Double], c: [Double], states n: Int, inputs m: Int, disturbances md: Int,
        outputs p: Int, period: Double, inputNominal: [Double]?, disturbanceNominal: [Double]?,
        outputNominal: [Double]?
    ) throws(ControlError) {
        guard period.isFinite && period > 0 else {
            throw ControlError(.invalidParameter, "model: period is \(period); expected a finite value > 0")
        }
        for (name, values) in [("A", flatA), ("B", b), ("Bd", bd), ("C", c)] {
            if let index = values.firstIndex(where: { !$0.isFinite }) {
                throw ControlError(.nonFinite, "model: \(name) element \(index) (row-major) is \(values[index])")
            }
        }
        func nominal(_ v: [Double]?, _ count: Int, _ name: String) throws(ControlError) -> [Double] {
            guard let v else { return [Double](repeating: 0, count: count) }
            guard v.count == count else {
                throw ControlError(.dimension, "model: \(name) has \(v.count) entries; expected \(count)")
            }
            guard v.allSatisfy({ $0.isFinite }) else { throw ControlError(.nonFinite, "model: \(name) is not finite") }
            return v
        }
        self.stateCount = n
        self.inputCount = m
        self.disturbanceCount = md
        self.outputCount = p
        self.period = period
        self.a = flatA
        self.b = b
        self.bd = bd
        self.c = c
        self.inputNominal = try nominal(inputNominal, m, "inputNominal")
        self.disturbanceNominal = try nominal(disturbanceNominal, md, "disturbanceNominal")
        self.outputNominal = try nominal(outputNominal, p, "outputNominal")
    }

    private static func checkShape(_ m: [[Double]], rows: Int, cols: Int, name: String) throws(ControlError) {
        for (i, row) in m.enumerated() where row.count != cols {
            throw ControlError(.dimension, "model: \(name) row \(i) has \(row.count) columns; expected \(cols)")
        }
        if m.count != rows {
            throw ControlError(.dimension, "model: \(name) has \(m.count) rows; expected \(rows)")
        }
    }

    /// Discretizes ẋ = Ac·x + Bc·u + Bdc·d, y = C·x exactly for a zero-order hold at `period`.
    public static func discretizing(
        continuousA: [[Double]], b: [[Double]], bd: [[Double]] = [], c: [[Double]], period: Double,
        inputNominal: [Double]? = nil, disturbanceNominal: [Double]? = nil, outputNominal: [Double]? = nil
    ) throws(ControlError) -> StateSpaceModel {
        // Validate shapes first via the checking initializer (it treats the matrices as discrete).
        let continuous = try StateSpaceModel(
            a: continuousA, b: b, bd: bd, c: c, period: period, inputNominal: inputNominal,
            disturbanceNominal: disturbanceNominal, outputNominal: outputNominal)
        let n = continuous.stateCount
        let inputs = continuous.inputCount + continuous.disturbanceCount
        // exp([[A, B], [0, 0]]·T) = [[Ad, Bd], [0, I]]: the standard exact ZOH discretization.
        var block = Matrix(rows: n + inputs, cols: n + inputs)
        for i in 0..<n {
            for j in 0..<n { block[i, j] = continuous.a[i * n + j] * period }
            for j in 0..<continuous.inputCount {
                block[i, n + j] = continuous.b[i * continuous.inputCount + j] * period
            }
            for j in 0..<continuous.disturbanceCount {
                block[i, n + continuous.inputCount + j] = continuous.bd[i * continuous.disturbanceCount + j] * period
            }
        }
        let e = block.exponential()
        guard e.isFinite else { throw ControlError(.numerical, "model: discretization overflowed; A·period too large") }
        var ad = [Double]()
        var bdisc = [Double]()
        var bddisc = [Double]()
        for i in 0..<n {
            for j in 0..<n { ad.append(e[i, j]) }
            for j in 0..<continuous.inputCount { bdisc.append(e[i, n + j]) }
            for j in 0..<continuous.disturbanceCount { bddisc.append(e[i, n + continuous.inputCount + j]) }
        }
        return try StateSpaceModel(
            flatA: ad, b: bdisc, bd: bddisc, c: continuous.c, states: n, inputs: continuous.inputCount,
            disturbances: continuous.disturbanceCount, outputs: continuous.outputCount, period: period,
            inputNominal: continuous.inputNominal, disturbanceNominal: continuous.disturbanceNominal,
            outputNominal: continuous.outputNominal)
    }

    /// Builds the exact discretization of a matrix of FOPDT transfer functions (outputs × inputs;
    /// nil or zero gain = no effect). Optional `disturbances` (outputs × measured disturbances)
    /// gives the feedforward paths. Dead time becomes a shift register of past inputs, one chain
    /// per input shared by all outputs; a dead time that is not a multiple of the period is
    /// represented exactly by splitting the held input over two samples (modified z-transform).
    public static func fromTransferFunctions(
        _ g: [[FirstOrderDeadTime?]], disturbances gd: [[FirstOrderDeadTime?]] = [], period: Double,
        inputNominal: [Double]? = nil, disturbanceNominal: [Double]? = nil, outputNominal: [Double]? = nil
    ) throws(ControlError) -> StateSpaceModel {
        guard period.isFinite && period > 0 else {
            throw ControlError(
                .invalidParameter, "transfer functions: period is \(period); expected a finite value > 0")
        }
        let p = g.count
        guard p > 0, let m = g.first?.count, m > 0 else {
            throw ControlError(.dimension, "transfer functions: expected at least one output row and one input column")
        }
        let md = gd.first?.count ?? 0
        if !gd.isEmpty && gd.count != p {
            throw ControlError(.dimension, "transfer functions: disturbance matrix has \(gd.count) rows; expected \(p)")
        }
        // Inputs and disturbances are treated alike here and split into B and Bd at the end.
        var all = [[FirstOrderDeadTime?]]()
        for i in 0..<p {
            guard g[i].count == m else {
                throw ControlError(.dimension, "transfer functions: row \(i) has \(g[i].count) entries; expected \(m)")
            }
            var row = g[i]
            if !gd.isEmpty {
                guard gd[i].count == md else {
                    throw ControlError(
                        .dimension,
                        "transfer functions: disturbance row \(i) has \(gd[i].count) entries; expected \(md)")
                }
                row += gd[i]
            }
            all.append(row)
        }
        let columns = m + md
        struct Path {
            var output: Int
            var input: Int
            var pole: Double
            var gainNow: Double  // on u(k−N)
            var gainBefore: Double  // on u(k−N−1)
            var wholeDelay: Int
        }
        var paths = [Path]()
        var chainLength = [Int](repeating: 0, count: columns)
        for i in 0..<p {
            for j in 0..<columns {
                guard let tf = all[i][j], tf.gain != 0 else { continue }
                let place = j < m ? "G[\(i)][\(j)]" : "Gd[\(i)][\(j - m)]"
                guard tf.gain.isFinite, tf.timeConstant.isFinite, tf.deadTime.isFinite else {
                    throw ControlError(.nonFinite, "transfer functions: \(place) has a non-finite parameter")
                }
                guard tf.timeConstant >= 0 else {
                    throw ControlError(
                        .invalidParameter,
                        "transfer functions: \(place) time constant is \(tf.timeConstant); expected ≥ 0")
                }
                guard tf.deadTime >= 0 else {
                    throw ControlError(
                        .invalidParameter, "transfer functions: \(place) dead time is \(tf.deadTime); expected ≥ 0")
                }
                let ratio = tf.deadTime / period
                var whole = Int(ratio)
                var fraction = (ratio - Double(whole)) * period
                if fraction > period * (1 - 1e-9) {
                    whole += 1
                    fraction = 0
                } else if fraction < period * 1e-9 {
                    fraction = 0
                }
                let pole = tf.timeConstant > 0 ? scalarExp(-period / tf.timeConstant) : 0
                let late = tf.timeConstant > 0 ? scalarExp(-(period - fraction) / tf.timeConstant) : 0
                let path = Path(
                    output: i, input: j, pole: pole, gainNow: tf.gain * (1 - late), gainBefore: tf.gain * (late - pole),
                    wholeDelay: whole)
                paths.append(path)
                chainLength[j] = Swift.max(chainLength[j], whole + (path.gainBefore != 0 ? 1 : 0))
            }
        }
        guard !paths.isEmpty else { throw ControlError(.invalidParameter, "transfer functions: every gain is zero") }
        var chainStart = [Int](repeating: 0, count: columns)
        var next = paths.count
        for j in 0..<columns {
            chainStart[j] = next
            next += chainLength[j]
        }
        let n = next
        var a = Matrix(rows: n, cols: n)
        var bAll = Matrix(rows: n, cols: columns)
        var c = Matrix(rows: p, cols: n)
        // Delay state s(j, k) holds u_j(t−k) for k = 1…chainLength.
        func feed(_ state: Int, input j: Int, lag: Int, gain: Double) {
            if lag == 0 {
                bAll[state, j] += gain
            } else {
                a[state, chainStart[j] + lag - 1] += gain
            }
        }
        for j in 0..<columns where chainLength[j] > 0 {
            bAll[chainStart[j], j] = 1
            for k in 1..<chainLength[j] { a[chainStart[j] + k, chainStart[j] + k - 1] = 1 }
        }
        for (index, path) in paths.enumerated() {
            a[index, index] = path.pole
            feed(index, input: path.input, lag: path.wholeDelay, gain: path.gainNow)
            if path.gainBefore != 0 { feed(index, input: path.input, lag: path.wholeDelay + 1, gain: path.gainBefore) }
            c[path.output, index] = 1
        }
        var b = [Double]()
        var bd = [Double]()
        for i in 0..<n {
            for j in 0..<m { b.append(bAll[i, j]) }
            for j in 0..<md { bd.append(bAll[i, m + j]) }
        }
        return try StateSpaceModel(
            flatA: a.data, b: b, bd: bd, c: c.data, states: n, inputs: m, disturbances: md, outputs: p, period: period,
            inputNominal: inputNominal, disturbanceNominal: disturbanceNominal, outputNominal: outputNominal)
    }

    /// True when all eigenvalues of A are strictly inside the unit circle.
    public var isAsymptoticallyStable: Bool { Matrix(rows: stateCount, cols: stateCount, data: a).isSchurStable }

    /// Steady-state output change per unit input change, outputs × inputs (row-major).
    public func steadyStateGain() throws(ControlError) -> [Double] {
        let n = stateCount
        let iMinusA = Matrix.identity(n) - Matrix(rows: n, cols: n, data: a)
        guard let x = iMinusA.solve(Matrix(rows: n, cols: inputCount, data: b)) else {
            throw ControlError(.unstable, "model: I − A is singular (integrating model); no steady-state gain")
        }
        return (Matrix(rows: outputCount, cols: n, data: c) * x).data
    }

    var matrixA: Matrix { Matrix(rows: stateCount, cols: stateCount, data: a) }
    var matrixB: Matrix { Matrix(rows: stateCount, cols: inputCount, data: b) }
    var matrixBd: Matrix { Matrix(rows: stateCount, cols: disturbanceCount, data: bd) }
    var matrixC: Matrix { Matrix(rows: outputCount, cols: stateCount, data: c) }
}

extension Matrix {
    init(rows: Int, cols: Int, data: [Double]) {
        precondition(data.count == rows * cols, "matrix data size mismatch")
        self.rows = rows
        self.cols = cols
        self.data = data
    }
}

/// e^x without Foundation, via the same Padé approximant as the matrix exponential.
func scalarExp(_ x: Double) -> Double {
    Matrix(rows: 1, cols: 1, data: [x]).exponential()[0, 0]
}
