import CSQLite
import Foundation
import XCTest

/// A fresh directory per test, removed afterwards.
final class TemporaryDirectory {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("history-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
}

/// A plain SQLite connection, independent of the code under test, for inspecting and forging files.
final class RawDatabase {
    private var db: OpaquePointer?

    init(_ path: String) throws {
        let rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nil)
        guard rc == SQLITE_OK else { throw RawError(message: "open \(path): \(rc)") }
    }

    deinit { sqlite3_close_v2(db) }

    struct RawError: Error { var message: String }

    func execute(_ sql: String, file: StaticString = #filePath, line: UInt = #line) {
        var error: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(db, sql, nil, nil, &error)
        if rc != SQLITE_OK {
            XCTFail("\(sql): \(error.map { String(cString: $0) } ?? "\(rc)")", file: file, line: line)
            sqlite3_free(error)
        }
    }

    /// Every row of a query, each column as text (NULL as "NULL").
    func rows(_ sql: String, file: StaticString = #filePath, line: UInt = #line) -> [[String]] {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &statement, nil) == SQLITE_OK else {
            XCTFail("prepare \(sql): \(String(cString: sqlite3_errmsg(db)))", file: file, line: line)
            return []
        }
        defer { sqlite3_finalize(statement) }
        var result: [[String]] = []
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else {
                XCTFail("step \(sql): \(String(cString: sqlite3_errmsg(db)))", file: file, line: line)
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

    func int(_ sql: String, file: StaticString = #filePath, line: UInt = #line) -> Int64 {
        let r = rows(sql, file: file, line: line)
        guard let text = r.first?.first, let value = Int64(text) else {
            XCTFail("\(sql) returned \(r)", file: file, line: line)
            return -1
        }
        return value
    }

    func text(_ sql: String, file: StaticString = #filePath, line: UInt = #line) -> String {
        rows(sql, file: file, line: line).first?.first ?? "<no row>"
    }
}

func fileSize(_ path: String) -> Int64 {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.int64Value ?? 0
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
func eventually(timeout: TimeInterval = 10, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        usleep(5_000)
    }
    return condition()
}
