/// One problem found in a configuration file, located precisely enough for a technician to fix it.
public struct ConfigDiagnostic: Sendable, Hashable, CustomStringConvertible {
    public enum Severity: String, Sendable, Hashable {
        case error, warning
    }

    public var severity: Severity
    public var file: String
    /// 1-based line, or 0 when the problem concerns the whole file.
    public var line: Int
    public var column: Int
    public var message: String
    /// What to change, when there is something more specific to say than the message.
    public var hint: String?

    public init(
        _ severity: Severity = .error, file: String, line: Int, column: Int = 1, message: String, hint: String? = nil
    ) {
        self.severity = severity
        self.file = file
        self.line = line
        self.column = column
        self.message = message
        self.hint = hint
    }

    /// `file:line:column: error: message` (the form editors and terminals make clickable), then the hint.
    public var description: String {
        let location = line > 0 ? "\(file):\(line):\(column)" : file
        var text = "\(location): \(severity.rawValue): \(message)"
        if let hint { text += "\n    hint: \(hint)" }
        return text
    }
}

/// A configuration that cannot be used, with every problem found in it.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    public var diagnostics: [ConfigDiagnostic]

    public init(_ diagnostics: [ConfigDiagnostic]) { self.diagnostics = diagnostics }

    public var errors: [ConfigDiagnostic] { diagnostics.filter { $0.severity == .error } }

    public var description: String {
        let count = errors.count
        return diagnostics.map(\.description).joined(separator: "\n")
            + "\n\(count) error\(count == 1 ? "" : "s") in the configuration"
    }
}

/// Collects diagnostics while a file is read, so one run reports every problem rather than the first.
struct DiagnosticSink {
    var diagnostics: [ConfigDiagnostic] = []
    var file: String

    mutating func error(_ line: Int, _ column: Int = 1, _ message: String, hint: String? = nil) {
        diagnostics.append(
            ConfigDiagnostic(.error, file: file, line: line, column: column, message: message, hint: hint))
    }

    mutating func warning(_ line: Int, _ column: Int = 1, _ message: String, hint: String? = nil) {
        diagnostics.append(
            ConfigDiagnostic(.warning, file: file, line: line, column: column, message: message, hint: hint))
    }

    var hasErrors: Bool { diagnostics.contains { $0.severity == .error } }
}

/// The closest known word to a misspelt one, for "did you mean" hints.
func closest(to word: String, in candidates: [String]) -> String? {
    func distance(_ a: [Character], _ b: [Character]) -> Int {
        var previous = Array(0...b.count)
        for (i, ca) in a.enumerated() {
            var current = [i + 1]
            for (j, cb) in b.enumerated() {
                current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (ca == cb ? 0 : 1)))
            }
            previous = current
        }
        return previous[b.count]
    }
    let w = Array(word.lowercased())
    let best = candidates.map { ($0, distance(w, Array($0.lowercased()))) }.min { $0.1 < $1.1 }
    guard let best, best.1 <= max(2, w.count / 3) else { return nil }
    return best.0
}
