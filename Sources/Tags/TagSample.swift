/// A tag's value in the form the poll path stores it: no heap storage, so copying it never allocates.
///
/// Text values keep only their length here; the bytes live in the tag table's slot (see `TagTable.text(of:)`), and a
/// reported change carries a copy of its own in the change feed (see `ChangeFeed.text(of:)`).
public enum SampleValue: Sendable, Equatable {
    case none
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case text(length: Int)

    /// The value as a number, when it is one.
    @inline(__always) public var doubleValue: Double? {
        switch self {
        case .bool(let b): return b ? 1 : 0
        case .int(let i): return Double(i)
        case .uint(let u): return Double(u)
        case .double(let d): return d
        case .none, .text: return nil
        }
    }
}

/// One observation of a tag: value, quality and the time the source produced it.
public struct TagSample: Sendable, Equatable {
    public var value: SampleValue
    public var quality: Quality
    /// Microseconds since the Unix epoch (UTC) at which the value was read or reported by the source.
    public var timestamp: Int64

    public init(value: SampleValue, quality: Quality, timestamp: Int64) {
        self.value = value
        self.quality = quality
        self.timestamp = timestamp
    }

    public static let initial = TagSample(value: .none, quality: .waitingForInitialData, timestamp: 0)
}

/// A reported change of one tag, as consumers (history, publisher, control) receive it.
public struct TagChange: Sendable, Equatable {
    /// Index of the tag in the `TagTable` that produced the change.
    public var tag: Int32
    public var sample: TagSample
    /// Where a text value's bytes are in the feed's text ring (`ChangeFeed.text(of:)`), plus one; 0 = no text.
    public var textPosition: UInt64

    public init(tag: Int32, sample: TagSample, textPosition: UInt64 = 0) {
        self.tag = tag
        self.sample = sample
        self.textPosition = textPosition
    }
}
