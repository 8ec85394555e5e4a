/// The versions of the history schema, oldest first.
///
/// `PRAGMA user_version` holds the version a file is at. Opening a file applies every later migration, in order,
/// inside one write transaction, so a file is always at exactly one version even if the process dies mid-upgrade.
/// To add tables (e.g. the Sparkplug store-and-forward queue), append a migration with the next version number;
/// never edit a migration that has shipped.
public enum HistorySchema {
    struct Migration {
        let version: Int32
        let summary: String
        let sql: String
    }

    // samples.tag_id deliberately has no REFERENCES clause: ids only ever come from HistoryStore.tagID(for:) and
    // tags are never deleted, so the per-row parent lookup foreign_keys=ON would add buys nothing and costs about a
    // quarter of ingest throughput (measured with historybench).
    static let migrations: [Migration] = [
        Migration(
            version: 1, summary: "tags, samples, audit",
            sql: """
                CREATE TABLE tags (
                    id INTEGER PRIMARY KEY,
                    name TEXT UNIQUE NOT NULL
                );
                CREATE TABLE samples (
                    id INTEGER PRIMARY KEY,
                    tag_id INTEGER NOT NULL,
                    ts INTEGER NOT NULL,
                    value,
                    quality INTEGER NOT NULL,
                    quality_detail INTEGER NOT NULL DEFAULT 0
                );
                CREATE INDEX samples_tag_ts ON samples(tag_id, ts);
                CREATE TABLE audit (
                    id INTEGER PRIMARY KEY,
                    ts INTEGER NOT NULL,
                    source TEXT NOT NULL,
                    tag TEXT NOT NULL,
                    value TEXT NOT NULL,
                    result TEXT NOT NULL,
                    detail TEXT NOT NULL DEFAULT ''
                );
                CREATE INDEX audit_ts ON audit(ts);
                """),
        // Row counts kept by the writer in the same transactions that change the tables, so `status` never has to
        // COUNT(*) millions of rows. Seeded once from the real counts of an existing file.
        Migration(
            version: 2, summary: "row counters",
            sql: """
                CREATE TABLE counters (
                    name TEXT PRIMARY KEY,
                    value INTEGER NOT NULL
                ) WITHOUT ROWID;
                INSERT INTO counters(name, value) VALUES ('sample_rows', (SELECT count(*) FROM samples));
                INSERT INTO counters(name, value) VALUES ('audit_rows', (SELECT count(*) FROM audit));
                """),
        // Sparkplug store-and-forward: samples waiting for the broker, append-only in time order. AUTOINCREMENT so
        // an id is never reused: a late acknowledgement can then only ever delete the rows it really covers.
        // `size` is each row's share of the byte bound (see ForwardQueue.swift); the counters keep count, bytes and
        // drops exact without scanning the table.
        Migration(
            version: 3, summary: "store-and-forward queue",
            sql: """
                CREATE TABLE forward_queue (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    tag_id INTEGER NOT NULL,
                    ts INTEGER NOT NULL,
                    value,
                    quality INTEGER NOT NULL,
                    quality_detail INTEGER NOT NULL DEFAULT 0,
                    size INTEGER NOT NULL
                );
                INSERT INTO counters(name, value) VALUES ('forward_rows', 0);
                INSERT INTO counters(name, value) VALUES ('forward_bytes', 0);
                INSERT INTO counters(name, value) VALUES ('forward_dropped', 0);
                """),
    ]

    /// The schema version this build writes.
    public static var currentVersion: Int32 { migrations.last!.version }
}
