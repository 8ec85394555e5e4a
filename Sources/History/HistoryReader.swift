import Foundation

/// A read-only view of the history database for the threads that answer the CLI and `status`.
///
/// It has its own SQLite connection opened read-only; in WAL mode each query sees the last committed state and
/// neither waits for nor delays the writer. Like `HistoryStore`, one instance must be used from one thread at a time.
public final class HistoryReader {
    public let path: String
    /// The schema version of the file when it was opened.
    public let schemaVersion: Int32
    let db: SQLiteConnection
    var connection: SQLiteConnection { db }

    /// Opens an existing history database; fails with a clear error if it does not exist or is not one.
    public init(path: String, busyTimeoutMilliseconds: Int32 = 2000) throws {
        self.path = path
        guard FileManager.default.fileExists(atPath: path) else {
            throw HistoryError(path: path, operation: "open read-only", code: 0, message: "no such file")
        }
        db = try SQLiteConnection(path: path, readOnly: true)
        db.setBusyTimeout(milliseconds: busyTimeoutMilliseconds)
        let version = Int32(try db.scalarInt("PRAGMA user_version") ?? 0)
        guard version >= 1 else {
            throw HistoryError(
                path: path, operation: "open read-only", code: 0,
                message: "not an EdgePilot history database (schema version 0)")
        }
        guard version <= HistorySchema.currentVersion else {
            throw HistoryError(
                path: path, operation: "open read-only", code: 0,
                message: "schema version \(version) is newer than this build supports (\(HistorySchema.currentVersion))"
            )
        }
        schemaVersion = version
    }

    deinit { db.close() }

    public func close() { db.close() }

    /// Samples of `tag` with `since` ≤ timestamp < `until`, oldest first, at most `limit`.
    public func samples(tag: String, since: Int64, until: Int64 = .max, limit: Int = 100_000) throws -> [HistoryRow] {
        try HistoryQueries.samples(db, tag: tag, since: since, until: until, limit: limit)
    }

    /// The last sample of `tag` before `before` (the value held at that time), or nil when there is none.
    public func lastSample(tag: String, before: Int64) throws -> HistoryRow? {
        try HistoryQueries.lastSample(db, tag: tag, before: before)
    }

    /// Audit records with timestamp ≥ `since`, oldest first.
    public func audit(since: Int64, limit: Int = 10_000) throws -> [AuditRecord] {
        try HistoryQueries.audit(db, since: since, limit: limit)
    }

    /// Every tag name that has history, sorted.
    public func tagNames() throws -> [String] { try HistoryQueries.tagNames(db) }

    /// Row counts, size in use and the oldest sample, without scanning any table.
    public func stats() throws -> HistoryStats { try HistoryQueries.stats(db, schemaVersion: schemaVersion) }
}
