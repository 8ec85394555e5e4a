import Foundation
import History
import Tags
import TestSupport
import Testing

@Suite(.serialized) struct HistoryWriterTests {
    private func definitions() -> [TagDefinition] {
        [
            TagDefinition(
                name: "Tank1.Level", device: "plc", source: .modbus(area: .holdingRegister, address: 0), type: .float64),
            TagDefinition(
                name: "Pump1.Count", device: "plc", source: .modbus(area: .holdingRegister, address: 4), type: .int32),
            TagDefinition(name: "Pump1.Run", device: "plc", source: .modbus(area: .coil, address: 0), type: .bool),
            TagDefinition(
                name: "Batch.Id", device: "plc", source: .modbus(area: .holdingRegister, address: 10),
                type: .string(registers: 4)),
            TagDefinition(
                name: "Meter.Total", device: "plc", source: .modbus(area: .inputRegister, address: 0), type: .uint64),
        ]
    }

    @Test("Writes every reported change with audit and readers see it")
    func writesEveryReportedChangeWithAuditAndReadersSeeIt() throws {
        let dir = try TemporaryDirectory("history-tests")
        defer { dir.remove() }
        let path = dir.path + "/var/history.db"
        let feed = ChangeFeed(consumers: 2, capacity: 4096)  // consumer 0 is someone else's, 1 is history
        let table = TagTable(definitions: definitions(), changes: feed)
        let writer = try HistoryWriter(
            settings: HistorySettings(path: path, retentionSeconds: nil, maxBytes: nil, commitIntervalMilliseconds: 20),
            table: table, consumer: 1)
        writer.start()

        let t0: Int64 = 1_800_000_000_000_000
        var expected: [String: [HistoryRow]] = [:]
        for i in 0..<300 {
            let ts = t0 + Int64(i) * 1000
            table.update(0, TagSample(value: .double(Double(i) * 0.5), quality: .good, timestamp: ts))
            expected["Tank1.Level", default: []].append(
                HistoryRow(tag: "Tank1.Level", timestamp: ts, value: .real(Double(i) * 0.5)))
            table.update(1, TagSample(value: .int(Int64(-i)), quality: .good, timestamp: ts))
            expected["Pump1.Count", default: []].append(
                HistoryRow(tag: "Pump1.Count", timestamp: ts, value: .integer(Int64(-i))))
        }
        table.update(2, TagSample(value: .bool(true), quality: .good, timestamp: t0))
        table.update(4, TagSample(value: .uint(UInt64.max), quality: .good, timestamp: t0))
        let batchId = Array("B-42".utf8)
        batchId.withUnsafeBytes {
            _ = table.update(3, TagSample(value: .text(length: 4), quality: .good, timestamp: t0), text: $0)
        }
        table.markQuality(2, Quality(.exception, detail: 2), timestamp: t0 + 5)
        expected["Pump1.Run"] = [
            HistoryRow(tag: "Pump1.Run", timestamp: t0, value: .integer(1)),
            HistoryRow(
                tag: "Pump1.Run", timestamp: t0 + 5, value: .integer(1), quality: Quality(.exception, detail: 2)),
        ]
        expected["Meter.Total"] = [HistoryRow(tag: "Meter.Total", timestamp: t0, value: .real(Double(UInt64.max)))]
        expected["Batch.Id"] = [HistoryRow(tag: "Batch.Id", timestamp: t0, value: .text("B-42"))]
        let total = expected.values.reduce(0) { $0 + $1.count }

        // Audit records arrive from other threads.
        DispatchQueue.concurrentPerform(iterations: 4) { i in
            writer.record(
                audit: AuditRecord(
                    timestamp: t0 + Int64(i), source: "cli", tag: "Pump1.Run", value: "\(i)",
                    result: i == 3 ? "refused" : "ok",
                    detail: i == 3 ? "not writable" : ""))
        }

        #expect(
            eventually { writer.statistics.rowsWritten == UInt64(total) && writer.statistics.auditWritten == 4 },
            "\(writer.statistics)")
        // A reader on its own connection sees the committed rows while the writer runs.
        let reader = try HistoryReader(path: path)
        #expect(try reader.samples(tag: "Tank1.Level", since: 0) == expected["Tank1.Level"])
        #expect(try reader.stats().rows == Int64(total))

        writer.stop()
        let stats = writer.statistics
        #expect(stats.errors == 0, "\(stats.lastError ?? "")")
        #expect(stats.feedDropped == 0)
        #expect(stats.commits > 0)
        for (tag, rows) in expected {
            #expect(try reader.samples(tag: tag, since: 0) == rows, "\(tag)")
        }
        let audit = try reader.audit(since: 0)
        #expect(audit.map(\.value).sorted() == ["0", "1", "2", "3"])
        #expect(audit.first { $0.value == "3" }?.detail == "not writable")
        #expect(try reader.stats().auditRows == 4)
    }

    @Test("Each change of a text tag keeps its own text, however late the writer reads it")
    func eachTextChangeKeepsItsOwnText() throws {
        let dir = try TemporaryDirectory("history-tests")
        defer { dir.remove() }
        let path = dir.path + "/history.db"
        let feed = ChangeFeed(consumers: 1, capacity: 1000)
        let table = TagTable(definitions: definitions(), changes: feed)
        let writer = try HistoryWriter(
            settings: HistorySettings(
                path: path, retentionSeconds: nil, maxBytes: nil, commitIntervalMilliseconds: 60_000),
            table: table, consumer: 0)
        // Three changes (a loop's mode: →pid, →manual, →mpc, and a quality change) before the writer reads any.
        let t0: Int64 = 1_800_000_000_000_000
        for (k, text) in ["pid", "manual", "mpc"].enumerated() {
            Array(text.utf8).withUnsafeBytes {
                _ = table.update(
                    3, TagSample(value: .text(length: $0.count), quality: .good, timestamp: t0 + Int64(k)), text: $0)
            }
        }
        table.markQuality(3, Quality(.disconnected), timestamp: t0 + 3)
        Array("pid".utf8).withUnsafeBytes {
            _ = table.update(3, TagSample(value: .text(length: 3), quality: .good, timestamp: t0 + 4), text: $0)
        }
        writer.start()
        writer.stop()
        let reader = try HistoryReader(path: path)
        let rows = try reader.samples(tag: "Batch.Id", since: 0)
        #expect(rows.map(\.value) == [.text("pid"), .text("manual"), .text("mpc"), .text("mpc"), .text("pid")])
        #expect(rows.map(\.quality) == [.good, .good, .good, Quality(.disconnected), .good])
    }

    @Test("Stop flushes everything still in the feed and counts drops")
    func stopFlushesEverythingStillInTheFeedAndCountsDrops() throws {
        let dir = try TemporaryDirectory("history-tests")
        defer { dir.remove() }
        let path = dir.path + "/history.db"
        let feed = ChangeFeed(consumers: 1, capacity: 1000)
        let table = TagTable(definitions: definitions(), changes: feed)
        let writer = try HistoryWriter(
            settings: HistorySettings(
                path: path, retentionSeconds: nil, maxBytes: nil, commitIntervalMilliseconds: 60_000),
            table: table, consumer: 0)
        // Published before the writer runs: the queue keeps the newest 1000, the rest are lost and counted.
        for i in 0..<1500 {
            table.update(1, TagSample(value: .int(Int64(i)), quality: .good, timestamp: Int64(i)))
        }
        writer.start()
        // The commit interval is a minute: only stop() can have written these.
        writer.stop()
        let stats = writer.statistics
        #expect(stats.rowsWritten == 1000)
        #expect(stats.feedDropped == 500)
        let rows = try HistoryReader(path: path).samples(tag: "Pump1.Count", since: 0)
        #expect(rows.map(\.value) == (500..<1500).map { HistoryValue.integer(Int64($0)) })
    }

    @Test("Batches are committed at max batch rows without waiting for the interval")
    func batchesAreCommittedAtMaxBatchRowsWithoutWaitingForTheInterval() throws {
        let dir = try TemporaryDirectory("history-tests")
        defer { dir.remove() }
        let path = dir.path + "/history.db"
        let table = TagTable(definitions: definitions(), changes: ChangeFeed(consumers: 1, capacity: 10_000))
        let writer = HistoryWriter(
            store: try HistoryStore(path: path), table: table, consumer: 0,
            configuration: .init(commitIntervalMilliseconds: 60_000, maxBatchRows: 100))
        writer.start()
        for i in 0..<250 { table.update(1, TagSample(value: .int(Int64(i)), quality: .good, timestamp: Int64(i))) }
        #expect(eventually { writer.statistics.rowsWritten == 200 }, "\(writer.statistics)")
        #expect(try HistoryReader(path: path).stats().rows == 200)
        writer.stop()
        #expect(writer.statistics.rowsWritten == 250)
    }

    @Test("Writer enforces retention continuously")
    func writerEnforcesRetentionContinuously() throws {
        let dir = try TemporaryDirectory("history-tests")
        defer { dir.remove() }
        let path = dir.path + "/history.db"
        let table = TagTable(definitions: definitions(), changes: ChangeFeed(consumers: 1, capacity: 10_000))
        let writer = HistoryWriter(
            store: try HistoryStore(path: path, options: .init(retentionChunkRows: 50)), table: table, consumer: 0,
            configuration: .init(
                commitIntervalMilliseconds: 10, retentionSeconds: 3600, retentionIntervalMilliseconds: 20))
        writer.start()
        let now = HistoryClock.now()
        // 400 samples two hours old, then 100 fresh ones.
        for i in 0..<500 {
            let age: Int64 = i < 400 ? 7200 : 1
            table.update(
                1, TagSample(value: .int(Int64(i)), quality: .good, timestamp: now - age * 1_000_000 + Int64(i)))
        }
        #expect(
            eventually { writer.statistics.rowsWritten == 500 && writer.statistics.retentionDeletedSamples == 400 },
            "\(writer.statistics)")
        let reader = try HistoryReader(path: path)
        #expect(try reader.stats().rows == 100)
        #expect(try reader.samples(tag: "Pump1.Count", since: 0).map(\.value).first == .integer(400))
        writer.stop()
        #expect(writer.statistics.errors == 0, "\(writer.statistics.lastError ?? "")")
    }

    @Test("Commit failure keeps rows and retries")
    func commitFailureKeepsRowsAndRetries() throws {
        let dir = try TemporaryDirectory("history-tests")
        defer { dir.remove() }
        let path = dir.path + "/history.db"
        let table = TagTable(definitions: definitions(), changes: ChangeFeed(consumers: 1, capacity: 10_000))
        let store = try HistoryStore(path: path, options: .init(busyTimeoutMilliseconds: 10))
        let writer = HistoryWriter(
            store: store, table: table, consumer: 0, configuration: .init(commitIntervalMilliseconds: 10))
        // Another connection holds the write lock, so the writer's commits fail with SQLITE_BUSY.
        let blocker = try RawDatabase(path)
        blocker.execute("BEGIN IMMEDIATE")
        writer.start()
        for i in 0..<10 { table.update(1, TagSample(value: .int(Int64(i)), quality: .good, timestamp: Int64(i))) }
        #expect(eventually { writer.statistics.errors >= 2 }, "\(writer.statistics)")
        #expect(writer.statistics.rowsWritten == 0)
        #expect(writer.statistics.lastError?.contains(path) ?? false, "\(writer.statistics.lastError ?? "nil")")
        blocker.execute("COMMIT")
        #expect(eventually { writer.statistics.rowsWritten == 10 }, "\(writer.statistics)")
        writer.stop()
        #expect(try HistoryReader(path: path).samples(tag: "Pump1.Count", since: 0).count == 10)
    }
}
