import Foundation
import TestSupport
import Testing

/// End to end: the agent runs the quadruple tank over Modbus with its loop in manual, the MVs are stepped through
/// `edgepilot loop NAME mv`, and `edgepilot identify` fits the agent's own history; the gains must match the
/// simulator's linearisation (Config/demo-plant.yaml's model), which is what the demo loop's MPC runs on.
@Suite(.serialized) struct QuadTankIdentifyTests {
    /// Simulated seconds per wall second: the loop's 100 ms period is a 2 s sample of the plant.
    static let speed = 20.0
    static let h0 = (12.263, 12.7832)
    /// Linearisation at v = (3, 3) V, per process second (Config/demo-plant.yaml).
    static let a: [[Double]] = [
        [-0.016037, 0, 0.043934, 0], [0, -0.011034, 0, 0.033234], [0, 0, -0.043934, 0], [0, 0, 0, -0.033234],
    ]
    static let b: [[Double]] = [[0.08325, 0], [0, 0.062812], [0, 0.047857], [0.031219, 0]]

    /// Steady-state gains C(−A)⁻¹B, CV × MV (levels are the first two states); time scaling cancels.
    static var linearGains: [[Double]] {
        var gains = [[Double]](repeating: [0, 0], count: 2)
        for mv in 0..<2 {
            // Solve −A·x = b[:, mv] by elimination (−A is upper triangular up to the order of its states).
            var m = a.map { $0.map { -$0 } }
            var rhs = b.map { $0[mv] }
            for col in 0..<4 {
                let pivot = (col..<4).max { abs(m[$0][col]) < abs(m[$1][col]) }!
                m.swapAt(col, pivot)
                rhs.swapAt(col, pivot)
                for row in 0..<4 where row != col && m[row][col] != 0 {
                    let f = m[row][col] / m[col][col]
                    for k in 0..<4 { m[row][k] -= f * m[col][k] }
                    rhs[row] -= f * rhs[col]
                }
            }
            for cv in 0..<2 { gains[cv][mv] = rhs[cv] / m[cv][cv] }
        }
        return gains
    }

    static func config(port: Int) -> String {
        """
        agent:
          control_socket: @DIR@/control.sock
          log_level: info
        poll_groups:
          - {name: fast, period: 50ms}
        history:
          path: @DIR@/history.db
          commit_interval: 100ms
        devices:
          - {name: plant, type: modbus_tcp, host: 127.0.0.1, port: \(port), timeout: 300ms}
        tags:
          - {name: tank1/level, device: plant, area: input_register, address: 0, type: float32, units: cm, poll_group: fast}
          - {name: tank2/level, device: plant, area: input_register, address: 2, type: float32, units: cm, poll_group: fast}
          - {name: pump1/voltage, device: plant, area: holding_register, address: 0, type: float32, units: V, writable: true, limits: {min: 0, max: 10}, poll_group: fast}
          - {name: pump2/voltage, device: plant, area: holding_register, address: 2, type: float32, units: V, writable: true, limits: {min: 0, max: 10}, poll_group: fast}
        loops:
          - name: tanks
            period: 100ms
            mode: manual
            cvs:
              - {tag: tank1/level, setpoint: \(h0.0), soft_low: 2, soft_high: 18}
              - {tag: tank2/level, setpoint: \(h0.1), soft_low: 2, soft_high: 18}
            mvs:
              - {tag: pump1/voltage, low: 0.5, high: 8, rate: 4, move_weight: 0.39, pid: {cv: tank1/level, gain: 1.5, integral_time: 1.5s}}
              - {tag: pump2/voltage, low: 0.5, high: 8, rate: 4, move_weight: 0.39, pid: {cv: tank2/level, gain: 1.35, integral_time: 2s}}
            model:
              type: fopdt
              gains: [[{gain: 5, time_constant: 3s}, {gain: 3, time_constant: 5s}], [{gain: 3, time_constant: 5s}, {gain: 5, time_constant: 4s}]]
              operating_point: {mvs: [3, 3], cvs: [\(h0.0), \(h0.1)]}
            horizons: {prediction: 40, control: 8}
            supervisor: {max_input_age: 500ms}

        """
    }

    @Test("gains identified from the agent's own history of manual steps match the plant's linearisation within 15 %")
    func identifiesQuadrupleTank() throws {
        let plant = try QuadTank(
            extraArguments: [
                "--speed", String(Self.speed), "--initial", String(Self.h0.0), String(Self.h0.1), "1.6339", "1.409",
            ])
        defer { plant.stop() }
        let agent = try AgentProcess(config: Self.config(port: plant.port))
        defer {
            agent.stop()
            agent.dir.remove()
        }
        #expect(
            eventually(timeout: 10) {
                ((try? agent.json(["loops", "tanks"])) as? [[String: Any]])?.first?["mode"] as? String == "manual"
            })
        func move(_ mv: String, _ value: Double) {
            let r = try? agent.cli(["loop", "tanks", "mv", mv, String(value)])
            #expect(r?.status == 0, "\(r?.stderr ?? "")")
        }
        move("pump1/voltage", 3)
        move("pump2/voltage", 3)
        Thread.sleep(forTimeInterval: 5)
        let since = Date()
        // Steps of ±0.4 V around 3 V, each MV alone and held about four time constants of the slow tank.
        let steps: [(String, Double)] = [
            ("pump1/voltage", 3.4), ("pump2/voltage", 3.4), ("pump1/voltage", 2.6), ("pump2/voltage", 2.7),
            ("pump1/voltage", 3.2), ("pump2/voltage", 3.0),
        ]
        for (mv, value) in steps {
            move(mv, value)
            Thread.sleep(forTimeInterval: 14)
        }
        Thread.sleep(forTimeInterval: 1)
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let result = try runCommand(
            agent.binary,
            [
                "identify", "--config", agent.configPath, "--loop", "tanks", "--since", formatter.string(from: since),
                "--modes", "manual", "--json",
            ], timeout: 120)
        #expect(result.status == 0, "\(result.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let paths = try #require(json["paths"] as? [[String: Any]])
        let expected = Self.linearGains
        var lines = [String]()
        for (j, cv) in ["tank1/level", "tank2/level"].enumerated() {
            for (i, mv) in ["pump1/voltage", "pump2/voltage"].enumerated() {
                let path = try #require(paths.first { $0["cv"] as? String == cv && $0["input"] as? String == mv })
                let gain = try #require(path["gain"] as? Double)
                lines.append(
                    "\(cv)←\(mv) \(String(format: "%.3f", gain)) (linear \(String(format: "%.3f", expected[j][i])))")
                #expect(
                    abs(gain - expected[j][i]) <= 0.15 * expected[j][i], "\(cv) ← \(mv): \(gain) vs \(expected[j][i])")
            }
        }
        let fits = (json["outputs"] as? [[String: Any]])?.compactMap { $0["validationFitPercent"] as? Double } ?? []
        print(
            "quadruple tank identified from the agent's history: " + lines.joined(separator: ", ") + "; fit % \(fits)")
    }
}
