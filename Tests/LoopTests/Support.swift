import Foundation
import TestSupport

extension AgentProcess {
    /// The loop's snapshot as `edgepilot loops NAME --json` prints it.
    func loop(_ name: String = "tanks") throws -> [String: Any] {
        (try json(["loops", name]) as! [[String: Any]])[0]
    }

    func kpi(_ name: String = "tanks") throws -> [String: Any] {
        (try json(["loops", name, "--kpi"]) as! [[String: Any]])[0]
    }

    func mode(_ name: String = "tanks") -> String? { (try? loop(name))?["mode"] as? String }
}

/// The quadruple tank at P− and its loop, with time compressed by `speed`: the simulator runs `speed` simulated
/// seconds per wall second, so the agent sees dynamics `speed` times faster and the model, PI integral times and
/// rates are scaled to wall time. A loop period of 100 ms at speed 20 is a 2 s sample of the real plant.
enum TankScenario {
    static let speed = 20.0
    static let h0 = (12.263, 12.7832)
    /// Linearization at v = (3, 3) V, per process second.
    static let a: [[Double]] = [
        [-0.016037, 0, 0.043934, 0], [0, -0.011034, 0, 0.033234], [0, 0, -0.043934, 0], [0, 0, 0, -0.033234],
    ]
    static let b: [[Double]] = [[0.08325, 0], [0, 0.062812], [0, 0.047857], [0.031219, 0]]

    static func matrix(_ m: [[Double]], scale: Double) -> String {
        "[" + m.map { "[" + $0.map { String($0 * scale) }.joined(separator: ", ") + "]" }.joined(separator: ", ") + "]"
    }

    static func config(
        port: Int, mode: String = "mpc", periodMilliseconds: Int = 100, healthy: String = "1s",
        fallback: String = "pid", pollMilliseconds: Int = 50
    ) -> String {
        let s = speed
        return """
            agent:
              control_socket: @DIR@/control.sock
              log_level: info
            poll_groups:
              - name: fast
                period: \(pollMilliseconds)ms
              - name: slow
                period: 1s
            history:
              path: @DIR@/history.db
              commit_interval: 100ms
            devices:
              - name: plant
                type: modbus_tcp
                host: 127.0.0.1
                port: \(port)
                timeout: 300ms
                reconnect_min: 100ms
                reconnect_max: 300ms
            tags:
              - {name: tank1/level, device: plant, area: input_register, address: 0, type: float32, units: cm, poll_group: fast}
              - {name: tank2/level, device: plant, area: input_register, address: 2, type: float32, units: cm, poll_group: fast}
              - name: pump1/voltage
                device: plant
                area: holding_register
                address: 0
                type: float32
                units: V
                writable: true
                limits: {min: 0, max: 10}
                poll_group: fast
              - name: pump2/voltage
                device: plant
                area: holding_register
                address: 2
                type: float32
                units: V
                writable: true
                limits: {min: 0, max: 10}
                poll_group: fast
              - name: agent/heartbeat
                device: plant
                area: holding_register
                address: 20
                type: uint16
                writable: true
                limits: {min: 0, max: 65535}
                poll_group: slow
            loops:
              - name: tanks
                period: \(periodMilliseconds)ms
                mode: \(mode)
                heartbeat: agent/heartbeat
                kpi_window: 10m
                cvs:
                  - {tag: tank1/level, setpoint: \(h0.0), soft_low: 2, soft_high: 18}
                  - {tag: tank2/level, setpoint: \(h0.1), soft_low: 2, soft_high: 18}
                mvs:
                  - tag: pump1/voltage
                    low: 0.5
                    high: 8
                    rate: \(0.2 * s)
                    move_weight: 0.078
                    pid: {cv: tank1/level, gain: 1.5, integral_time: \(30 / s)s}
                  - tag: pump2/voltage
                    low: 0.5
                    high: 8
                    rate: \(0.2 * s)
                    move_weight: 0.078
                    pid: {cv: tank2/level, gain: 1.35, integral_time: \(40 / s)s}
                model:
                  type: state_space
                  continuous: true
                  a: \(matrix(a, scale: s))
                  b: \(matrix(b, scale: s))
                  c: [[1, 0, 0, 0], [0, 1, 0, 0]]
                  operating_point: {mvs: [3, 3], cvs: [\(h0.0), \(h0.1)]}
                horizons: {prediction: 40, control: 8}
                supervisor:
                  max_input_age: 500ms
                  solve_budget: 20ms
                  healthy_period: \(healthy)
                  fallback: \(fallback)

            """
    }

    /// Starts the simulator at the loop's operating point, accelerated.
    static func plant(_ extra: [String] = []) throws -> QuadTank {
        try QuadTank(
            extraArguments: ["--speed", String(speed), "--initial", String(h0.0), String(h0.1), "1.6339", "1.409"]
                + extra)
    }
}

extension QuadTank {
    var voltages: [Double] { ((try? control(["cmd": "get"]))?["v"] as? [Double]) ?? [] }
    var levels: [Double] { ((try? control(["cmd": "get"]))?["h"] as? [Double]) ?? [] }
}
