import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Plant tests run by the agent on the quadruple tank, through the real CLI (decision 0034): a GBN test completes
/// with every move the PLC received within one rate step, `identify --test` fits a model over exactly its window,
/// the model goes through the ledger into the MPC, which then settles a setpoint step; a test that drives a CV past
/// its soft limit is aborted back to MPC with the reason shown.
@Suite(.serialized) struct PlantTestEndToEndTests {
    static let rateStep = 0.2 * TankScenario.speed * 0.1
    /// Lowest validation fit % identify must reach on the test's data (the simulator has no noise).
    static let minFit = 85.0

    func received(_ plant: QuadTank, clear: Bool = true) throws -> [[Double]] {
        let log = try plant.control(["cmd": "writes", "clear": clear])["writes"] as? [[String: Any]] ?? []
        var series: [[Double]] = [[], []]
        for w in log {
            if let pump = w["pump"] as? Int, let v = w["v"] as? Double { series[pump].append(v) }
        }
        return series
    }

    func test(_ agent: AgentProcess, _ id: Int) -> [String: Any]? {
        ((try? agent.json(["loop", "tanks", "test", "show", String(id)])) as? [[String: Any]])?.first
    }

    @Test func aGBNTestCompletesIdentifiesAModelAndTheMPCRunsOnIt() throws {
        let plant = try TankScenario.plant()
        defer { plant.stop() }
        let agent = try AgentProcess(config: TankScenario.config(port: plant.port))
        defer {
            agent.stop()
            agent.dir.remove()
        }
        #expect(eventually(timeout: 10) { agent.mode() == "mpc" }, "\(agent.log)")
        usleep(1_000_000)
        let held = try received(plant).map { $0.last ?? 3 }

        // 60 s of wall time is 20 minutes of the plant's, at speed 20; settling time about 15 s wall (5 minutes).
        let started = try agent.cli([
            "loop", "tanks", "test", "start", "--mv", "pump1/voltage", "--mv", "pump2/voltage", "--signal", "gbn",
            "--amplitude", "0.6", "--settling-time", "15s", "--duration", "60s",
        ])
        #expect(started.status == 0 && started.stdout.contains("starts at the next cycle"), "\(started.stderr)")
        let list = try #require(try agent.json(["loop", "tanks", "test", "list", "--json"]) as? [[String: Any]])
        let id = try #require(list.first?["id"] as? Int, "\(list)")
        #expect(list.first?["startedBy"] as? String ?? "" != "")
        #expect(eventually(timeout: 5) { agent.mode() == "test" }, "\(agent.log)")
        let progress = try agent.loop()["test"] as? [String: Any] ?? [:]
        #expect(progress["percent"] as? Double != nil && progress["secondsLeft"] as? Double != nil, "\(progress)")

        #expect(
            eventually(timeout: 90) { test(agent, id)?["outcome"] as? String == "completed" },
            "\(test(agent, id) ?? [:])\n\(agent.log)")
        #expect(eventually(timeout: 5) { agent.mode() == "mpc" })
        let record = try #require(test(agent, id))
        #expect(record["endedAt"] as? Int != nil && record["seed"] as? Int != nil, "\(record)")

        // What the PLC received: never more than one rate step per write, and the test did move both pumps.
        let series = try received(plant)
        var largest = 0.0
        for pump in 0..<2 {
            var last = held[pump]
            var low = Double.infinity
            var high = -Double.infinity
            for v in series[pump] {
                largest = max(largest, abs(v - last))
                last = v
                low = min(low, v)
                high = max(high, v)
            }
            #expect(high - low >= 1.0, "pump \(pump + 1) moved only \(low) … \(high)")
        }
        #expect(largest <= Self.rateStep + 1e-5, "a write moved \(largest) V; one rate step is \(Self.rateStep) V")

        // Identify over exactly the test's window.
        let modelFile = agent.dir.path + "/identified.yaml"
        let identified = try runCommand(
            agent.binary,
            [
                "identify", "--config", agent.configPath, "--loop", "tanks", "--test", String(id), "--structure", "ss",
                "--order", "4", "--output", modelFile, "--json",
            ], timeout: 120)
        #expect(identified.status == 0, "\(identified.stderr)")
        let report = try #require(
            try JSONSerialization.jsonObject(with: Data(identified.stdout.utf8)) as? [String: Any])
        let fits = (report["outputs"] as? [[String: Any]])?.compactMap { $0["validationFitPercent"] as? Double } ?? []
        #expect(fits.count == 2 && fits.allSatisfy { $0 >= Self.minFit }, "fit % \(fits)")

        // Validated by replaying the test's data: the identified model fits it as identify said (before the replay
        // fitted each stretch's initial state, a test begun while the tanks still settled read 71 % and 51 % here),
        // and its MPC runs closed loop against it.
        let validated = try runCommand(
            agent.binary,
            [
                "model", "validate", "--config", agent.configPath, "--loop", "tanks", modelFile, "--since", "30m",
                "--modes", "test", "--json",
            ], timeout: 120)
        #expect(validated.status == 0, "\(validated.stderr)")
        let validation = try #require(
            try JSONSerialization.jsonObject(with: Data(validated.stdout.utf8)) as? [String: Any])
        let openLoop = (validation["openLoop"] as? [[String: Any]]) ?? []
        let candidateFits = openLoop.compactMap { $0["candidateFitPercent"] as? Double }
        let activeFits = openLoop.compactMap { $0["activeFitPercent"] as? Double }
        #expect(candidateFits.count == 2 && candidateFits.allSatisfy { $0 >= Self.minFit }, "\(validated.stdout)")
        #expect(validation["candidateMeetsMinimumFit"] as? Bool == true, "\(validated.stdout)")
        #expect(((validation["closedLoopCVs"] as? [[String: Any]]) ?? []).count == 2, "\(validated.stdout)")

        // Into the ledger and in force; then a setpoint step settles within 2 % of the step, with no offset.
        let added = try agent.object(["loop", "tanks", "model", "add", modelFile, "--note", "GBN test \(id)"])
        let version = try #require((added["versions"] as? [[String: Any]])?.first?["id"] as? Int, "\(added)")
        let activated = try agent.cli(["loop", "tanks", "model", "activate", String(version)])
        #expect(activated.status == 0, "\(activated.stderr)")
        #expect(eventually(timeout: 5) { (try? agent.loop())?["modelVersion"] as? Int == version })
        usleep(3_000_000)
        let step = 1.5
        let target = TankScenario.h0.0 + step
        let r = try agent.cli(["loop", "tanks", "setpoint", "tank1/level", String(target)])
        #expect(r.status == 0, "\(r.stderr)")
        var worst = 0.0
        #expect(
            eventually(timeout: 40) {
                let h = plant.levels
                guard h.count >= 2 else { return false }
                worst = max(abs(h[0] - target), abs(h[1] - TankScenario.h0.1))
                return worst <= 0.02 * step
            }, "levels \(plant.levels) vs \(target), \(TankScenario.h0.1)")
        // No offset: it stays there.
        usleep(3_000_000)
        let h = plant.levels
        #expect(abs(h[0] - target) <= 0.02 * step && abs(h[1] - TankScenario.h0.1) <= 0.02 * step, "levels \(h)")
        #expect(agent.mode() == "mpc", "\((try? agent.loop()) ?? [:])")
        print(
            "plant test \(id): largest received move \(largest) V (limit \(Self.rateStep) V); identify fit % \(fits); "
                + "validate fit % \(candidateFits) (configuration's model \(activeFits)); "
                + "setpoint step of \(step) cm settled to \(h[0]) (target \(target))")
    }

    @Test func aTestStartedInManualIsStoppedAndTheMVsReturnToTheirValuesBeforeIt() throws {
        let plant = try TankScenario.plant()
        defer { plant.stop() }
        let agent = try AgentProcess(config: TankScenario.config(port: plant.port, mode: "manual"))
        defer {
            agent.stop()
            agent.dir.remove()
        }
        #expect(eventually(timeout: 10) { agent.mode() == "manual" }, "\(agent.log)")
        usleep(1_000_000)
        let before = plant.voltages
        _ = try received(plant)

        // The state-space model gives no settling time to derive defaults from: the CLI asks for one.
        let noSettling = try agent.cli(["loop", "tanks", "test", "start", "--mv", "pump1/voltage", "--signal", "gbn"])
        #expect(noSettling.status != 0 && noSettling.stderr.contains("settling time"), "\(noSettling.stderr)")
        let bareMode = try agent.cli(["loop", "tanks", "mode", "test"])
        #expect(bareMode.status != 0, "\(bareMode.stdout)")

        let started = try agent.cli([
            "loop", "tanks", "test", "start", "--mv", "pump1/voltage", "--signal", "step", "--amplitude", "0.8",
            "--settling-time", "20s",
        ])
        #expect(started.status == 0, "\(started.stderr)")
        #expect(eventually(timeout: 5) { (plant.voltages.first ?? 0) > before[0] + 0.7 }, "\(plant.voltages)")
        let tuned = try agent.cli(["loop", "tanks", "tune", "--move-weight", "pump1/voltage=0.1"])
        #expect(tuned.status != 0 && tuned.stderr.contains("plant test"), "\(tuned.stderr)")
        let stop = try agent.cli(["loop", "tanks", "test", "stop"])
        #expect(stop.status == 0, "\(stop.stderr)")
        #expect(eventually(timeout: 5) { agent.mode() == "manual" }, "\((try? agent.loop()) ?? [:])")
        // Back to where the operator left them, at the rate limit; the MV not tested never moved.
        #expect(
            eventually(timeout: 5) { abs((plant.voltages.first ?? 0) - before[0]) < 1e-4 }, "\(plant.voltages)")
        let series = try received(plant)
        #expect(series[1].allSatisfy { abs($0 - before[1]) < 1e-4 }, "pump 2 received \(series[1])")
        var last = before[0]
        for v in series[0] {
            #expect(abs(v - last) <= Self.rateStep + 1e-5, "pump 1 moved \(v - last) V in one write")
            last = v
        }
        let list = try #require(try agent.json(["loop", "tanks", "test", "list"]) as? [[String: Any]])
        #expect(list.first?["outcome"] as? String == "stopped", "\(list)")
        #expect(list.first?["returnMode"] as? String == "manual", "\(list)")
    }

    @Test func aTestDrivingACVPastItsSoftLimitIsAbortedBackToMPC() throws {
        let plant = try TankScenario.plant()
        defer { plant.stop() }
        // Tank 1 may not rise more than 0.6 cm above its setpoint during the test.
        let config = TankScenario.config(port: plant.port).replacingOccurrences(
            of: "{tag: tank1/level, setpoint: \(TankScenario.h0.0), soft_low: 2, soft_high: 18}",
            with:
                "{tag: tank1/level, setpoint: \(TankScenario.h0.0), soft_low: 2, soft_high: \(TankScenario.h0.0 + 0.6)}"
        )
        let agent = try AgentProcess(config: config)
        defer {
            agent.stop()
            agent.dir.remove()
        }
        #expect(eventually(timeout: 10) { agent.mode() == "mpc" }, "\(agent.log)")
        // The loop device's first refresh writes the state it finds; the test's transitions come after it.
        usleep(2_000_000)

        // An amplitude that cannot fit the MV's limits around its value is refused, and nothing starts.
        let refused = try agent.cli([
            "loop", "tanks", "test", "start", "--mv", "pump1/voltage", "--signal", "step", "--amplitude", "6",
            "--settling-time", "15s",
        ])
        #expect(refused.status != 0 && refused.stderr.contains("does not fit"), "\(refused.stdout)\(refused.stderr)")
        #expect(agent.mode() == "mpc")

        // A step of +2 V on pump 1 raises tank 1 by several cm: the test must end at the soft limit.
        let started = try agent.cli([
            "loop", "tanks", "test", "start", "--mv", "pump1/voltage", "--signal", "step", "--amplitude", "2",
            "--settling-time", "15s",
        ])
        #expect(started.status == 0, "\(started.stderr)")
        let list = try #require(try agent.json(["loop", "tanks", "test", "list", "--json"]) as? [[String: Any]])
        let id = try #require(list.first?["id"] as? Int, "\(list)")
        #expect(
            eventually(timeout: 30) { test(agent, id)?["outcome"] as? String == "aborted" },
            "\(test(agent, id) ?? [:])\n\(agent.log)")
        let record = try #require(test(agent, id))
        let reason = record["reason"] as? String ?? ""
        #expect(reason.contains("tank1/level") && reason.contains("soft limits"), "\(reason)")
        // Back under MPC, with the reason shown, and the level brought back toward its setpoint.
        #expect(eventually(timeout: 5) { agent.mode() == "mpc" }, "\((try? agent.loop()) ?? [:])")
        let loop = try agent.loop()
        #expect((loop["reason"] as? String ?? "").contains("soft limits"), "\(loop)")
        let transitions = loop["transitions"] as? [[String: Any]] ?? []
        #expect(
            transitions.contains { $0["from"] as? String == "test" && $0["to"] as? String == "mpc" }, "\(transitions)")
        #expect(
            eventually(timeout: 30) { (plant.levels.first ?? 99) < TankScenario.h0.0 + 0.3 }, "levels \(plant.levels)")
        // History keeps the mode and its reason as the loop device's tags.
        var modes: [String] = []
        var reasons: [String] = []
        #expect(
            eventually {
                modes =
                    ((try? agent.json(["history", "loop/tanks/mode", "--since", "10m"])) as? [[String: Any]] ?? [])
                    .compactMap { $0["value"] as? String }
                reasons =
                    ((try? agent.json(["history", "loop/tanks/reason", "--since", "10m"])) as? [[String: Any]] ?? [])
                    .compactMap { $0["value"] as? String }
                return modes.suffix(2) == ["test", "mpc"] && reasons.contains { $0.contains("soft limits") }
            }, "modes \(modes), reasons \(reasons)")
        #expect(reasons.contains("plant test started"), "\(reasons)")
        // The journal has it, and the audit names who started it and how it ended.
        #expect(agent.log.contains("plant test aborted"), "\(agent.log)")
        let audit = (try agent.json(["audit"]) as? [[String: Any]] ?? []).filter {
            $0["tag"] as? String == "loop/tanks/test"
        }
        #expect(
            audit.contains { $0["result"] as? String == "ok" && ($0["source"] as? String)?.hasPrefix("cli:") == true },
            "\(audit)")
        #expect(audit.contains { $0["result"] as? String == "aborted" }, "\(audit)")
        #expect(audit.contains { $0["result"] as? String == "refused" }, "\(audit)")
    }
}
