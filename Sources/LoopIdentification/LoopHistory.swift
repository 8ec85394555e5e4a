import Foundation
import History
import Identification
import Tags

/// The history of one loop's tags over a window, read straight from the history file.
///
/// Why the file and not the agent's control socket: identification must work on a box where the agent is stopped
/// (or on a copy of its file), and a day of 1 s samples per tag is more than the socket's replies are meant to carry.
/// The file is opened read-only; in WAL mode that neither waits for nor delays the agent's writer.
public struct LoopHistory: Sendable {
    /// The file the rows came from, for messages.
    public var path: String
    /// Window start and end, microseconds since the Unix epoch.
    public var since: Int64
    public var until: Int64
    /// Rows per tag, oldest first. The first may be stamped before `since`: it is the value held at `since`
    /// (history stores changes by exception).
    public var rows: [String: [HistoryRow]]

    public init(path: String, since: Int64, until: Int64, rows: [String: [HistoryRow]]) {
        self.path = path
        self.since = since
        self.until = until
        self.rows = rows
    }

    /// The tag that records a loop's mode in force (`LoopStateDevice`).
    public static func modeTag(loop: String) -> String { "loop/\(loop)/mode" }

    /// The loop's CV, MV and DV tags and its mode tag, in that order of interest.
    public static func tags(of loop: LoopDefinition) -> [String] {
        loop.cvs.map(\.tag) + loop.mvs.map(\.tag) + loop.dvs + [modeTag(loop: loop.name)]
    }

    /// Reads every tag of `loop` (and `extra` tags) from `reader` over since ..< until, plus the value each held at
    /// `since`.
    public static func read(
        _ reader: HistoryReader, loop: LoopDefinition, since: Int64, until: Int64, extra: [String] = [],
        progress: (String) -> Void = { _ in }
    ) throws -> LoopHistory {
        var rows = [String: [HistoryRow]]()
        // Far above a month of 1 s samples; a window that hits it is refused rather than silently cut.
        let limit = 50_000_000
        for tag in tags(of: loop) + extra {
            var tagRows = [HistoryRow]()
            if let held = try reader.lastSample(tag: tag, before: since) { tagRows.append(held) }
            let inWindow = try reader.samples(tag: tag, since: since, until: until, limit: limit)
            if inWindow.count >= limit {
                throw LoopIdentificationError(
                    "\(tag) has more than \(limit) samples in the window; choose a shorter one")
            }
            tagRows += inWindow
            progress("read \(inWindow.count) samples of \(tag)")
            rows[tag] = tagRows
        }
        return LoopHistory(path: reader.path, since: since, until: until, rows: rows)
    }
}

/// An error worded for the engineer: what was wrong, where, and what was expected.
public struct LoopIdentificationError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ message: String) { description = message }
}

/// A numeric reading of a stored value; nil for text that is not a number and for NULL (NaN).
func numeric(_ value: HistoryValue) -> Double? {
    switch value {
    case .integer(let i): return Double(i)
    case .real(let d): return d
    case .text(let s): return Double(s)
    case .null: return nil
    }
}

/// UTC ISO-8601 with milliseconds, as the CLI prints times.
func isoTime(_ microseconds: Int64) -> String {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    formatter.timeZone = TimeZone(identifier: "UTC")
    return formatter.string(from: Date(timeIntervalSince1970: Double(microseconds) / 1_000_000))
}
