import CAllocCounter
import Configuration
import Control
import Foundation
import LoopRuntime
import Modbus
import ModbusDriver
import Synchronization
import Tags
import TestSupport
import Testing

/// Counts heap allocations on the loop thread between the start and end of each cycle.
final class CycleAllocations: @unchecked Sendable {
    var before: UInt64 = 0
    var cycles = 0
    var counted = 0
    var allocations: UInt64 = 0
    /// Set by the test once the loop runs in steady operation; read and written on the loop thread only after.
    let counting = Atomic<Bool>(false)

    func observe(_ starting: Bool) {
        if starting {
            before = ep_alloc_count_thread()
            return
        }
        let after = ep_alloc_count_thread()
        cycles += 1
        if counting.load(ordering: .relaxed) {
            counted += 1
            allocations += after - before
        }
    }
}

@Suite struct LoopAllocationTests {
    @Test func loopCycleAllocatesNothingOnceRunning() throws { try loopCycleAllocatesNothing(scraped: false) }

    /// A shadow model predicts every cycle beside the model in force (decision 0036): still nothing allocated.
    @Test func loopCycleAllocatesNothingWithAShadowModel() throws {
        try loopCycleAllocatesNothing(scraped: false, shadow: true)
    }

    /// The metrics endpoint on and scraped: another thread reads the loop's counters and copies its jitter and
    /// solve-time samples out of the board (what each scrape and the endpoint's idle drain do) all through the
    /// counted cycles.
    @Test func loopCycleAllocatesNothingWhileMetricsAreScraped() throws {
        try loopCycleAllocatesNothing(scraped: true)
    }

    func loopCycleAllocatesNothing(scraped: Bool, shadow: Bool = false) throws {
        let plant = try TankScenario.plant()
        defer { plant.stop() }
        let yaml = TankScenario.config(port: plant.port, periodMilliseconds: 50)
            .replacingOccurrences(of: "@DIR@", with: "/tmp")
        let configuration = try ConfigurationLoader.parse(yaml: yaml, file: "test.yaml").configuration
        let device = configuration.devices[0]
        let table = TagTable(definitions: configuration.tags)
        let poller = try ModbusPoller(device: device, pollGroups: configuration.pollGroups, table: table)
        poller.start()
        defer { poller.stop() }
        let counter = CycleAllocations()
        let runner = try LoopRunner(
            definition: configuration.loops[0],
            bind: { name in table.index(of: name).map { LoopTagBinding(table: table, index: $0, driver: poller) } },
            cycleObserver: { counter.observe($0) })
        runner.start()
        #expect(eventually(timeout: 10) { runner.snapshot().mode == "mpc" })
        if shadow {
            var candidate = LoopModelContent(configuration.loops[0])
            candidate.operatingPoint.cvs[0] += 0.5
            try runner.setShadow(model: candidate, version: 7)
        }
        // A setpoint step makes the QP work (active rate limits) during the counted cycles, not just hold a steady
        // state. The cycle that applies the operator's command itself is not counted (commands are rare and may
        // allocate); every control cycle after it is.
        Thread.sleep(forTimeInterval: 0.5)
        try runner.setSetpoint(cv: "tank1/level", TankScenario.h0.0 + 1)
        Thread.sleep(forTimeInterval: 0.3)
        let scraping = Atomic<Bool>(scraped)
        let drained = Atomic<Int>(0)
        let scraper = Thread {
            let jitter = UnsafeMutableBufferPointer<Int64>.allocate(capacity: 8192)
            let solve = UnsafeMutableBufferPointer<Int64>.allocate(capacity: 8192)
            defer {
                jitter.deallocate()
                solve.deallocate()
            }
            var cursor = LoopSampleCursor()
            while scraping.load(ordering: .relaxed) {
                let (_, j, _) = runner.newSamples(since: &cursor, jitter: jitter, solve: solve)
                drained.add(j, ordering: .relaxed)
                usleep(20_000)
            }
        }
        if scraped { scraper.start() }
        counter.counting.store(true, ordering: .relaxed)
        Thread.sleep(forTimeInterval: 4)
        scraping.store(false, ordering: .relaxed)
        runner.stop()
        let snapshot = runner.snapshot()
        // The scraper did take the samples the counted cycles recorded.
        #expect(!scraped || drained.load(ordering: .relaxed) >= 60)
        print(
            "loop cycles counted: \(counter.counted), heap allocations on the loop thread: \(counter.allocations) "
                + "(\(Double(counter.allocations) / Double(max(1, counter.counted))) per cycle); "
                + "solve p99 \(snapshot.solver.p99Microseconds) µs, jitter p99 \(snapshot.timing.jitterP99Microseconds) µs"
        )
        #expect(counter.counted >= 60)
        #expect(counter.allocations == 0)
        #expect(snapshot.mode == "mpc")
        #expect(snapshot.mvs.allSatisfy { $0.writes > 50 && $0.writeErrors == 0 })
        #expect(snapshot.solver.status == "optimal")
        #expect(snapshot.shadowVersion == (shadow ? 7 : nil))
    }

    /// Every mode counts, and so do the cycles that switch between them (PID takes over, the operator drives the
    /// MVs by hand, MPC comes back): not only steady MPC cycles.
    /// Tank 1's soft high limit sits just above its setpoint, so the manual ramp takes it over: the counted cycles
    /// include MVs at their rate limit and a soft-limit violation event.
    @Test func pidManualAndModeChangeCyclesAllocateNothing() throws {
        let plant = try TankScenario.plant()
        defer { plant.stop() }
        let yaml = TankScenario.config(port: plant.port, periodMilliseconds: 50)
            .replacingOccurrences(of: "@DIR@", with: "/tmp")
            .replacingOccurrences(
                of: "setpoint: \(TankScenario.h0.0), soft_low: 2, soft_high: 18",
                with: "setpoint: \(TankScenario.h0.0), soft_low: 2, soft_high: \(TankScenario.h0.0 + 0.1)")
        let configuration = try ConfigurationLoader.parse(yaml: yaml, file: "test.yaml").configuration
        let table = TagTable(definitions: configuration.tags)
        let poller = try ModbusPoller(
            device: configuration.devices[0], pollGroups: configuration.pollGroups, table: table)
        poller.start()
        defer { poller.stop() }
        let counter = CycleAllocations()
        let runner = try LoopRunner(
            definition: configuration.loops[0],
            bind: { name in table.index(of: name).map { LoopTagBinding(table: table, index: $0, driver: poller) } },
            cycleObserver: { counter.observe($0) })
        runner.start()
        defer { runner.stop() }
        #expect(eventually(timeout: 10) { runner.snapshot().mode == "mpc" })
        // One round through every mode first: lazily made state (first PID cycle, first manual ramp) appears once.
        for mode in [LoopMode.pid, .manual, .mpc] {
            runner.requestMode(mode)
            #expect(eventually(timeout: 5) { runner.snapshot().mode == mode.rawValue })
        }
        Thread.sleep(forTimeInterval: 0.5)
        var counts: [String: (cycles: Int, allocations: UInt64)] = [:]
        func count(_ name: String, seconds: Double, _ act: () throws -> Void) rethrows {
            let (c0, a0) = (counter.counted, counter.allocations)
            counter.counting.store(true, ordering: .relaxed)
            try act()
            Thread.sleep(forTimeInterval: seconds)
            counter.counting.store(false, ordering: .relaxed)
            Thread.sleep(forTimeInterval: 0.1)
            counts[name] = (counter.counted - c0, counter.allocations - a0)
        }
        try count("mpc → pid and PID cycles", seconds: 1.5) { runner.requestMode(.pid) }
        try count("pid → manual and manual ramp", seconds: 1.5) {
            runner.requestMode(.manual)
            #expect(eventually(timeout: 5) { runner.snapshot().mode == "manual" })
            try runner.setManual(mv: "pump1/voltage", 3.5)
        }
        try count("manual → mpc and MPC cycles", seconds: 1.5) { runner.requestMode(.mpc) }
        print(
            "loop allocations per phase: \(counts.map { "\($0.key): \($0.value.allocations) in \($0.value.cycles) cycles" })"
        )
        #expect(runner.snapshot().mode == "mpc")
        let kpis = runner.kpis()
        #expect(kpis.mvs[0].atRateLimitPercent > 0 && kpis.cvs[0].violations >= 1, "\(kpis)")
        for (name, c) in counts {
            #expect(c.cycles >= 15, "\(name): only \(c.cycles) cycles counted")
            #expect(c.allocations == 0, "\(name): \(c.allocations) allocations in \(c.cycles) cycles")
        }
    }

    /// A plant test's cycles, its start and its end included, allocate nothing on the loop thread: the sequence was
    /// precomputed by `planTest` on the caller's thread (decision 0034).
    @Test func plantTestCyclesAllocateNothing() throws {
        let plant = try TankScenario.plant()
        defer { plant.stop() }
        let yaml = TankScenario.config(port: plant.port, periodMilliseconds: 50)
            .replacingOccurrences(of: "@DIR@", with: "/tmp")
        let configuration = try ConfigurationLoader.parse(yaml: yaml, file: "test.yaml").configuration
        let table = TagTable(definitions: configuration.tags)
        let poller = try ModbusPoller(
            device: configuration.devices[0], pollGroups: configuration.pollGroups, table: table)
        poller.start()
        defer { poller.stop() }
        let counter = CycleAllocations()
        let runner = try LoopRunner(
            definition: configuration.loops[0],
            bind: { name in table.index(of: name).map { LoopTagBinding(table: table, index: $0, driver: poller) } },
            cycleObserver: { counter.observe($0) })
        runner.start()
        defer { runner.stop() }
        #expect(eventually(timeout: 10) { runner.snapshot().mode == "mpc" })
        Thread.sleep(forTimeInterval: 0.5)
        let plan = try runner.planTest(
            PlantTestRequest(
                mvs: ["pump1/voltage", "pump2/voltage"], signal: "gbn", amplitude: 0.3, durationSeconds: 2,
                settlingTimeSeconds: 3),
            by: "test", at: 0)
        try runner.run(plan)
        #expect(eventually(timeout: 5) { runner.snapshot().mode == "test" })
        counter.counting.store(true, ordering: .relaxed)
        let c0 = counter.counted
        #expect(
            eventually(timeout: 10) { runner.plantTest?.outcome == "completed" },
            "\(String(describing: runner.plantTest))")
        Thread.sleep(forTimeInterval: 0.5)
        counter.counting.store(false, ordering: .relaxed)
        #expect(runner.snapshot().mode == "mpc")
        #expect(counter.counted - c0 >= 30)
        #expect(counter.allocations == 0, "\(counter.allocations) allocations in \(counter.counted - c0) cycles")
    }
}
