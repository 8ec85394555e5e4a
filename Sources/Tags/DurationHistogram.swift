/// Counts of durations in fixed buckets (5 µs … 25 s in 1–2.5–5 steps, then +Inf), with their sum: what a poller,
/// the history writer or a scraper keeps so a metrics endpoint can serve a cumulative histogram.
///
/// A value of fixed size with inline storage: recording is a few comparisons and two additions, allocates nothing
/// and needs no lock of its own, so a driver can record inside the statistics lock it already takes once per cycle.
public struct DurationHistogram: Sendable, Equatable {
    /// Finite bucket bounds, in nanoseconds; the last bucket (+Inf) follows them.
    public static let boundCount = 21
    /// Per-bucket counts (not cumulative), the last one for durations above every bound.
    private var counts:
        (
            UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
            UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64
        ) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    /// Durations recorded and their sum, in nanoseconds.
    public private(set) var count: UInt64 = 0
    public private(set) var sumNanoseconds: UInt64 = 0

    public init() {}

    /// Upper bound of bucket `i` (0 ..< boundCount) in nanoseconds: 5, 10, 25 µs times a power of ten.
    @inline(__always) public static func bound(_ i: Int) -> Int64 {
        var scale: Int64 = 1000
        for _ in 0..<(i / 3) { scale &*= 10 }
        switch i % 3 {
        case 0: return 5 &* scale
        case 1: return 10 &* scale
        default: return 25 &* scale
        }
    }

    /// Adds one duration (negative ones count as zero).
    @inline(__always) public mutating func record(nanoseconds: Int64) {
        let v = max(0, nanoseconds)
        var i = 0
        while i < Self.boundCount && v > Self.bound(i) { i += 1 }
        withUnsafeMutableBytes(of: &counts) {
            $0.storeBytes(
                of: $0.load(fromByteOffset: i * 8, as: UInt64.self) &+ 1, toByteOffset: i * 8, as: UInt64.self)
        }
        count &+= 1
        sumNanoseconds &+= UInt64(v)
    }

    /// The count of bucket `i` alone (0 ... boundCount, the last being +Inf).
    public func bucket(_ i: Int) -> UInt64 {
        precondition(i >= 0 && i <= Self.boundCount)
        return withUnsafeBytes(of: counts) { $0.load(fromByteOffset: i * 8, as: UInt64.self) }
    }

    /// Durations at or below bound `i` (i == boundCount: all of them), as a Prometheus `le` bucket counts.
    public func cumulative(_ i: Int) -> UInt64 {
        var total: UInt64 = 0
        for k in 0...min(i, Self.boundCount) { total &+= bucket(k) }
        return total
    }

    public static func == (a: DurationHistogram, b: DurationHistogram) -> Bool {
        guard a.count == b.count, a.sumNanoseconds == b.sumNanoseconds else { return false }
        for i in 0...boundCount where a.bucket(i) != b.bucket(i) { return false }
        return true
    }
}
