import Foundation
import Logging
import Tags

/// Writes one line per log record to stderr with the syslog priority prefix (`<3>`, `<6>`, …) that journald reads,
/// so `journalctl -p warning -u edgepilot` filters correctly without linking libsystemd.
///
/// Each line goes out in a single `write(2)`, so lines from different threads never interleave.
public struct JournalLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    private let label: String
    /// When stderr is a terminal the priority prefix is noise; journald and pipes get it.
    private let prefixPriority: Bool

    public init(label: String, level: Logger.Level) {
        self.label = label
        self.logLevel = level
        self.prefixPriority = isatty(2) == 0
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = prefixPriority ? "<\(Self.priority(event.level))>" : ""
        if !prefixPriority { line += "\(event.level.rawValue.uppercased()) " }
        // Every part bounded: a message or field may carry a value from outside (a command's 50 MB string).
        line += "\(label): \(BoundedText.truncated("\(event.message)", maxBytes: 4 * BoundedText.detailBytes))"
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
            line += " \(key)=\(BoundedText.truncated("\(value)", maxBytes: BoundedText.detailBytes))"
        }
        line += "\n"
        var bytes = Array(line.utf8)
        bytes.withUnsafeMutableBytes { _ = Glibc.write(2, $0.baseAddress, $0.count) }
    }

    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    /// Installs the handler for the whole process; safe to call more than once (later calls are ignored).
    public static func bootstrap(level: LogLevel) {
        let swiftLevel = Logger.Level(level)
        LoggingSystem.bootstrapOnce { JournalLogHandler(label: $0, level: swiftLevel) }
    }
}

extension Logger.Level {
    init(_ level: LogLevel) {
        switch level {
        case .trace: self = .trace
        case .debug: self = .debug
        case .info: self = .info
        case .notice: self = .notice
        case .warning: self = .warning
        case .error: self = .error
        case .critical: self = .critical
        }
    }
}

extension LoggingSystem {
    private static let once = NSLock()
    nonisolated(unsafe) private static var done = false

    static func bootstrapOnce(_ factory: @escaping @Sendable (String) -> any LogHandler) {
        once.lock()
        defer { once.unlock() }
        guard !done else { return }
        done = true
        bootstrap(factory)
    }
}
