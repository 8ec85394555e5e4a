import Foundation
import TestSupport
import Testing

/// Each control loop is a Sparkplug device (`loop-<name>`): born with its state metrics, published by exception,
/// and commanded (mode, setpoints, manual MVs) by DCMD with the loop's own checks.
@Suite(.serialized) struct LoopDeviceTests {
    static func config(modbusPort: Int, brokerPort: Int) -> String {
        """
        agent:
          control_socket: @DIR@/control.sock
          log_level: info
        poll_groups:
          - name: fast
            period: 100ms
        history:
          path: @DIR@/history.db
          commit_interval: 100ms
        devices:
          - name: plant
            type: modbus_tcp
            host: 127.0.0.1
            port: \(modbusPort)
            timeout: 500ms
            reconnect_min: 100ms
            reconnect_max: 500ms
        tags:
          - {name: tank1/level, device: plant, area: input_register, address: 0, type: float32, units: cm}
          - {name: tank2/level, device: plant, area: input_register, address: 2, type: float32, units: cm}
          - {name: pump1/voltage, device: plant, area: holding_register, address: 0, type: float32, units: V,
             writable: true, limits: {min: 0, max: 10}}
          - {name: pump2/voltage, device: plant, area: holding_register, address: 2, type: float32, units: V,
             writable: true, limits: {min: 0, max: 10}}
        loops:
          - name: tanks
            period: 100ms
            mode: pid
            cvs:
              - {tag: tank1/level, setpoint: 12.4, soft_low: 2, soft_high: 18}
              - {tag: tank2/level, setpoint: 12.7, soft_low: 2, soft_high: 18}
            mvs:
              - {tag: pump1/voltage, low: 0.5, high: 8, rate: 0.5, move_weight: 0.39, pid: {cv: tank1/level, gain: 1.5, integral_time: 30s}}
              - {tag: pump2/voltage, low: 0.5, high: 8, rate: 0.5, move_weight: 0.39, pid: {cv: tank2/level, gain: 1.35, integral_time: 40s}}
            model:
              type: state_space
              continuous: true
              a: [[-0.016037, 0, 0.043934, 0], [0, -0.011034, 0, 0.033234], [0, 0, -0.043934, 0], [0, 0, 0, -0.033234]]
              b: [[0.08325, 0], [0, 0.062812], [0, 0.047857], [0.031219, 0]]
              c: [[1, 0, 0, 0], [0, 1, 0, 0]]
              operating_point: {mvs: [3, 3], cvs: [12.4, 12.7]}
            horizons: {prediction: 20, control: 4}
        sparkplug:
          group_id: Plant1
          edge_node_id: edge1
          brokers:
            - url: mqtt://127.0.0.1:\(brokerPort)
          keepalive: 5s
          reconnect_min: 100ms
          reconnect_max: 500ms
          commands: allow_list
          command_allow_list: [loop/tanks/mode, loop/tanks/cv/tank1/level/setpoint, loop-tanks/loop/tanks/reason]

        """
    }

    @Test func loopIsBornAsADeviceAndTakesModeAndSetpointCommands() throws {
        let scenario = try SparkplugScenario(
            plant: QuadTank(extraArguments: ["--initial", "12.4", "12.7", "1.8", "1.4"])
        ) { plantPort, brokerPort in
            Self.config(modbusPort: plantPort, brokerPort: brokerPort)
        }
        defer { scenario.stop() }
        let agent = scenario.agent
        let host = scenario.host
        func loopMode() -> String? {
            let r = try? agent.cli(["loops", "tanks", "--json"])
            let list = r.flatMap { try? JSONSerialization.jsonObject(with: Data($0.stdout.utf8)) as? [[String: Any]] }
            return list?.first?["mode"] as? String
        }

        try host.waitFor("DBIRTH of loop-tanks") { ms in
            ms.contains { $0.kind == "DBIRTH" && $0.device == "loop-tanks" }
        }
        let birth = try #require(host.messages.first { $0.kind == "DBIRTH" && $0.device == "loop-tanks" })
        let names = Set(birth.metrics.compactMap { $0["name"] as? String })
        for name in [
            "loop/tanks/mode", "loop/tanks/reason", "loop/tanks/cv/tank1/level/setpoint",
            "loop/tanks/cv/tank1/level/value",
            "loop/tanks/mv/pump1/voltage/value", "loop/tanks/health/missed_deadlines", "loop/tanks/kpi/service_factor",
        ] {
            #expect(names.contains(name), "DBIRTH lacks \(name): \(names.sorted())")
        }
        #expect(birth.metric("loop/tanks/cv/tank1/level/setpoint")?.property("engUnit") as? String == "cm")
        try host.waitFor("mode pid published") { ms in
            ms.contains { m in
                m.device == "loop-tanks"
                    && m.metrics.contains {
                        $0["name"] as? String == "loop/tanks/mode" && $0["value"] as? String == "pid"
                    }
            }
        }

        // Accepted: mode and setpoint, each published back by exception.
        try host.send([
            "cmd": "dcmd", "device": "loop-tanks", "metric": "loop/tanks/mode", "datatype": "String", "value": "manual",
        ])
        #expect(eventually { loopMode() == "manual" })
        try host.waitFor("mode manual in DDATA") { ms in
            ms.contains { m in
                m.kind == "DDATA" && m.device == "loop-tanks"
                    && m.metrics.contains {
                        $0["name"] as? String == "loop/tanks/mode" && $0["value"] as? String == "manual"
                    }
            }
        }
        try host.send([
            "cmd": "dcmd", "device": "loop-tanks", "metric": "loop/tanks/cv/tank1/level/setpoint", "datatype": "Double",
            "value": 13.5,
        ])
        try host.waitFor("setpoint 13.5 in DDATA") { ms in
            ms.contains { m in
                m.kind == "DDATA" && m.device == "loop-tanks"
                    && m.metrics.contains {
                        $0["name"] as? String == "loop/tanks/cv/tank1/level/setpoint" && $0.double("value") == 13.5
                    }
            }
        }

        // Refused: outside the CV's limits, a wrong type, a read-only metric, a mode that does not exist.
        try host.send([
            "cmd": "dcmd", "device": "loop-tanks", "metric": "loop/tanks/cv/tank1/level/setpoint", "datatype": "Double",
            "value": 40.0,
        ])
        try host.send([
            "cmd": "dcmd", "device": "loop-tanks", "metric": "loop/tanks/mode", "datatype": "Int32", "value": 2,
        ])
        try host.send([
            "cmd": "dcmd", "device": "loop-tanks", "metric": "loop/tanks/reason", "datatype": "String", "value": "x",
        ])
        try host.send([
            "cmd": "dcmd", "device": "loop-tanks", "metric": "loop/tanks/mode", "datatype": "String", "value": "auto",
        ])
        #expect(eventually(timeout: 10) { (try? agent.mqttStatus())?["commandsRefused"] as? Int ?? 0 >= 4 })
        #expect(loopMode() == "manual")
        let loops = try JSONSerialization.jsonObject(with: Data(try agent.cli(["loops", "--json"]).stdout.utf8))
        let cvs = ((loops as? [[String: Any]])?.first?["cvs"] as? [[String: Any]]) ?? []
        #expect(cvs.first?["setpoint"] as? Double == 13.5, "the refused setpoint changed nothing")

        // The audit trail is read from history, which commits every 100 ms: wait until the refusals are in it.
        func auditRows() -> [[String: Any]] {
            let audit = (try? agent.cli(["audit", "--json"]))?.stdout ?? "[]"
            let rows = (try? JSONSerialization.jsonObject(with: Data(audit.utf8))) as? [[String: Any]] ?? []
            return rows.filter { ($0["source"] as? String ?? "").hasPrefix("sparkplug:host=none,broker=mqtt://") }
        }
        var ours = auditRows()
        _ = eventually(timeout: 10) {
            ours = auditRows()
            return ours.filter { $0["result"] as? String == "refused" }.count >= 4
        }
        func results(_ tag: String) -> [String] {
            ours.filter { $0["tag"] as? String == tag }.compactMap { $0["result"] as? String }.sorted()
        }
        #expect(results("loop/tanks/mode") == ["ok", "refused", "refused"], "\(ours)")
        #expect(results("loop/tanks/cv/tank1/level/setpoint") == ["ok", "refused"], "\(ours)")
        #expect(results("loop/tanks/reason") == ["refused"], "\(ours)")
        #expect(
            ours.contains { ($0["detail"] as? String ?? "").contains("outside CV 'tank1/level' limits") }, "\(ours)")
        #expect(seqBreak(host.messages) == nil, "\(seqBreak(host.messages) ?? "")")
    }
}
