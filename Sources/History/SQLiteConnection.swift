import CSQLite

/// One SQLite connection with a cache of prepared statements.
///
/// Not thread-safe: it is opened with SQLITE_OPEN_NOMUTEX, so SQLite does no locking of its own and the owner
/// must keep all use on one thread at a time (the owners, `HistoryStore` and `HistoryReader`, document this).
final class SQLiteConnection {
    let path: String
    private(set) var handle: OpaquePointer?
    private var statements: [String: SQLiteStatement] = [:]

    init(path: String, readOnly: Bool) throws {
        self.path = path
        var db: OpaquePointer?
        let flags =
            (readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
            sqlite3_close_v2(db)
            throw HistoryError(path: path, operation: readOnly ? "open read-only" : "open", code: rc, message: message)
        }
        sqlite3_extended_result_codes(db, 1)
        handle = db
    }

    deinit { close() }

    func close() {
        for statement in statements.values { statement.finalize() }
        statements.removeAll()
        if let handle { sqlite3_close_v2(handle) }
        handle = nil
    }

    func error(_ operation: String, _ rc: Int32) -> HistoryError {
        let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
        return HistoryError(path: path, operation: operation, code: rc, message: message)
    }

    /// Runs one or more statements that return no rows we need.
    func execute(_ sql: String, operation: String? = nil) throws {
        guard let handle else { throw closedError(operation ?? sql) }
        let rc = sqlite3_exec(handle, sql, nil, nil, nil)
        guard rc == SQLITE_OK else { throw error(operation ?? sql, rc) }
    }

    /// A cached prepared statement; it comes back reset with its bindings cleared.
    func statement(_ sql: String) throws -> SQLiteStatement {
        if let cached = statements[sql] { return cached }
        guard let handle else { throw closedError(sql) }
        var raw: OpaquePointer?
        let rc = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &raw, nil)
        guard rc == SQLITE_OK, let raw else { throw error("prepare \(sql)", rc) }
        let statement = SQLiteStatement(raw, connection: self, sql: sql)
        statements[sql] = statement
        return statement
    }

    /// The first column of the first row of a query, as an integer (nil when there is no row or it is NULL).
    func scalarInt(_ sql: String, _ bindings: [Int64] = []) throws -> Int64? {
        let s = try statement(sql)
        defer { s.reset() }
        for (i, b) in bindings.enumerated() { s.bind(Int32(i + 1), b) }
        guard try s.step() else { return nil }
        return s.isNull(0) ? nil : s.int64(0)
    }

    func scalarText(_ sql: String) throws -> String? {
        let s = try statement(sql)
        defer { s.reset() }
        guard try s.step(), !s.isNull(0) else { return nil }
        return s.text(0)
    }

    var changes: Int { handle.map { Int(sqlite3_changes($0)) } ?? 0 }
    var lastInsertRowID: Int64 { handle.map { sqlite3_last_insert_rowid($0) } ?? 0 }
    var inTransaction: Bool { handle.map { sqlite3_get_autocommit($0) == 0 } ?? false }

    func setBusyTimeout(milliseconds: Int32) {
        if let handle { sqlite3_busy_timeout(handle, milliseconds) }
    }

    private func closedError(_ operation: String) -> HistoryError {
        HistoryError(path: path, operation: operation, code: 0, message: "the database is closed")
    }
}

/// A prepared statement owned by its connection's cache.
final class SQLiteStatement {
    private(set) var handle: OpaquePointer?
    private unowned let connection: SQLiteConnection
    let sql: String

    init(_ handle: OpaquePointer, connection: SQLiteConnection, sql: String) {
        self.handle = handle
        self.connection = connection
        self.sql = sql
    }

    func finalize() {
        sqlite3_finalize(handle)
        handle = nil
    }

    @inline(__always) func bind(_ index: Int32, _ value: Int64) { sqlite3_bind_int64(handle, index, value) }
    @inline(__always) func bind(_ index: Int32, _ value: Double) { sqlite3_bind_double(handle, index, value) }
    @inline(__always) func bindNull(_ index: Int32) { sqlite3_bind_null(handle, index) }

    func bind(_ index: Int32, _ value: String) {
        var value = value
        value.withUTF8 { bytes in
            guard let base = bytes.baseAddress, !bytes.isEmpty else {
                // A nil pointer would bind NULL; an empty text must stay text.
                sqlite3_bind_text(handle, index, "", 0, nil)
                return
            }
            base.withMemoryRebound(to: CChar.self, capacity: bytes.count) { chars in
                _ = sqlite3_bind_text(handle, index, chars, Int32(bytes.count), ep_sqlite_transient())
            }
        }
    }

    func bind(_ index: Int32, _ value: HistoryValue) {
        switch value {
        case .null: bindNull(index)
        case .integer(let i): bind(index, i)
        case .real(let d): bind(index, d)
        case .text(let s): bind(index, s)
        }
    }

    /// Steps once: true when a row is available, false when done.
    @inline(__always) func step() throws -> Bool {
        let rc = sqlite3_step(handle)
        if rc == SQLITE_ROW { return true }
        if rc == SQLITE_DONE { return false }
        let error = connection.error(sql, rc)
        reset()
        throw error
    }

    /// Steps a statement that returns no rows and resets it.
    @inline(__always) func run() throws {
        defer { reset() }
        while try step() {}
    }

    /// Like `run`, but keeps the bindings: for hot statements whose every parameter is bound before each run.
    @inline(__always) func runKeepingBindings() throws {
        defer { sqlite3_reset(handle) }
        while try step() {}
    }

    @inline(__always) func reset() {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    @inline(__always) func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }
    @inline(__always) func double(_ column: Int32) -> Double { sqlite3_column_double(handle, column) }
    @inline(__always) func isNull(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }

    func text(_ column: Int32) -> String {
        guard let p = sqlite3_column_text(handle, column) else { return "" }
        let n = Int(sqlite3_column_bytes(handle, column))
        return String(decoding: UnsafeBufferPointer(start: p, count: n), as: UTF8.self)
    }

    func value(_ column: Int32) -> HistoryValue {
        switch sqlite3_column_type(handle, column) {
        case SQLITE_INTEGER: return .integer(int64(column))
        case SQLITE_FLOAT: return .real(double(column))
        case SQLITE_TEXT, SQLITE_BLOB: return .text(text(column))
        default: return .null
        }
    }
}
