import Foundation
import TestSupport
import Testing

/// The loop's metrics as a Prometheus server sees them, against the real agent and the quadruple-tank simulator:
/// the mode as a labelled gauge, cycles, the jitter and solve-time histograms, and a fault shed counted.
@Suite(.serialized) struct LoopMetricsEndToEndTests {
    @Test func modeCyclesHistogramsAndAShedAgreeWithLoopsJSON() throws {
        let plant = try TankScenario.plant()
        defer { plant.stop() }
        // No return to MPC for 10 minutes: the shed stays visible.
        let agent = try AgentProcess(
            config: TankScenario.config(port: plant.port, healthy: "10m") + "metrics:\n  listen: 127.0.0.1:0\n")
        defer {
            agent.stop()
            agent.dir.remove()
        }
        #expect(eventually(timeout: 15) { agent.mode() == "mpc" }, "\(agent.log)")
        let address = try #require(try agent.object(["status"])["metrics"] as? String)
        let url = "http://\(address)/metrics"
        Thread.sleep(forTimeInterval: 1)

        let before = try agent.loop()
        let scrape = try MetricsScrape(url: url)
        let after = try agent.loop()
        let loop = ["loop": "tanks"]
        #expect(scrape.families["edgepilot_loop_mode"]?.type == "gauge")
        #expect(scrape.families["edgepilot_loop_jitter_seconds"]?.type == "histogram")
        #expect(scrape.families["edgepilot_loop_solve_duration_seconds"]?.type == "histogram")
        #expect(scrape.value("edgepilot_loop_mode", ["loop": "tanks", "mode": "mpc"]) == 1)
        #expect(scrape.value("edgepilot_loop_mode", ["loop": "tanks", "mode": "pid"]) == 0)
        #expect(scrape.value("edgepilot_loop_mode", ["loop": "tanks", "mode": "manual"]) == 0)
        #expect(scrape.value("edgepilot_loop_requested_mode", ["loop": "tanks", "mode": "mpc"]) == 1)
        func cycles(_ snapshot: [String: Any]) -> Double {
            ((snapshot["timing"] as? [String: Any])?["cycles"] as? NSNumber)?.doubleValue ?? -1
        }
        let scraped = try #require(scrape.value("edgepilot_loop_cycles_total", loop))
        #expect(cycles(before) <= scraped && scraped <= cycles(after))
        // Every cycle's wake-up lateness is in the histogram (the rings hold more than a scrape interval's worth).
        let jitterCount = try #require(scrape.value("edgepilot_loop_jitter_seconds_count", loop))
        #expect(jitterCount == scraped)
        let solves = try #require(scrape.value("edgepilot_loop_solve_duration_seconds_count", loop))
        #expect(solves > 0 && solves <= scraped)
        let jitterSum = try #require(scrape.value("edgepilot_loop_jitter_seconds_sum", loop))
        #expect(jitterSum >= 0 && jitterSum < jitterCount * 0.1)
        #expect(scrape.value("edgepilot_loop_sheds_total", loop) == 0)

        // The plant refuses requests for 2 s: the loop sheds to PID and the scrape says so.
        try plant.control(["cmd": "refuse", "seconds": 2])
        var last: MetricsScrape?
        let shed = eventually(timeout: 20) {
            last = try? MetricsScrape(url: url)
            return (last?.value("edgepilot_loop_sheds_total", loop) ?? 0) >= 1
                && last?.value("edgepilot_loop_mode", ["loop": "tanks", "mode": "mpc"]) == 0
        }
        #expect(shed, "no shed in the metrics; loops: \(String(describing: try? agent.loop()))")
        #expect(last?.value("edgepilot_loop_requested_mode", ["loop": "tanks", "mode": "mpc"]) == 1)
        // Exactly one mode is current (the loop may move on between two reads, so no comparison with `loops`).
        let modes = ["manual", "pid", "mpc"].compactMap {
            last?.value("edgepilot_loop_mode", ["loop": "tanks", "mode": $0])
        }
        #expect(modes.count == 3 && modes.reduce(0, +) == 1, "\(modes)")
        #expect(try #require(last?.value("edgepilot_loop_cycles_total", loop)) > scraped)
    }
}
