import Foundation

/// One model a loop has had: its content (opaque here; the loop runtime writes and reads it) and its provenance.
public struct ModelVersion: Sendable, Equatable, Codable {
    public var id: Int64
    public var loop: String
    /// Hash of the canonical content: the same model registered twice is one version.
    public var hash: String
    /// `file` (the configuration's `model:` block) or `identify` (a candidate from `edgepilot identify`).
    public var source: String
    public var content: String
    /// The history window the model was identified on, as identify wrote it; nil for a model typed by hand.
    public var window: String?
    public var dataHash: String?
    /// The lowest validation fit % over the CVs, as identify recorded it; nil when none was recorded.
    public var fitPercent: Double?
    /// The fit per CV, as recorded (e.g. "level1 96.4 %, level2 95.9 %").
    public var fitDetail: String?
    /// µs since the Unix epoch.
    public var createdAt: Int64
    /// The peer that registered it (`cli:uid=…,user=…`), or `config` for the configuration's model.
    public var createdBy: String
    public var note: String

    public init(
        id: Int64 = 0, loop: String, hash: String, source: String, content: String, window: String? = nil,
        dataHash: String? = nil, fitPercent: Double? = nil, fitDetail: String? = nil, createdAt: Int64,
        createdBy: String, note: String = ""
    ) {
        self.id = id
        self.loop = loop
        self.hash = hash
        self.source = source
        self.content = content
        self.window = window
        self.dataHash = dataHash
        self.fitPercent = fitPercent
        self.fitDetail = fitDetail
        self.createdAt = createdAt
        self.createdBy = createdBy
        self.note = note
    }
}

/// One activation of a version: which, replacing which, when, by whom and why.
public struct ModelActivation: Sendable, Equatable, Codable {
    public var id: Int64
    public var loop: String
    public var version: Int64
    /// The version active before this one (nil for the loop's first); what `rollback` returns to.
    public var previous: Int64?
    public var timestamp: Int64
    public var activatedBy: String
    /// `config` (the configuration's model at start or reload), `activate` or `rollback`.
    public var action: String
    /// Activated with `--force` past a refusal (fit below the threshold).
    public var forced: Bool
    public var note: String
}

/// The model ledger in the history file (schema v4, decision 0031): versions, activations, and the version each
/// loop's configuration last held; since v5 also the version each loop runs in shadow (decision 0036).
///
/// It has its own connection to the history file, so the CLI's requests never queue behind the history writer's
/// batches (WAL: readers and this writer share the file; a write waits at most the busy timeout for the history
/// writer's commit). Calls are serialised by a lock and are never made on a loop thread.
public final class ModelLedger: @unchecked Sendable {
    let store: HistoryStore
    let lock = NSLock()

    /// Opens (creating and upgrading as `HistoryStore` does) the history file at `path`.
    public init(path: String) throws {
        store = try HistoryStore(path: path)
    }

    public func close() { lock.withLock { store.close() } }

    /// Registers `candidate` unless the loop already has a version with its hash; returns the version in the ledger
    /// and whether it is new. The existing version keeps its provenance (the first registration wins).
    public func register(_ candidate: ModelVersion) throws -> (version: ModelVersion, created: Bool) {
        try lock.withLock {
            try store.transaction {
                if let existing = try store.modelVersion(loop: candidate.loop, hash: candidate.hash) {
                    return (existing, false)
                }
                let s = try store.db.statement(
                    """
                    INSERT INTO model_versions(loop, hash, source, content, window, data_hash, fit, fit_detail,
                        created_at, created_by, note) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                    """)
                s.bind(1, candidate.loop)
                s.bind(2, candidate.hash)
                s.bind(3, candidate.source)
                s.bind(4, candidate.content)
                bindOptional(s, 5, candidate.window)
                bindOptional(s, 6, candidate.dataHash)
                if let fit = candidate.fitPercent, fit.isFinite { s.bind(7, fit) } else { s.bindNull(7) }
                bindOptional(s, 8, candidate.fitDetail)
                s.bind(9, candidate.createdAt)
                s.bind(10, candidate.createdBy)
                s.bind(11, candidate.note)
                try s.run()
                var stored = candidate
                stored.id = store.db.lastInsertRowID
                return (stored, true)
            }
        }
    }

    /// Every version of `loop`, oldest first.
    public func versions(loop: String) throws -> [ModelVersion] {
        try lock.withLock {
            let s = try store.db.statement(
                "SELECT \(Self.versionColumns) FROM model_versions WHERE loop = ?1 ORDER BY id")
            defer { s.reset() }
            s.bind(1, loop)
            var out: [ModelVersion] = []
            while try s.step() { out.append(HistoryStore.readVersion(s)) }
            return out
        }
    }

    /// Version `id`, whichever loop it belongs to.
    public func version(id: Int64) throws -> ModelVersion? {
        try lock.withLock { try store.modelVersion(id: id) }
    }

    /// The loop's activations, newest first, at most `limit`.
    public func activations(loop: String, limit: Int = 100) throws -> [ModelActivation] {
        try lock.withLock { try store.modelActivations(loop: loop, limit: limit) }
    }

    /// The loop's current activation (its newest), nil when it never had one.
    public func active(loop: String) throws -> ModelActivation? {
        try activations(loop: loop, limit: 1).first
    }

    /// Records that `version` is now the loop's model. `previous` is the version it replaces; a rollback passes the
    /// one before that, so repeated rollbacks walk back through the history instead of toggling.
    @discardableResult
    public func recordActivation(
        loop: String, version: Int64, previous: Int64?, by: String, action: String, forced: Bool = false,
        note: String = "", at timestamp: Int64
    ) throws -> ModelActivation {
        try lock.withLock {
            let s = try store.db.statement(
                """
                INSERT INTO model_activations(loop, version, previous, ts, activated_by, action, forced, note)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                """)
            s.bind(1, loop)
            s.bind(2, version)
            if let previous { s.bind(3, previous) } else { s.bindNull(3) }
            s.bind(4, timestamp)
            s.bind(5, by)
            s.bind(6, action)
            s.bind(7, Int64(forced ? 1 : 0))
            s.bind(8, note)
            try store.transaction { try s.run() }
            return ModelActivation(
                id: store.db.lastInsertRowID, loop: loop, version: version, previous: previous, timestamp: timestamp,
                activatedBy: by, action: action, forced: forced, note: note)
        }
    }

    /// Where a rollback from the current activation goes, and what that activation's own `previous` was (the next
    /// rollback's target); nil when there is nothing to roll back to.
    public func rollbackTarget(loop: String) throws -> (version: Int64, previous: Int64?)? {
        try lock.withLock {
            let recent = try store.modelActivations(loop: loop, limit: 1000)
            guard let current = recent.first, let target = current.previous else { return nil }
            // The activation that last put `target` in force, before the current one: its `previous` comes next.
            let earlier = recent.dropFirst().first { $0.version == target }
            return (target, earlier?.previous)
        }
    }

    /// The version the configuration file held for `loop` when it was last read; nil before the first time.
    public func configVersion(loop: String) throws -> Int64? {
        try lock.withLock { try store.db.scalarText(loop: loop) }
    }

    public func setConfigVersion(loop: String, version: Int64) throws {
        try lock.withLock {
            let s = try store.db.statement(
                "INSERT INTO model_config(loop, version) VALUES (?1, ?2) "
                    + "ON CONFLICT(loop) DO UPDATE SET version = excluded.version")
            s.bind(1, loop)
            s.bind(2, version)
            try store.transaction { try s.run() }
        }
    }

    /// The loop's stored shadow: the version in shadow (nil: off) and the configuration's `shadow:` when last read;
    /// nil when none was ever stored (decision 0036).
    public func shadow(loop: String) throws -> (version: Int64?, configVersion: Int64?)? {
        try lock.withLock {
            let s = try store.db.statement("SELECT version, config_version FROM model_shadow WHERE loop = ?1")
            defer { s.reset() }
            s.bind(1, loop)
            guard try s.step() else { return nil }
            return (s.isNull(0) ? nil : s.int64(0), s.isNull(1) ? nil : s.int64(1))
        }
    }

    /// Stores the loop's shadow `version` (nil: off) and the configuration's `shadow:` it was decided against.
    public func setShadow(loop: String, version: Int64?, configVersion: Int64?, by: String, at timestamp: Int64)
        throws
    {
        try lock.withLock {
            let s = try store.db.statement(
                """
                INSERT INTO model_shadow(loop, version, config_version, ts, set_by) VALUES (?1, ?2, ?3, ?4, ?5)
                ON CONFLICT(loop) DO UPDATE SET version = excluded.version, config_version = excluded.config_version,
                    ts = excluded.ts, set_by = excluded.set_by
                """)
            s.bind(1, loop)
            if let version { s.bind(2, version) } else { s.bindNull(2) }
            if let configVersion { s.bind(3, configVersion) } else { s.bindNull(3) }
            s.bind(4, timestamp)
            s.bind(5, by)
            try store.transaction { try s.run() }
        }
    }

    static let versionColumns =
        "id, loop, hash, source, content, window, data_hash, fit, fit_detail, created_at, created_by, note"

    private func bindOptional(_ s: SQLiteStatement, _ index: Int32, _ text: String?) {
        if let text { s.bind(index, text) } else { s.bindNull(index) }
    }
}

extension SQLiteConnection {
    fileprivate func scalarText(loop: String) throws -> Int64? {
        let s = try statement("SELECT version FROM model_config WHERE loop = ?1")
        defer { s.reset() }
        s.bind(1, loop)
        return try s.step() ? s.int64(0) : nil
    }
}

extension HistoryStore {
    fileprivate func modelVersion(loop: String, hash: String) throws -> ModelVersion? {
        let s = try db.statement(
            "SELECT \(ModelLedger.versionColumns) FROM model_versions WHERE loop = ?1 AND hash = ?2")
        defer { s.reset() }
        s.bind(1, loop)
        s.bind(2, hash)
        return try s.step() ? Self.readVersion(s) : nil
    }

    fileprivate func modelVersion(id: Int64) throws -> ModelVersion? {
        let s = try db.statement("SELECT \(ModelLedger.versionColumns) FROM model_versions WHERE id = ?1")
        defer { s.reset() }
        s.bind(1, id)
        return try s.step() ? Self.readVersion(s) : nil
    }

    fileprivate func modelActivations(loop: String, limit: Int) throws -> [ModelActivation] {
        let s = try db.statement(
            """
            SELECT id, loop, version, previous, ts, activated_by, action, forced, note FROM model_activations
            WHERE loop = ?1 ORDER BY id DESC LIMIT ?2
            """)
        defer { s.reset() }
        s.bind(1, loop)
        s.bind(2, Int64(max(1, limit)))
        var out: [ModelActivation] = []
        while try s.step() {
            out.append(
                ModelActivation(
                    id: s.int64(0), loop: s.text(1), version: s.int64(2), previous: s.isNull(3) ? nil : s.int64(3),
                    timestamp: s.int64(4), activatedBy: s.text(5), action: s.text(6), forced: s.int64(7) != 0,
                    note: s.text(8)))
        }
        return out
    }

    static func readVersion(_ s: SQLiteStatement) -> ModelVersion {
        func optionalText(_ column: Int32) -> String? { s.isNull(column) ? nil : s.text(column) }
        return ModelVersion(
            id: s.int64(0), loop: s.text(1), hash: s.text(2), source: s.text(3), content: s.text(4),
            window: optionalText(5), dataHash: optionalText(6), fitPercent: s.isNull(7) ? nil : s.double(7),
            fitDetail: optionalText(8), createdAt: s.int64(9), createdBy: s.text(10), note: s.text(11))
    }
}

/// The ledger read-only, for commands that work on the history file without the agent (`model validate`).
extension HistoryReader {
    /// Version `id` of `loop`; nil when there is none (or the file predates the ledger, schema < 4).
    public func modelVersion(loop: String, id: Int64) throws -> ModelVersion? {
        guard schemaVersion >= 4 else { return nil }
        let s = try db.statement(
            "SELECT \(ModelLedger.versionColumns) FROM model_versions WHERE id = ?1 AND loop = ?2")
        defer { s.reset() }
        s.bind(1, id)
        s.bind(2, loop)
        return try s.step() ? HistoryStore.readVersion(s) : nil
    }

    /// The version of `loop` its newest activation put in force; nil when it never had one.
    public func activeModelVersion(loop: String) throws -> ModelVersion? {
        guard schemaVersion >= 4 else { return nil }
        let s = try db.statement(
            "SELECT version FROM model_activations WHERE loop = ?1 ORDER BY id DESC LIMIT 1")
        defer { s.reset() }
        s.bind(1, loop)
        guard try s.step() else { return nil }
        let id = s.int64(0)
        s.reset()
        return try modelVersion(loop: loop, id: id)
    }
}
