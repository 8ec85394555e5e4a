import Testing

@testable import Control

/// Deterministic generator (SplitMix64), so a failing problem can be reproduced from its seed.
struct SplitMix {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform(_ low: Double = -1, _ high: Double = 1) -> Double {
        low + (high - low) * Double(next() >> 11) / Double(1 << 53)
    }
    mutating func int(_ range: Range<Int>) -> Int { range.lowerBound + Int(next() % UInt64(range.count)) }
}

/// A random QP with the structures that make active-set methods stumble: repeated rows, a row equal to a
/// bound of x, rows that are combinations of others, equalities, and vertices where more than n
/// constraints are active.
struct RandomQP {
    var n: Int
    var m: Int
    var h: [Double]
    var a: [Double]
    var f: [Double]
    var lower: [Double]
    var upper: [Double]
    var xLower: [Double]
    var xUpper: [Double]

    /// `rows` fixes m (otherwise 0..<3n).
    init(seed: UInt64, degenerate: Bool, rows: Int? = nil) {
        var rng = SplitMix(state: seed)
        n = rng.int(2..<14)
        m = rows ?? rng.int(0..<(3 * n))
        (h, a, f, lower, upper, xLower, xUpper) = ([], [], [], [], [], [], [])
        // H = BᵀB + δI with a spread of scales (condition up to ~1e6).
        var b = [Double](repeating: 0, count: n * n)
        for i in 0..<(n * n) { b[i] = rng.uniform() }
        h = [Double](repeating: 0, count: n * n)
        let n = n
        let power = [1e-3, 1e-2, 0.1, 1, 10, 100, 1e3][rng.int(0..<7)]
        for i in 0..<n {
            for j in 0..<n {
                var s = 0.0
                for k in 0..<n { s += b[k * n + i] * b[k * n + j] }
                h[i * n + j] = s + (i == j ? 1e-3 + abs(rng.uniform()) : 0)
            }
        }
        for i in 0..<(n * n) { h[i] *= power }
        for r in 0..<m {
            var row = (0..<n).map { _ in rng.uniform() }
            if degenerate && r > 0 {
                switch rng.int(0..<5) {
                case 0:  // a copy of an earlier row, maybe scaled
                    let source = rng.int(0..<r)
                    let c = [1.0, -1.0, 2.5][rng.int(0..<3)]
                    row = (0..<n).map { c * a[source * n + $0] }
                case 1:  // a bound of x as a row
                    row = [Double](repeating: 0, count: n)
                    row[rng.int(0..<n)] = 1
                case 2:  // a combination of two earlier rows
                    let i = rng.int(0..<r)
                    let j = rng.int(0..<r)
                    row = (0..<n).map { a[i * n + $0] + 0.5 * a[j * n + $0] }
                    if row.allSatisfy({ $0 == 0 }) { row[0] = 1 }
                default:
                    break
                }
            }
            a += row
        }
        // Bounds around a point x̂, so that with degeneracy many constraints are active at x̂ at once.
        let center = (0..<n).map { _ in rng.uniform(-2, 2) }
        for r in 0..<m {
            var value = 0.0
            for k in 0..<n { value += a[r * n + k] * center[k] }
            switch rng.int(0..<6) {
            case 0: (lower, upper) = (lower + [value], upper + [value])  // equality through x̂
            case 1: (lower, upper) = (lower + [-.infinity], upper + [degenerate ? value : value + 1])
            case 2: (lower, upper) = (lower + [degenerate ? value : value - 1], upper + [.infinity])
            case 3: (lower, upper) = (lower + [-.infinity], upper + [.infinity])
            default:
                (lower, upper) = (lower + [value - abs(rng.uniform())], upper + [value + abs(rng.uniform())])
            }
        }
        for k in 0..<n {
            let bounded = rng.int(0..<3) != 0
            xLower.append(bounded ? center[k] - (degenerate ? 0 : abs(rng.uniform(0, 2))) : -.infinity)
            xUpper.append(bounded ? center[k] + abs(rng.uniform(0, 2)) : .infinity)
        }
        // A cost pulling away from x̂ so constraints bind; large enough to reach far corners.
        f = (0..<n).map { _ in rng.uniform(-10, 10) * power }
        // One problem in six cannot be solved: row 0 again, on the far side of its own upper bound.
        if !degenerate && m >= 2 && rng.int(0..<6) == 0 {
            var value = 0.0
            for k in 0..<n { value += a[k] * center[k] }
            for k in 0..<n { a[(m - 1) * n + k] = a[k] }
            upper[0] = value
            lower[m - 1] = value + 0.5
            upper[m - 1] = .infinity
        }
    }

    /// A new cost and a shift of the bounds, as an MPC cycle changes them; H and A stay.
    mutating func perturb(_ rng: inout SplitMix) {
        for i in 0..<n { f[i] += rng.uniform(-2, 2) * abs(f[i] + 1e-3) }
        let shift = rng.uniform(-0.3, 0.3)
        for i in 0..<m where lower[i].isFinite || upper[i].isFinite {
            lower[i] += shift
            upper[i] += shift
        }
    }

    func load(
        _ linearCost: UnsafeMutableBufferPointer<Double>, _ lo: UnsafeMutableBufferPointer<Double>,
        _ hi: UnsafeMutableBufferPointer<Double>, _ xLo: UnsafeMutableBufferPointer<Double>,
        _ xHi: UnsafeMutableBufferPointer<Double>
    ) {
        for i in 0..<n {
            linearCost[i] = f[i]
            xLo[i] = xLower[i]
            xHi[i] = xUpper[i]
        }
        for i in 0..<m {
            lo[i] = lower[i]
            hi[i] = upper[i]
        }
    }

    /// Largest violation along unit normals, as the solvers measure it.
    func violation(_ x: UnsafeBufferPointer<Double>) -> Double {
        var worst = 0.0
        for k in 0..<n { worst = max(worst, xLower[k] - x[k], x[k] - xUpper[k]) }
        for r in 0..<m {
            var ax = 0.0
            var norm = 0.0
            for k in 0..<n {
                ax += a[r * n + k] * x[k]
                norm += a[r * n + k] * a[r * n + k]
            }
            worst = max(worst, (lower[r] - ax) / norm.squareRoot(), (ax - upper[r]) / norm.squareRoot())
        }
        return worst
    }

    func objective(_ x: UnsafeBufferPointer<Double>) -> Double {
        var value = 0.0
        for i in 0..<n {
            var hx = 0.0
            for k in 0..<n { hx += h[i * n + k] * x[k] }
            value += x[i] * (0.5 * hx + f[i])
        }
        return value
    }
}

@Suite struct QPRandomProblemTests {
    /// Cold solves agree with the Goldfarb–Idnani reference on status and, when optimal, on the solution
    /// (unique: H is positive definite); the optimum is feasible and no worse than the reference's.
    func compare(seed: UInt64, degenerate: Bool, rows: Int? = nil) throws -> (optimal: Int, infeasible: Int) {
        let p = RandomQP(seed: seed, degenerate: degenerate, rows: rows)
        let solver = try DenseQPSolver(variables: p.n, constraints: p.m, hessian: p.h, constraintMatrix: p.a)
        let reference = try GoldfarbIdnaniReference(
            variables: p.n, constraints: p.m, hessian: p.h, constraintMatrix: p.a)
        p.load(solver.linearCost, solver.lower, solver.upper, solver.variableLower, solver.variableUpper)
        p.load(reference.linearCost, reference.lower, reference.upper, reference.variableLower, reference.variableUpper)
        let ours = solver.solve()
        let theirs = reference.solve()
        #expect(ours.status == theirs.status, "seed \(seed) (n \(p.n), m \(p.m), degenerate \(degenerate))")
        guard ours.status == .optimal && theirs.status == .optimal else {
            return (0, ours.status == .infeasible ? 1 : 0)
        }
        let scale = max(1, reference.solution.map(abs).max() ?? 0)
        let diff = maxDifference(solver.solution, Array(reference.solution))
        #expect(diff <= 1e-6 * scale, "seed \(seed): |x − x_ref| = \(diff)")
        #expect(p.violation(solver.solution) <= 1e-8 * scale, "seed \(seed): violation")
        let objective = p.objective(solver.solution)
        let referenceObjective = p.objective(reference.solution)
        #expect(objective <= referenceObjective + 1e-8 * max(1, abs(referenceObjective)), "seed \(seed): objective")
        return (1, 0)
    }

    @Test func agreesWithReferenceOnRandomProblems() throws {
        var optimal = 0
        var infeasible = 0
        for seed in UInt64(1)...600 {
            let counts = try compare(seed: seed, degenerate: false)
            optimal += counts.optimal
            infeasible += counts.infeasible
        }
        // The generator must exercise both outcomes, or the comparison says little.
        #expect(optimal > 300)
        #expect(infeasible > 10)
    }

    @Test func agreesWithReferenceOnDegenerateProblems() throws {
        var optimal = 0
        for seed in UInt64(1001)...1600 { optimal += try compare(seed: seed, degenerate: true).optimal }
        #expect(optimal > 200)
    }

    /// Above `gramLimit` the solver forms each Gram column when the constraint enters W instead of copying it.
    @Test func agreesWithReferenceWithoutTheStoredGramMatrix() throws {
        let rows = 400
        #expect((rows + 2) * (rows + 2) > DenseQPSolver.gramLimit)
        var optimal = 0
        for seed in UInt64(3001)...3040 {
            optimal += try compare(seed: seed, degenerate: seed % 2 == 0, rows: rows).optimal
        }
        #expect(optimal > 10)
    }

    /// Sequences with H and A fixed and f and bounds changing, hot-started from the previous working set,
    /// against reference solves from scratch.
    @Test func hotStartedSequencesAgreeWithColdReference() throws {
        for seed in UInt64(2001)...2120 {
            var p = RandomQP(seed: seed, degenerate: seed % 2 == 0)
            var rng = SplitMix(state: seed &* 31)
            let solver = try DenseQPSolver(variables: p.n, constraints: p.m, hessian: p.h, constraintMatrix: p.a)
            for step in 0..<12 {
                let reference = try GoldfarbIdnaniReference(
                    variables: p.n, constraints: p.m, hessian: p.h, constraintMatrix: p.a)
                p.load(solver.linearCost, solver.lower, solver.upper, solver.variableLower, solver.variableUpper)
                p.load(
                    reference.linearCost, reference.lower, reference.upper, reference.variableLower,
                    reference.variableUpper)
                let ours = solver.solve()
                let theirs = reference.solve()
                #expect(ours.status == theirs.status, "seed \(seed) step \(step)")
                if ours.status == .optimal && theirs.status == .optimal {
                    let scale = max(1, reference.solution.map(abs).max() ?? 0)
                    let diff = maxDifference(solver.solution, Array(reference.solution))
                    #expect(diff <= 1e-6 * scale, "seed \(seed) step \(step): |x − x_ref| = \(diff)")
                }
                p.perturb(&rng)
            }
        }
    }
}
