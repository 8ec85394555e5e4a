import Foundation
import History
import Tags
import TestSupport
import Testing

/// Serialized: one test bounds how long a read may wait, and another is CPU- and disk-heavy.
@Suite(.serialized) struct HistoryStoreTests {
    @Test("Creates schema, WAL and incremental vacuum in new directory")
    func createsSchemaWALAndIncrementalVacuumInNewDirectory() throws {
        let dir = try TemporaryDirectory("history-tests")
        defer { dir.remove() }
        let path = dir.path + "/nested/deeper/history.db"
        let store = try HistoryStore(path: path)
        store.close()

        let raw = try RawDatabase(path)
        #expect(raw.int("PRAGMA user_version") == Int64(HistorySchema.currentVersion))
        #expect(raw.text("PRAGMA journal_mode") == "wal")
        #expect(raw.int("PRAGMA auto_vacuum") == 2, "incremental")
        let tables = raw.rows("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name").map { $0[0] }
        #expect(
            tables == [
                "audit", "counters", "forward_queue", "model_activations", "model_config", "model_shadow",
                "model_versions", "plant_tests", "samples", "sqlite_sequence", "tags",
            ])
        let indexes = raw.rows("SELECT name FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL").map { $0[0] }
        #expect(indexes.contains("samples_tag_ts"))
        // The per-tag range query must use the index, not scan the table.
        let plan = raw.rows(
            "EXPLAIN QUERY PLAN SELECT ts, value FROM samples WHERE tag_id = 1 AND ts >= 0 AND ts < 10 ORDER BY ts, id"
        ).map { $0.last ?? "" }.joined(separator: " | ")
        #expect(plan.contains("samples_tag_ts"), "\(plan)")
        #expect(!plan.contains("TEMP B-TREE"), "\(plan)")
    }

    @Test("Migrates version 1 file keeping data and seeding counters")
    func migratesVersion1FileKeepingDataAndSeedingCounters() throws {
        let dir = try TemporaryDirectory("history-tests")
        defer { dir.remove() }
        let path = dir.path + "/old.db"
        do {
            // A file as schema version 1 left it: rollback journal, no auto_vacuum, no counters table.
            let raw = try RawDatabase(path)
            raw.execute(
                """
                CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL);
                CREATE TABLE samples (id INTEGER PRIMARY KEY, tag_id INTEGER NOT NULL REFERENCES tags(id),
                    ts INTEGER NOT NULL, value, quality INTEGER NOT NULL, quality_detail INTEGER NOT NULL DEFAULT 0);
                CREATE INDEX samples_tag_ts ON samples(tag_id, ts);
                CREATE TABLE audit (id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, source TEXT NOT NULL,
                    tag TEXT NOT NULL, value TEXT NOT NULL, result TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '');
                CREATE INDEX audit_ts ON audit(ts);
                INSERT INTO tags(id, name) VALUES (1, 'Tank1.Level'), (2, 'Pump1.Run');
                INSERT INTO samples(tag_id, ts, value, quality) VALUES (1, 100, 1.5, 0), (1, 200, 2.5, 0), (2, 150, 1, 3);
                INSERT INTO audit(ts, source, tag, value, result) VALUES (120, 'cli', 'Pump1.Run', 'true', 'ok');
                PRAGMA user_version = 1;
                """)
            #expect(raw.int("PRAGMA auto_vacuum") == 0)
        }

        let store = try HistoryStore(path: path)
        let stats = try store.stats()
        #expect(stats.rows == 3, "counter seeded from the existing rows")
        #expect(stats.auditRows == 1)
        #expect(stats.oldestTimestamp == 100)
        #expect(try store.samples(tag: "Tank1.Level", since: 0).map(\.value) == [.real(1.5), .real(2.5)])
        #expect(try store.samples(tag: "Pump1.Run", since: 0).first?.quality == Quality(.timeout))
        // New rows reuse the existing tag ids and keep the counter exact.
        try store.append([HistoryRow(tag: "Tank1.Level", timestamp: 300, value: .real(3.5))])
        #expect(try store.stats().rows == 4)
        store.close()

        let raw = try RawDatabase(path)
        #expect(raw.int("PRAGMA user_version") == Int64(HistorySchema.currentVersion))
        #expect(raw.int("PRAGMA auto_vacuum") == 2, "converted so retention can shrink the file")
        #expect(raw.text("PRAGMA journal_mode") == "wal")
        #expect(raw.int("SELECT count(*) FROM tags") == 2)
        #expect(raw.text("PRAGMA integrity_check") == "ok")
    }

    @Test("Refuses newer schema with path in error")
    func refusesNewerSchemaWithPathInError() throws {
        let dir = try TemporaryDirectory("history-tests")
        defer { dir.remove() }
        let path = dir.path + "/future.db"
        try RawDatabase(path).execute("CREATE TABLE x (a); PRAGMA user_version = 99;")
        if let error = #expect(throws: (any Error).self, performing: { try HistoryStore(path: path) }) {
            let text = "\(error)"
            #expect(text.contains(path), "\(text)")
            #expect(text.contains("99"), "\(text)")
        }
        #expect(try RawDatabase(path).int("PRAGMA user_version") == 99, "left untouched")
    }

    @Test("Open failure names path and SQLite message")
    func openFailureNamesPathAndSQLiteMessage() throws {
        let dir = try TemporaryDirectory("history-tests")
        defer { dir.remove() }
        let blocker = dir.path + "/file"
        _ = FileManager.default.createFile(atPath: blocker, contents: Data("x".utf8))
        if let error = #expect(
            throws: (any Error).self, performing: { try HistoryStore(path: blocker + "/history.db") })
        {
            #expect("\(error)".contains(blocker), "\(error)")
        }
        let notADatabase = dir.path + "/garbage.db"
        _ = FileManager.default.createFile(atPath: notADatabase, contents: Data(repeating: 0x41, count: 8192))
        if let error = #expect(throws: HistoryError.self, performing: { try HistoryStore(path: notADatabase) }) {
            #expect(error.path == notADatabase)
            #expect(error.message.contains("not a database"), "\(error.message)")
        }
    }

    @Test("Round trips every value kind and quality")
    func roundTripsEveryValueKindAndQuality() throws {
        let dir = try TemporaryDirectory("history-tests")
        defer { dir.remove() }
        let store = try HistoryStore(path: dir.path + "/h.db")
        let values: [HistoryValue] = [
            .null, .integer(0), .integer(-42), .integer(.max), .integer(.min), .real(3.25), .real(-1e300),
            .real(.infinity), .text(""), .text("Grüße, \"tank\"\n"), .real(0.1),
        ]
        var rows: [HistoryRow] = []
        for (i, value) in values.enumerated() {
            rows.append(HistoryRow(tag: "kinds", timestamp: Int64(i), value: value))
        }
        for (i, code) in Quality.Code.allCases.enumerated() {
            let quality = Quality(code, detail: i == 0 ? 0 : 0x8000_0000 + UInt32(i))
            rows.append(
                HistoryRow(tag: "qualities", timestamp: Int64(1000 + i), value: .integer(Int64(i)), quality: quality))
        }
        try store.append(rows)

        #expect(try store.samples(tag: "kinds", since: 0) == Array(rows.prefix(values.count)))
        #expect(try store.samples(tag: "qualities", since: 0) == Array(rows.dropFirst(values.count)))
        #expect(try store.stats().rows == Int64(rows.count))
        // The time range is since ≤ ts < until, and limit caps it.
        #expect(try store.samples(tag: "kinds", since: 2, until: 5).map(\.timestamp) == [2, 3, 4])
        #expect(try store.samples(tag: "kinds", since: 0, limit: 2).map(\.timestamp) == [0, 1])
        #expect(try store.samples(tag: "no such tag", since: 0) == [])
    }

    @Test("Sample value mapping")
    func sampleValueMapping() {
        #expect(HistoryValue(.none) == .null)
        #expect(HistoryValue(.bool(true)) == .integer(1))
        #expect(HistoryValue(.bool(false)) == .integer(0))
        #expect(HistoryValue(.int(-7)) == .integer(-7))
        #expect(HistoryValue(.uint(7)) == .integer(7))
        #expect(HistoryValue(.uint(.max)) == .real(Double(UInt64.max)))
        #expect(HistoryValue(.double(.nan)) == .null)
        #expect(HistoryValue(.text(length: 3), text: "abc") == .text("abc"))
    }

    @Test("Tag IDs are stable across reopen")
    func tagIDsAreStableAcrossReopen() throws {
        let dir = try TemporaryDirectory("history-tests")
        defer { dir.remove() }
        let path = dir.path + "/h.db"
        var store = try HistoryStore(path: path)
        let a = try store.tagID(for: "A")
        let b = try store.tagID(for: "B")
        #expect(a != b)
        #expect(try store.tagID(for: "A") == a)
        store.close()
        store = try HistoryStore(path: path)
        #expect(try store.tagID(for: "B") == b)
        #expect(try store.tagID(for: "A") == a)
    }

    @Test("Audit records are stored and queried by since")
    func auditRecordsAreStoredAndQueriedBySince() throws {
        let dir = try TemporaryDirectory("history-tests")
        defer { dir.remove() }
        let store = try HistoryStore(path: dir.path + "/h.db")
        let first = AuditRecord(timestamp: 10, source: "cli", tag: "Pump1.Speed", value: "42.5", result: "ok")
        let second = AuditRecord(
            timestamp: 20, source: "sparkplug:NCMD", tag: "Pump1.Speed", value: "900", result: "refused",
            detail: "above limit 100")
        let id1 = try store.recordAudit(first)
        let id2 = try store.recordAudit(second)
        #expect(id1 < id2)
        var expected1 = first
        expected1.id = id1
        var expected2 = second
        expected2.id = id2
        #expect(try store.audit(since: 0) == [expected1, expected2])
        #expect(try store.audit(since: 15) == [expected2])
        #expect(try store.stats().auditRows == 2)
    }

    @Test("Failed append commits nothing")
    func failedAppendCommitsNothing() throws {
        let dir = try TemporaryDirectory("history-tests")
        defer { dir.remove() }
        let path = dir.path + "/h.db"
        let store = try HistoryStore(path: path)
        try store.append([HistoryRow(tag: "t", timestamp: 1, value: .integer(1))])
        // A trigger makes the second row of the next batch fail, after the first was inserted.
        try RawDatabase(path).execute(
            "CREATE TRIGGER reject BEFORE INSERT ON samples WHEN NEW.ts = 99 BEGIN SELECT RAISE(ABORT, 'rejected'); END;"
        )
        if let error = #expect(
            throws: (any Error).self,
            performing: {
                try store.append([
                    HistoryRow(tag: "new tag", timestamp: 2, value: .integer(2)),
                    HistoryRow(tag: "t", timestamp: 99, value: .integer(3)),
                ])
            })
        {
            #expect("\(error)".contains("rejected"), "\(error)")
        }
        #expect(try store.stats().rows == 1)
        #expect(try store.samples(tag: "t", since: 0).count == 1)
        #expect(try store.samples(tag: "new tag", since: 0).count == 0)
        // The tag created by the rolled-back batch must not linger in the id cache.
        try RawDatabase(path).execute("DROP TRIGGER reject")
        try store.append([HistoryRow(tag: "new tag", timestamp: 3, value: .integer(4))])
        #expect(try store.samples(tag: "new tag", since: 0).map(\.value) == [.integer(4)])
        #expect(
            try RawDatabase(path).int("SELECT count(*) FROM samples WHERE tag_id NOT IN (SELECT id FROM tags)") == 0)
    }

    @Test("Retention by age deletes only old samples and audit")
    func retentionByAgeDeletesOnlyOldSamplesAndAudit() throws {
        let dir = try TemporaryDirectory("history-tests")
        defer { dir.remove() }
        let path = dir.path + "/h.db"
        let store = try HistoryStore(path: path, options: .init(retentionChunkRows: 100))
        let now: Int64 = 1_800_000_000_000_000
        var rows: [HistoryRow] = []
        for i in 0..<2000 {  // one sample per second over the last 2000 s
            rows.append(
                HistoryRow(tag: "t\(i % 3)", timestamp: now - Int64(2000 - i) * 1_000_000, value: .integer(Int64(i))))
        }
        try store.append(rows)
        try store.recordAudit(
            AuditRecord(timestamp: now - 1500 * 1_000_000, source: "cli", tag: "t0", value: "1", result: "ok"))
        try store.recordAudit(
            AuditRecord(timestamp: now - 10 * 1_000_000, source: "cli", tag: "t0", value: "2", result: "ok"))

        // Audit rows have their own age limit; the same here, so both tables are trimmed at one cutoff.
        let result = try store.enforceRetention(
            maxAgeSeconds: 500, maxBytes: nil, audit: AuditRetention(maxAgeSeconds: 500), now: now)
        let cutoff = now - 500 * 1_000_000
        let expected = rows.filter { $0.timestamp >= cutoff }
        #expect(result.deletedSamples == Int64(rows.count - expected.count))
        #expect(result.deletedAudit == 1)
        let stats = try store.stats()
        #expect(stats.rows == Int64(expected.count))
        #expect(stats.oldestTimestamp == expected.first?.timestamp)
        var kept: [HistoryRow] = []
        for t in 0..<3 { kept += try store.samples(tag: "t\(t)", since: 0) }
        #expect(kept.sorted { $0.timestamp < $1.timestamp } == expected)
        #expect(try store.audit(since: 0).map(\.value) == ["2"])
        let raw = try RawDatabase(path)
        #expect(raw.int("SELECT count(*) FROM samples") == Int64(expected.count))
        #expect(raw.int("SELECT count(*) FROM audit") == 1)
    }

    @Test("Retention by size keeps file under limit while writing far more")
    func retentionBySizeKeepsFileUnderLimitWhileWritingFarMore() throws {
        let dir = try TemporaryDirectory("history-tests")
        defer { dir.remove() }
        let path = dir.path + "/h.db"
        let maxBytes: Int64 = 3 << 20
        let store = try HistoryStore(path: path, options: .init(walCheckpointPages: 64, retentionChunkRows: 2000))
        var written: Int64 = 0
        var deleted: Int64 = 0
        var batch: [HistoryRow] = []
        for round in 0..<24 {
            batch.removeAll(keepingCapacity: true)
            for i in 0..<10_000 {
                let seq = Int64(round * 10_000 + i)
                batch.append(HistoryRow(tag: "tag.\(i % 20)", timestamp: seq, value: .real(Double(seq) * 0.5)))
            }
            try store.append(batch)
            written += Int64(batch.count)
            let result = try store.enforceRetention(maxAgeSeconds: nil, maxBytes: maxBytes)
            deleted += result.deletedSamples
            let onDisk = fileSize(path) + fileSize(path + "-wal")
            #expect(onDisk <= maxBytes, "round \(round): \(onDisk) bytes on disk")
            #expect(result.bytesAfter <= maxBytes)
        }
        #expect(deleted > (written / 2), "wrote several times the limit, so most rows must have gone")
        let stats = try store.stats()
        #expect(stats.rows == (written - deleted))
        #expect(stats.rows > 0)
        // What is kept is the newest data: the last batch entirely, and nothing older than the oldest kept row.
        #expect(try store.samples(tag: "tag.0", since: written - 10_000).count == 500)
        let raw = try RawDatabase(path)
        #expect(raw.int("SELECT count(*) FROM samples") == stats.rows)
        #expect(raw.int("SELECT max(ts) FROM samples") == (written - 1))
        #expect(raw.int("SELECT min(ts) FROM samples") == (written - stats.rows))
        #expect(raw.text("PRAGMA integrity_check") == "ok")
    }

    @Test("Reader sees committed data while writer holds a transaction")
    func readerSeesCommittedDataWhileWriterHoldsATransaction() throws {
        let dir = try TemporaryDirectory("history-tests")
        defer { dir.remove() }
        let path = dir.path + "/h.db"
        let store = try HistoryStore(path: path)
        try store.append([HistoryRow(tag: "t", timestamp: 1, value: .integer(1))])
        try store.recordAudit(AuditRecord(timestamp: 5, source: "cli", tag: "t", value: "1", result: "ok"))
        let reader = try HistoryReader(path: path)
        #expect(reader.schemaVersion == HistorySchema.currentVersion)

        // Another connection holds the write lock mid-transaction; WAL readers must not wait for it.
        let other = try RawDatabase(path)
        other.execute("BEGIN IMMEDIATE; INSERT INTO samples(tag_id, ts, value, quality) VALUES (1, 2, 2, 0);")
        let started = Date()
        #expect(try reader.samples(tag: "t", since: 0).map(\.value) == [.integer(1)])
        #expect(try reader.stats().rows == 1)
        #expect(try reader.audit(since: 0).count == 1)
        #expect(try reader.tagNames() == ["t"])
        #expect(Date().timeIntervalSince(started) < 1.0, "reader waited for the writer")
        other.execute("ROLLBACK")

        try store.append([HistoryRow(tag: "t", timestamp: 3, value: .integer(3))])
        #expect(try reader.samples(tag: "t", since: 0).map(\.timestamp) == [1, 3])
        #expect(try reader.stats().bytes > 0)
    }

    @Test("Reader opens closed database and rejects missing or foreign files")
    func readerOpensClosedDatabaseAndRejectsMissingOrForeignFiles() throws {
        let dir = try TemporaryDirectory("history-tests")
        defer { dir.remove() }
        let path = dir.path + "/h.db"
        let store = try HistoryStore(path: path)
        try store.append([HistoryRow(tag: "t", timestamp: 1, value: .text("x"))])
        store.close()
        let reader = try HistoryReader(path: path)
        #expect(try reader.samples(tag: "t", since: 0).map(\.value) == [.text("x")])
        #expect(try reader.stats().rows == 1)

        if let error = #expect(
            throws: (any Error).self, performing: { try HistoryReader(path: dir.path + "/missing.db") })
        {
            #expect("\(error)".contains("missing.db"), "\(error)")
        }
        let foreign = dir.path + "/foreign.db"
        try RawDatabase(foreign).execute("CREATE TABLE x (a)")
        if let error = #expect(throws: (any Error).self, performing: { try HistoryReader(path: foreign) }) {
            #expect("\(error)".contains("not an EdgePilot history database"), "\(error)")
        }
    }
}

@Suite struct HistoryCSVTests {
    @Test("Timestamps are RFC 3339 UTC with microseconds")
    func timestampsAreRFC3339UTCWithMicroseconds() {
        #expect(HistoryCSV.timestamp(0) == "1970-01-01T00:00:00.000000Z")
        #expect(HistoryCSV.timestamp(1_709_210_096_000_001) == "2024-02-29T12:34:56.000001Z")
        #expect(HistoryCSV.timestamp(-1) == "1969-12-31T23:59:59.999999Z")
        #expect(HistoryCSV.timestamp(951_782_400_000_000) == "2000-02-29T00:00:00.000000Z")
    }

    @Test("Lines quote fields that need it")
    func linesQuoteFieldsThatNeedIt() {
        #expect(HistoryCSV.header == "timestamp,tag,value,quality")
        #expect(
            HistoryCSV.line(HistoryRow(tag: "Tank1.Level", timestamp: 0, value: .real(1.5)))
                == "1970-01-01T00:00:00.000000Z,Tank1.Level,1.5,good")
        #expect(
            HistoryCSV.line(
                HistoryRow(tag: "Batch", timestamp: 0, value: .text("a,\"b\""), quality: Quality(.exception, detail: 2))
            ) == "1970-01-01T00:00:00.000000Z,Batch,\"a,\"\"b\"\"\",exception_2")
        #expect(
            HistoryCSV.line(HistoryRow(tag: "t", timestamp: 0, value: .null)) == "1970-01-01T00:00:00.000000Z,t,,good")
    }
}
