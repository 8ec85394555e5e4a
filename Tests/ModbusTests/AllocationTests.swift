import CAllocCounter
import Foundation
import Synchronization
import Tags
import TestSupport
import Testing

@testable import Modbus
@testable import ModbusDriver

/// The poll → decode → tag table path must not touch the heap once running (issue: "target 0").
@Suite(.serialized) struct AllocationTests {
    @Test func steadyStatePollCyclesAllocateNothing() throws { try pollCyclesAllocateNothing(scraped: false) }

    /// The metrics endpoint on and scraped: another thread copies the poller's counters and its poll-duration
    /// histogram (what each scrape reads) all through the counted cycles, which record into that histogram.
    @Test func pollCyclesAllocateNothingWhileMetricsAreScraped() throws { try pollCyclesAllocateNothing(scraped: true) }

    func pollCyclesAllocateNothing(scraped: Bool) throws {
        let sim = try QuadTank()
        defer { sim.stop() }
        // Two consumers so report-by-exception publishing is on the measured path too.
        let table = TagTable(definitions: quadTankTags(), changes: ChangeFeed(consumers: 2, capacity: 4096))
        let poller = try ModbusPoller(
            device: sim.device(), pollGroups: [PollGroup(name: "fast", periodMilliseconds: 100)], table: table)
        // Warm-up: connect, first samples, lazily created runtime state.
        for _ in 0..<20 { #expect(poller.pollOnce() == 0) }
        let cycles = 300
        var failures = 0
        var perCycle = [UInt64](repeating: 0, count: cycles)
        let scraping = Atomic<Bool>(scraped)
        let scrapes = Atomic<Int>(0)
        let scraper = Thread {
            while scraping.load(ordering: .relaxed) {
                let status = poller.driverStatus
                if status.cycleDurations.count > 0 { scrapes.add(1, ordering: .relaxed) }
                usleep(500)
            }
        }
        if scraped { scraper.start() }
        defer { scraping.store(false, ordering: .relaxed) }
        let before = ep_alloc_count_thread()
        for c in 0..<cycles {
            let b = ep_alloc_count_thread()
            failures += poller.pollOnce()
            perCycle[c] = ep_alloc_count_thread() - b
        }
        let allocations = ep_alloc_count_thread() - before
        let allocatingCycles = perCycle.enumerated().filter { $0.element > 0 }.map { "#\($0.offset): \($0.element)" }
        #expect(failures == 0)
        #expect(allocations == 0, "\(allocations) allocations in \(cycles) poll cycles: \(allocatingCycles)")
        // The cycles did real work: values arrived and changes were reported.
        #expect((0..<table.count).allSatisfy { table.read($0).quality.isGood })
        #expect(poller.stats.polls == UInt64(20 + cycles))
        #expect(poller.stats.cycleDurations.count == UInt64(20 + cycles))
        #expect(!scraped || scrapes.load(ordering: .relaxed) > 10)
        #expect(table.changes.pending(consumer: 0) > 0)
    }

    @Test func counterSeesAllocations() {
        // Guards the test above against a counter that never counts.
        let before = ep_alloc_count_thread()
        let array = [Int](repeating: 1, count: 1000 + Int(before % 7))
        #expect(ep_alloc_count_thread() > before)
        #expect(array.count > 0)
    }
}
