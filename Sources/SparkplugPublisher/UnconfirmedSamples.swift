import Devices
import History

/// Live samples published at QoS 0 whose arrival the broker has not confirmed yet, oldest first, in a ring of
/// fixed capacity allocated once (see docs/decisions/0011-store-and-forward.md).
///
/// Positions count every sample ever appended, so a receipt request marks "everything appended so far" with one
/// number, and its answer confirms exactly those samples whatever was appended or moved out in between.
struct UnconfirmedSamples {
    private var slots: [HistoryRow]
    private var head = 0
    private(set) var count = 0
    /// The position after the newest sample: what a receipt request marks.
    private(set) var end: UInt64 = 0

    init(capacity: Int) {
        slots = Array(repeating: Self.empty, count: max(1, capacity))
    }

    var capacity: Int { slots.count }
    var isEmpty: Bool { count == 0 }
    var isFull: Bool { count == slots.count }
    /// The position of the oldest sample held.
    var start: UInt64 { end - UInt64(count) }

    /// Appends a sample; the caller makes room first when the ring is full.
    mutating func append(_ row: HistoryRow) {
        precondition(!isFull, "UnconfirmedSamples is full")
        slots[(head + count) % slots.count] = row
        count += 1
        end += 1
    }

    /// Drops the samples before `mark`, which the broker has confirmed; returns how many.
    @discardableResult
    mutating func confirm(upTo mark: UInt64) -> Int {
        guard mark > start else { return 0 }
        let n = Int(min(mark, end) - start)
        release(n)
        return n
    }

    /// Moves the `n` oldest samples to the end of `out`, oldest first.
    mutating func removeOldest(_ n: Int, into out: inout [HistoryRow]) {
        let n = min(max(0, n), count)
        for i in 0..<n { out.append(slots[(head + i) % slots.count]) }
        release(n)
    }

    private mutating func release(_ n: Int) {
        // Emptied slots drop their strings, so a text value does not outlive its sample.
        for i in 0..<n { slots[(head + i) % slots.count] = Self.empty }
        head = (head + n) % slots.count
        count -= n
    }

    private static let empty = HistoryRow(tag: "", timestamp: 0, value: .null)
}
