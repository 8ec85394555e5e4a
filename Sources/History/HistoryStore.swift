import CSQLite
import Foundation
import Tags

/// The history database: samples, tag names and the audit trail in one SQLite file, opened for writing.
///
/// One instance owns one SQLite connection opened without SQLite's own mutexes, so it must be used from one thread
/// at a time; in the agent only `HistoryWriter`'s thread touches it. Readers (the CLI, `status`) use a
/// `HistoryReader` on their own connection: in WAL mode they read a consistent snapshot and never block the writer.
///
/// Durability: every commit is in WAL mode with `synchronous=FULL` by default, so a committed batch survives a
/// process kill and a power loss; a kill at any moment leaves the file intact (see docs/decisions/0002).
public final class HistoryStore {
    /// How much a commit waits for the disk.
    public enum Synchronous: String, Sendable {
        /// fsync the WAL on every commit: committed data survives power loss.
        case full = "FULL"
        /// fsync only at checkpoints: survives a process crash, but a power loss may lose the last commits.
        case normal = "NORMAL"
    }

    /// Tuning that rarely needs changing; the defaults suit the agent.
    public struct Options: Sendable {
        public var synchronous: Synchronous
        /// How long a statement waits for a lock held by another connection before failing.
        public var busyTimeoutMilliseconds: Int32
        /// The WAL is checkpointed after this many pages and cut back to this size when it restarts; it counts
        /// toward the size limit, so keep it well below `maxBytes`.
        public var walCheckpointPages: Int
        /// Rows deleted per retention transaction; bounds how long one retention step holds up ingest.
        public var retentionChunkRows: Int

        public init(
            synchronous: Synchronous = .full, busyTimeoutMilliseconds: Int32 = 5000, walCheckpointPages: Int = 1000,
            retentionChunkRows: Int = 5000
        ) {
            self.synchronous = synchronous
            self.busyTimeoutMilliseconds = busyTimeoutMilliseconds
            self.walCheckpointPages = walCheckpointPages
            self.retentionChunkRows = retentionChunkRows
        }
    }

    public let path: String
    public let options: Options
    let db: SQLiteConnection
    private var tagIDs: [String: Int64] = [:]
    private var lastTag: (name: String, id: Int64) = ("", 0)
    private var trimmingForSize = false

    /// Opens (creating if needed, with its parent directory) and upgrades the database at `path`.
    public init(path: String, options: Options = Options()) throws {
        self.path = path
        self.options = options
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty && !FileManager.default.fileExists(atPath: directory) {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            } catch {
                throw HistoryError(
                    path: path, operation: "create directory \(directory)", code: 0, message: "\(error)")
            }
        }
        db = try SQLiteConnection(path: path, readOnly: false)
        db.setBusyTimeout(milliseconds: options.busyTimeoutMilliseconds)
        try configure()
        try migrate()
        try convertToIncrementalVacuumIfNeeded()
    }

    deinit { db.close() }

    /// Closes the connection; later calls fail with a "closed" error.
    public func close() { db.close() }

    // MARK: - Samples

    /// Appends rows in one transaction: all of them are committed, or none.
    public func append<Rows: Collection>(_ rows: Rows) throws where Rows.Element == HistoryRow {
        guard !rows.isEmpty else { return }
        try transaction {
            let insert = try insertStatement()
            for row in rows {
                try insertSample(
                    insert, tagID: try tagID(for: row.tag), timestamp: row.timestamp, value: row.value,
                    quality: row.quality)
            }
            try addToCounter("sample_rows", Int64(rows.count))
        }
    }

    /// The id of a tag name, created on first use; cached, so only the first call per name touches the database.
    public func tagID(for name: String) throws -> Int64 {
        if name == lastTag.name && lastTag.id != 0 { return lastTag.id }
        if let id = tagIDs[name] {
            lastTag = (name, id)
            return id
        }
        let id = try transaction { () throws -> Int64 in
            if let existing = try lookupTag(name) { return existing }
            let insert = try db.statement("INSERT INTO tags(name) VALUES (?1)")
            insert.bind(1, name)
            try insert.run()
            return db.lastInsertRowID
        }
        tagIDs[name] = id
        lastTag = (name, id)
        return id
    }

    /// Samples of `tag` with `since` ≤ timestamp < `until`, oldest first, at most `limit`.
    public func samples(tag: String, since: Int64, until: Int64 = .max, limit: Int = 100_000) throws -> [HistoryRow] {
        try HistoryQueries.samples(db, tag: tag, since: since, until: until, limit: limit)
    }

    // MARK: - Audit

    /// Stores one audit record and returns its id.
    @discardableResult
    public func recordAudit(_ record: AuditRecord) throws -> Int64 {
        try transaction {
            let s = try db.statement(
                "INSERT INTO audit(ts, source, tag, value, result, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            s.bind(1, record.timestamp)
            s.bind(2, record.source)
            s.bind(3, record.tag)
            s.bind(4, record.value)
            s.bind(5, record.result)
            s.bind(6, record.detail)
            try s.run()
            let id = db.lastInsertRowID
            try addToCounter("audit_rows", 1)
            return id
        }
    }

    /// Audit records with timestamp ≥ `since`, oldest first.
    public func audit(since: Int64, limit: Int = 10_000) throws -> [AuditRecord] {
        try HistoryQueries.audit(db, since: since, limit: limit)
    }

    // MARK: - Size and retention

    /// Row counts, size in use and the oldest sample; costs a few single-row lookups, never a table scan.
    public func stats() throws -> HistoryStats {
        try HistoryQueries.stats(db, schemaVersion: HistorySchema.currentVersion)
    }

    /// Deletes audit rows beyond `audit`'s own limits, samples older than `maxAgeSeconds` and, while the database is
    /// larger than `maxBytes`, the oldest samples, in transactions of at most `options.retentionChunkRows` rows each;
    /// then returns freed pages to the file system. Runs until done; `HistoryWriter` instead calls `retentionStep`
    /// between batches.
    @discardableResult
    public func enforceRetention(
        maxAgeSeconds: Int?, maxBytes: Int64?, audit: AuditRetention = AuditRetention(),
        now: Int64 = HistoryClock.now()
    ) throws -> RetentionResult {
        var result = RetentionResult()
        while try retentionStep(
            maxAgeSeconds: maxAgeSeconds, maxBytes: maxBytes, audit: audit, now: now, result: &result)
        {}
        try finishRetention()
        result.bytesAfter = try HistoryQueries.usedBytes(db)
        return result
    }

    /// Deletes at most one chunk; returns whether more retention work remains.
    ///
    /// Audit rows go by their own limits first (count, then age), so a flood of them is trimmed before the size
    /// limit is looked at and can never make the size limit delete plant history (issue 15, Medium 6). The size
    /// limit deletes samples; audit rows only once no sample is left, and those are counted apart
    /// (`deletedAuditForSize`) so that loss is never silent.
    func retentionStep(
        maxAgeSeconds: Int?, maxBytes: Int64?, audit limits: AuditRetention = AuditRetention(), now: Int64,
        result: inout RetentionResult
    ) throws -> Bool {
        let chunk = Int64(max(1, options.retentionChunkRows))
        if let maxRows = limits.maxRows {
            let rows = try db.scalarInt("SELECT value FROM counters WHERE name = 'audit_rows'") ?? 0
            if rows > Int64(maxRows) {
                let deleted = try deleteChunk(
                    "DELETE FROM audit WHERE id IN (SELECT id FROM audit ORDER BY id LIMIT ?1)", counter: "audit_rows",
                    [min(chunk, rows - Int64(maxRows))])
                result.deletedAudit += deleted
                if deleted > 0 { return true }
            }
        }
        if let auditAge = limits.maxAgeSeconds {
            let cutoff = now - Int64(auditAge) * 1_000_000
            let deleted = try deleteChunk(
                "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE ts < ?2 ORDER BY ts LIMIT ?1)",
                counter: "audit_rows", [chunk, cutoff])
            result.deletedAudit += deleted
            if deleted > 0 { return true }
        }
        if let maxAgeSeconds {
            let cutoff = now - Int64(maxAgeSeconds) * 1_000_000
            // Only the oldest `chunk` rows in insertion order are examined, so a step costs the same on a table of
            // any size; rows written with out-of-order timestamps go once the rows written before them have gone.
            // Audit rows are not touched here: they have their own age limit (`audit.maxAgeSeconds`).
            let samples = try deleteChunk(
                """
                DELETE FROM samples WHERE id IN
                (SELECT id FROM (SELECT id, ts FROM samples ORDER BY id LIMIT ?1) WHERE ts < ?2)
                """, counter: "sample_rows", [chunk, cutoff])
            result.deletedSamples += samples
            if samples > 0 { return true }
        }
        if let maxBytes {
            let size = try HistoryQueries.usedBytes(db)
            // Trim to 95 % once over the limit, so the next few batches do not each trigger another round.
            if size > maxBytes { trimmingForSize = true }
            guard trimmingForSize, size > maxBytes - maxBytes / 20 else {
                trimmingForSize = false
                return false
            }
            let (samples, audit) = try transaction { () throws -> (Int64, Int64) in
                let s = try db.statement(
                    "DELETE FROM samples WHERE id IN (SELECT id FROM samples ORDER BY id LIMIT ?1)")
                s.bind(1, chunk)
                try s.run()
                let samples = Int64(db.changes)
                var audit: Int64 = 0
                if samples == 0 {
                    // No plant history left, and still over: audit rows larger than the whole limit (a limit set
                    // below what `audit_max_rows` needs). The file must not grow without bound; counted apart.
                    let a = try db.statement(
                        "DELETE FROM audit WHERE id IN (SELECT id FROM audit ORDER BY id LIMIT ?1)")
                    a.bind(1, chunk)
                    try a.run()
                    audit = Int64(db.changes)
                }
                try addToCounter("sample_rows", -samples)
                try addToCounter("audit_rows", -audit)
                try db.statement("PRAGMA incremental_vacuum").run()
                return (samples, audit)
            }
            result.deletedSamples += samples
            result.deletedAudit += audit
            result.deletedAuditForSize += audit
            if samples + audit == 0 {
                trimmingForSize = false
                return false
            }
            return true
        }
        return false
    }

    /// One retention DELETE (its parameters bound in order) in its own transaction, with `counter` kept in step and
    /// the freed pages returned to the file; the number of rows deleted.
    private func deleteChunk(_ sql: String, counter: String, _ parameters: [Int64]) throws -> Int64 {
        try transaction { () throws -> Int64 in
            let s = try db.statement(sql)
            for (i, value) in parameters.enumerated() { s.bind(Int32(i + 1), value) }
            try s.run()
            let n = Int64(db.changes)
            try addToCounter(counter, -n)
            if n > 0 { try db.statement("PRAGMA incremental_vacuum").run() }
            return n
        }
    }

    /// After a retention pass: copies the WAL into the database and cuts the WAL file to zero bytes, so the space
    /// retention freed is really returned. Waits at most 100 ms for readers; if they are busy the WAL is simply
    /// cut back later by `journal_size_limit`.
    func finishRetention() throws {
        guard let handle = db.handle else { return }
        sqlite3_busy_timeout(handle, 100)
        defer { sqlite3_busy_timeout(handle, options.busyTimeoutMilliseconds) }
        let rc = sqlite3_wal_checkpoint_v2(handle, nil, SQLITE_CHECKPOINT_TRUNCATE, nil, nil)
        if rc != SQLITE_OK && rc & 0xFF != SQLITE_BUSY && rc & 0xFF != SQLITE_LOCKED {
            throw db.error("checkpoint", rc)
        }
    }

    // MARK: - Writer support

    /// Runs `body` in one write transaction, or inside the caller's if one is open. On error everything is rolled
    /// back and the tag-id cache forgotten (it may hold ids of tags inserted by the rolled-back transaction).
    func transaction<T>(_ body: () throws -> T) throws -> T {
        if db.inTransaction { return try body() }
        try db.statement("BEGIN IMMEDIATE").run()
        do {
            let value = try body()
            try db.statement("COMMIT").run()
            return value
        } catch {
            if db.inTransaction { try? db.statement("ROLLBACK").run() }
            tagIDs.removeAll()
            lastTag = ("", 0)
            throw error
        }
    }

    func insertStatement() throws -> SQLiteStatement {
        try db.statement("INSERT INTO samples(tag_id, ts, value, quality, quality_detail) VALUES (?1, ?2, ?3, ?4, ?5)")
    }

    @inline(__always)
    func insertSample(_ s: SQLiteStatement, tagID: Int64, timestamp: Int64, value: HistoryValue, quality: Quality)
        throws
    {
        s.bind(1, tagID)
        s.bind(2, timestamp)
        s.bind(3, value)
        s.bind(4, Int64(quality.code.rawValue))
        s.bind(5, Int64(quality.detail))
        try s.runKeepingBindings()
    }

    func addToCounter(_ name: String, _ delta: Int64) throws {
        guard delta != 0 else { return }
        let s = try db.statement("UPDATE counters SET value = value + ?2 WHERE name = ?1")
        s.bind(1, name)
        s.bind(2, delta)
        try s.run()
    }

    // MARK: - Opening

    private func lookupTag(_ name: String) throws -> Int64? {
        let s = try db.statement("SELECT id FROM tags WHERE name = ?1")
        defer { s.reset() }
        s.bind(1, name)
        return try s.step() ? s.int64(0) : nil
    }

    private func configure() throws {
        // auto_vacuum can only be chosen before the first table exists; INCREMENTAL lets retention give space back.
        if try db.scalarInt("PRAGMA page_count") == 0 {
            try db.execute("PRAGMA auto_vacuum = INCREMENTAL", operation: "set auto_vacuum")
        }
        let mode = try db.scalarText("PRAGMA journal_mode = WAL")
        guard mode?.lowercased() == "wal" else {
            throw HistoryError(
                path: path, operation: "enable WAL", code: 0,
                message: "journal_mode is \(mode ?? "unknown"), expected wal (is the file on a network file system?)")
        }
        let pageSize = try db.scalarInt("PRAGMA page_size") ?? 4096
        try db.execute(
            """
            PRAGMA synchronous = \(options.synchronous.rawValue);
            PRAGMA foreign_keys = ON;
            PRAGMA wal_autocheckpoint = \(max(1, options.walCheckpointPages));
            PRAGMA journal_size_limit = \(Int64(max(1, options.walCheckpointPages)) * pageSize);
            """, operation: "configure")
    }

    private func migrate() throws {
        let latest = HistorySchema.currentVersion
        var version = Int32(try db.scalarInt("PRAGMA user_version") ?? 0)
        guard version != latest else { return }
        try checkNotNewer(version)
        try transaction {
            // Another process may have upgraded the file while we waited for the write lock.
            version = Int32(try db.scalarInt("PRAGMA user_version") ?? 0)
            try checkNotNewer(version)
            for migration in HistorySchema.migrations where migration.version > version {
                try db.execute(
                    migration.sql, operation: "migrate to schema version \(migration.version) (\(migration.summary))")
            }
            if version < latest { try db.execute("PRAGMA user_version = \(latest)", operation: "set user_version") }
        }
    }

    private func checkNotNewer(_ version: Int32) throws {
        guard version <= HistorySchema.currentVersion else {
            throw HistoryError(
                path: path, operation: "open", code: 0,
                message:
                    "schema version \(version) is newer than this build supports (\(HistorySchema.currentVersion));"
                    + " refusing to touch it")
        }
    }

    /// A file created without auto_vacuum (by an external tool, or an old build) is rebuilt once so retention can
    /// shrink it; VACUUM rewrites the whole file, which is acceptable once at start-up.
    private func convertToIncrementalVacuumIfNeeded() throws {
        guard try db.scalarInt("PRAGMA auto_vacuum") != 2 else { return }
        try db.execute("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;", operation: "enable incremental auto_vacuum")
    }
}
