import History
import Testing

@testable import SparkplugPublisher

/// The ring that keeps published live samples until a broker receipt confirms them.
@Suite struct UnconfirmedSamplesTests {
    private func row(_ i: Int) -> HistoryRow { HistoryRow(tag: "t", timestamp: Int64(i), value: .integer(Int64(i))) }

    @Test func receiptsConfirmExactlyWhatWasPublishedBeforeThem() {
        var ring = UnconfirmedSamples(capacity: 8)
        for i in 0..<5 { ring.append(row(i)) }
        let mark = ring.end  // a receipt requested now covers samples 0...4
        for i in 5..<7 { ring.append(row(i)) }
        #expect(ring.confirm(upTo: mark) == 5)
        #expect(ring.count == 2 && ring.start == 5)
        // An older answer confirms nothing more; a mark beyond the end cannot confirm what does not exist yet.
        #expect(ring.confirm(upTo: 3) == 0)
        #expect(ring.confirm(upTo: 100) == 2)
        #expect(ring.isEmpty && ring.end == 7)
    }

    @Test func oldestLeaveFirstAcrossTheWrap() {
        var ring = UnconfirmedSamples(capacity: 4)
        for i in 0..<4 { ring.append(row(i)) }
        #expect(ring.isFull)
        var out: [HistoryRow] = []
        ring.removeOldest(1, into: &out)
        ring.append(row(4))  // wraps around the storage
        ring.removeOldest(10, into: &out)
        #expect(out.map(\.timestamp) == [0, 1, 2, 3, 4])
        #expect(ring.isEmpty && ring.start == 5)
        // A mark taken before samples were moved out confirms only what is still held.
        ring.append(row(5))
        #expect(ring.confirm(upTo: 3) == 0 && ring.count == 1)
    }

    @Test func memoryIsFixedAtCapacity() {
        // What a slot costs (the ring's memory is capacity × stride, plus text values it holds).
        print("UnconfirmedSamples: \(MemoryLayout<HistoryRow>.stride) bytes per slot")
        var ring = UnconfirmedSamples(capacity: 256)
        for i in 0..<10_000 {
            if ring.isFull {
                var out: [HistoryRow] = []
                ring.removeOldest(64, into: &out)
            }
            ring.append(row(i))
        }
        #expect(ring.capacity == 256 && ring.count <= 256 && ring.end == 10_000)
    }
}
