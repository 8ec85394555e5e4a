import Tags

/// A stored value, in SQLite's own dynamic types.
///
/// Booleans are stored as the integers 0 and 1; unsigned values above `Int64.max` as reals (SQLite has no unsigned
/// integer, and a real keeps them comparable as numbers); NaN is stored by SQLite as NULL.
public enum HistoryValue: Sendable, Equatable, CustomStringConvertible {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)

    /// The stored form of a tag table sample; `text` supplies the bytes of a text value (see `TagTable.text(of:)`).
    public init(_ value: SampleValue, text: @autoclosure () -> String = "") {
        switch value {
        case .none: self = .null
        case .bool(let b): self = .integer(b ? 1 : 0)
        case .int(let i): self = .integer(i)
        case .uint(let u): self = u <= UInt64(Int64.max) ? .integer(Int64(u)) : .real(Double(u))
        case .double(let d): self = d.isNaN ? .null : .real(d)
        case .text: self = .text(text())
        }
    }

    public var description: String {
        switch self {
        case .null: return ""
        case .integer(let i): return String(i)
        case .real(let d): return String(d)
        case .text(let s): return s
        }
    }
}

/// One sample of one tag as history stores it.
public struct HistoryRow: Sendable, Equatable {
    public var tag: String
    /// Microseconds since the Unix epoch (UTC), as the source reported it.
    public var timestamp: Int64
    public var value: HistoryValue
    public var quality: Quality

    public init(tag: String, timestamp: Int64, value: HistoryValue, quality: Quality = .good) {
        self.tag = tag
        self.timestamp = timestamp
        self.value = value
        self.quality = quality
    }
}

/// One write attempt (from the CLI, Sparkplug or control) as the audit table records it.
public struct AuditRecord: Sendable, Equatable {
    /// The record with each text cut to `BoundedText`'s sizes: what the audit trail stores, so one oversized value
    /// makes neither a huge row nor an `edgepilot audit` answer too large for the CLI to read.
    public func bounded() -> AuditRecord {
        var r = self
        r.source = BoundedText.truncated(source, maxBytes: BoundedText.detailBytes)
        r.tag = BoundedText.truncated(tag, maxBytes: BoundedText.detailBytes)
        r.value = BoundedText.truncated(value, maxBytes: BoundedText.valueBytes)
        r.result = BoundedText.truncated(result, maxBytes: BoundedText.valueBytes)
        r.detail = BoundedText.truncated(detail, maxBytes: BoundedText.detailBytes)
        return r
    }

    /// The row id once stored; nil for a record not yet written.
    public var id: Int64?
    /// Microseconds since the Unix epoch (UTC) at which the write was attempted.
    public var timestamp: Int64
    /// Who asked for the write, e.g. "cli", "sparkplug:NCMD", "control:loop1".
    public var source: String
    public var tag: String
    /// The requested value as text, so every value type fits the same column.
    public var value: String
    /// The outcome, e.g. "ok", "refused", "failed".
    public var result: String
    /// Why, for anything but success (limits, device error text).
    public var detail: String

    public init(
        id: Int64? = nil, timestamp: Int64, source: String, tag: String, value: String, result: String,
        detail: String = ""
    ) {
        self.id = id
        self.timestamp = timestamp
        self.source = source
        self.tag = tag
        self.value = value
        self.result = result
        self.detail = detail
    }
}

/// How big the history is, read cheaply enough for every `status` call.
public struct HistoryStats: Sendable, Equatable {
    /// Sample rows, from a counter the writer keeps in the same transactions that insert and delete rows,
    /// so it is exact and survives crashes without ever counting the table.
    public var rows: Int64
    /// Audit rows, kept the same way.
    public var auditRows: Int64
    /// Bytes in use: (page_count − freelist_count) × page_size of the database plus the current WAL file.
    public var bytes: Int64
    /// The timestamp of the oldest sample in insertion order (the next one retention removes); nil when empty.
    public var oldestTimestamp: Int64?
}

/// What one retention pass removed.
public struct RetentionResult: Sendable, Equatable {
    public var deletedSamples: Int64 = 0
    public var deletedAudit: Int64 = 0
    /// Of `deletedAudit`, the rows the size limit took because no plant history was left to delete.
    public var deletedAuditForSize: Int64 = 0
    /// Size as `HistoryStats.bytes` measures it, after the pass.
    public var bytesAfter: Int64 = 0

    public init(deletedSamples: Int64 = 0, deletedAudit: Int64 = 0, bytesAfter: Int64 = 0) {
        self.deletedSamples = deletedSamples
        self.deletedAudit = deletedAudit
        self.bytesAfter = bytesAfter
    }
}

/// How long audit rows are kept: by their own count and age, never by the plant history's size limit, so a flood of
/// commands cannot erase plant history and plant history cannot silently erase the audit trail.
public struct AuditRetention: Sendable, Hashable {
    /// The newest this many rows are kept; nil keeps any number (then only age and, with no plant history left,
    /// the size limit delete them).
    public var maxRows: Int?
    /// Rows older than this are deleted; nil keeps them until `maxRows`.
    public var maxAgeSeconds: Int?

    public static let defaultMaxRows = 100_000

    public init(maxRows: Int? = AuditRetention.defaultMaxRows, maxAgeSeconds: Int? = nil) {
        self.maxRows = maxRows
        self.maxAgeSeconds = maxAgeSeconds
    }
}
