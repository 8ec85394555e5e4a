import CSQLite
import Foundation
import Testing

/// A plain SQLite connection, independent of the code under test, for inspecting and forging files.
final class RawDatabase {
    private var db: OpaquePointer?

    init(_ path: String) throws {
        let rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nil)
        guard rc == SQLITE_OK else { throw RawError(message: "open \(path): \(rc)") }
    }

    deinit { sqlite3_close_v2(db) }

    struct RawError: Error { var message: String }

    func execute(_ sql: String, sourceLocation: SourceLocation = #_sourceLocation) {
        var error: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(db, sql, nil, nil, &error)
        if rc != SQLITE_OK {
            Issue.record("\(sql): \(error.map { String(cString: $0) } ?? "\(rc)")", sourceLocation: sourceLocation)
            sqlite3_free(error)
        }
    }

    /// Every row of a query, each column as text (NULL as "NULL").
    func rows(_ sql: String, sourceLocation: SourceLocation = #_sourceLocation) -> [[String]] {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &statement, nil) == SQLITE_OK else {
            Issue.record("prepare \(sql): \(String(cString: sqlite3_errmsg(db)))", sourceLocation: sourceLocation)
            return []
        }
        defer { sqlite3_finalize(statement) }
        var result: [[String]] = []
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else {
                Issue.record("step \(sql): \(String(cString: sqlite3_errmsg(db)))", sourceLocation: sourceLocation)
                break
            }
            var row: [String] = []
            for c in 0..<sqlite3_column_count(statement) {
                if sqlite3_column_type(statement, c) == SQLITE_NULL {
                    row.append("NULL")
                } else {
                    row.append(String(cString: sqlite3_column_text(statement, c)))
                }
            }
            result.append(row)
        }
        return result
    }

    func int(_ sql: String, sourceLocation: SourceLocation = #_sourceLocation) -> Int64 {
        let r = rows(sql, sourceLocation: sourceLocation)
        guard let text = r.first?.first, let value = Int64(text) else {
            Issue.record("\(sql) returned \(r)", sourceLocation: sourceLocation)
            return -1
        }
        return value
    }

    func text(_ sql: String, sourceLocation: SourceLocation = #_sourceLocation) -> String {
        rows(sql, sourceLocation: sourceLocation).first?.first ?? "<no row>"
    }
}

func fileSize(_ path: String) -> Int64 {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.int64Value ?? 0
}
