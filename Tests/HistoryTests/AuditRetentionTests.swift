import Foundation
import History
import Tags
import TestSupport
import Testing

/// Issue 15, Medium 6: the audit trail is kept by its own limits, so a flood of commands can neither erase plant
/// history through the size limit nor make huge rows.
@Suite struct AuditRetentionTests {
    /// 2,000 samples, then 10,000 audit rows with 1,000-byte values that take the file over `max_size`: retention
    /// trims the audit trail to its own `maxRows` and keeps every sample.
    @Test func anAuditFloodCannotEraseHistory() throws {
        let dir = try TemporaryDirectory("history-tests")
        defer { dir.remove() }
        let store = try HistoryStore(
            path: dir.path + "/h.db",
            options: .init(synchronous: .normal, walCheckpointPages: 64, retentionChunkRows: 2000))
        let samples = (0..<2000).map { HistoryRow(tag: "t\($0 % 4)", timestamp: Int64($0), value: .real(Double($0))) }
        try store.append(samples)
        let before = try store.stats().bytes
        let value = String(repeating: "v", count: 1000)
        for i in 0..<10_000 {
            try store.recordAudit(
                AuditRecord(
                    timestamp: Int64(10_000 + i), source: "sparkplug:host=none", tag: "nosuch\(i)", value: value,
                    result: "refused", detail: "not in sparkplug.command_allow_list"))
        }
        let flooded = try store.stats().bytes
        let maxBytes = before + (flooded - before) / 4
        #expect(flooded > maxBytes, "the flood took the file over the limit")

        let result = try store.enforceRetention(
            maxAgeSeconds: nil, maxBytes: maxBytes, audit: AuditRetention(maxRows: 500))
        let stats = try store.stats()
        #expect(stats.rows == 2000, "no plant history deleted for audit rows: \(result)")
        #expect(result.deletedSamples == 0)
        #expect(stats.auditRows == 500)
        #expect(result.deletedAuditForSize == 0)
        // The newest audit rows are kept.
        #expect(try store.audit(since: 0, limit: 1).first?.tag == "nosuch9500")
        #expect(stats.bytes <= maxBytes)
    }

    /// Audit rows go by their own age, not by the samples' retention.
    @Test func auditRowsHaveTheirOwnAge() throws {
        let dir = try TemporaryDirectory("history-tests")
        defer { dir.remove() }
        let store = try HistoryStore(path: dir.path + "/h.db")
        let now: Int64 = 1_800_000_000_000_000
        let day: Int64 = 86_400_000_000
        try store.append([HistoryRow(tag: "t", timestamp: now - 40 * day, value: .integer(1))])
        for age in [400, 40, 1] as [Int64] {
            try store.recordAudit(
                AuditRecord(timestamp: now - age * day, source: "cli", tag: "t", value: "\(age)", result: "ok"))
        }
        let result = try store.enforceRetention(
            maxAgeSeconds: 30 * 86_400, maxBytes: nil, audit: AuditRetention(maxAgeSeconds: 365 * 86_400), now: now)
        #expect(result.deletedSamples == 1)
        #expect(result.deletedAudit == 1)
        #expect(try store.audit(since: 0).map(\.value) == ["40", "1"])
    }

    /// What the writer queues is cut: a 50 MB value cannot make a 50 MB row.
    @Test func queuedRecordsAreCut() throws {
        let big = String(repeating: "é", count: 100_000)
        let record = AuditRecord(timestamp: 1, source: "cli", tag: "t", value: big, result: "refused", detail: big)
            .bounded()
        #expect(record.value.utf8.count <= BoundedText.valueBytes + 20)
        #expect(record.value.hasSuffix("… (200000 bytes)"), "\(record.value.suffix(30))")
        #expect(record.value.hasPrefix("éé"))
        #expect(record.detail.utf8.count <= BoundedText.detailBytes + 20)
        #expect(BoundedText.truncated("short") == "short")
    }
}

/// Issue 15, Medium 7: the writer's bound on waiting audit records holds between commits, not only between the
/// moments its thread takes them, so a flood is dropped and counted instead of growing memory until the next commit.
@Suite struct AuditQueueBoundTests {
    @Test func recordsBeyondTheBoundAreDroppedAndCountedBetweenCommits() throws {
        let dir = try TemporaryDirectory("history-tests")
        defer { dir.remove() }
        let table = TagTable(
            definitions: [
                TagDefinition(
                    name: "t", device: "d", source: .modbus(area: .holdingRegister, address: 0), type: .float64)
            ], changes: ChangeFeed(consumers: 1))
        let writer = HistoryWriter(
            store: try HistoryStore(path: dir.path + "/h.db"), table: table, consumer: 0,
            configuration: .init(commitIntervalMilliseconds: 60_000, idlePollMilliseconds: 1, maxPendingAudit: 100))
        writer.start()
        for i in 0..<50 {
            writer.record(audit: AuditRecord(timestamp: Int64(i), source: "t", tag: "t", value: "\(i)", result: "ok"))
        }
        // Let the writer thread take them into its own batch (if it has not, the count is the same): the next ones
        // still count against the bound.
        usleep(50_000)
        for i in 50..<250 {
            writer.record(audit: AuditRecord(timestamp: Int64(i), source: "t", tag: "t", value: "\(i)", result: "ok"))
        }
        #expect(writer.statistics.auditDropped == 150)
        writer.stop()
        #expect(writer.statistics.auditWritten == 100)
    }
}
