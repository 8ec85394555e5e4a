import Foundation
import Testing

@testable import Tags

private func tag(_ name: String, _ type: TagDataType, deadband: Double = 0) -> TagDefinition {
    TagDefinition(
        name: name, device: "d", source: .modbus(area: .holdingRegister, address: 0), type: type, deadband: deadband)
}

private func drain(_ feed: ChangeFeed, consumer: Int = 0) -> [TagChange] {
    let buffer = UnsafeMutableBufferPointer<TagChange>.allocate(capacity: 1024)
    defer { buffer.deallocate() }
    let n = feed.drain(consumer: consumer, into: buffer)
    return Array(buffer.prefix(n))
}

@Suite struct TagTableTests {
    @Test func startsWaitingForInitialData() {
        let table = TagTable(definitions: [tag("a", .float32)])
        #expect(table.read(0) == .initial)
        #expect(table.value(of: 0, table.read(0)) == nil)
    }

    /// An unchanged value keeps its source timestamp, but its driver can vouch that it is still current: the
    /// confirmation moves the freshness time without reporting a change or touching the sample.
    @Test func aConfirmationKeepsAValueCurrentWithoutReportingIt() {
        let feed = ChangeFeed(consumers: 1)
        let table = TagTable(definitions: [tag("sp", .float64)], changes: feed)
        table.update(0, TagSample(value: .double(3), quality: .good, timestamp: 1_000))
        #expect(table.confirmedAt(0) == 1_000)
        _ = drain(feed)
        table.confirm(0, at: 5_000_000)
        #expect(table.confirmedAt(0) == 5_000_000)
        #expect(table.read(0) == TagSample(value: .double(3), quality: .good, timestamp: 1_000))
        #expect(drain(feed).isEmpty)
        // A newer sample counts even when its confirmation was older.
        table.update(0, TagSample(value: .double(4), quality: .good, timestamp: 9_000_000))
        #expect(table.confirmedAt(0) == 9_000_000)
    }

    @Test func reportsByExceptionWithDeadband() {
        let feed = ChangeFeed(consumers: 2)
        let table = TagTable(
            definitions: [tag("a", .float64, deadband: 0.5), tag("b", .int32, deadband: 2)], changes: feed)
        #expect(table.update(0, TagSample(value: .double(10), quality: .good, timestamp: 1)))
        #expect(!table.update(0, TagSample(value: .double(10.4), quality: .good, timestamp: 2)))
        // The stored value always follows the latest sample, reported or not.
        #expect(table.read(0).value == .double(10.4))
        // Deadband is measured from the last reported value, so slow drift is reported eventually.
        #expect(table.update(0, TagSample(value: .double(10.6), quality: .good, timestamp: 3)))
        #expect(table.update(0, TagSample(value: .double(10.6), quality: Quality(.timeout), timestamp: 4)))
        #expect(table.update(1, TagSample(value: .int(100), quality: .good, timestamp: 5)))
        #expect(!table.update(1, TagSample(value: .int(102), quality: .good, timestamp: 6)))
        #expect(table.update(1, TagSample(value: .int(97), quality: .good, timestamp: 7)))
        for consumer in 0..<2 {
            let changes = drain(feed, consumer: consumer)
            #expect(changes.map(\.sample.timestamp) == [1, 3, 4, 5, 7])
            #expect(changes.map(\.tag) == [0, 0, 0, 1, 1])
        }
        #expect(drain(feed).isEmpty)
    }

    @Test func nanIsReportedOnceAndRecoveryToo() {
        let feed = ChangeFeed(consumers: 1)
        let table = TagTable(definitions: [tag("a", .float32, deadband: 1)], changes: feed)
        table.update(0, TagSample(value: .double(1), quality: .good, timestamp: 1))
        #expect(table.update(0, TagSample(value: .double(.nan), quality: .good, timestamp: 2)))
        #expect(table.update(0, TagSample(value: .double(1), quality: .good, timestamp: 3)))
    }

    @Test func textValuesRoundTripAndReportOnChange() {
        let feed = ChangeFeed(consumers: 1)
        let table = TagTable(definitions: [tag("name", .string(registers: 5))], changes: feed)
        func put(_ s: String, _ t: Int64) -> Bool {
            let bytes = Array(s.utf8)
            return bytes.withUnsafeBytes {
                table.update(0, TagSample(value: .text(length: bytes.count), quality: .good, timestamp: t), text: $0)
            }
        }
        #expect(put("PUMP-01", 1))
        #expect(table.text(of: 0) == "PUMP-01")
        #expect(!put("PUMP-01", 2))
        #expect(put("PUMP-02", 3))
        #expect(put("LONGER-THAN-TEN", 4))
        #expect(table.text(of: 0) == "LONGER-THA")
        #expect(table.value(of: 0, table.read(0)) == .string("LONGER-THA"))
        #expect(drain(feed).count == 3)
    }

    @Test func markQualityKeepsValueAndReports() {
        let feed = ChangeFeed(consumers: 1)
        let table = TagTable(definitions: [tag("a", .int16)], changes: feed)
        table.update(0, TagSample(value: .int(5), quality: .good, timestamp: 1))
        table.markQuality(0, Quality(.disconnected), timestamp: 9)
        table.markQuality(0, Quality(.disconnected), timestamp: 10)
        let s = table.read(0)
        #expect(s.value == .int(5) && s.quality == Quality(.disconnected) && s.timestamp == 9)
        #expect(drain(feed).map(\.sample.quality.code) == [.good, .disconnected])
        // Back to good with the same value is a change of quality, so it is reported.
        #expect(table.update(0, TagSample(value: .int(5), quality: .good, timestamp: 11)))
    }

    @Test func fullQueueDropsOldestAndCounts() {
        let feed = ChangeFeed(consumers: 1, capacity: 4)
        let table = TagTable(definitions: [tag("a", .int64)], changes: feed)
        for i in 0..<10 { table.update(0, TagSample(value: .int(Int64(i)), quality: .good, timestamp: Int64(i))) }
        #expect(feed.dropped(consumer: 0) == 6)
        #expect(drain(feed).map(\.sample.timestamp) == [6, 7, 8, 9])
    }

    /// A reader racing a writer must only ever see samples the writer wrote whole, never a mix of two.
    @Test func readersNeverSeeTornSamples() async {
        let table = TagTable(definitions: [tag("a", .int64)])
        let stop = ManagedAtomicFlag()
        let writer = Thread {
            var i: Int64 = 1
            while !stop.isSet {
                table.update(
                    0, TagSample(value: .int(i), quality: Quality(.good, detail: UInt32(i & 0xFFFF)), timestamp: i))
                i += 1
            }
        }
        writer.start()
        var torn = 0
        var observed = Set<Int64>()
        for _ in 0..<200_000 {
            let s = table.read(0)
            guard case .int(let v) = s.value else { continue }
            if s.timestamp != v || s.quality.detail != UInt32(v & 0xFFFF) { torn += 1 }
            observed.insert(v)
        }
        stop.set()
        #expect(torn == 0)
        #expect(observed.count > 1)
    }
}

/// A flag for stopping a test thread; a lock is plenty here.
final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
