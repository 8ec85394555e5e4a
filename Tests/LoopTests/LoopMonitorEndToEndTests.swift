import Foundation
import TestSupport
import Testing

/// Monitors of loops the agent does not run: two PLCs with their own PI loop, one with a sticking valve (it cycles),
/// one with a linear valve (it settles), read over Modbus and judged by `edgepilot monitors`.
@Suite struct LoopMonitorEndToEndTests {
    static func config(sticky: Int, linear: Int) -> String {
        func plc(_ name: String, _ port: Int) -> String {
            """
              - {name: \(name), type: modbus_tcp, host: 127.0.0.1, port: \(port), timeout: 300ms}
            """
        }
        func tags(_ device: String) -> String {
            ["pv", "sp", "op"].enumerated().map { i, role in
                "  - {name: \(device)/\(role), device: \(device), area: input_register, address: \(2 * i), "
                    + "type: float32, poll_group: fast}"
            }.joined(separator: "\n")
        }
        func monitor(_ name: String, _ device: String) -> String {
            """
              - name: \(name)
                pv: \(device)/pv
                sp: \(device)/sp
                op: \(device)/op
                dead_time: 200ms
                period: 100ms
                window: 1m
                oscillation_period: 5s
                amplitude: 0.3
            """
        }
        return """
            agent:
              control_socket: @DIR@/control.sock
            poll_groups:
              - {name: fast, period: 50ms}
            history:
              path: @DIR@/history.db
              commit_interval: 100ms
            devices:
            \(plc("sticky", sticky))
            \(plc("linear", linear))
            tags:
            \(tags("sticky"))
            \(tags("linear"))
            monitors:
            \(monitor("FIC-1", "sticky"))
            \(monitor("FIC-2", "linear"))
            """
    }

    func monitors(_ agent: AgentProcess) -> [String: [String: Any]] {
        guard let rows = try? agent.json(["monitors"]) as? [[String: Any]] else { return [:] }
        return Dictionary(rows.map { ($0["name"] as? String ?? "", $0) }, uniquingKeysWith: { a, _ in a })
    }

    @Test func anOscillatingPLCLoopIsFlaggedAndASettledOneIsNot() throws {
        let sticky = try PLCLoop(sticky: true)
        defer { sticky.stop() }
        let linear = try PLCLoop(sticky: false)
        defer { linear.stop() }
        let agent = try AgentProcess(
            config: Self.config(sticky: sticky.port, linear: linear.port), check: true)
        defer {
            agent.stop()
            agent.dir.remove()
        }
        // Ten load disturbances at two per cycle of about 5 s: some 30 s after the first samples.
        #expect(eventually(timeout: 90) { monitors(agent)["FIC-1"]?["oscillating"] as? Bool == true }, "\(agent.log)")
        let rows = monitors(agent)
        let cycling = try #require(rows["FIC-1"])
        let settled = try #require(rows["FIC-2"])
        #expect(settled["oscillating"] as? Bool == false, "\(settled)")
        #expect(cycling["stiction"] as? Bool == true, "\(cycling)")
        #expect(settled["stiction"] as? Bool == false, "\(settled)")
        // The window holds a minute of 100 ms samples: enough for the AR fit of both.
        #expect(cycling["harrisIndex"] is Double && settled["harrisIndex"] is Double)
        #expect((cycling["iae"] as? Double ?? 0) > (settled["iae"] as? Double ?? .infinity))
        // The table form names both monitors; the figures are tags other consumers see as well.
        let table = try agent.cli(["monitors"])
        #expect(table.status == 0 && table.stdout.contains("FIC-1") && table.stdout.contains("FIC-2"))
        let tags = try agent.cli(["tags", "monitor/FIC-1/*"])
        #expect(tags.stdout.contains("monitor/FIC-1/harris_index") && tags.stdout.contains("monitor/FIC-1/stiction"))

        // A reload that leaves a monitor and its devices alone keeps it sampling with its window: it is still
        // flagged right after, not waiting for data again.
        try agent.reload(config: Self.config(sticky: sticky.port, linear: linear.port))
        #expect(eventually(timeout: 10) { agent.log.contains("reloaded") }, "\(agent.log)")
        #expect(monitors(agent)["FIC-1"]?["oscillating"] as? Bool == true, "\(agent.log)")
    }

    /// The agent's own loop watched through its state tags: the monitor binds to the loop's device and computes.
    @Test func anAgentLoopIsWatchedThroughItsStateTags() throws {
        let plant = try TankScenario.plant()
        defer { plant.stop() }
        let monitor = """

            monitors:
              - name: tanks
                pv: loop/tanks/cv/tank1/level/value
                sp: loop/tanks/cv/tank1/level/setpoint
                op: loop/tanks/mv/pump1/voltage/value
                dead_time: 100ms
                period: 100ms
                window: 1m
                amplitude: 0.2
            """
        let agent = try AgentProcess(config: TankScenario.config(port: plant.port) + monitor, check: true)
        defer {
            agent.stop()
            agent.dir.remove()
        }
        #expect(
            eventually(timeout: 30) { monitors(agent)["tanks"]?["harrisIndex"] is Double }, "\(agent.log)")
        let row = try #require(monitors(agent)["tanks"])
        #expect((row["serviceFactor"] as? Double ?? 0) > 0, "\(row)")
    }
}
