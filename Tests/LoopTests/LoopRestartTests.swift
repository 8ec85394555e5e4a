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

        // kill -9, as a crash leaves it, with the MVs wherever MPC had taken them; the new process adopts them.
        agent.kill9()
        let held = plant.voltages
        _ = try received(plant)
        #expect(abs(held[0] - 3) > 0.3 || abs(held[1] - 3) > 0.3, "the MVs are away from 3 V: \(held)")
        try agent.start()
        #expect(eventually(timeout: 10) { agent.mode() == "mpc" }, "\(agent.log)")
        usleep(1_000_000)
        expectNoBump(try received(plant), from: held, "restart after kill -9")

        // SIGHUP with a changed loop (move weights), while it runs away from 3 V.
        let beforeReload = plant.voltages
        _ = try received(plant)
        let changed = TankScenario.config(port: plant.port).replacingOccurrences(
            of: "move_weight: 0.2", with: "move_weight: 0.3")
        try agent.reload(config: changed)
        #expect(eventually(timeout: 10) { agent.log.contains("reloaded") }, "\(agent.log)")
        usleep(1_000_000)
        #expect(agent.mode() == "mpc")
        expectNoBump(try received(plant), from: beforeReload, "reload")
    }
}
