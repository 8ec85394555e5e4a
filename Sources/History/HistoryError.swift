/// A failure of the history database, with SQLite's own message and the file it concerns.
///
/// The description reads as one line for logs and the CLI: which file, what was being done, what SQLite said.
public struct HistoryError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The database file.
    public var path: String
    /// What the store was doing, e.g. "open", "migrate to schema version 2", "commit".
    public var operation: String
    /// SQLite's (extended) result code, or 0 when the error did not come from SQLite.
    public var code: Int32
    /// SQLite's message, or an explanation when the error did not come from SQLite.
    public var message: String

    public init(path: String, operation: String, code: Int32, message: String) {
        self.path = path
        self.operation = operation
        self.code = code
        self.message = message
    }

    public var description: String {
        let codeText = code == 0 ? "" : " (SQLite code \(code))"
        return "history database \(path): \(operation) failed: \(message)\(codeText)"
    }
}
