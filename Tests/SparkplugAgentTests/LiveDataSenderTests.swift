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
}
