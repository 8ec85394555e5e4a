import Foundation
import TestSupport
import Testing

/// A control loop whose CVs, MVs and heartbeat live on an OPC UA server: the loop writes through the OPC UA driver
/// exactly as it does through a Modbus poller.
@Suite(.serialized) struct LoopOverOPCUATests {
    static func config(endpoint: String, mvGroup: String) -> String {
        """
        agent:
          control_socket: @DIR@/control.sock
        poll_groups:
          - name: fast
            period: 100ms
            mode: subscribe
            sampling_interval: 50ms
          - name: slow
            period: 200ms
            mode: poll
        history:
          path: @DIR@/history.db
          commit_interval: 100ms
        devices:
          - name: tankplc
            type: opcua
            endpoint: \(endpoint)
            pki_dir: @DIR@/pki
            security_policy: none
            timeout: 2s
            reconnect_min: 200ms
            reconnect_max: 1s
        tags:
          - {name: tank1/level, device: tankplc, node: "ns=2;s=QuadTank.h1", type: float64, units: cm, poll_group: fast}
          - {name: tank2/level, device: tankplc, node: "ns=2;s=QuadTank.h2", type: float64, units: cm, poll_group: fast}
          - {name: pump1/voltage, device: tankplc, node: "ns=2;s=QuadTank.v1", type: float64, writable: true,
             limits: {min: 0, max: 10}, poll_group: \(mvGroup)}
          - {name: pump2/voltage, device: tankplc, node: "ns=2;s=QuadTank.v2", type: float64, writable: true,
             limits: {min: 0, max: 10}, poll_group: \(mvGroup)}
          - {name: agent/heartbeat, device: tankplc, node: "ns=2;s=Scalar.UInt16", type: uint16, writable: true,
             limits: {min: 0, max: 65535}, poll_group: slow}
        loops:
          - name: tanks
            period: 100ms
            mode: manual
            heartbeat: agent/heartbeat
            cvs:
              - {tag: tank1/level, setpoint: 12.4, soft_low: 2, soft_high: 18}
              - {tag: tank2/level, setpoint: 12.7, soft_low: 2, soft_high: 18}
            mvs:
              - {tag: pump1/voltage, low: 0.5, high: 8, rate: 5, move_weight: 0.39, pid: {cv: tank1/level, gain: 1.5, integral_time: 3s}}
              - {tag: pump2/voltage, low: 0.5, high: 8, rate: 5, move_weight: 0.39, pid: {cv: tank2/level, gain: 1.35, integral_time: 4s}}
            model:
              type: state_space
              continuous: true
              a: [[-0.16, 0, 0.44, 0], [0, -0.11, 0, 0.33], [0, 0, -0.44, 0], [0, 0, 0, -0.33]]
              b: [[0.83, 0], [0, 0.63], [0, 0.48], [0.31, 0]]
              c: [[1, 0, 0, 0], [0, 1, 0, 0]]
              operating_point: {mvs: [3, 3], cvs: [12.4, 12.7]}
            horizons: {prediction: 20, control: 4}
            supervisor:
              max_input_age: 1s

        """
    }

    /// The MVs sit in a polled group ("slow") or a subscribed one ("fast"). The server has not changed them since
    /// it started, so their source timestamps are older than the supervisor's `max_input_age` when the agent comes
    /// up: the poll replies and the subscription's keep-alives must vouch for them, or the loop never writes.
    @Test(arguments: ["slow", "fast"])
    func loopWritesMVsAndHeartbeatThroughTheOPCUADriver(mvGroup: String) throws {
        let dir = try TemporaryDirectory("opcua-loop")
        defer { dir.remove() }
        let sim = try OPCUASimulator(serverPKI: dir.path + "/server-pki")
        defer { sim.kill() }
        usleep(1_500_000)  // let the MVs' source timestamps pass max_input_age (1 s)
        let agent = try AgentProcess(
            config: Self.config(endpoint: sim.endpoint, mvGroup: mvGroup), dir: dir, check: true)
        defer { _ = agent.stop() }
        func serverValue(_ node: String) -> Double? {
            guard let r = try? edgepilot(["opcua", "read", sim.endpoint, node, "--security", "none", "--json"]),
                r.status == 0, let list = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [Any],
                let first = list.first as? [String: Any]
            else { return nil }
            return (first["value"] as? NSNumber)?.doubleValue
        }
        func loop() -> [String: Any] {
            ((try? agent.json(["loops", "tanks"])) as? [[String: Any]])?.first ?? [:]
        }
        #expect(
            eventually(timeout: 15) {
                (loop()["cvs"] as? [[String: Any]])?.allSatisfy { $0["good"] as? Bool == true } ?? false
            },
            "\(agent.log)")

        // Manual: the operator's MV reaches the server's variable.
        let r = try agent.cli(["loop", "tanks", "mv", "pump1/voltage", "4.2"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(eventually(timeout: 10) { serverValue("ns=2;s=QuadTank.v1").map { abs($0 - 4.2) < 1e-9 } ?? false })

        // The heartbeat counts on the server.
        let hb1 = serverValue("ns=2;s=Scalar.UInt16") ?? -1
        #expect(eventually(timeout: 5) { (serverValue("ns=2;s=Scalar.UInt16") ?? hb1) != hb1 })

        // PID drives both pumps through OPC UA writes, without write errors.
        _ = try agent.cli(["loop", "tanks", "mode", "pid"])
        #expect(eventually { loop()["mode"] as? String == "pid" })
        let writes = { ((loop()["mvs"] as? [[String: Any]]) ?? []).map { ($0["writes"] as? Int) ?? 0 } }
        let before = writes()
        #expect(eventually(timeout: 10) { zip(writes(), before).allSatisfy { $0 > $1 + 5 } }, "\(loop())")
        let mvs = (loop()["mvs"] as? [[String: Any]]) ?? []
        #expect(mvs.count == 2 && mvs.allSatisfy { ($0["writeErrors"] as? Int) == 0 }, "\(mvs)")
        #expect(!agent.log.contains("MV write failed"), "\(agent.log)")
    }
}
