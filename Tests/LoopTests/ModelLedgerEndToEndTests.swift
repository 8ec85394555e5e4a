import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The model ledger through the real CLI and agent on the quadruple tank: identified candidates added with their
/// provenance, a mismatched one and a poorly fitting one refused, activation and rollback bumpless as the PLC
/// receives the MVs, and the activated version kept across a restart and a reload that leaves the YAML model alone.
@Suite(.serialized) struct ModelLedgerEndToEndTests {
    static let rateStep = 0.2 * TankScenario.speed * 0.1

    /// A model file as `edgepilot identify --output` writes it: the plant's model with its input gains scaled.
    static func candidate(gainScale: Double, fits: (Double, Double)) -> String {
        let s = TankScenario.speed
        return """
            # Identified by `edgepilot identify` for loop 'tanks' at 2026-12-03T10:00:00.000Z
            # history: /var/lib/edgepilot/history.db
            # window: 2026-12-03T08:00:00.000Z … 2026-12-03T10:00:00.000Z; used 7000 s, 1 stretch left out
            # data hash (FNV-1a 64 of the samples fitted): 0123456789abcdef
            # structure: state space, order 4; fit on validation data: tank1/level \(fits.0) %, tank2/level \(fits.1) %
            model:
              type: state_space
              continuous: true
              a: \(TankScenario.matrix(TankScenario.a, scale: s))
              b: \(TankScenario.matrix(TankScenario.b, scale: s * gainScale))
              c: [[1, 0, 0, 0], [0, 1, 0, 0]]
              operating_point: {mvs: [3, 3], cvs: [\(TankScenario.h0.0), \(TankScenario.h0.1)]}

            """
    }

    func received(_ plant: QuadTank) throws -> [[Double]] {
        let log = try plant.control(["cmd": "writes", "clear": true])["writes"] as? [[String: Any]] ?? []
        var series: [[Double]] = [[], []]
        for w in log {
            if let pump = w["pump"] as? Int, let v = w["v"] as? Double { series[pump].append(v) }
        }
        return series
    }

    /// Every move the plant received, starting from the last value it had before, is within one rate step.
    func expectNoBump(_ series: [[Double]], from held: [Double], _ what: String) {
        for pump in 0..<2 {
            #expect(series[pump].count >= 3, "\(what): pump \(pump + 1) received \(series[pump].count) writes")
            var last = held[pump]
            var largest = 0.0
            for v in series[pump] {
                largest = max(largest, abs(v - last))
                last = v
            }
            #expect(
                largest <= Self.rateStep + 1e-5,
                "\(what): pump \(pump + 1) moved \(largest) V in one write (one rate step is \(Self.rateStep) V)")
        }
    }

    /// Runs `change` while the MVs are moving (a setpoint step just before), and checks what the plant received
    /// across it.
    func bumplessly(
        _ agent: AgentProcess, _ plant: QuadTank, step: Double, _ what: String, _ change: () throws -> Void
    ) throws {
        let r = try agent.cli(["loop", "tanks", "setpoint", "tank1/level", String(TankScenario.h0.0 + step)])
        #expect(r.status == 0, "\(r.stderr)")
        usleep(600_000)
        let before = try received(plant)
        let held = before.map { $0.last ?? .nan }
        try change()
        usleep(1_500_000)
        expectNoBump(try received(plant), from: held, what)
        #expect(agent.mode() == "mpc", "\(what): \((try? agent.loop()) ?? [:])")
    }

    func ledger(_ agent: AgentProcess) throws -> [String: Any] {
        try agent.object(["loop", "tanks", "model", "list"])
    }

    func modelVersion(_ agent: AgentProcess) -> Int? { (try? agent.loop())?["modelVersion"] as? Int }

    @Test func candidatesAreAddedActivatedRolledBackAndKeptAcrossRestartAndReload() throws {
        let plant = try TankScenario.plant()
        defer { plant.stop() }
        let agent = try AgentProcess(config: TankScenario.config(port: plant.port))
        defer {
            agent.stop()
            agent.dir.remove()
        }
        #expect(eventually(timeout: 10) { agent.mode() == "mpc" }, "\(agent.log)")

        // The configuration's model is version 1, in force.
        var list = try ledger(agent)
        var versions = list["versions"] as? [[String: Any]] ?? []
        #expect(versions.count == 1 && versions.first?["source"] as? String == "file", "\(list)")
        let v1 = try #require(versions.first?["id"] as? Int)
        #expect(list["active"] as? Int == v1)
        #expect(eventually { modelVersion(agent) == v1 }, "\((try? agent.loop()) ?? [:])")

        // An identified candidate keeps its provenance; the same file again is the same version.
        let good = agent.dir.path + "/candidate.yaml"
        try Self.candidate(gainScale: 1.1, fits: (92.0, 90.5)).write(toFile: good, atomically: true, encoding: .utf8)
        var added = try agent.object(["loop", "tanks", "model", "add", good, "--note", "GBN test 3"])
        let v2 = try #require((added["versions"] as? [[String: Any]])?.first?["id"] as? Int)
        let shown = try agent.object(["loop", "tanks", "model", "show", String(v2)])
        let version = (shown["versions"] as? [[String: Any]])?.first ?? [:]
        #expect(version["source"] as? String == "identify", "\(version)")
        #expect(version["dataHash"] as? String == "0123456789abcdef", "\(version)")
        #expect((version["window"] as? String)?.hasPrefix("2026-12-03T08:00:00.000Z") == true, "\(version)")
        #expect(version["fitPercent"] as? Double == 90.5, "\(version)")
        #expect(
            version["note"] as? String == "GBN test 3"
                && (version["createdBy"] as? String)?.hasPrefix("cli:uid=") == true)
        added = try agent.object(["loop", "tanks", "model", "add", good])
        #expect((added["versions"] as? [[String: Any]])?.first?["id"] as? Int == v2, "no duplicate: \(added)")

        // A model for one CV does not fit a loop of two: refused, with the reason, and nothing registered.
        let mismatched = agent.dir.path + "/mismatched.yaml"
        try """
        model:
          type: fopdt
          gains:
            - [{gain: 5, time_constant: 3s, dead_time: 0s}, null]
          operating_point: {mvs: [3, 3], cvs: [12]}

        """.write(toFile: mismatched, atomically: true, encoding: .utf8)
        var r = try agent.cli(["loop", "tanks", "model", "add", mismatched])
        #expect(r.status != 0 && r.stderr.contains("does not fit"), "\(r.stdout)\(r.stderr)")

        // A candidate whose recorded fit is below model_min_fit (70 % by default) is refused at activation.
        let poor = agent.dir.path + "/poor.yaml"
        try Self.candidate(gainScale: 0.9, fits: (55.0, 61.2)).write(toFile: poor, atomically: true, encoding: .utf8)
        added = try agent.object(["loop", "tanks", "model", "add", poor])
        let v3 = try #require((added["versions"] as? [[String: Any]])?.first?["id"] as? Int)
        r = try agent.cli(["loop", "tanks", "model", "activate", String(v3)])
        #expect(r.status != 0 && r.stderr.contains("below"), "\(r.stdout)\(r.stderr)")
        #expect(modelVersion(agent) == v1)

        // Activation while the MVs move: the plant sees no jump, the loop stays in MPC on the new model.
        try bumplessly(agent, plant, step: 1.5, "activate") {
            let r = try agent.cli(["loop", "tanks", "model", "activate", String(v2), "--note", "better fit"])
            #expect(r.status == 0, "\(r.stderr)")
        }
        #expect(modelVersion(agent) == v2)
        #expect(
            eventually {
                ((try? agent.json(["read", "loop/tanks/model/version"])) as? [String: Any])?["value"] as? Int == v2
            }, "the loop device shows the version in force")

        // Rollback: back to the configuration's model, bumpless too.
        try bumplessly(agent, plant, step: 0, "rollback") {
            let r = try agent.cli(["loop", "tanks", "model", "rollback", "--note", "back"])
            #expect(r.status == 0, "\(r.stderr)")
        }
        #expect(modelVersion(agent) == v1)
        list = try ledger(agent)
        let actions = (list["activations"] as? [[String: Any]] ?? []).compactMap { $0["action"] as? String }
        #expect(actions.prefix(3) == ["rollback", "activate", "config"], "\(actions)")

        // A version in shadow (decision 0036): shown by the loop device and the ledger, the model in force unchanged.
        let shadowed = try agent.object(["loop", "tanks", "model", "shadow", String(v2)])
        #expect(shadowed["shadow"] as? Int == v2, "\(shadowed)")
        #expect(
            eventually {
                ((try? agent.json(["read", "loop/tanks/shadow/version"])) as? [String: Any])?["value"] as? Int == v2
            }, "the loop device shows the version in shadow")
        #expect(modelVersion(agent) == v1)
        r = try agent.cli(["loop", "tanks", "model", "shadow", "999"])
        #expect(r.status == 2, "\(r.stdout)\(r.stderr)")
        let off = try agent.object(["loop", "tanks", "model", "shadow", "off"])
        #expect(off["shadow"] == nil, "\(off)")

        // The refusals and changes are audited with the peer the kernel named.
        let audit = (try agent.json(["audit"]) as? [[String: Any]] ?? []).filter {
            $0["tag"] as? String == "loop/tanks/model"
        }
        #expect(
            audit.contains {
                $0["result"] as? String == "refused" && ($0["source"] as? String)?.hasPrefix("cli:uid=") == true
            }, "\(audit)")
        #expect(
            audit.contains { $0["result"] as? String == "ok" && ($0["value"] as? String) == "rollback" }, "\(audit)")

        // Put the candidate back in force; a restart keeps it (the YAML model did not change).
        r = try agent.cli(["loop", "tanks", "model", "activate", String(v2)])
        #expect(r.status == 0, "\(r.stderr)")
        agent.stop()
        try agent.start()
        #expect(eventually(timeout: 10) { agent.mode() == "mpc" }, "\(agent.log)")
        #expect(modelVersion(agent) == v2, "after a restart: \((try? agent.loop()) ?? [:])")

        // A reload that changes the loop but not its model keeps the version in force, without a bump.
        try bumplessly(agent, plant, step: 0.5, "reload") {
            try agent.reload(
                config: TankScenario.config(port: plant.port).replacingOccurrences(
                    of: "move_weight: 0.078", with: "move_weight: 0.117"))
            #expect(eventually(timeout: 10) { agent.log.contains("reloaded") }, "\(agent.log)")
        }
        #expect(modelVersion(agent) == v2, "after a reload with the same model")

        // A reload whose YAML model changed puts the new YAML model in force, as a new version; the ledger keeps all.
        let changedModel = TankScenario.config(port: plant.port).replacingOccurrences(
            of: "c: [[1, 0, 0, 0], [0, 1, 0, 0]]", with: "c: [[1.0, 0, 0, 0], [0, 0.99, 0, 0]]")
        try agent.reload(config: changedModel)
        #expect(eventually(timeout: 10) { (modelVersion(agent) ?? 0) > v3 }, "\((try? agent.loop()) ?? [:])")
        list = try ledger(agent)
        versions = list["versions"] as? [[String: Any]] ?? []
        #expect(versions.count == 4, "\(versions)")
        #expect(versions.last?["source"] as? String == "file" && versions.last?["active"] as? Bool == true)
    }

    func shadowVersion(_ agent: AgentProcess) -> Int? { (try? agent.loop())?["shadowVersion"] as? Int }

    /// The shadow set by command survives a restart and a reload that rebuilds the loop; `shadow off` does too; the
    /// configuration's `shadow:` is the initial one, and a command's choice holds until the file's changes.
    @Test func shadowIsKeptAcrossRestartAndReloadAndCanComeFromTheConfiguration() throws {
        let plant = try TankScenario.plant()
        defer { plant.stop() }
        let config = TankScenario.config(port: plant.port)
        let agent = try AgentProcess(config: config)
        defer {
            agent.stop()
            agent.dir.remove()
        }
        #expect(eventually(timeout: 10) { agent.mode() == "mpc" }, "\(agent.log)")
        let file = agent.dir.path + "/candidate.yaml"
        try Self.candidate(gainScale: 1.1, fits: (92.0, 90.5)).write(toFile: file, atomically: true, encoding: .utf8)
        let added = try agent.object(["loop", "tanks", "model", "add", file])
        let v2 = try #require((added["versions"] as? [[String: Any]])?.first?["id"] as? Int)
        let set = try agent.object(["loop", "tanks", "model", "shadow", String(v2)])
        #expect(set["shadow"] as? Int == v2, "\(set)")

        agent.stop()
        try agent.start()
        #expect(eventually(timeout: 10) { agent.mode() == "mpc" }, "\(agent.log)")
        #expect(shadowVersion(agent) == v2, "after a restart: \((try? agent.loop()) ?? [:])")
        #expect(
            eventually {
                ((try? agent.json(["read", "loop/tanks/shadow/version"])) as? [String: Any])?["value"] as? Int == v2
            }, "the loop device shows the shadow after a restart")

        // A reload that rebuilds the loop (its weights changed) keeps the shadow.
        let reweighted = config.replacingOccurrences(of: "move_weight: 0.078", with: "move_weight: 0.117")
        try agent.reload(config: reweighted)
        #expect(eventually(timeout: 10) { agent.log.contains("reloaded") }, "\(agent.log)")
        #expect(eventually { agent.mode() == "mpc" && shadowVersion(agent) == v2 }, "after a reload")

        // 'shadow off' is kept too.
        _ = try agent.object(["loop", "tanks", "model", "shadow", "off"])
        agent.stop()
        try agent.start()
        #expect(eventually(timeout: 10) { agent.mode() == "mpc" }, "\(agent.log)")
        #expect(shadowVersion(agent) == nil, "after 'shadow off' and a restart: \((try? agent.loop()) ?? [:])")

        // The configuration's shadow: applied when the file's value changes, then a command's choice holds.
        let withShadow = reweighted.replacingOccurrences(
            of: "kpi_window: 10m", with: "kpi_window: 10m\n    shadow: \(v2)")
        #expect(withShadow != reweighted)
        try agent.reload(config: withShadow)
        #expect(eventually(timeout: 10) { shadowVersion(agent) == v2 }, "from the configuration: \(agent.log)")
        _ = try agent.object(["loop", "tanks", "model", "shadow", "off"])
        agent.stop()
        try agent.start()
        #expect(eventually(timeout: 10) { agent.mode() == "mpc" }, "\(agent.log)")
        #expect(shadowVersion(agent) == nil, "the command's 'off' holds over an unchanged configuration")
    }
}
