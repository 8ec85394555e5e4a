import Foundation
import TestSupport
import Testing

/// The agent controlling the nonlinear quadruple tank over Modbus, driven from the CLI.
@Suite(.serialized) struct LoopEndToEndTests {
    static let step = 1.5

    /// Steps tank 1's setpoint by `step` and follows the plant for `seconds` (wall); returns the IAE the agent's KPI
    /// counted (both CVs, cm·s of process time scaled to wall time) and the levels of the last second.
    func stepResponse(_ agent: AgentProcess, _ plant: QuadTank, seconds: Double) throws -> (
        iae: Double, tail: [[Double]]
    ) {
        let before = try totalIAE(agent)
        let sp = TankScenario.h0.0 + Self.step
        let r = try agent.cli(["loop", "tanks", "setpoint", "tank1/level", String(sp)])
        #expect(r.status == 0, "\(r.stderr)")
        var tail: [[Double]] = []
        let start = Date()
        while Date().timeIntervalSince(start) < seconds {
            let h = plant.levels
            if Date().timeIntervalSince(start) > seconds - 1, h.count == 4 { tail.append(h) }
            usleep(100_000)
        }
        return (try totalIAE(agent) - before, tail)
    }

    func totalIAE(_ agent: AgentProcess) throws -> Double {
        (try agent.kpi()["cvs"] as! [[String: Any]]).reduce(0) { $0 + ($1["iaeTotal"] as! Double) }
    }

    func settled(_ plant: QuadTank, _ sp: (Double, Double), within tolerance: Double) -> Bool {
        eventually(timeout: 20) {
            let h = plant.levels
            return h.count == 4 && abs(h[0] - sp.0) < tolerance && abs(h[1] - sp.1) < tolerance
        }
    }

    @Test func mpcSettlesSetpointStepsWithoutOffsetAndBeatsDecentralizedPI() throws {
        let plant = try TankScenario.plant()
        defer { plant.stop() }
        let agent = try AgentProcess(config: TankScenario.config(port: plant.port))
        defer {
            agent.stop()
            agent.dir.remove()
        }
        #expect(eventually(timeout: 10) { agent.mode() == "mpc" }, "\(agent.log)")
        let h0 = TankScenario.h0
        #expect(settled(plant, h0, within: 0.05))

        // MPC: the step settles inside the 2 % band of the step with no steady-state offset.
        let mpc = try stepResponse(agent, plant, seconds: 10)
        let sp = h0.0 + Self.step
        let band = 0.02 * Self.step
        #expect(!mpc.tail.isEmpty)
        for h in mpc.tail {
            #expect(abs(h[0] - sp) <= band && abs(h[1] - h0.1) <= band, "MPC tail \(h)")
        }
        let offset = mpc.tail.map { abs($0[0] - sp) }.reduce(0, +) / Double(max(1, mpc.tail.count))

        // Same scenario under the decentralized PI pair (the loop's fallback PIDs, Johansson's tuning).
        _ = try agent.cli(["loop", "tanks", "setpoint", "tank1/level", String(h0.0)])
        #expect(settled(plant, h0, within: 0.05))
        _ = try agent.cli(["loop", "tanks", "mode", "pid"])
        #expect(eventually { agent.mode() == "pid" })
        #expect(settled(plant, h0, within: 0.05))
        let pi = try stepResponse(agent, plant, seconds: 10)
        print(
            "quadruple tank, +\(Self.step) cm step on tank 1 at \(Int(TankScenario.speed))× speed, 2 s sample: "
                + "IAE (both CVs, cm·s wall) MPC \(String(format: "%.3f", mpc.iae))  vs  decentralized PI "
                + "\(String(format: "%.3f", pi.iae)); MPC tail offset \(String(format: "%.4f", offset)) cm")
        #expect(mpc.iae > 0 && pi.iae > 0)
        #expect(mpc.iae < pi.iae)
    }
}

extension LoopEndToEndTests {
    /// Samples the plant's pump voltages for `seconds` and returns the largest deviation from `reference`.
    func largestDeviation(_ plant: QuadTank, from reference: [Double], seconds: Double) -> Double {
        var worst = 0.0
        let start = Date()
        while Date().timeIntervalSince(start) < seconds {
            let v = plant.voltages
            if v.count == 2 { worst = max(worst, abs(v[0] - reference[0]), abs(v[1] - reference[1])) }
            usleep(50_000)
        }
        return worst
    }

    @Test func cliModeChangesAreBumplessAndAudited() throws {
        let plant = try TankScenario.plant()
        defer { plant.stop() }
        let agent = try AgentProcess(config: TankScenario.config(port: plant.port))
        defer {
            agent.stop()
            agent.dir.remove()
        }
        #expect(eventually(timeout: 10) { agent.mode() == "mpc" }, "\(agent.log)")
        #expect(settled(plant, TankScenario.h0, within: 0.05))
        let rateStep = 0.2 * TankScenario.speed * 0.1  // V per 100 ms cycle
        // Away from the nominal 3 V first: at the operating point the PIDs' nominal start and the MVs coincide, and
        // a switch that lost the MVs' values would not show.
        let high = (TankScenario.h0.0 + 3, TankScenario.h0.1)
        _ = try agent.cli(["loop", "tanks", "setpoint", "tank1/level", String(high.0)])
        #expect(settled(plant, high, within: 0.1))
        // Settled, not passing through: the MVs hold still for a second (a switch during the transient would see
        // the PIDs' own, legitimate moves).
        #expect(
            eventually(timeout: 30) {
                let v0 = plant.voltages
                usleep(1_000_000)
                let v1 = plant.voltages
                return v0.count == 2 && v1.count == 2 && abs(v0[0] - v1[0]) < 0.01 && abs(v0[1] - v1[1]) < 0.01
            }, "the MVs did not settle")
        let away = plant.voltages
        #expect(away.count == 2 && away.contains { abs($0 - 3) > 1.5 * rateStep }, "MVs at \(away)")
        for mode in ["pid", "mpc", "manual", "pid"] {
            let before = plant.voltages
            let r = try agent.cli(["loop", "tanks", "mode", mode])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(eventually { agent.mode() == mode })
            let jump = largestDeviation(plant, from: before, seconds: 1.5)
            #expect(jump <= rateStep + 1e-6, "switch to \(mode): MV moved \(jump) V, one rate step is \(rateStep) V")
        }
        // Retuning the running PIDs is bumpless too.
        let before = plant.voltages
        let tuned = try agent.cli([
            "loop", "tanks", "tune", "--pid-gain", "pump1/voltage=2", "--pid-ti", "pump1/voltage=2",
        ])
        #expect(tuned.status == 0, "\(tuned.stderr)")
        let jump = largestDeviation(plant, from: before, seconds: 1.5)
        #expect(jump <= rateStep + 1e-6, "retune: MV moved \(jump) V")
        let badTune = try agent.cli(["loop", "tanks", "tune", "--pid-gain", "pump1/voltage=-1"])
        #expect(badTune.status != 0 && badTune.stderr.contains("not allowed"))
        // Absurd tuning is refused with what was expected, and the loop keeps its tuning and its mode.
        let absurd = try agent.cli([
            "loop", "tanks", "tune", "--pid-gain", "pump1/voltage=1e300", "--pid-ti", "pump1/voltage=1e-300",
        ])
        #expect(absurd.status != 0 && absurd.stderr.contains("expected"), "\(absurd.stderr)")
        #expect(agent.mode() == "pid")

        // Manual MV: refused outside MANUAL, then approached at the rate limit.
        let refused = try agent.cli(["loop", "tanks", "mv", "pump1/voltage", "3.5"])
        #expect(refused.status != 0 && refused.stderr.contains("switch it to manual first"))
        _ = try agent.cli(["loop", "tanks", "mode", "manual"])
        #expect(eventually { agent.mode() == "manual" })
        let outside = try agent.cli(["loop", "tanks", "mv", "pump1/voltage", "9"])
        #expect(outside.status != 0 && outside.stderr.contains("accepts 0.5 … 8"))
        let manual = try agent.cli(["loop", "tanks", "mv", "pump1/voltage", "3.6"])
        #expect(manual.status == 0, "\(manual.stderr)")
        #expect(eventually { abs((plant.voltages.first ?? 0) - 3.6) < 1e-4 })

        // The table view and the KPI view, and the trail: every change with its source.
        let table = try agent.cli(["loops"])
        #expect(table.stdout.contains("tanks  mode MANUAL") && table.stdout.contains("tank1/level"))
        let kpis = try agent.cli(["loops", "--kpi"])
        #expect(kpis.stdout.contains("service: MPC") && kpis.stdout.contains("IAE"))
        let transitions = try agent.loop()["transitions"] as! [[String: Any]]
        #expect(transitions.contains { $0["to"] as? String == "pid" && $0["reason"] as? String == "operator request" })
        #expect(transitions.contains { $0["reason"] as? String == "retuned" })
        #expect(transitions.allSatisfy { ($0["bump"] as? Double ?? 99) <= 1.0 + 1e-9 })
        #expect(
            eventually {
                let audit = (try? agent.json(["audit"]) as? [[String: Any]]) ?? []
                let cli = audit.filter { ($0["source"] as? String ?? "").hasPrefix("cli:uid=") }
                return cli.contains { $0["tag"] as? String == "loop/tanks/mode" && $0["result"] as? String == "ok" }
                    && cli.contains {
                        $0["tag"] as? String == "loop/tanks/tune" && $0["result"] as? String == "refused"
                    }
                    && audit.contains {
                        $0["source"] as? String == "loop:tanks" && $0["result"] as? String == "mode-change"
                    }
            })
        #expect(agent.log.contains("loop mode mpc → pid: operator request"))
    }

    /// A CV driven past its soft high limit (the operator's manual MV) is a constraint-violation event in
    /// `loops --kpi --json`, with its time beyond the limit and how far it went.
    @Test func softLimitViolationIsCountedInTheKPIs() throws {
        let plant = try TankScenario.plant()
        defer { plant.stop() }
        let config = TankScenario.config(port: plant.port)
            .replacingOccurrences(
                of: "{tag: tank1/level, setpoint: \(TankScenario.h0.0), soft_low: 2, soft_high: 18}",
                with: "{tag: tank1/level, setpoint: \(TankScenario.h0.0), soft_low: 2, soft_high: 13.5}")
        #expect(config.contains("soft_high: 13.5"))
        let agent = try AgentProcess(config: config)
        defer {
            agent.stop()
            agent.dir.remove()
        }
        #expect(eventually(timeout: 10) { agent.mode() == "mpc" }, "\(agent.log)")
        #expect(settled(plant, TankScenario.h0, within: 0.05))
        func cv() -> [String: Any] { ((try? agent.kpi()["cvs"] as? [[String: Any]]) ?? []).first ?? [:] }
        #expect(cv()["violations"] as? Int == 0)
        _ = try agent.cli(["loop", "tanks", "mode", "manual"])
        #expect(eventually { agent.mode() == "manual" })
        let up = try agent.cli(["loop", "tanks", "mv", "pump1/voltage", "5"])
        #expect(up.status == 0, "\(up.stderr)")
        #expect(eventually(timeout: 30) { (plant.levels.first ?? 0) > 14 }, "levels \(plant.levels)")
        #expect(eventually { (cv()["aboveSoftHighPercent"] as? Double ?? 0) > 0 })
        let violated = cv()
        #expect(violated["violations"] as? Int == 1, "\(violated)")
        #expect(violated["violating"] as? Bool == true)
        #expect((violated["worstViolation"] as? Double ?? 0) > 0.4)
        let mv = ((try agent.kpi()["mvs"] as? [[String: Any]]) ?? []).first ?? [:]
        #expect(mv["atRateLimitPercent"] as? Double ?? 0 > 0, "\(mv)")
        let text = try agent.cli(["loops", "--kpi"])
        #expect(text.stdout.contains("VIOLATIONS") && text.stdout.contains("above soft"), "\(text.stdout)")
    }

    @Test func droppedConnectionShedsToFallbackAndRecovers() throws {
        let plant = try TankScenario.plant()
        defer { plant.stop() }
        let agent = try AgentProcess(config: TankScenario.config(port: plant.port))
        defer {
            agent.stop()
            agent.dir.remove()
        }
        #expect(eventually(timeout: 10) { agent.mode() == "mpc" }, "\(agent.log)")
        try plant.control(["cmd": "refuse", "seconds": 2])
        #expect(eventually { agent.mode() != "mpc" })
        let shed = try agent.loop()
        #expect(shed["requestedMode"] as? String == "mpc")
        let transitions = shed["transitions"] as! [[String: Any]]
        let first = try #require(transitions.first { $0["from"] as? String == "mpc" })
        #expect(first["to"] as? String == "pid")
        let reason = first["reason"] as? String ?? ""
        #expect(reason.contains("bad quality") || reason.contains("stale"), "reason: \(reason)")
        // Back to MPC once the inputs have been healthy for the configured period, and control holds the setpoint.
        #expect(eventually(timeout: 20) { agent.mode() == "mpc" })
        let back = try agent.loop()
        #expect((back["reason"] as? String ?? "").hasPrefix("recovered"))
        #expect(settled(plant, TankScenario.h0, within: 0.05))
    }

    @Test func stoppingTheAgentStopsTheHeartbeatAndLeavesTheMVs() throws {
        let plant = try TankScenario.plant(["--heartbeat-timeout", "1"])
        defer { plant.stop() }
        let agent = try AgentProcess(config: TankScenario.config(port: plant.port))
        defer { agent.dir.remove() }
        #expect(eventually(timeout: 10) { agent.mode() == "mpc" }, "\(agent.log)")
        func heartbeat() -> [String: Any] {
            ((try? plant.control(["cmd": "get"]))?["heartbeat"] as? [String: Any]) ?? [:]
        }
        #expect(eventually { (heartbeat()["changes"] as? Int ?? 0) > 10 && heartbeat()["lost"] as? Bool == false })
        let loop = try agent.loop()
        #expect((loop["heartbeat"] as? Int ?? 0) > 0)
        agent.stop()
        let left = plant.voltages
        #expect(eventually(timeout: 5) { heartbeat()["lost"] as? Bool == true })
        #expect(plant.voltages == left)
        #expect(agent.log.contains("loop stopped; MVs keep their last values"))
    }
}
