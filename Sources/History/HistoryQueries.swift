import Foundation
import Tags

/// The read queries shared by `HistoryStore` (the writer's connection) and `HistoryReader` (a reader's connection).
enum HistoryQueries {
    static func samples(
        _ db: SQLiteConnection, tag: String, since: Int64, until: Int64, limit: Int
    ) throws -> [HistoryRow] {
        // The (tag_id, ts) index also holds the rowid, so this walks one index range in order without sorting.
        let s = try db.statement(
            """
            SELECT ts, value, quality, quality_detail FROM samples
            WHERE tag_id = (SELECT id FROM tags WHERE name = ?1) AND ts >= ?2 AND ts < ?3
            ORDER BY ts, id LIMIT ?4
            """)
        defer { s.reset() }
        s.bind(1, tag)
        s.bind(2, since)
        s.bind(3, until)
        s.bind(4, Int64(max(0, limit)))
        var rows: [HistoryRow] = []
        while try s.step() {
            let code = Quality.Code(rawValue: UInt8(truncatingIfNeeded: s.int64(2))) ?? .decodeError
            rows.append(
                HistoryRow(
                    tag: tag, timestamp: s.int64(0), value: s.value(1),
                    quality: Quality(code, detail: UInt32(truncatingIfNeeded: s.int64(3)))))
        }
        return rows
    }

    /// The last sample of `tag` stamped before `before`: the value still held at that time, since history stores
    /// changes by exception. One index probe, walked backwards.
    static func lastSample(_ db: SQLiteConnection, tag: String, before: Int64) throws -> HistoryRow? {
        let s = try db.statement(
            """
            SELECT ts, value, quality, quality_detail FROM samples
            WHERE tag_id = (SELECT id FROM tags WHERE name = ?1) AND ts < ?2
            ORDER BY ts DESC, id DESC LIMIT 1
            """)
        defer { s.reset() }
        s.bind(1, tag)
        s.bind(2, before)
        guard try s.step() else { return nil }
        let code = Quality.Code(rawValue: UInt8(truncatingIfNeeded: s.int64(2))) ?? .decodeError
        return HistoryRow(
            tag: tag, timestamp: s.int64(0), value: s.value(1),
            quality: Quality(code, detail: UInt32(truncatingIfNeeded: s.int64(3))))
    }

    static func audit(_ db: SQLiteConnection, since: Int64, limit: Int) throws -> [AuditRecord] {
        let s = try db.statement(
            """
            SELECT id, ts, source, tag, value, result, detail FROM audit
            WHERE ts >= ?1 ORDER BY ts, id LIMIT ?2
            """)
        defer { s.reset() }
        s.bind(1, since)
        s.bind(2, Int64(max(0, limit)))
        var records: [AuditRecord] = []
        while try s.step() {
            records.append(
                AuditRecord(
                    id: s.int64(0), timestamp: s.int64(1), source: s.text(2), tag: s.text(3), value: s.text(4),
                    result: s.text(5), detail: s.text(6)))
        }
        return records
    }

    static func tagNames(_ db: SQLiteConnection) throws -> [String] {
        let s = try db.statement("SELECT name FROM tags ORDER BY name")
        defer { s.reset() }
        var names: [String] = []
        while try s.step() { names.append(s.text(0)) }
        return names
    }

    static func stats(_ db: SQLiteConnection, schemaVersion: Int32) throws -> HistoryStats {
        let rows: Int64
        let auditRows: Int64
        if schemaVersion >= 2 {
            rows = try db.scalarInt("SELECT value FROM counters WHERE name = 'sample_rows'") ?? 0
            auditRows = try db.scalarInt("SELECT value FROM counters WHERE name = 'audit_rows'") ?? 0
        } else {
            // Only a file the agent has not yet upgraded gets here; its counters arrive with migration 2.
            rows = try db.scalarInt("SELECT count(*) FROM samples") ?? 0
            auditRows = try db.scalarInt("SELECT count(*) FROM audit") ?? 0
        }
        return HistoryStats(
            rows: rows, auditRows: auditRows, bytes: try usedBytes(db),
            oldestTimestamp: try db.scalarInt("SELECT ts FROM samples ORDER BY id LIMIT 1"))
    }

    /// Pages holding data (free pages excluded: they are reused or vacuumed away) plus the WAL on disk.
    static func usedBytes(_ db: SQLiteConnection) throws -> Int64 {
        let pageSize = try db.scalarInt("PRAGMA page_size") ?? 4096
        let pages = try db.scalarInt("PRAGMA page_count") ?? 0
        let free = try db.scalarInt("PRAGMA freelist_count") ?? 0
        return (pages - free) * pageSize + fileSize(db.path + "-wal")
    }

    static func fileSize(_ path: String) -> Int64 {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
            let size = attributes[.size] as? NSNumber
        else { return 0 }
        return size.int64Value
    }
}

/// Wall-clock time in the form history stores it.
public enum HistoryClock {
    /// Microseconds since the Unix epoch (UTC).
    public static func now() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
    }
}
