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

    /// A PLC frozen with its TCP connection up (SIGSTOP of the simulator: the kernel still completes connects, the
    /// process answers nothing): its tags go bad within the device's timeout, the loop sheds to its fallback, a
    /// second device on the same agent keeps polling with good quality, and after SIGCONT the device and the loop
    /// come back without a restart.
    @Test func aFrozenPLCGoesBadLeavesOtherDevicesAloneAndRecoversWithoutARestart() throws {
        let plant = try TankScenario.plant()
        defer { plant.stop() }
        let other = try QuadTank()
        defer { other.stop() }
        let otherDevice =
            "\n  - {name: other, type: modbus_tcp, host: 127.0.0.1, port: \(other.port), timeout: 300ms, "
            + "reconnect_min: 100ms, reconnect_max: 300ms}\ntags:\n"
            + "  - {name: other/level, device: other, area: input_register, address: 0, type: float32, "
            + "poll_group: fast}\n"
        let config = TankScenario.config(port: plant.port, fallback: "manual")
            .replacingOccurrences(of: "\ntags:\n", with: otherDevice)
        let agent = try AgentProcess(config: config)
        defer {
            agent.stop()
            agent.dir.remove()
        }
        func read(_ tag: String) -> [String: Any] { ((try? agent.json(["read", tag])) as? [String: Any]) ?? [:] }
        func device(_ name: String) -> [String: Any] {
            let devices = ((try? agent.json(["status"])) as? [String: Any])?["devices"] as? [[String: Any]]
            return devices?.first { $0["name"] as? String == name } ?? [:]
        }
        func state(_ name: String) -> String? { device(name)["state"] as? String }
        func timeouts(_ name: String) -> Int { device(name)["timeouts"] as? Int ?? -1 }
        #expect(eventually(timeout: 10) { agent.mode() == "mpc" }, "\(agent.log)")
        #expect(
            eventually(timeout: 10) {
                state("other") == "connected" && read("other/level")["quality"] as? String == "good"
            })

        plant.peer.pause()
        let frozenAt = Date()
        let bad = eventually(timeout: 5) { read("tank1/level")["quality"] as? String != "good" }
        let badAfter = Date().timeIntervalSince(frozenAt)
        #expect(bad, "tank1/level stayed good under a frozen PLC: \(read("tank1/level"))")
        // The device's timeout (300 ms), one poll period (50 ms) and the CLI's own round trip.
        #expect(badAfter < 1.5, "bad after \(String(format: "%.2f", badAfter)) s")
        #expect(eventually(timeout: 5) { agent.mode() == "manual" }, "the loop sheds: \(agent.mode() ?? "-")")
        // The connection stays open (a late reply is flushed, not decoded): the device counts timeouts.
        let timedOut = timeouts("plant")
        #expect(read("tank1/level")["quality"] as? String == "timeout", "\(read("tank1/level"))")
        // The other device is untouched: connected, good, and its value's timestamp keeps moving.
        let t0 = read("other/level")["timestamp"] as? Int ?? 0
        Thread.sleep(forTimeInterval: 2)
        let o = read("other/level")
        #expect(state("other") == "connected" && o["quality"] as? String == "good", "\(o)")
        #expect((o["timestamp"] as? Int ?? 0) > t0, "other/level stopped updating: \(o)")
        #expect(timeouts("plant") > timedOut, "every poll of the frozen PLC times out: \(device("plant"))")
        #expect(agent.mode() == "manual")
        // Status says what a technician needs: connected, but not answering since the first timeout.
        let frozen = device("plant")
        #expect(frozen["state"] as? String == "not_answering", "\(frozen)")
        let since = frozen["notAnsweringSince"] as? Int ?? 0
        let frozenAtMicros = Int(frozenAt.timeIntervalSince1970 * 1_000_000)
        #expect(since >= frozenAtMicros - 100_000 && since <= frozenAtMicros + 2_000_000, "\(frozen)")
        #expect(state("other") == "connected")
        let text = try agent.cli(["status"]).stdout
        #expect(text.contains("not answering for"), "\(text)")

        plant.peer.resume()
        #expect(eventually(timeout: 15) { read("tank1/level")["quality"] as? String == "good" }, "\(device("plant"))")
        #expect(eventually(timeout: 15) { agent.mode() == "mpc" }, "the loop recovers: \(transitions(agent))")
        #expect(read("tank1/level")["quality"] as? String == "good")
        #expect(state("plant") == "connected" && device("plant")["notAnsweringSince"] == nil, "\(device("plant"))")
        // The journal: once when it stopped answering, once when it answered again, not once per timeout.
        let log = agent.log
        #expect(log.components(separatedBy: "Modbus device plant not answering").count == 2, "\(log)")
        #expect(log.components(separatedBy: "Modbus device plant answers again").count == 2, "\(log)")
        #expect(!log.contains("Modbus device other"), "\(log)")
        print("frozen PLC: tank1/level bad after \(String(format: "%.2f", badAfter)) s")
    }
}
