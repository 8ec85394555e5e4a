import History
import Sparkplug
import Tags

/// Live data by exception: drains the publisher's `ChangeFeed` queue, turns each change into a metric of its
/// device's DDATA through the session, and hands the samples to the `ReceiptTracker` — kept until the broker
/// confirms them when they went out, queued for replay when they could not.
///
/// Publisher thread only.
final class LiveDataSender {
    private let feed: ChangeFeed
    private let consumer: Int
    private let receipts: ReceiptTracker
    private var changeBuffer: UnsafeMutableBufferPointer<TagChange>

    init(feed: ChangeFeed, consumer: Int, receipts: ReceiptTracker) {
        self.feed = feed
        self.consumer = consumer
        self.receipts = receipts
        changeBuffer = .allocate(capacity: 4096)
    }

    deinit { changeBuffer.deallocate() }

    /// Publishes every pending change. `update` runs the session's device update (one call per device, in the
    /// order the devices first appear) and says whether it was published. With `hold` (`replay.delivery: in_order`
    /// while the backlog drains) nothing is published: the changes join the queue behind the backlog, and the
    /// session is left with what the host has seen, so the catch-up after the drain sends what changed.
    func drain(
        _ directory: TagDirectory, hold: Bool = false,
        update: (_ device: String, [SparkplugMetric]) -> EdgeNodePublisher.StepResult
    ) {
        while true {
            let n = feed.drain(consumer: consumer, into: changeBuffer)
            guard n > 0 else { return }
            var byDevice: [String: [SparkplugMetric]] = [:]
            var order: [String] = []
            var rows: [String: [HistoryRow]] = [:]
            for change in changeBuffer.prefix(n) {
                guard let (table, index) = directory.locate(id: change.tag) else { continue }
                let d = table.definitions[index]
                // A text change carries its own text: the table's slot may already hold a later one.
                let text = feed.text(of: change) ?? table.text(of: index)
                let value: TagValue? =
                    if case .text = change.sample.value { .string(text) } else { table.value(of: index, change.sample) }
                if byDevice[d.device] == nil { order.append(d.device) }
                byDevice[d.device, default: []].append(
                    SparkplugMapping.metric(
                        d, value: value, quality: change.sample.quality, timestampMicros: change.sample.timestamp))
                rows[d.device, default: []].append(
                    HistoryRow(
                        tag: d.name, timestamp: change.sample.timestamp,
                        value: HistoryValue(change.sample.value, text: text),
                        quality: change.sample.quality))
            }
            var toStore: [HistoryRow] = []
            for device in order where hold {
                toStore += rows[device]!
            }
            for device in order where !hold {
                // The session keeps the latest values for the next births even when it cannot publish them.
                let r = update(device, byDevice[device]!)
                if !r.online || !r.ok {
                    toStore += rows[device]!
                } else {
                    // Also when nothing was published: a change whose value a birth already carried is not sent
                    // again, but that birth is QoS 0 too, so the sample waits for the same receipt as DDATA would.
                    receipts.keepUntilConfirmed(rows[device]!)
                }
            }
            receipts.store(toStore)
            if n < changeBuffer.count { return }
        }
    }
}
