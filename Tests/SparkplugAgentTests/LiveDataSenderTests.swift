import History
import Sparkplug
import Tags
import Testing

@testable import SparkplugPublisher

/// Live data goes out change by change: each DDATA metric carries the value of its own change, even when later
/// changes of the same tag arrived before the publisher drained them.
@Suite struct LiveDataSenderTests {
    @Test func eachTextChangeCarriesItsOwnText() {
        let feed = ChangeFeed(consumers: 1)
        let table = TagTable(
            definitions: [
                TagDefinition(
                    name: "loop/tanks/mode", device: "loop-tanks", source: .computed("mode"),
                    type: .string(registers: 8))
            ], changes: feed)
        // Three transitions within one publishing interval, as a shed and a recovery make them.
        for (k, mode) in ["pid", "manual", "mpc"].enumerated() {
            var text = mode
            text.withUTF8 { bytes in
                _ = table.update(
                    0, TagSample(value: .text(length: bytes.count), quality: .good, timestamp: Int64(k + 1)),
                    text: UnsafeRawBufferPointer(bytes))
            }
        }
        let counters = PublisherCounters()
        let queue = StoreAndForwardQueue(bounds: StoreAndForwardSettings(), counters: counters)
        let receipts = ReceiptTracker(capacity: 64, receiptFilter: "r", queue: queue, counters: counters)
        let sender = LiveDataSender(feed: feed, consumer: 0, receipts: receipts)
        var sent: [SparkplugValue?] = []
        sender.drain(TagDirectory(tables: [table])) { _, metrics in
            sent += metrics.map(\.value)
            return EdgeNodePublisher.StepResult(ok: true, published: metrics.count, online: true)
        }
        #expect(sent == [.string("pid"), .string("manual"), .string("mpc")])
    }

    /// A change the session does not send because a birth already carried its value (report by exception) is kept
    /// until a receipt confirms what went before it, like one sent in DDATA: that birth is QoS 0 too, and if the
    /// connection dies before the broker confirms it, the sample must be replayed. Before, it was dropped at once:
    /// a kill -9 round lost a sample whose only carrier was a DBIRTH the dying broker never passed on.
    @Test func aChangeOnlyABirthCarriedIsKeptUntilConfirmed() {
        let feed = ChangeFeed(consumers: 1)
        let table = TagTable(
            definitions: [
                TagDefinition(
                    name: "tank1/raw", device: "plant", source: .computed("raw"), type: .uint16)
            ], changes: feed)
        _ = table.update(0, TagSample(value: .uint(1244), quality: .good, timestamp: 1))
        let counters = PublisherCounters()
        let queue = StoreAndForwardQueue(bounds: StoreAndForwardSettings(), counters: counters)
        let receipts = ReceiptTracker(capacity: 64, receiptFilter: "r", queue: queue, counters: counters)
        let sender = LiveDataSender(feed: feed, consumer: 0, receipts: receipts)
        sender.drain(TagDirectory(tables: [table])) { _, _ in
            EdgeNodePublisher.StepResult(ok: true, published: 0, online: true)
        }
        #expect(receipts.unconfirmed == 1, "kept until the broker confirms the birth that carried it")
        receipts.requeueUnconfirmed()
        #expect(counters.withLock { $0.liveRequeued } == 1, "and queued for replay when the connection ends first")
    }
}
