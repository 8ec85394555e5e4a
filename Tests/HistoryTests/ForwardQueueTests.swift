import Foundation
import History
import Tags
import TestSupport
import Testing

/// Each test gets its own instance, and so its own directory, removed when the test ends.
@Suite final class ForwardQueueTests {
    private let dir: TemporaryDirectory

    init() throws { dir = try TemporaryDirectory("fq") }

    deinit { dir.remove() }

    private var databasePath: String { dir.path + "/history.db" }

    private func rows(_ range: Range<Int>, tag: String = "t1") -> [HistoryRow] {
        range.map { HistoryRow(tag: tag, timestamp: Int64($0) * 1000, value: .real(Double($0)), quality: .good) }
    }

    @Test("Enqueue peek acknowledge in order")
    func enqueuePeekAcknowledgeInOrder() throws {
        let store = try HistoryStore(path: databasePath)
        try store.enqueueForward(rows(0..<10))
        try store.enqueueForward([
            HistoryRow(tag: "t2", timestamp: 10_000, value: .text("abc"), quality: Quality(.timeout))
        ])
        var stats = try store.forwardStats()
        #expect(stats.rows == 11)
        #expect(stats.bytes == (10 * 48 + 51))
        let first = try store.peekForward(limit: 4)
        #expect(first.map(\.timestamp) == [0, 1000, 2000, 3000])
        let next = try store.peekForward(after: first.last!.id, limit: 100)
        #expect(next.count == 7)
        #expect(next.last?.value == .text("abc"))
        #expect(next.last?.quality == Quality(.timeout))
        #expect(next.last?.tag == "t2")
        // Acknowledging a later range first leaves the earlier rows in place: no gap.
        #expect(try store.deleteForward(from: next[0].id, through: next[2].id) == 3)
        #expect(try store.peekForward(limit: 100).map(\.timestamp).prefix(5) == [0, 1000, 2000, 3000, 7000])
        #expect(try store.deleteForward(through: first.last!.id) == 4)
        stats = try store.forwardStats()
        #expect(stats.rows == 4)
        #expect(stats.bytes == (3 * 48 + 51))
        #expect(try store.deleteForward(from: 0, through: first.last!.id) == 0, "already gone")
    }

    @Test("Ids are never reused after the queue empties")
    func idsAreNeverReusedAfterTheQueueEmpties() throws {
        let store = try HistoryStore(path: databasePath)
        try store.enqueueForward(rows(0..<3))
        let ids = try store.peekForward(limit: 10).map(\.id)
        try store.deleteForward(through: ids.last!)
        try store.enqueueForward(rows(3..<4))
        #expect(try store.peekForward(limit: 10)[0].id > ids.last!, "a late ack cannot hit new rows")
    }

    @Test("Bound drops oldest and counts")
    func boundDropsOldestAndCounts() throws {
        let path = databasePath
        let store = try HistoryStore(path: path)
        #expect(try store.enqueueForward(rows(0..<100), maxRows: 60) == 40)
        #expect(try store.peekForward(limit: 1)[0].timestamp == 40_000, "the oldest went")
        #expect(try store.enqueueForward(rows(100..<110), maxRows: 1000, maxBytes: 48 * 50) == 20)
        let stats = try store.forwardStats()
        #expect(stats.rows == 50)
        #expect(stats.dropped == 60)
        #expect(try store.peekForward(limit: 100).map(\.timestamp).last == 109_000)
        store.close()
        // Counters and rows survive reopening (another connection, as the publisher's is).
        let again = try HistoryStore(path: path)
        #expect(try again.forwardStats() == stats)
        #expect(try again.peekForward(limit: 100).count == 50)
    }
}
