import Foundation
import TestSupport
import Testing

/// The loop's own device `loop-tanks`: its state as tags, mode changes as a history time series, writes as loop
/// commands with the loop's checks.
@Suite(.serialized) struct LoopStateDeviceTests {
    @Test func loopStateIsATagTableWithHistoryAndWritesAreLoopCommands() throws {
        let plant = try TankScenario.plant()
        defer { plant.stop() }
        let agent = try AgentProcess(config: TankScenario.config(port: plant.port))
        defer {
            agent.stop()
            agent.dir.remove()
        }
        #expect(eventually(timeout: 10) { agent.mode() == "mpc" }, "\(agent.log)")
        func tag(_ name: String) -> [String: Any] {
            ((try? agent.json(["read", name])) as? [String: Any]) ?? [:]
        }
        #expect(eventually { tag("loop/tanks/mode")["value"] as? String == "mpc" })
        let tags = try agent.json(["tags", "loop/tanks/*"]) as! [[String: Any]]
        let byName = Dictionary(uniqueKeysWithValues: tags.map { ($0["name"] as! String, $0) })
        for name in [
            "loop/tanks/mode", "loop/tanks/requested_mode", "loop/tanks/reason", "loop/tanks/health/solve_p99",
            "loop/tanks/health/missed_deadlines", "loop/tanks/cv/tank1/level/setpoint",
            "loop/tanks/cv/tank2/level/value",
            "loop/tanks/mv/pump1/voltage/value", "loop/tanks/kpi/service_factor", "loop/tanks/kpi/cv/tank1/level/iae",
            "loop/tanks/kpi/mv/pump2/voltage/saturation", "loop/tanks/kpi/cv/tank1/level/violations",
            "loop/tanks/kpi/cv/tank2/level/above_soft_high", "loop/tanks/kpi/cv/tank1/level/below_soft_low",
            "loop/tanks/kpi/cv/tank1/level/worst_violation", "loop/tanks/kpi/mv/pump1/voltage/at_low",
            "loop/tanks/kpi/mv/pump1/voltage/at_high", "loop/tanks/kpi/mv/pump2/voltage/at_rate_limit",
        ] {
            #expect(byName[name] != nil, "missing \(name) in \(byName.keys.sorted())")
            #expect(byName[name]?["device"] as? String == "loop-tanks")
        }
        #expect(byName["loop/tanks/mode"]?["writable"] as? Bool == true)
        #expect(byName["loop/tanks/reason"]?["writable"] as? Bool == false)
        #expect(eventually { tag("loop/tanks/cv/tank1/level/setpoint")["value"] as? Double == TankScenario.h0.0 })
        #expect(tag("loop/tanks/cv/tank1/level/setpoint")["units"] as? String == "cm")

        // A write to the mode tag is a loop command, applied and audited like `edgepilot loop tanks mode pid`.
        let toPID = try agent.cli(["write", "loop/tanks/mode", "pid", "--yes"])
        #expect(toPID.status == 0, "\(toPID.stderr)")
        #expect(eventually { agent.mode() == "pid" })
        #expect(eventually { tag("loop/tanks/mode")["value"] as? String == "pid" })
        #expect(tag("loop/tanks/requested_mode")["value"] as? String == "pid")
        #expect(tag("loop/tanks/reason")["value"] as? String == "operator request")

        let sp = 13.0
        let spWrite = try agent.cli(["write", "loop/tanks/cv/tank1/level/setpoint", String(sp), "--yes"])
        #expect(spWrite.status == 0, "\(spWrite.stderr)")
        #expect(eventually { tag("loop/tanks/cv/tank1/level/setpoint")["value"] as? Double == sp })
        #expect((try agent.loop()["cvs"] as! [[String: Any]])[0]["setpoint"] as? Double == sp)

        // Refusals come from the loop's own checks and never change it.
        let outside = try agent.cli(["write", "loop/tanks/cv/tank1/level/setpoint", "25", "--yes"])
        #expect(outside.status != 0 && outside.stderr.contains("outside CV 'tank1/level' limits"), "\(outside.stderr)")
        let badMode = try agent.cli(["write", "loop/tanks/mode", "auto", "--yes"])
        #expect(badMode.status != 0 && badMode.stderr.contains("mode must be mpc, pid or manual"), "\(badMode.stderr)")
        let notManual = try agent.cli(["write", "loop/tanks/mv/pump1/voltage/value", "4", "--yes"])
        #expect(notManual.status != 0 && notManual.stderr.contains("switch it to manual first"))
        let readOnly = try agent.cli(["write", "loop/tanks/health/missed_deadlines", "0", "--yes"])
        #expect(readOnly.status != 0)
        #expect(agent.mode() == "pid")
        #expect((try agent.loop()["cvs"] as! [[String: Any]])[0]["setpoint"] as? Double == sp)

        // Manual: the MV tag takes the operator's value.
        _ = try agent.cli(["write", "loop/tanks/mode", "manual", "--yes"])
        #expect(eventually { agent.mode() == "manual" })
        let mv = try agent.cli(["write", "loop/tanks/mv/pump1/voltage/value", "3.4", "--yes"])
        #expect(mv.status == 0, "\(mv.stderr)")
        #expect(eventually { abs((plant.voltages.first ?? 0) - 3.4) < 1e-4 })
        #expect(eventually { abs((tag("loop/tanks/mv/pump1/voltage/value")["value"] as? Double ?? 0) - 3.4) < 1e-4 })

        // History keeps every mode change as a time series, with its reason, in order.
        var modes: [String] = []
        var times: [Int64] = []
        #expect(
            eventually {
                let rows =
                    (try? agent.json(["history", "loop/tanks/mode", "--since", "10m"]) as? [[String: Any]]) ?? []
                modes = rows.compactMap { $0["value"] as? String }
                times = rows.compactMap { ($0["timestamp"] as? NSNumber)?.int64Value }
                return modes.suffix(3) == ["mpc", "pid", "manual"]
            }, "mode history \(modes)")
        // One row per change, in time order: no repeated value, no step back in time.
        #expect(zip(modes, modes.dropFirst()).allSatisfy { $0 != $1 }, "\(modes)")
        #expect(times.count == modes.count && zip(times, times.dropFirst()).allSatisfy { $0 <= $1 }, "\(times)")
        let reasons =
            (try agent.json(["history", "loop/tanks/reason", "--since", "10m"]) as! [[String: Any]]).compactMap {
                $0["value"] as? String
            }
        #expect(reasons.contains("operator request"), "\(reasons)")
        #expect(reasons.contains { $0.hasPrefix("startup") }, "\(reasons)")

        // The audit trail names the tag written and the CLI user, accepted or refused.
        let audit = try agent.json(["audit"]) as! [[String: Any]]
        #expect(audit.contains { $0["tag"] as? String == "loop/tanks/mode" && $0["result"] as? String == "ok" })
        #expect(
            audit.contains {
                $0["tag"] as? String == "loop/tanks/cv/tank1/level/setpoint" && $0["result"] as? String == "refused"
            })
    }
}
