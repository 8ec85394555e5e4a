import Foundation

/// One plant test as the history file keeps it (schema v5, decision 0034).
public struct PlantTestRecord: Sendable, Equatable, Codable {
    public var id: Int64
    public var loop: String
    /// µs since the Unix epoch; `endedAt` is nil while the test runs (or if the agent stopped during it).
    public var startedAt: Int64
    public var endedAt: Int64?
    public var mvs: [String]
    public var signal: String
    public var seed: UInt64
    /// The peer that started it (`cli:uid=…,user=…`).
    public var startedBy: String
    /// `running`, `completed`, `stopped` or `aborted`.
    public var outcome: String
    public var reason: String
    /// The plan as JSON (amplitudes, switch time, settling time, period …), opaque here.
    public var detail: String

    public init(
        id: Int64 = 0, loop: String, startedAt: Int64, endedAt: Int64? = nil, mvs: [String], signal: String,
        seed: UInt64, startedBy: String, outcome: String, reason: String = "", detail: String = "{}"
    ) {
        self.id = id
        self.loop = loop
        self.startedAt = startedAt
        self.endedAt = endedAt
        self.mvs = mvs
        self.signal = signal
        self.seed = seed
        self.startedBy = startedBy
        self.outcome = outcome
        self.reason = reason
        self.detail = detail
    }
}

/// Plant tests in the history file, beside the model ledger and through its connection (decision 0034).
extension ModelLedger {
    /// Records a test that starts now; returns it with its id.
    public func recordTestStart(_ test: PlantTestRecord) throws -> PlantTestRecord {
        try lock.withLock {
            let s = try store.db.statement(
                """
                INSERT INTO plant_tests(loop, started_at, ended_at, mvs, signal, seed, started_by, outcome, reason,
                    detail) VALUES (?1, ?2, NULL, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                """)
            s.bind(1, test.loop)
            s.bind(2, test.startedAt)
            s.bind(3, test.mvs.joined(separator: ","))
            s.bind(4, test.signal)
            s.bind(5, Int64(bitPattern: test.seed))
            s.bind(6, test.startedBy)
            s.bind(7, test.outcome)
            s.bind(8, test.reason)
            s.bind(9, test.detail)
            try store.transaction { try s.run() }
            var stored = test
            stored.id = store.db.lastInsertRowID
            return stored
        }
    }

    /// Records how test `id` ended.
    public func recordTestEnd(id: Int64, endedAt: Int64, outcome: String, reason: String, detail: String?) throws {
        try lock.withLock {
            let s = try store.db.statement(
                "UPDATE plant_tests SET ended_at = ?2, outcome = ?3, reason = ?4, detail = coalesce(?5, detail) "
                    + "WHERE id = ?1")
            s.bind(1, id)
            s.bind(2, endedAt)
            s.bind(3, outcome)
            s.bind(4, reason)
            if let detail { s.bind(5, detail) } else { s.bindNull(5) }
            try store.transaction { try s.run() }
        }
    }

    /// The loop's tests, newest first, at most `limit`.
    public func tests(loop: String, limit: Int = 100) throws -> [PlantTestRecord] {
        try lock.withLock { try PlantTestRecord.query(store.db, loop: loop, id: nil, limit: limit) }
    }

    /// Test `id`, whichever loop ran it.
    public func test(id: Int64) throws -> PlantTestRecord? {
        try lock.withLock { try PlantTestRecord.query(store.db, loop: nil, id: id, limit: 1).first }
    }
}

extension HistoryReader {
    /// Test `id` (nil when the file has none, or predates schema v5).
    public func plantTest(id: Int64) throws -> PlantTestRecord? {
        guard schemaVersion >= 5 else { return nil }
        return try PlantTestRecord.query(connection, loop: nil, id: id, limit: 1).first
    }
}

extension PlantTestRecord {
    static func query(_ db: SQLiteConnection, loop: String?, id: Int64?, limit: Int) throws -> [PlantTestRecord] {
        let s = try db.statement(
            """
            SELECT id, loop, started_at, ended_at, mvs, signal, seed, started_by, outcome, reason, detail
            FROM plant_tests WHERE (?1 IS NULL OR loop = ?1) AND (?2 IS NULL OR id = ?2) ORDER BY id DESC LIMIT ?3
            """)
        defer { s.reset() }
        if let loop { s.bind(1, loop) } else { s.bindNull(1) }
        if let id { s.bind(2, id) } else { s.bindNull(2) }
        s.bind(3, Int64(max(1, limit)))
        var out: [PlantTestRecord] = []
        while try s.step() {
            out.append(
                PlantTestRecord(
                    id: s.int64(0), loop: s.text(1), startedAt: s.int64(2), endedAt: s.isNull(3) ? nil : s.int64(3),
                    mvs: s.text(4).split(separator: ",").map(String.init), signal: s.text(5),
                    seed: UInt64(bitPattern: s.int64(6)), startedBy: s.text(7), outcome: s.text(8), reason: s.text(9),
                    detail: s.text(10)))
        }
        return out
    }
}
