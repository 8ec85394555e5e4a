import Configuration
import Control
import Devices
import Foundation
import Logging
import Synchronization
import Tags
import TestSupport
import Testing

@testable import LoopRuntime

/// A driver that records what reaches it; it can hold each write (a slow link) or refuse it (a PLC in local mode).
final class RecordingDriver: DeviceDriver, @unchecked Sendable {
    let device = DeviceDefinition(name: "plc", transport: .agent)
    let table: TagTable
    let written = Mutex<[(Int, TagValue)]>([])
    let holdMicroseconds = Atomic<Int>(0)
    let refuse = Atomic<Bool>(false)

    init(table: TagTable) { self.table = table }
    func start() {}
    func stop() {}
    var driverStatus: DeviceDriverStatus { DeviceDriverStatus() }

    func writeTag(_ index: Int, _ value: TagValue) throws(DeviceWriteError) -> DeviceWriteOutcome {
        let hold = holdMicroseconds.load(ordering: .relaxed)
        if hold > 0 { usleep(useconds_t(hold)) }
        if refuse.load(ordering: .relaxed) { throw .refused("register is write-protected") }
        written.withLock { $0.append((index, value)) }
        return DeviceWriteOutcome(detail: "recorded", readBack: nil)
    }
}

/// The loop runtime's parts, each alone: the writer's mailbox and outcomes, the event log, the schedule.
@Suite struct LoopPartsTests {
    static func definition() throws -> LoopDefinition {
        let yaml = TankScenario.config(port: 1502).replacingOccurrences(of: "@DIR@", with: "/tmp")
        return try ConfigurationLoader.parse(yaml: yaml, file: "test.yaml").configuration.loops[0]
    }

    static func writer(_ driver: RecordingDriver, events: LoopEventLog, rate: Double = .infinity) -> MVWriter {
        let bindings = [0, 1].map { LoopTagBinding(table: driver.table, index: $0, driver: driver) }
        return MVWriter(
            loopName: "t", bindings: bindings, heartbeat: nil, events: events, logger: .init(label: "t"),
            rateUp: [rate, rate], rateDown: [rate, rate])
    }

    static func table() -> TagTable {
        TagTable(
            definitions: ["mv1", "mv2"].map {
                TagDefinition(
                    name: $0, device: "plc", source: .modbus(area: .holdingRegister, address: 0), type: .float32)
            })
    }

    @Test("the writer carries each posted value to the driver, in order, and counts the writes")
    func writerWritesWhatIsPosted() throws {
        let driver = RecordingDriver(table: Self.table())
        let events = LoopEventLog(definition: try Self.definition(), logger: .init(label: "t"), audit: { _ in })
        let writer = Self.writer(driver, events: events)
        writer.start()
        defer { writer.stop() }
        var values: [Double] = [1, 2]
        var write: [Bool] = [true, false]
        for v in [1.0, 2.0, 3.0] {
            values[0] = v
            #expect(writer.post(values: &values, write: &write, heartbeat: nil, epoch: 0) == nil)
            #expect(eventually(timeout: 5) { writer.outcome(0).writes == UInt64(v) })
        }
        #expect(driver.written.withLock { $0.map(\.1) } == [.double(1), .double(2), .double(3)])
        #expect(writer.outcome(1).writes == 0, "an MV not flagged is not written")
    }

    @Test("a newer value replaces one the writer has not sent (latest wins), and that is reported as an overrun")
    func writerLatestWinsAndReportsOverruns() throws {
        let driver = RecordingDriver(table: Self.table())
        driver.holdMicroseconds.store(300_000, ordering: .relaxed)
        let events = LoopEventLog(definition: try Self.definition(), logger: .init(label: "t"), audit: { _ in })
        let writer = Self.writer(driver, events: events)
        writer.start()
        defer { writer.stop() }
        var values: [Double] = [10, 0]
        var write: [Bool] = [true, false]
        #expect(writer.post(values: &values, write: &write, heartbeat: nil, epoch: 0) == nil)
        usleep(50_000)  // the writer is now inside the slow write of 10
        values[0] = 11
        #expect(writer.post(values: &values, write: &write, heartbeat: nil, epoch: 0) == nil)
        values[0] = 12
        #expect(writer.post(values: &values, write: &write, heartbeat: nil, epoch: 0) == 0, "11 was still waiting")
        #expect(eventually(timeout: 5) { writer.outcome(0).writes == 2 })
        #expect(driver.written.withLock { $0.map(\.1) } == [.double(10), .double(12)])
    }

    @Test("a refused write is recorded as a failure with its reason until a write succeeds")
    func writerRecordsFailures() throws {
        let driver = RecordingDriver(table: Self.table())
        driver.refuse.store(true, ordering: .relaxed)
        let events = LoopEventLog(definition: try Self.definition(), logger: .init(label: "t"), audit: { _ in })
        let writer = Self.writer(driver, events: events)
        writer.start()
        defer { writer.stop() }
        var values: [Double] = [5, 0]
        var write: [Bool] = [true, false]
        let failed = UnsafeMutablePointer<Bool>.allocate(capacity: 2)
        defer { failed.deallocate() }
        _ = writer.post(values: &values, write: &write, heartbeat: nil, epoch: 0)
        #expect(eventually(timeout: 5) { writer.outcome(0).errors == 1 })
        writer.copyFailures(into: failed, since: 0)
        #expect(failed[0] && !failed[1])
        #expect(writer.outcome(0).lastError?.contains("write-protected") == true)
        driver.refuse.store(false, ordering: .relaxed)
        _ = writer.post(values: &values, write: &write, heartbeat: nil, epoch: 0)
        #expect(eventually(timeout: 5) { writer.outcome(0).writes == 1 })
        writer.copyFailures(into: failed, since: 0)
        #expect(!failed[0])
    }

    @Test("a failure from an earlier writing period is not reported to a loop that started writing again")
    func writerFailuresBelongToTheirWritingPeriod() throws {
        let driver = RecordingDriver(table: Self.table())
        driver.refuse.store(true, ordering: .relaxed)
        let events = LoopEventLog(definition: try Self.definition(), logger: .init(label: "t"), audit: { _ in })
        let writer = Self.writer(driver, events: events)
        writer.start()
        defer { writer.stop() }
        var values: [Double] = [5, 0]
        var write: [Bool] = [true, false]
        let failed = UnsafeMutablePointer<Bool>.allocate(capacity: 2)
        defer { failed.deallocate() }
        _ = writer.post(values: &values, write: &write, heartbeat: nil, epoch: 3)
        #expect(eventually(timeout: 5) { writer.outcome(0).errors == 1 })
        writer.copyFailures(into: failed, since: 3)
        #expect(failed[0])
        writer.copyFailures(into: failed, since: 4)
        #expect(!failed[0], "the loop has left MANUAL since: the failure is from the outage, not the link now")
    }

    @Test("values skipped by the mailbox never make the PLC jump: each write is one rate step from the last confirmed")
    func writerLimitsAgainstTheConfirmedValue() throws {
        let driver = RecordingDriver(table: Self.table())
        driver.holdMicroseconds.store(200_000, ordering: .relaxed)
        let events = LoopEventLog(definition: try Self.definition(), logger: .init(label: "t"), audit: { _ in })
        let writer = Self.writer(driver, events: events, rate: 1)
        writer.start()
        defer { writer.stop() }
        var values: [Double] = [10, 0]
        var write: [Bool] = [true, false]
        _ = writer.post(values: &values, write: &write, heartbeat: nil, epoch: 1)
        usleep(50_000)  // inside the slow write of 10
        // The loop moves one step per cycle; the writer is too slow to send 11 before 12 arrives, then 13.
        for v in [11.0, 12.0, 13.0] {
            values[0] = v
            _ = writer.post(values: &values, write: &write, heartbeat: nil, epoch: 1)
        }
        #expect(eventually(timeout: 5) { writer.outcome(0).writes == 2 })
        // 13 was asked for; 11 is one step from the confirmed 10.
        #expect(driver.written.withLock { $0.map(\.1) } == [.double(10), .double(11)])
        #expect(writer.outcome(0).relimited == 1)
        // A new writing period (the loop left MANUAL, the PLC may have been moved by hand) starts from the value
        // the loop limited against the readback.
        driver.holdMicroseconds.store(0, ordering: .relaxed)
        values[0] = 4
        _ = writer.post(values: &values, write: &write, heartbeat: nil, epoch: 2)
        #expect(eventually(timeout: 5) { writer.outcome(0).writes == 3 })
        #expect(driver.written.withLock { $0.last?.1 } == .double(4))
    }

    @Test("mode changes are drained in order into the audit trail and the last 20 transitions, worded")
    func eventLogDrainsInOrder() throws {
        let audited = Mutex<[String]>([])
        let events = LoopEventLog(
            definition: try Self.definition(), logger: .init(label: "t"),
            audit: { record in audited.withLock { $0.append("\(record.value)|\(record.detail)") } })
        let modes: [LoopMode] = [.manual, .pid, .mpc]
        for k in 0..<30 {
            events.push(
                LoopEvent(
                    from: modes[k % 3], to: modes[(k + 1) % 3],
                    reason: k == 0 ? .startup : .supervisor(.badQuality(.controlledVariable, index: 0)),
                    wallMicroseconds: Int64(k), bump: 0))
        }
        #expect(events.hasPending)
        events.drain()
        #expect(!events.hasPending)
        let lines = audited.withLock { $0 }
        #expect(lines.count == 30)
        #expect(lines.first == "pid|from manual: startup: inputs good")
        #expect(lines[1] == "mpc|from pid: bad quality on CV tank1/level")
        let kept = events.transitions
        #expect(kept.count == 20)
        #expect(kept.map(\.time) == Array(10..<30).map(Int64.init))
    }

    @Test("the event ring never blocks the loop thread: past 64 undrained events the newest are dropped")
    func eventLogDropsWhenFull() throws {
        let count = Atomic<Int>(0)
        let events = LoopEventLog(
            definition: try Self.definition(), logger: .init(label: "t"),
            audit: { _ in count.add(1, ordering: .relaxed) })
        for k in 0..<100 {
            events.push(
                LoopEvent(from: .manual, to: .pid, reason: .operatorRequest, wallMicroseconds: Int64(k), bump: 0))
        }
        events.drain()
        #expect(count.load(ordering: .relaxed) == 64)
        #expect(events.transitions.last?.time == 63)
    }

    @Test("the schedule releases cycles whole periods apart on an absolute clock, and stops promptly")
    func scheduleKeepsAnAbsolutePeriod() throws {
        let period: Int64 = 20_000_000
        let schedule = LoopSchedule(
            periodNanoseconds: period, realtimePriority: nil, loopName: "t", logger: .init(label: "t"))
        let releases = Mutex<[Int64]>([])
        let completions = Atomic<Int>(0)
        schedule.start(
            cycle: { wake, lateness in releases.withLock { $0.append(wake - lateness) } },
            completed: { _, _ in completions.add(1, ordering: .relaxed) })
        #expect(eventually(timeout: 10) { releases.withLock { $0.count } >= 26 })
        let began = Date()
        schedule.stop()
        #expect(Date().timeIntervalSince(began) < 1, "stop waits at most for the current sleep slice")
        let r = releases.withLock { $0 }
        #expect(completions.load(ordering: .relaxed) == r.count)
        // Absolute schedule: every release is a whole number of periods after the first, whatever each cycle's
        // lateness (a sleep relative to the wake-up would drift by the latencies), and never earlier than due.
        for k in 1..<r.count {
            let gap = r[k] - r[k - 1]
            #expect(gap >= period && gap % period == 0, "release \(k) came \(gap) ns after the previous one")
        }
        #expect(schedule.scheduling == "normal")
    }
}
