import Foundation
import History
import Tags
import XCTest

final class ForwardQueueTests: XCTestCase {
    private func temporaryPath() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fq-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir.appendingPathComponent("history.db").path
    }

    private func rows(_ range: Range<Int>, tag: String = "t1") -> [HistoryRow] {
        range.map { HistoryRow(tag: tag, timestamp: Int64($0) * 1000, value: .real(Double($0)), quality: .good) }
    }

    func testEnqueuePeekAcknowledgeInOrder() throws {
        let store = try HistoryStore(path: try temporaryPath())
        try store.enqueueForward(rows(0..<10))
        try store.enqueueForward([
            HistoryRow(tag: "t2", timestamp: 10_000, value: .text("abc"), quality: Quality(.timeout))
        ])
        var stats = try store.forwardStats()
        XCTAssertEqual(stats.rows, 11)
        XCTAssertEqual(stats.bytes, 10 * 48 + 51)
        let first = try store.peekForward(limit: 4)
        XCTAssertEqual(first.map(\.timestamp), [0, 1000, 2000, 3000])
        let next = try store.peekForward(after: first.last!.id, limit: 100)
        XCTAssertEqual(next.count, 7)
        XCTAssertEqual(next.last?.value, .text("abc"))
        XCTAssertEqual(next.last?.quality, Quality(.timeout))
        XCTAssertEqual(next.last?.tag, "t2")
        // Acknowledging a later range first leaves the earlier rows in place: no gap.
        XCTAssertEqual(try store.deleteForward(from: next[0].id, through: next[2].id), 3)
        XCTAssertEqual(try store.peekForward(limit: 100).map(\.timestamp).prefix(5), [0, 1000, 2000, 3000, 7000])
        XCTAssertEqual(try store.deleteForward(through: first.last!.id), 4)
        stats = try store.forwardStats()
        XCTAssertEqual(stats.rows, 4)
        XCTAssertEqual(stats.bytes, 3 * 48 + 51)
        XCTAssertEqual(try store.deleteForward(from: 0, through: first.last!.id), 0, "already gone")
    }

    func testIdsAreNeverReusedAfterTheQueueEmpties() throws {
        let store = try HistoryStore(path: try temporaryPath())
        try store.enqueueForward(rows(0..<3))
        let ids = try store.peekForward(limit: 10).map(\.id)
        try store.deleteForward(through: ids.last!)
        try store.enqueueForward(rows(3..<4))
        XCTAssertGreaterThan(try store.peekForward(limit: 10)[0].id, ids.last!, "a late ack cannot hit new rows")
    }

    func testBoundDropsOldestAndCounts() throws {
        let path = try temporaryPath()
        let store = try HistoryStore(path: path)
        XCTAssertEqual(try store.enqueueForward(rows(0..<100), maxRows: 60), 40)
        XCTAssertEqual(try store.peekForward(limit: 1)[0].timestamp, 40_000, "the oldest went")
        XCTAssertEqual(try store.enqueueForward(rows(100..<110), maxRows: 1000, maxBytes: 48 * 50), 20)
        let stats = try store.forwardStats()
        XCTAssertEqual(stats.rows, 50)
        XCTAssertEqual(stats.dropped, 60)
        XCTAssertEqual(try store.peekForward(limit: 100).map(\.timestamp).last, 109_000)
        store.close()
        // Counters and rows survive reopening (another connection, as the publisher's is).
        let again = try HistoryStore(path: path)
        XCTAssertEqual(try again.forwardStats(), stats)
        XCTAssertEqual(try again.peekForward(limit: 100).count, 50)
    }
}
