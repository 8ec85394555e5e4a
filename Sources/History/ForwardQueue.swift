import Tags

/// One sample waiting in the store-and-forward queue.
public struct ForwardRow: Sendable, Equatable {
    /// Queue position: ids only grow, so id order is the order the samples were stored in (time order).
    public var id: Int64
    public var tag: String
    /// Microseconds since the Unix epoch (UTC), as the source reported it.
    public var timestamp: Int64
    public var value: HistoryValue
    public var quality: Quality
}

/// Size of the store-and-forward queue, from counters kept in the same transactions that change it.
public struct ForwardQueueStats: Sendable, Equatable {
    public var rows: Int64
    /// The bytes the bound counts (`ForwardQueue.rowSize` per row), not the file's pages.
    public var bytes: Int64
    /// Samples dropped, oldest first, because the queue hit its bound; never reset.
    public var dropped: Int64

    public init(rows: Int64, bytes: Int64, dropped: Int64) {
        self.rows = rows
        self.bytes = bytes
        self.dropped = dropped
    }
}

/// The store-and-forward queue of the Sparkplug publisher: samples that could not be published because the broker
/// or the Primary Host was unavailable, kept in SQLite rather than memory so an outage of any length costs disk,
/// not RAM, and a restart loses nothing.
///
/// Append-only in time order; rows leave it only when the broker acknowledged the message that carried them
/// (`delete(from:through:)`), or when the bound drops the oldest. Uses the `HistoryStore`'s connection, so one
/// instance belongs to one thread (the publisher's), which opens its own `HistoryStore` on the history file.
extension HistoryStore {
    /// What a row costs against `maxBytes`: the fixed columns plus text bytes. A logical size, so the bound does
    /// not depend on page fill or on what the history tables share the file with.
    public static func forwardRowSize(_ value: HistoryValue) -> Int64 {
        if case .text(let s) = value { return 48 + Int64(s.utf8.count) }
        return 48
    }

    /// Appends `rows` in one transaction, then drops the oldest rows beyond `maxRows` / `maxBytes` (counted in
    /// `ForwardQueueStats.dropped`). Returns how many rows were dropped.
    @discardableResult
    public func enqueueForward<Rows: Collection>(_ rows: Rows, maxRows: Int? = nil, maxBytes: Int64? = nil) throws
        -> Int64 where Rows.Element == HistoryRow
    {
        guard !rows.isEmpty else { return 0 }
        return try transaction {
            let insert = try db.statement(
                "INSERT INTO forward_queue(tag_id, ts, value, quality, quality_detail, size) "
                    + "VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            var bytes: Int64 = 0
            for row in rows {
                let size = Self.forwardRowSize(row.value)
                insert.bind(1, try tagID(for: row.tag))
                insert.bind(2, row.timestamp)
                insert.bind(3, row.value)
                insert.bind(4, Int64(row.quality.code.rawValue))
                insert.bind(5, Int64(row.quality.detail))
                insert.bind(6, size)
                try insert.runKeepingBindings()
                bytes += size
            }
            try addToCounter("forward_rows", Int64(rows.count))
            try addToCounter("forward_bytes", bytes)
            return try trimForward(maxRows: maxRows, maxBytes: maxBytes)
        }
    }

    /// Up to `limit` rows with id > `afterID`, oldest first.
    public func peekForward(after afterID: Int64 = 0, limit: Int) throws -> [ForwardRow] {
        let s = try db.statement(
            """
            SELECT q.id, t.name, q.ts, q.value, q.quality, q.quality_detail FROM forward_queue q
            JOIN tags t ON t.id = q.tag_id WHERE q.id > ?1 ORDER BY q.id LIMIT ?2
            """)
        defer { s.reset() }
        s.bind(1, afterID)
        s.bind(2, Int64(max(0, limit)))
        var out: [ForwardRow] = []
        while try s.step() {
            let code = Quality.Code(rawValue: UInt8(truncatingIfNeeded: s.int64(4))) ?? .decodeError
            out.append(
                ForwardRow(
                    id: s.int64(0), tag: s.text(1), timestamp: s.int64(2), value: s.value(3),
                    quality: Quality(code, detail: UInt32(truncatingIfNeeded: s.int64(5)))))
        }
        return out
    }

    /// Deletes the rows with `first` ≤ id ≤ `last` (those one acknowledged message carried); returns how many.
    @discardableResult
    public func deleteForward(from first: Int64, through last: Int64) throws -> Int64 {
        try transaction {
            let sum = try db.statement(
                "SELECT count(*), coalesce(sum(size), 0) FROM forward_queue WHERE id BETWEEN ?1 AND ?2")
            sum.bind(1, first)
            sum.bind(2, last)
            _ = try sum.step()
            let (count, bytes) = (sum.int64(0), sum.int64(1))
            sum.reset()
            guard count > 0 else { return 0 }
            let delete = try db.statement("DELETE FROM forward_queue WHERE id BETWEEN ?1 AND ?2")
            delete.bind(1, first)
            delete.bind(2, last)
            try delete.run()
            try addToCounter("forward_rows", -count)
            try addToCounter("forward_bytes", -bytes)
            return count
        }
    }

    /// Deletes every row with id ≤ `id`.
    @discardableResult
    public func deleteForward(through id: Int64) throws -> Int64 {
        try deleteForward(from: Int64.min, through: id)
    }

    /// Rows, bytes and drops, from the counters (no table scan).
    public func forwardStats() throws -> ForwardQueueStats {
        ForwardQueueStats(
            rows: try db.scalarInt("SELECT value FROM counters WHERE name = 'forward_rows'") ?? 0,
            bytes: try db.scalarInt("SELECT value FROM counters WHERE name = 'forward_bytes'") ?? 0,
            dropped: try db.scalarInt("SELECT value FROM counters WHERE name = 'forward_dropped'") ?? 0)
    }

    /// Drops the oldest rows until the queue is within both bounds; returns how many went.
    @discardableResult
    public func trimForward(maxRows: Int?, maxBytes: Int64?) throws -> Int64 {
        guard maxRows != nil || maxBytes != nil else { return 0 }
        return try transaction {
            var dropped: Int64 = 0
            while true {
                let stats = try forwardStats()
                var excess: Int64 = 0
                if let maxRows, stats.rows > Int64(maxRows) { excess = stats.rows - Int64(maxRows) }
                if let maxBytes, stats.bytes > maxBytes {
                    // Rows are at least 48 bytes, so this many rows certainly covers the excess bytes' first part.
                    excess = max(excess, (stats.bytes - maxBytes + 47) / 48)
                }
                guard excess > 0 else { break }
                let oldest = try db.scalarInt(
                    "SELECT id FROM forward_queue ORDER BY id LIMIT 1 OFFSET ?1", [excess - 1])
                guard let oldest else { break }
                let n = try deleteForward(from: Int64.min, through: oldest)
                guard n > 0 else { break }
                dropped += n
            }
            try addToCounter("forward_dropped", dropped)
            return dropped
        }
    }
}
