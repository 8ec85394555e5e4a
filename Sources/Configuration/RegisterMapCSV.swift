/// Reads register maps kept in spreadsheets and exported as CSV.
///
/// The first row names the columns (see `TagFields.csvColumns`; order is free, unknown columns are errors so a typo
/// never silently drops a setting). Fields may be quoted with `"`; `#` at the start of a line marks a comment.
enum RegisterMapCSV {
    struct Row {
        var line: Int
        var fields: [String: (String, Int, Int)]
    }

    static func rows(_ text: String, sink: inout DiagnosticSink) -> [Row] {
        var header: [String]?
        var rows: [Row] = []
        var lineNumber = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let line = rawLine.hasSuffix("\r") ? String(rawLine.dropLast()) : String(rawLine)
            if line.trimmingCharacters(in: .whitespaces).isEmpty || line.hasPrefix("#") { continue }
            guard let cells = split(line) else {
                sink.error(lineNumber, 1, "unbalanced quotes in CSV row")
                continue
            }
            guard let columns = header else {
                let names = cells.map { $0.value.trimmingCharacters(in: .whitespaces).lowercased() }
                for (i, name) in names.enumerated() where !TagFields.csvColumns.contains(name) {
                    sink.error(
                        lineNumber, cells[i].column, "unknown column '\(name)' in the register map header",
                        hint: closest(to: name, in: TagFields.csvColumns).map { "did you mean '\($0)'?" }
                            ?? "known columns: \(TagFields.csvColumns.joined(separator: ", "))")
                }
                header = names
                continue
            }
            if cells.count > columns.count {
                sink.error(lineNumber, cells[columns.count].column, "row has more cells than the header has columns")
                continue
            }
            var fields: [String: (String, Int, Int)] = [:]
            for (i, cell) in cells.enumerated() { fields[columns[i]] = (cell.value, lineNumber, cell.column) }
            rows.append(Row(line: lineNumber, fields: fields))
        }
        return rows
    }

    /// Splits one CSV line into cells with their 1-based starting columns; nil when quotes do not balance.
    static func split(_ line: String) -> [(value: String, column: Int)]? {
        var cells: [(String, Int)] = []
        var current = ""
        var inQuotes = false
        var column = 1
        var start = 1
        var chars = Array(line)[...]
        while let c = chars.popFirst() {
            if inQuotes {
                if c == "\"" {
                    if chars.first == "\"" {
                        current.append("\"")
                        chars = chars.dropFirst()
                        column += 1
                    } else {
                        inQuotes = false
                    }
                } else {
                    current.append(c)
                }
            } else if c == "\"" {
                inQuotes = true
            } else if c == "," {
                cells.append((current, start))
                current = ""
                start = column + 1
            } else {
                current.append(c)
            }
            column += 1
        }
        if inQuotes { return nil }
        cells.append((current, start))
        return cells
    }
}
