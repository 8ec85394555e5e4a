// Per-CV transfer-function identification: every MV onto one CV at once (MISO), by output-error
// prediction-error minimisation, with dead time searched over whole samples and then refined.

/// The data of one CV and all MVs, split in time into an estimation part and a validation part.
struct MISOData {
    struct Segment {
        var inputs: [[Double]]
        var output: [Double]
        /// Samples 0..<estimation are for fitting; the rest for validation.
        var estimation: Int
    }

    var period: Double
    var segments: [Segment]
    var inputCount: Int

    var estimationCount: Int { segments.reduce(0) { $0 + $1.estimation } }

    /// The first `limit` estimation samples only (no validation part), for the cheap search stages.
    func truncated(estimationSamples limit: Int) -> MISOData {
        guard estimationCount > limit else { return self }
        var remaining = limit
        var out = [Segment]()
        for segment in segments where remaining > 0 {
            let take = Swift.min(segment.estimation, remaining)
            remaining -= take
            guard take > 0 else { continue }
            out.append(
                Segment(
                    inputs: segment.inputs.map { Array($0[0..<take]) }, output: Array(segment.output[0..<take]),
                    estimation: take))
        }
        return MISOData(period: period, segments: out, inputCount: inputCount)
    }
    var validationCount: Int { segments.reduce(0) { $0 + $1.output.count - $1.estimation } }

    /// Residuals y − ŷ − nuisance per segment. The simulation starts each path at rest for the segment's
    /// first input; the nuisance then absorbs what that cannot know: the segment's level, each path's
    /// initial state (its free response Φᵏx₀, since a segment rarely starts at steady state), and, with
    /// `drift`, a ramp (an integrating CV drifts when the MVs' balance point is not the segment mean).
    /// All of it is linear, so it is fitted by least squares on the segment's estimation samples (on all
    /// its samples when it has none, as `compare` estimates initial conditions): variable projection,
    /// the optimiser never sees these parameters.
    func residuals(_ paths: [TransferPath], drift: Bool, estimationOnly: Bool) -> [[Double]] {
        let discrete = paths.map { DiscretePath($0, period: period) }
        return segments.map { segment in
            let count = estimationOnly ? segment.estimation : segment.output.count
            var simulated = [Double](repeating: 0, count: count)
            simulated.withUnsafeMutableBufferPointer { o in
                for (j, path) in discrete.enumerated() {
                    segment.inputs[j].withUnsafeBufferPointer { path.simulate($0, count: count, into: o) }
                }
            }
            var r = [Double](repeating: 0, count: count)
            for k in 0..<count { r[k] = segment.output[k] - simulated[k] }
            var basis = [[Double](repeating: 1, count: count)]
            if drift { basis.append((0..<count).map { Double($0) }) }
            for path in discrete where path.restState != nil {
                for state in 0..<path.order { basis.append(path.freeResponse(fromState: state, count: count)) }
            }
            let fitCount = segment.estimation > basis.count ? segment.estimation : count
            Self.removeProjection(&r, onto: basis, fitCount: fitCount)
            return r
        }
    }

    /// Subtracts from r its least-squares fit on `basis`, computed over r[0..<fitCount].
    static func removeProjection(_ r: inout [Double], onto basis: [[Double]], fitCount: Int) {
        let q = basis.count
        guard fitCount > 0, q > 0 else { return }
        var normal = DenseMatrix(rows: q, cols: q)
        var rhs = [Double](repeating: 0, count: q)
        for a in 0..<q {
            basis[a].withUnsafeBufferPointer { ba in
                var s = 0.0
                for k in 0..<fitCount { s += ba[k] * r[k] }
                rhs[a] = s
                for b in a..<q {
                    basis[b].withUnsafeBufferPointer { bb in
                        var t = 0.0
                        for k in 0..<fitCount { t += ba[k] * bb[k] }
                        normal[a, b] = t
                        normal[b, a] = t
                    }
                }
            }
        }
        let coefficients = normal.solveSymmetric(rhs, relativeTolerance: 1e-10)
        for a in 0..<q where coefficients[a] != 0 {
            let c = coefficients[a]
            basis[a].withUnsafeBufferPointer { ba in
                for k in 0..<r.count { r[k] -= c * ba[k] }
            }
        }
    }

    /// Estimation residuals, concatenated, for the optimiser.
    func estimationResiduals(_ paths: [TransferPath], drift: Bool) -> [Double] {
        residuals(paths, drift: drift, estimationOnly: true).flatMap { $0 }
    }

    /// Fit % on the estimation part and on the validation part (nan when that part is empty).
    func fitPercents(_ paths: [TransferPath], drift: Bool) -> (estimation: Double, validation: Double) {
        let r = residuals(paths, drift: drift, estimationOnly: false)
        var estimation = (r: [Double](), y: [Double]())
        var validation = (r: [Double](), y: [Double]())
        for (s, segment) in segments.enumerated() {
            estimation.r += r[s][0..<segment.estimation]
            estimation.y += segment.output[0..<segment.estimation]
            validation.r += r[s][segment.estimation...]
            validation.y += segment.output[segment.estimation...]
        }
        return (
            FitMetrics.fitPercent(residuals: estimation.r, measured: estimation.y),
            FitMetrics.fitPercent(residuals: validation.r, measured: validation.y)
        )
    }
}

/// One structure tried for a CV, and how well it did.
public struct CandidateFit: Sendable, Equatable {
    /// One kind per MV, in input order.
    public var kinds: [PathKind]
    public var parameterCount: Int
    public var estimationFitPercent: Double
    public var validationFitPercent: Double
}

/// Fits the MV→CV transfer functions of one CV.
struct TransferFunctionFitter {
    var data: MISOData
    var allowedKinds: Set<PathKind>
    var maximumDeadTime: Double
    /// A structure with more parameters must beat a simpler one by this much validation fit % to be chosen.
    var parsimonyMargin: Double

    private var period: Double { data.period }
    private var maximumDelaySamples: Int { Swift.max(0, Int(maximumDeadTime / period)) }

    struct Fitted {
        var paths: [TransferPath]
        var drift: Bool
        var fit: CandidateFit
    }

    /// Fits the allowed structures and picks one: among first order, integrating and the best second-order
    /// variant, the candidate with the fewest parameters whose validation fit % is within
    /// `parsimonyMargin` of the best. Second order is tried path by path from the first-order fit (greedy:
    /// a path is promoted only if that beats the current model by more than the margin), since trying
    /// every combination grows as 2^MVs.
    func fit() -> (chosen: Fitted, candidates: [CandidateFit]) {
        var candidates = [CandidateFit]()
        var pool = [Fitted]()
        // First order is always fitted: it is the start the second-order fits refine.
        let firstOrder = fitFirstOrder()
        if allowedKinds.contains(.firstOrder) {
            candidates.append(firstOrder.fit)
            pool.append(firstOrder)
        }
        if allowedKinds.contains(.integrating) {
            let integrating = fitIntegrating()
            candidates.append(integrating.fit)
            pool.append(integrating)
        }
        if allowedKinds.contains(.secondOrder) {
            if allowedKinds.contains(.firstOrder) {
                var current = firstOrder
                for j in 0..<data.inputCount {
                    var start = current.paths
                    start[j] = Self.secondOrderStart(start[j])
                    let promoted = refine(start, drift: false)
                    candidates.append(promoted.fit)
                    if score(promoted) > score(current) + parsimonyMargin { current = promoted }
                }
                if current.paths.contains(where: { $0.kind == .secondOrder }) { pool.append(current) }
            } else {
                let second = refine(firstOrder.paths.map(Self.secondOrderStart), drift: false)
                candidates.append(second.fit)
                pool.append(second)
            }
        }
        let best = pool.map(score).max() ?? -.infinity
        let chosen = pool.filter { score($0) >= best - parsimonyMargin }.min { a, b in
            a.fit.parameterCount != b.fit.parameterCount
                ? a.fit.parameterCount < b.fit.parameterCount : score(a) > score(b)
        }
        return (chosen ?? firstOrder, candidates)
    }

    private func score(_ fitted: Fitted) -> Double {
        fitted.fit.validationFitPercent.isFinite ? fitted.fit.validationFitPercent : fitted.fit.estimationFitPercent
    }

    /// From a first-order fit to a second-order start. A FOPDT fitted to a second-order plant lumps
    /// about half the small lag into dead time (Skogestad's half rule), so give some back as τ₂.
    static func secondOrderStart(_ path: TransferPath) -> TransferPath {
        let tau2 = Swift.max(0.3 * path.timeConstant, 1e-3)
        return TransferPath(
            kind: .secondOrder, gain: path.gain, timeConstant: Swift.max(path.timeConstant - tau2 / 2, tau2),
            secondTimeConstant: tau2, deadTime: Swift.max(0, path.deadTime - tau2 / 2))
    }

    // MARK: First order

    private func fitFirstOrder() -> Fitted {
        let (pole, gains, delays) = searcher.arxStart(integrating: false)
        let a = (pole > 0.01 && pole < 0.9999) ? pole : 0.9
        let tau = -period / naturalLog(a)
        var paths = (0..<data.inputCount).map { j in
            TransferPath(
                kind: .firstOrder, gain: gains[j] / (1 - a), timeConstant: tau, deadTime: Double(delays[j]) * period)
        }
        // Equation-error dead times are a start; search whole samples around them on the output error,
        // the criterion that is being minimised, with the other parameters re-fitted each time.
        paths = searchDeadTimes(paths)
        return refine(paths, drift: false)
    }

    // MARK: Integrating

    private func fitIntegrating() -> Fitted {
        let (_, gains, delays) = searcher.arxStart(integrating: true)
        var paths = (0..<data.inputCount).map { j in
            TransferPath(kind: .integrating, gain: gains[j] / period, deadTime: Double(delays[j]) * period)
        }
        paths = searchDeadTimes(paths)
        return refine(paths, drift: true)
    }

    /// Samples the search stages (ARX start, whole-sample dead-time search) look at. Why a cap: they only
    /// need to land in the right basin, which a few hours of data at 1 s do as well as a day; the final
    /// fit then uses every estimation sample.
    static let searchSamples = 20_000

    private var searcher: TransferFunctionFitter {
        var copy = self
        copy.data = data.truncated(estimationSamples: Self.searchSamples)
        return copy
    }

    /// For each MV in turn, tries whole-sample dead times within ±3 samples of the current one, each with
    /// the other parameters re-fitted (dead times held), and keeps the best.
    private func searchDeadTimes(_ start: [TransferPath]) -> [TransferPath] {
        let data = searcher.data
        guard data.estimationCount < self.data.estimationCount else { return searchDeadTimesOnData(start) }
        return searcher.searchDeadTimesOnData(start)
    }

    private func searchDeadTimesOnData(_ start: [TransferPath]) -> [TransferPath] {
        var paths = start
        let drift = paths.first?.kind == .integrating
        var best = LeastSquaresProblem.halfSquaredNorm(data.estimationResiduals(paths, drift: drift))
        for j in 0..<paths.count {
            let centre = Int((paths[j].deadTime / period).rounded())
            var chosen = paths
            for d in Swift.max(0, centre - 3)...Swift.min(maximumDelaySamples, centre + 3) {
                var trial = paths
                trial[j].deadTime = Double(d) * period
                let (fitted, cost) = optimise(trial, drift: drift, holdDeadTimes: true, iterations: 6)
                if cost < best {
                    best = cost
                    chosen = fitted
                }
            }
            paths = chosen
        }
        return paths
    }

    // MARK: Least squares

    private func layout(_ paths: [TransferPath], drift: Bool, holdDeadTimes: Bool) -> LeastSquaresProblem {
        var lower = [Double]()
        var upper = [Double]()
        var scale = [Double]()
        let span = Double(Swift.max(data.estimationCount, 1)) * period
        let tauMax = 10 * span
        let tauMin = period / 20
        for path in paths {
            let gainScale = Swift.max(abs(path.gain), 1e-6)
            lower.append(-.infinity)
            upper.append(.infinity)
            scale.append(gainScale)
            let timeCount = path.kind == .integrating ? 0 : (path.kind == .firstOrder ? 1 : 2)
            for _ in 0..<timeCount {
                lower.append(tauMin)
                upper.append(tauMax)
                scale.append(Swift.max(period, 1e-9))
            }
            if holdDeadTimes {
                lower.append(path.deadTime)
                upper.append(path.deadTime)
            } else {
                lower.append(0)
                upper.append(Swift.max(maximumDeadTime, 0))
            }
            scale.append(period)
        }
        let kinds = paths.map(\.kind)
        let data = self.data
        return LeastSquaresProblem(
            lower: lower, upper: upper, scale: scale,
            residuals: { p in data.estimationResiduals(Self.paths(kinds, p), drift: drift) })
    }

    static func paths(_ kinds: [PathKind], _ p: [Double]) -> [TransferPath] {
        var offset = 0
        return kinds.map { kind in
            let path = TransferPath(kind: kind, parameters: p[offset..<(offset + kind.parameterCount)])
            offset += kind.parameterCount
            return path
        }
    }

    private func optimise(_ paths: [TransferPath], drift: Bool, holdDeadTimes: Bool, iterations: Int)
        -> ([TransferPath], Double)
    {
        let problem = layout(paths, drift: drift, holdDeadTimes: holdDeadTimes)
        let solver = LevenbergMarquardt(maximumIterations: iterations)
        let (p, cost) = solver.minimize(problem, from: paths.flatMap(\.parameters))
        return (Self.paths(paths.map(\.kind), p), cost)
    }

    /// Final fit with every parameter free (dead time continuous), then uncertainties and fit %.
    private func refine(_ start: [TransferPath], drift: Bool) -> Fitted {
        var paths = start
        let coarse = searcher
        if coarse.data.estimationCount < data.estimationCount && start.contains(where: { $0.kind != .firstOrder }) {
            // A second-order or integrating start is far from its optimum, and most iterations are spent
            // there, where the search sample steers as well as the whole record; finish on every estimation
            // sample. (A first-order start comes out of the dead-time search, already near its optimum.)
            (paths, _) = coarse.optimise(paths, drift: drift, holdDeadTimes: false, iterations: 60)
            (paths, _) = optimise(paths, drift: drift, holdDeadTimes: false, iterations: 15)
        } else {
            (paths, _) = optimise(paths, drift: drift, holdDeadTimes: false, iterations: 60)
        }
        paths = withUncertainty(paths, drift: drift)
        let kinds = paths.map(\.kind)
        let (estimation, validation) = data.fitPercents(paths, drift: drift)
        let count = kinds.reduce(0) { $0 + $1.parameterCount }
        return Fitted(
            paths: paths, drift: drift,
            fit: CandidateFit(
                kinds: kinds, parameterCount: count, estimationFitPercent: estimation,
                validationFitPercent: validation))
    }

    /// σ²·(JᵀJ)⁻¹ with a central-difference Jacobian of the (projected) residuals at the optimum;
    /// σ² = SSR/(N − parameters − nuisance parameters).
    private func withUncertainty(_ paths: [TransferPath], drift: Bool) -> [TransferPath] {
        // Second-order paths are fitted with τ₁, τ₂ in any order; evaluate in the reported order.
        let problem = layout(paths, drift: drift, holdDeadTimes: false)
        let p = paths.flatMap(\.parameters)
        let (jtj, _, r, cost) = problem.normalEquations(at: p, central: true)
        let states = paths.reduce(0) { $0 + ($1.kind == .integrating ? 0 : ($1.kind == .secondOrder ? 2 : 1)) }
        let nuisance = data.segments.count * ((drift ? 2 : 1) + states)
        let dof = r.count - p.count - nuisance
        guard dof > 0 else { return paths }
        let sigma2 = 2 * cost / Double(dof)
        guard let inverse = jtj.solve(DenseMatrix.identity(p.count)) else { return paths }
        var out = paths
        var offset = 0
        for j in 0..<out.count {
            func sd(_ i: Int) -> Double { (Swift.max(0, inverse[offset + i, offset + i]) * sigma2).squareRoot() }
            switch out[j].kind {
            case .firstOrder:
                out[j].uncertainty = PathUncertainty(
                    gain: sd(0), timeConstant: sd(1), secondTimeConstant: 0, deadTime: sd(2))
            case .integrating:
                out[j].uncertainty = PathUncertainty(
                    gain: sd(0), timeConstant: 0, secondTimeConstant: 0, deadTime: sd(1))
            case .secondOrder:
                out[j].uncertainty = PathUncertainty(
                    gain: sd(0), timeConstant: sd(1), secondTimeConstant: sd(2), deadTime: sd(3))
            }
            offset += out[j].kind.parameterCount
        }
        return out
    }

    // MARK: ARX start

    /// Equation-error start: y[k] = a·y[k−1] + Σ b_j·u_j[k−1−d_j] (or, integrating, Δy[k] = Σ b_j·u_j[k−1−d_j] + c),
    /// linear least squares for each dead time, dead times chosen by coordinate search over whole samples.
    /// Cheap (normal equations of size m+1), and close enough for the output-error search to finish.
    private func arxStart(integrating: Bool) -> (pole: Double, gains: [Double], delays: [Int]) {
        let m = data.inputCount
        var delays = [Int](repeating: 0, count: m)
        var best = solveARX(delays, integrating: integrating)
        for _ in 0..<2 {
            for j in 0..<m {
                for d in 0...maximumDelaySamples where d != delays[j] {
                    var trial = delays
                    trial[j] = d
                    let candidate = solveARX(trial, integrating: integrating)
                    if candidate.ssr < best.ssr {
                        best = candidate
                        delays = trial
                    }
                }
            }
        }
        return integrating ? (1, best.beta, delays) : (best.beta[m], Array(best.beta[0..<m]), delays)
    }

    /// Columns: u_1..u_m delayed, then y[k−1] (first order) or 1 (integrating). Returns β and the SSR.
    private func solveARX(_ delays: [Int], integrating: Bool) -> (beta: [Double], ssr: Double) {
        let m = data.inputCount
        let q = m + 1
        var xtx = DenseMatrix(rows: q, cols: q)
        var xty = [Double](repeating: 0, count: q)
        var yty = 0.0
        var row = [Double](repeating: 0, count: q)
        for segment in data.segments {
            let n = segment.estimation
            guard n > 1 else { continue }
            for k in 1..<n {
                for j in 0..<m {
                    let index = k - 1 - delays[j]
                    row[j] = segment.inputs[j][Swift.max(index, 0)]
                }
                row[m] = integrating ? 1 : segment.output[k - 1]
                let target = integrating ? segment.output[k] - segment.output[k - 1] : segment.output[k]
                for a in 0..<q {
                    xty[a] += row[a] * target
                    for b in a..<q { xtx[a, b] += row[a] * row[b] }
                }
                yty += target * target
            }
        }
        for a in 0..<q {
            for b in 0..<a { xtx[a, b] = xtx[b, a] }
        }
        let beta = xtx.solveSymmetric(xty)
        var explained = 0.0
        for a in 0..<q { explained += beta[a] * xty[a] }
        return (beta, yty - explained)
    }
}
