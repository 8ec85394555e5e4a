import Foundation
import TestSupport
import Testing

/// The agent's loop on a bad plant network: the real agent, the real Modbus plant, and the fault proxy between them.
/// Promises are checked on what the plant received (the simulator's log of writes), not on what the agent meant.
@Suite(.serialized) struct LoopFaultTests {
    /// One rate step of the scenario's MVs: 0.2 V/s of process time at 20×, per 100 ms cycle.
    static let rateStep = 0.2 * TankScenario.speed * 0.1

    /// The pump voltages the plant received, per pump, starting from its initial 3 V.
    func received(_ plant: QuadTank) throws -> [[Double]] {
        let log = try plant.control(["cmd": "writes"])["writes"] as? [[String: Any]] ?? []
        var series: [[Double]] = [[3.0], [3.0]]
        for w in log { series[w["pump"] as! Int].append(w["v"] as! Double) }
        return series
    }

    func transitions(_ agent: AgentProcess) -> [[String: Any]] {
        ((try? agent.loop())?["transitions"] as? [[String: Any]]) ?? []
    }

    @Test func rateLimitsHoldAtThePLCWhenWritesLag() throws {
        let plant = try TankScenario.plant()
        defer { plant.stop() }
        let proxy = try FaultProxy(targetPort: plant.port)
        defer { proxy.stop() }
        let agent = try AgentProcess(config: TankScenario.config(port: proxy.port))
        defer {
            agent.stop()
            agent.dir.remove()
        }
        #expect(eventually(timeout: 10) { agent.mode() == "mpc" }, "\(agent.log)")

        // Every reply now takes 40 ms: a cycle's writes and read-backs take longer than the 100 ms period, while
        // a setpoint step makes the controller move both MVs by a full rate step every cycle.
        proxy.set(.latency(milliseconds: 40))
        let sp = TankScenario.h0.0 + 3
        #expect(try agent.cli(["loop", "tanks", "setpoint", "tank1/level", String(sp)]).status == 0)
        let lagging = eventually(timeout: 8) {
            transitions(agent).contains { ($0["reason"] as? String ?? "").contains("MV writes lagging") }
        }
        Thread.sleep(forTimeInterval: 1)
        let series = try received(plant)
        let moves = series.map { s in zip(s, s.dropFirst()).map { abs($1 - $0) } }
        let worst = moves.map { $0.max() ?? 0 }
        #expect(moves.allSatisfy { $0.count >= 2 }, "the plant received too few writes: \(series)")
        // Float32 registers: a step of 0.4 V arrives as 0.4 ± 1e-6.
        for (pump, largest) in worst.enumerated() {
            #expect(
                largest <= Self.rateStep + 1e-5,
                "pump \(pump + 1) received a move of \(largest) V in one write; the limit is \(Self.rateStep) V")
        }
        // The lag itself is a fault the loop sheds on, said in the loop's transitions and the journal.
        #expect(lagging, "no shed for lagging writes; transitions: \(transitions(agent))")
        #expect(agent.log.contains("MV writes lagging"))
        print("lagging link (40 ms per reply): largest received move per write \(worst) V, limit \(Self.rateStep) V")
    }

    @Test func aWriteFailureFromAnOutageDoesNotShedTheLoopAgainAfterItRecovers() throws {
        let plant = try TankScenario.plant()
        defer { plant.stop() }
        let proxy = try FaultProxy(targetPort: plant.port)
        defer { proxy.stop() }
        let agent = try AgentProcess(config: TankScenario.config(port: proxy.port, fallback: "manual"))
        defer {
            agent.stop()
            agent.dir.remove()
        }
        #expect(eventually(timeout: 10) { agent.mode() == "mpc" }, "\(agent.log)")
        // The outage: the gateway resets every connection; the loop sheds to MANUAL and its last writes fail.
        proxy.set(.reset)
        #expect(eventually { agent.mode() == "manual" })
        Thread.sleep(forTimeInterval: 1)
        // The link returns, slow enough that the first write after the return takes longer than one cycle: the
        // loop must not take the outage's write failure for a fault of the link it just got back.
        proxy.set(.latency(milliseconds: 40))
        #expect(eventually(timeout: 20) { agent.mode() == "mpc" })
        Thread.sleep(forTimeInterval: 2)
        // The outage's own shed names a CV (CVs are checked first); a reason naming an MV's quality is the stale
        // failure flag.
        let spurious = transitions(agent).filter { ($0["reason"] as? String ?? "").contains("bad quality on MV") }
        #expect(spurious.isEmpty, "shed again after the link returned: \(spurious)")
        #expect(transitions(agent).contains { ($0["reason"] as? String ?? "").hasPrefix("recovered") })
        // The journal heard of the outage once (not once per reconnect attempt), and of the device's return.
        let log = agent.log
        #expect(log.components(separatedBy: "Modbus device plant unreachable").count - 1 == 1, "\(log)")
        #expect(log.contains("Modbus device plant answers again"))
    }
}
