import Configuration
import Control
import LoopRuntime
import Tags
import Testing

/// `supervisor.max_iterations`: the solve budget given as a worst-case iteration count (what `qpbench` reports per
/// scenario), which bounds the solve time by the count times the cost of one iteration rather than by a clock.
@Suite struct LoopIterationBudgetTests {
    static let yaml = """
        poll_groups:
          - {name: fast, period: 1s}
        devices:
          - {name: plc, type: modbus_tcp, host: 127.0.0.1}
        tags:
          - {name: level, device: plc, area: input_register, address: 0, type: float32}
          - name: pump
            device: plc
            area: holding_register
            address: 0
            type: float32
            writable: true
            limits: {min: 0, max: 10}
        loops:
          - name: tank
            period: 1s
            cvs:
              - {tag: level, setpoint: 12}
            mvs:
              - {tag: pump, low: 0, high: 8, rate: 0.05, pid: {cv: level, gain: 1, integral_time: 30s}}
            model: {type: state_space, a: [[0.95]], b: [[0.1]], c: [[1]], operating_point: {mvs: [3], cvs: [12]}}
            horizons: {prediction: 30, control: 10}
            supervisor: {solve_budget: 1s, max_non_optimal_cycles: 3@LIMIT@}

        """

    /// Runs the loop in MPC at steady state, then steps the setpoint so far that every move hits its rate limit:
    /// the QP needs one add per active limit. Returns the transitions and the solver's iteration limit.
    func run(limit: String) throws -> (transitions: [ModeTransition], statuses: [QPStatus], maxIterations: Int) {
        let text = Self.yaml.replacingOccurrences(of: "@LIMIT@", with: limit)
        let definition = try ConfigurationLoader.parse(yaml: text, file: "tank.yaml").configuration.loops[0]
        let loop = try LoopFactory.build(
            definition, tuning: LoopTuning(definition), targets: [.setpoint(12)], initialOutputs: [3])
        var transitions: [ModeTransition] = []
        var statuses: [QPStatus] = []
        for k in 0..<20 {
            let now = UInt64(k) * 1_000_000_000
            loop.setMeasurement(0, value: 12, good: true, timestamp: now)
            loop.setInputReadback(0, good: true, timestamp: now)
            if k == 1 { loop.request(.mpc) }
            if k == 10 { try loop.mpc.setTarget(0, .setpoint(20)) }
            let report = loop.step(now: now)
            if k >= 10, let status = report.mpc?.status { statuses.append(status) }
            if let t = report.transition { transitions.append(t) }
        }
        return (transitions, statuses, loop.mpc.solver.settings.maxIterations)
    }

    @Test func aSolveThatReachesTheConfiguredIterationLimitShedsMPCAsAnyNonOptimalSolve() throws {
        let limited = try run(limit: ", max_iterations: 1")
        #expect(limited.maxIterations == 1)
        #expect(
            limited.statuses.prefix(3) == [.iterationLimit, .iterationLimit, .iterationLimit], "\(limited.statuses)")
        let shed = limited.transitions.last
        #expect(shed?.from == .mpc && shed?.to == .pid)
        #expect(shed?.reason == .solverNotOptimal(consecutiveCycles: 3, lastStatus: .iterationLimit), "\(limited)")
        // The same step without the setting stays in MPC: the default limit (3·(n + m) + 50) is never reached here.
        let unlimited = try run(limit: "")
        #expect(unlimited.maxIterations == 0)
        #expect(unlimited.statuses.allSatisfy { $0 == .optimal }, "\(unlimited.statuses)")
        #expect(unlimited.transitions.map(\.to) == [.mpc])
    }
}
