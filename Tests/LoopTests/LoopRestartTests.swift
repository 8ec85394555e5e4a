import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Starting, restarting and reloading while the plant sits far from the model's operating point (3 V on both
/// pumps): the loop must adopt the MVs the PLC holds and move on from them, checked on what the plant received.
@Suite(.serialized) struct LoopRestartTests {
    /// One rate step: 0.2 V/s of process time at 20×, per 100 ms cycle.
    static let rateStep = 0.2 * TankScenario.speed * 0.1

    /// The pump voltages the plant received since the log was last cleared, per pump; clears the log.
    func received(_ plant: QuadTank) throws -> [[Double]] {
        let log = try plant.control(["cmd": "writes", "clear": true])["writes"] as? [[String: Any]] ?? []
        var series: [[Double]] = [[], []]
        for w in log {
            if let pump = w["pump"] as? Int, let v = w["v"] as? Double { series[pump].append(v) }
        }
        return series
    }

    /// Every received move, starting from `held`, stays within one rate step; at least a few writes arrived.
    func expectNoBump(_ series: [[Double]], from held: [Double], _ what: String) {
        for pump in 0..<2 {
            #expect(series[pump].count >= 3, "\(what): pump \(pump + 1) received \(series[pump].count) writes")
            var last = held[pump]
            var largest = 0.0
            for v in series[pump] {
                largest = max(largest, abs(v - last))
                last = v
            }
            let message =
                "\(what): pump \(pump + 1) moved \(largest) V in one write from \(held[pump]) V (one rate step is "
                + "\(Self.rateStep) V); received \(series[pump].prefix(5))"
            #expect(largest <= Self.rateStep + 1e-5, Comment(rawValue: message))
        }
    }

    @Test func startRestartAndReloadAtNonNominalMVsContinueFromThePLCsValues() throws {
        let plant = try TankScenario.plant()
        defer { plant.stop() }
        // The PLC holds 4.6 V and 1.8 V: a loop that started from the model's 3 V would jump by more than 1 V.
        try plant.control(["cmd": "set", "v": [4.6, 1.8]])
        _ = try received(plant)
        let agent = try AgentProcess(config: TankScenario.config(port: plant.port))
        defer {
            agent.stop()
            agent.dir.remove()
        }
        #expect(eventually(timeout: 10) { agent.mode() == "mpc" }, "\(agent.log)")
        usleep(1_000_000)
        expectNoBump(try received(plant), from: [4.6, 1.8], "start")

        // kill -9, as a crash leaves it; while the agent is down the MVs are moved at the PLC (local operation).
        agent.kill9()
        try plant.control(["cmd": "set", "v": [2.2, 4.1]])
        _ = try received(plant)
        try agent.start()
        #expect(eventually(timeout: 10) { agent.mode() == "mpc" }, "\(agent.log)")
        usleep(1_000_000)
        expectNoBump(try received(plant), from: [2.2, 4.1], "restart after kill -9")

        // SIGHUP with a changed loop (move weights) in the middle of a setpoint step, the MVs on their way: every
        // move the plant receives across the reload stays within a rate step of the one before.
        _ = try received(plant)
        let r = try agent.cli(["loop", "tanks", "setpoint", "tank1/level", String(TankScenario.h0.0 + 1.5)])
        #expect(r.status == 0, "\(r.stderr)")
        usleep(500_000)
        let changed = TankScenario.config(port: plant.port).replacingOccurrences(
            of: "move_weight: 0.078", with: "move_weight: 0.117")
        try agent.reload(config: changed)
        #expect(eventually(timeout: 10) { agent.log.contains("reloaded") }, "\(agent.log)")
        usleep(1_000_000)
        #expect(agent.mode() == "mpc")
        let acrossReload = try received(plant)
        expectNoBump(acrossReload, from: acrossReload.map { $0.first ?? .nan }, "reload")
    }
}

/// The PLC refuses MV writes (local mode, a write-protected register) while every read stays good: the loop must
/// notice from the write results alone, leave automatic control with the reason, and come back once writes work.
@Suite(.serialized) struct LoopRefusedWriteTests {
    @Test func refusedMVWritesShedTheLoopWhileReadsStayGood() throws {
        let plant = try TankScenario.plant()
        defer { plant.stop() }
        let agent = try AgentProcess(config: TankScenario.config(port: plant.port))
        defer {
            agent.stop()
            agent.dir.remove()
        }
        #expect(eventually(timeout: 10) { agent.mode() == "mpc" }, "\(agent.log)")
        // Exception 4 (server device failure) for writes (FC 6 and 16) to pump 1's voltage only; reads answer.
        try plant.control(["cmd": "exception", "code": 4, "addresses": [0], "functions": [6, 16]])
        #expect(
            eventually(timeout: 10) { agent.mode() != "mpc" },
            "the loop kept MPC with refused writes: \((try? agent.loop()) ?? [:])")
        let loop = try agent.loop()
        let reason = loop["reason"] as? String ?? ""
        #expect(reason.contains("pump1/voltage"), "reason: \(reason)")
        let mvs = loop["mvs"] as? [[String: Any]] ?? []
        #expect((mvs.first?["writeErrors"] as? Int ?? 0) > 0, "\(mvs)")
        // The CVs stayed good all along: it was the writes, not the reads.
        let cvs = loop["cvs"] as? [[String: Any]] ?? []
        #expect(cvs.allSatisfy { ($0["good"] as? Bool) == true }, "\(cvs)")
        #expect(agent.log.contains("MV write failed"), "the journal hears of it")

        try plant.control(["cmd": "exception", "code": 0])
        #expect(
            eventually(timeout: 20) { agent.mode() == "mpc" },
            "back to MPC once writes work: \((try? agent.loop()) ?? [:])")
    }
}
