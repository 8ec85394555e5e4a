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
        // The model ledger (decision 0031): every model a loop ever had, one row per (loop, content hash), and every
        // activation in order, so "what ran when, and who put it there" is a query. `model_config` remembers which
        // version the configuration file last held per loop, so a restart or reload can tell "the YAML model
        // changed" from "the same YAML, with a ledger version activated since". Retention never touches them.
        Migration(
            version: 4, summary: "model ledger",
            sql: """
                CREATE TABLE model_versions (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    loop TEXT NOT NULL,
                    hash TEXT NOT NULL,
                    source TEXT NOT NULL,
                    content TEXT NOT NULL,
                    window TEXT,
                    data_hash TEXT,
                    fit REAL,
                    fit_detail TEXT,
                    created_at INTEGER NOT NULL,
                    created_by TEXT NOT NULL,
                    note TEXT NOT NULL DEFAULT '',
                    UNIQUE (loop, hash)
                );
                CREATE TABLE model_activations (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    loop TEXT NOT NULL,
                    version INTEGER NOT NULL REFERENCES model_versions(id),
                    previous INTEGER,
                    ts INTEGER NOT NULL,
                    activated_by TEXT NOT NULL,
                    action TEXT NOT NULL,
                    forced INTEGER NOT NULL DEFAULT 0,
                    note TEXT NOT NULL DEFAULT ''
                );
                CREATE INDEX model_activations_loop ON model_activations(loop, id);
                CREATE TABLE model_config (
                    loop TEXT PRIMARY KEY,
                    version INTEGER NOT NULL
                ) WITHOUT ROWID;
                """),
        // Plant tests run by the agent (decision 0034): one row per test, written when it starts and completed when it
        // ends, so `identify --test ID` finds exactly its window. `detail` is the whole plan as JSON (amplitudes,
        // switch time and probability, settling time, period), for reproduction. Retention never touches it.
        Migration(
            version: 5, summary: "plant tests",
            sql: """
                CREATE TABLE plant_tests (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    loop TEXT NOT NULL,
                    started_at INTEGER NOT NULL,
                    ended_at INTEGER,
                    mvs TEXT NOT NULL,
                    signal TEXT NOT NULL,
                    seed INTEGER NOT NULL,
                    started_by TEXT NOT NULL,
                    outcome TEXT NOT NULL,
                    reason TEXT NOT NULL DEFAULT '',
                    detail TEXT NOT NULL DEFAULT '{}'
                );
                CREATE INDEX plant_tests_loop ON plant_tests(loop, id);
                """),
        // The shadow model per loop (decision 0036), so a shadow set by `loop NAME model shadow` outlives a restart
        // or a rebuilding reload: `version` is the one in shadow (NULL: off), `config_version` the configuration's
        // `shadow:` when last read (NULL: none), which tells "the file's shadow changed" from "the same file, with
        // the shadow changed by command since", as `model_config` does for the model. Kept apart from the other
        // migrations so it can be renumbered alone.
        Migration(
            version: 6, summary: "model shadow",
            sql: """
                CREATE TABLE model_shadow (
                    loop TEXT PRIMARY KEY,
                    version INTEGER REFERENCES model_versions(id),
                    config_version INTEGER,
                    ts INTEGER NOT NULL,
                    set_by TEXT NOT NULL
                ) WITHOUT ROWID;
                """),
    ]

    /// The schema version this build writes.
    public static var currentVersion: Int32 { migrations.last!.version }
}
