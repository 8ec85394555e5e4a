// qpbench — runs the Control module's dense QP solver over a JSON Lines file of QPs (one warm-started
// sequence), and generates such files from closed-loop MPC runs. Format: Benchmarks/README.md.
import Control
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

func nowNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

struct Failure: Error, CustomStringConvertible {
    var description: String
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("qpbench: \(message)\n".utf8))
    exit(2)
}

// MARK: - JSON helpers

func jsonNumber(_ v: Double) -> String {
    v.isFinite ? "\(v)" : "null"
}

func jsonArray(_ v: some Sequence<Double>) -> String {
    "[" + v.map(jsonNumber).joined(separator: ",") + "]"
}

func jsonMatrix(_ flat: [Double], cols: Int) -> String {
    if flat.isEmpty { return "[]" }
    return "["
        + stride(from: 0, to: flat.count, by: cols).map { jsonArray(flat[$0..<($0 + cols)]) }.joined(separator: ",")
        + "]"
}

struct Problem {
    var n: Int
    var m: Int
    var h: [Double]
    var f: [Double]
    var a: [Double]
    var lower: [Double]
    var upper: [Double]
    var xLower: [Double]
    var xUpper: [Double]
}

func parseProblem(_ line: Substring, number: Int) throws -> Problem {
    guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
        throw Failure(description: "line \(number): not a JSON object")
    }
    func matrix(_ key: String) throws -> [[Double]] {
        guard let rows = object[key] as? [[Any]] else {
            if let empty = object[key] as? [Any], empty.isEmpty { return [] }
            throw Failure(description: "line \(number): \"\(key)\" must be an array of number arrays")
        }
        return try rows.map { row in
            try row.map {
                guard let v = ($0 as? NSNumber)?.doubleValue else {
                    throw Failure(description: "line \(number): \"\(key)\" has a non-number entry")
                }
                return v
            }
        }
    }
    func vector(_ key: String, count: Int, missing: Double, required: Bool) throws -> [Double] {
        guard let values = object[key] as? [Any] else {
            if required { throw Failure(description: "line \(number): \"\(key)\" is missing") }
            return [Double](repeating: missing, count: count)
        }
        guard values.count == count else {
            throw Failure(description: "line \(number): \"\(key)\" has \(values.count) entries; expected \(count)")
        }
        return try values.map {
            if $0 is NSNull { return missing }
            guard let v = ($0 as? NSNumber)?.doubleValue else {
                throw Failure(description: "line \(number): \"\(key)\" has a non-number entry")
            }
            return v
        }
    }
    let h = try matrix("H")
    let n = h.count
    guard n > 0, h.allSatisfy({ $0.count == n }) else {
        throw Failure(description: "line \(number): \"H\" must be a non-empty square matrix")
    }
    let a = try matrix("A")
    guard a.allSatisfy({ $0.count == n }) else {
        throw Failure(description: "line \(number): every row of \"A\" needs \(n) entries")
    }
    let m = a.count
    return Problem(
        n: n, m: m, h: h.flatMap { $0 }, f: try vector("f", count: n, missing: .nan, required: true),
        a: a.flatMap { $0 },
        lower: try vector("lower", count: m, missing: -.infinity, required: m > 0),
        upper: try vector("upper", count: m, missing: .infinity, required: m > 0),
        xLower: try vector("xlower", count: n, missing: -.infinity, required: false),
        xUpper: try vector("xupper", count: n, missing: .infinity, required: false))
}

// MARK: - solve

func solveFile(input: String, output: String?, coldStart: Bool, statsPath: String?) throws {
    let text = try String(contentsOfFile: input, encoding: .utf8)
    var out = ""
    var solver: DenseQPSolver?
    var current: (h: [Double], a: [Double])?
    var lineNumber = 0
    var iterations: [Int] = []
    var nonOptimal = 0
    // Parsed up front, so that solves follow each other as in DAQP's harness (which reads only f and the bounds
    // between two solves): parsing a line of JSON between solves would evict the solver's data from the caches.
    // Problems with the H and A of the previous one share its arrays.
    var problems: [Problem] = []
    for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
        lineNumber += 1
        var p = try parseProblem(line, number: lineNumber)
        if let last = problems.last, last.h == p.h, last.a == p.a {
            p.h = last.h
            p.a = last.a
        }
        problems.append(p)
    }
    for p in problems {
        var setupMicroseconds = 0.0
        if solver == nil || current!.h != p.h || current!.a != p.a {
            // New matrices: build (factorize) once; later problems with the same H and A are hot-started.
            let t0 = nowNanoseconds()
            solver = try DenseQPSolver(
                variables: p.n, constraints: p.m, hessian: p.h, constraintMatrix: p.a,
                settings: QPSettings(warmStart: !coldStart))
            setupMicroseconds = Double(nowNanoseconds() - t0) / 1000
            current = (p.h, p.a)
        }
        let s = solver!
        for i in 0..<p.n {
            s.linearCost[i] = p.f[i]
            s.variableLower[i] = p.xLower[i]
            s.variableUpper[i] = p.xUpper[i]
        }
        for i in 0..<p.m {
            s.lower[i] = p.lower[i]
            s.upper[i] = p.upper[i]
        }
        let t0 = nowNanoseconds()
        let result = s.solve()
        let elapsed = Double(nowNanoseconds() - t0) / 1000
        iterations.append(result.iterations)
        if result.status != .optimal { nonOptimal += 1 }
        out +=
            "{\"x\":\(jsonArray(s.solution)),\"status\":\"\(result.status.rawValue)\",\"iterations\":\(result.iterations)"
        out += ",\"solve_us\":\(elapsed),\"setup_us\":\(setupMicroseconds)}\n"
    }
    if let output {
        try out.write(toFile: output, atomically: true, encoding: .utf8)
    } else {
        print(out, terminator: "")
    }
    // The worst case seen is what a loop's `supervisor.max_iterations` is set from (Config/README.md).
    let worst = iterations.max() ?? 0
    let stats =
        "{\"solves\":\(iterations.count),\"iterations_max\":\(worst),"
        + "\"iterations_max_line\":\((iterations.firstIndex(of: worst) ?? -1) + 1),"
        + "\"iterations_median\":\(percentile(iterations.sorted().map(Double.init), 0.5)),"
        + "\"non_optimal\":\(nonOptimal)}"
    if let statsPath {
        try (stats + "\n").write(toFile: statsPath, atomically: true, encoding: .utf8)
    } else {
        FileHandle.standardError.write(Data((stats + "\n").utf8))
    }
}

// MARK: - generate

struct Scenario {
    var name: String
    var run: (_ steps: Int, _ record: (ModelPredictiveController) -> Void) throws -> [UInt64]
}

/// Quadruple tank (P−), nonlinear plant with +20 % pump gain error and a leak, rate-limited MVs,
/// setpoint steps every 60 samples: the QPs a real loop would solve.
func quadrupleTank(np: Int, nc: Int) -> Scenario {
    Scenario(name: "quadtank-\(np)-\(nc)") { steps, record in
        let nominal = QuadrupleTank.minimumPhase
        let h0 = nominal.steadyState(voltages: (3, 3))
        let mvs = [
            MVSettings(moveWeight: 0.5, low: 0.5, high: 6, maxIncrease: 0.15, maxDecrease: 0.15),
            MVSettings(moveWeight: 0.5, low: 0.5, high: 6, maxIncrease: 0.15, maxDecrease: 0.15),
        ]
        let mpc = try ModelPredictiveController(
            model: nominal.linearModel(voltages: (3, 3), period: 10),
            configuration: MPCConfiguration(
                predictionHorizon: np, controlHorizon: nc,
                outputs: [CVSettings(target: .setpoint(0.5 * h0.0)), CVSettings(target: .setpoint(0.5 * h0.1))],
                inputs: mvs))
        var plant = nominal
        plant.pumpGain = (nominal.pumpGain.0 * 1.2, nominal.pumpGain.1 * 1.2)
        var h = plant.steadyState(voltages: (3, 3))
        var u = [3.0, 3.0]
        var output = u
        var y = [0.0, 0.0]
        let none: [Double] = []
        let offsets: [(Double, Double)] = [(0.8, -0.4), (-0.6, 0.6), (0.0, 0.0), (1.2, 0.9), (-1.0, -0.8)]
        var times = [UInt64]()
        for k in 0..<steps {
            if k % 60 == 5 {
                let o = offsets[(k / 60) % offsets.count]
                try mpc.setTarget(0, .setpoint(0.5 * h0.0 + o.0))
                try mpc.setTarget(1, .setpoint(0.5 * h0.1 + o.1))
            }
            y[0] = plant.sensorGain * h.0
            y[1] = plant.sensorGain * h.1
            let t0 = nowNanoseconds()
            _ = mpc.step(measurement: y, disturbance: none, appliedInput: u, output: &output)
            times.append(nowNanoseconds() - t0)
            record(mpc)
            u = output
            plant.advance(levels: &h, voltages: (u[0], u[1]), inflow: (0, k >= steps / 2 ? -1 : 0, 0, 0), duration: 10)
        }
        return times
    }
}

/// Wood–Berry column with dead-time states, +20 % gain error, an unmeasured feed step, CV soft limits.
func woodBerry(np: Int, nc: Int) -> Scenario {
    Scenario(name: "woodberry-\(np)-\(nc)") { steps, record in
        let model = try StateSpaceModel.fromTransferFunctions(
            WoodBerry.transferFunctions, period: 1, inputNominal: [1.95, 1.71], outputNominal: [96, 0.5])
        var scaled = WoodBerry.transferFunctions
        for i in 0..<2 { for j in 0..<2 { scaled[i][j]!.gain *= 1.2 } }
        let plant = try StateSpaceModel.fromTransferFunctions(
            scaled, disturbances: WoodBerry.feedDisturbance, period: 1)
        let mpc = try ModelPredictiveController(
            model: model,
            configuration: MPCConfiguration(
                predictionHorizon: np, controlHorizon: nc,
                outputs: [
                    CVSettings(target: .setpoint(96), softLow: 94, softHigh: 97.5),
                    CVSettings(target: .setpoint(0.5), softLow: 0, softHigh: 1.5),
                ],
                inputs: [
                    MVSettings(moveWeight: 2, low: 1.2, high: 2.7, maxIncrease: 0.05, maxDecrease: 0.05),
                    MVSettings(moveWeight: 2, low: 1.0, high: 2.4, maxIncrease: 0.05, maxDecrease: 0.05),
                ]))
        let n = plant.stateCount
        var x = [Double](repeating: 0, count: n)
        var next = x
        var u = [1.95, 1.71]
        var output = u
        var y = [0.0, 0.0]
        let none: [Double] = []
        var times = [UInt64]()
        for k in 0..<steps {
            if k % 80 == 10 { try mpc.setTarget(0, .setpoint(k % 160 == 10 ? 97 : 96)) }
            if k % 80 == 50 { try mpc.setTarget(1, .setpoint(k % 160 == 50 ? 1.0 : 0.5)) }
            for i in 0..<2 {
                y[i] = i == 0 ? 96 : 0.5
                for s in 0..<n { y[i] += plant.c[i * n + s] * x[s] }
            }
            let t0 = nowNanoseconds()
            _ = mpc.step(measurement: y, disturbance: none, appliedInput: u, output: &output)
            times.append(nowNanoseconds() - t0)
            record(mpc)
            u = output
            let feed = k >= steps / 2 ? 0.3 : 0.0
            for r in 0..<n {
                var v = plant.b[r * 2] * (u[0] - 1.95) + plant.b[r * 2 + 1] * (u[1] - 1.71) + plant.bd[r] * feed
                for s in 0..<n { v += plant.a[r * n + s] * x[s] }
                next[r] = v
            }
            swap(&x, &next)
        }
        return times
    }
}

/// Random stable plants (2–3 CVs × 2–3 MVs of first order with dead time, gains of either sign, 20 % model
/// error), soft CV limits, rate-limited MVs, random setpoint steps and unmeasured disturbance steps; one
/// disturbance in three is too large for the MVs, so the CV limits hold only through their slacks until it
/// passes (a QP that is infeasible without the slack variables). The seed picks the plant and the sequence.
func randomSoft(seed: UInt64) -> Scenario {
    Scenario(name: "random-soft-\(seed)") { steps, record in
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        func uniform(_ low: Double, _ high: Double) -> Double {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return low + (high - low) * Double(state >> 11) / Double(1 << 53)
        }
        let ny = Int(uniform(2, 4))
        let nu = Int(uniform(2, 4))
        var g = [[FirstOrderDeadTime?]](repeating: [FirstOrderDeadTime?](repeating: nil, count: nu), count: ny)
        var truth = g
        var gd = [[FirstOrderDeadTime?]](repeating: [nil], count: ny)
        for i in 0..<ny {
            for j in 0..<nu {
                let sign: Double = uniform(0, 1) < 0.3 ? -1 : 1
                let tf = FirstOrderDeadTime(
                    gain: sign * uniform(0.5, 2), timeConstant: uniform(3, 25), deadTime: Double(Int(uniform(0, 4))))
                g[i][j] = tf
                var actual = tf
                actual.gain *= uniform(0.8, 1.2)
                actual.timeConstant *= uniform(0.8, 1.2)
                truth[i][j] = actual
            }
            gd[i][0] = FirstOrderDeadTime(gain: uniform(0.5, 1.5), timeConstant: uniform(5, 20))
        }
        let model = try StateSpaceModel.fromTransferFunctions(g, period: 1)
        let plant = try StateSpaceModel.fromTransferFunctions(truth, disturbances: gd, period: 1)
        let mpc = try ModelPredictiveController(
            model: model,
            configuration: MPCConfiguration(
                predictionHorizon: 40, controlHorizon: 10,
                outputs: (0..<ny).map { _ in CVSettings(target: .setpoint(0), softLow: -1, softHigh: 1) },
                inputs: (0..<nu).map { _ in
                    MVSettings(moveWeight: 0.5, low: -1, high: 1, maxIncrease: 0.1, maxDecrease: 0.1)
                }))
        let n = plant.stateCount
        var x = [Double](repeating: 0, count: n)
        var next = x
        var u = [Double](repeating: 0, count: nu)
        var output = u
        var y = [Double](repeating: 0, count: ny)
        var disturbance = 0.0
        let none: [Double] = []
        var times = [UInt64]()
        for k in 0..<steps {
            if k % 40 == 5 {
                for i in 0..<ny { try mpc.setTarget(i, .setpoint(uniform(-0.9, 0.9))) }
            }
            if k % 50 == 25 {
                // Beyond what MVs limited to ±1 can offset (gains ≤ 2 per MV, up to 3 MVs) one time in three.
                disturbance = uniform(0, 1) < 1.0 / 3 ? uniform(4, 8) * (uniform(0, 1) < 0.5 ? -1 : 1) : uniform(-1, 1)
            }
            for i in 0..<ny { y[i] = dot(plant.c, row: i, x) }
            let t0 = nowNanoseconds()
            _ = mpc.step(measurement: y, disturbance: none, appliedInput: u, output: &output)
            times.append(nowNanoseconds() - t0)
            record(mpc)
            u = output
            for r in 0..<n {
                var v = plant.bd[r] * disturbance
                for j in 0..<nu { v += plant.b[r * nu + j] * u[j] }
                for s in 0..<n { v += plant.a[r * n + s] * x[s] }
                next[r] = v
            }
            swap(&x, &next)
        }
        return times
    }
}

func dot(_ matrix: [Double], row: Int, _ v: [Double]) -> Double {
    var s = 0.0
    for k in 0..<v.count { s += matrix[row * v.count + k] * v[k] }
    return s
}

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    sorted[min(sorted.count - 1, Int((p * Double(sorted.count - 1)).rounded()))]
}

func generate(scenario name: String, steps: Int, output: String, statsPath: String?) throws {
    let scenarios = [
        quadrupleTank(np: 30, nc: 10), quadrupleTank(np: 60, nc: 20), quadrupleTank(np: 100, nc: 40),
        woodBerry(np: 40, nc: 10),
    ]
    let randomPrefix = "random-soft-"
    let scenario: Scenario
    if name.hasPrefix(randomPrefix), let seed = UInt64(name.dropFirst(randomPrefix.count)) {
        scenario = randomSoft(seed: seed)
    } else if let known = scenarios.first(where: { $0.name == name }) {
        scenario = known
    } else {
        throw Failure(
            description:
                "unknown scenario \(name); known: \(scenarios.map(\.name).joined(separator: ", ")), random-soft-SEED")
    }
    var lines = ""
    let record: (ModelPredictiveController) -> Void = { mpc in
        let s = mpc.solver
        let n = s.variableCount
        lines += "{\"H\":\(jsonMatrix(mpc.qpHessian, cols: n)),\"f\":\(jsonArray(s.linearCost))"
        lines += ",\"A\":\(jsonMatrix(mpc.qpConstraintMatrix, cols: n)),\"lower\":\(jsonArray(s.lower))"
        lines += ",\"upper\":\(jsonArray(s.upper)),\"xlower\":\(jsonArray(s.variableLower))"
        lines += ",\"xupper\":\(jsonArray(s.variableUpper))}\n"
    }
    // A first run without recording measures step() alone (recording is JSON formatting).
    let stepTimes = try scenario.run(steps) { _ in }.map { Double($0) / 1000 }.sorted()
    _ = try scenario.run(steps, record)
    try lines.write(toFile: output, atomically: true, encoding: .utf8)
    let stats =
        "{\"scenario\":\"\(name)\",\"steps\":\(steps),\"step_median_us\":\(percentile(stepTimes, 0.5)),"
        + "\"step_p99_us\":\(percentile(stepTimes, 0.99)),\"step_max_us\":\(stepTimes.last ?? 0)}"
    if let statsPath {
        try (stats + "\n").write(toFile: statsPath, atomically: true, encoding: .utf8)
    } else {
        FileHandle.standardError.write(Data((stats + "\n").utf8))
    }
}

// MARK: - main

let usage = """
    usage: qpbench solve INPUT.jsonl [--out OUTPUT.jsonl] [--cold] [--stats STATS.json]
           qpbench generate SCENARIO --out FILE.jsonl [--steps N] [--stats STATS.json]
    scenarios: quadtank-30-10, quadtank-60-20, quadtank-100-40, woodberry-40-10,
               random-soft-SEED (a random plant with soft CV limits, SEED a positive integer)
    """
var arguments = Array(CommandLine.arguments.dropFirst())
@MainActor func option(_ name: String) -> String? {
    guard let i = arguments.firstIndex(of: name) else { return nil }
    guard i + 1 < arguments.count else { fail("\(name) needs a value\n\(usage)") }
    let value = arguments[i + 1]
    arguments.removeSubrange(i...(i + 1))
    return value
}
@MainActor func flag(_ name: String) -> Bool {
    guard let i = arguments.firstIndex(of: name) else { return false }
    arguments.remove(at: i)
    return true
}
do {
    guard let command = arguments.first else { fail(usage) }
    arguments.removeFirst()
    switch command {
    case "solve":
        let out = option("--out")
        let cold = flag("--cold")
        let stats = option("--stats")
        guard arguments.count == 1 else { fail(usage) }
        try solveFile(input: arguments[0], output: out, coldStart: cold, statsPath: stats)
    case "generate":
        guard let out = option("--out") else { fail("generate needs --out\n\(usage)") }
        let stepsText = option("--steps") ?? "300"
        guard let steps = Int(stepsText), steps > 0 else {
            fail("--steps must be a positive integer, got \(stepsText)")
        }
        let stats = option("--stats")
        guard arguments.count == 1 else { fail(usage) }
        try generate(scenario: arguments[0], steps: steps, output: out, statsPath: stats)
    default:
        fail("unknown command \(command)\n\(usage)")
    }
} catch {
    fail("\(error)")
}
