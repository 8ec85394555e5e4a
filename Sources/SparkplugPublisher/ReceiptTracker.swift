import History
import MQTT

/// Live samples published at QoS 0 until the broker confirms it has read them (`confirm_live`, see
/// docs/decisions/0011-store-and-forward.md), and what becomes of them when it cannot: the receipt requests
/// (UNSUBSCRIBEs of a filter never subscribed), their answers, and the move of unconfirmed samples to the
/// store-and-forward queue when the ring is full or the connection ends.
///
/// Publisher thread only.
final class ReceiptTracker {
    /// Receipt requests allowed outstanding: one a second, so a broker that stopped answering is not flooded
    /// before keepalive notices.
    static let receiptWindow = 4

    private let queue: StoreAndForwardQueue
    private let counters: PublisherCounters
    /// Live samples awaiting the broker's receipt; nil when `confirm_live` is off.
    private var live: UnconfirmedSamples?
    /// Receipt requests not answered yet, oldest first, each with the position it marked in `live`.
    private var receipts: [(tag: UInt64, mark: UInt64)] = []
    private var markedUpTo: UInt64 = 0
    private var lastReceiptRequest = ContinuousClock.now
    /// Never subscribed: receipts are UNSUBSCRIBEs of it (see `MQTTClient.requestReceipt`); replay uses it too.
    let receiptFilter: String

    /// `capacity` is the ring's size in samples, nil when live data is not confirmed (`confirm_live: false`).
    init(capacity: Int?, receiptFilter: String, queue: StoreAndForwardQueue, counters: PublisherCounters) {
        live = capacity.map { UnconfirmedSamples(capacity: $0) }
        self.receiptFilter = receiptFilter
        self.queue = queue
        self.counters = counters
    }

    /// Live samples published and not confirmed yet.
    var unconfirmed: Int { live?.count ?? 0 }

    /// Keeps samples just published live until a receipt confirms them. A full ring moves its oldest quarter to the
    /// queue first: bounded memory wins over avoiding duplicates (those samples are replayed even if they arrived).
    func keepUntilConfirmed(_ rows: [HistoryRow]) {
        guard live != nil else { return }
        for row in rows {
            if live!.isFull {
                var oldest: [HistoryRow] = []
                live!.removeOldest(max(1, live!.capacity / 4), into: &oldest)
                counters.withLock { $0.liveRequeued += UInt64(oldest.count) }
                queue.enqueue(oldest)
            }
            live!.append(row)
        }
    }

    /// Queues `rows`, after every unconfirmed live sample: those are older, and whatever made `rows` unpublishable
    /// (no connection, no session) put them at risk too; queuing them first keeps the queue in time order.
    func store(_ rows: [HistoryRow]) {
        guard !rows.isEmpty else { return }
        requeueUnconfirmed(before: rows)
    }

    /// Queues every unconfirmed live sample (then `rows`): the connection that carried them ended or is ending.
    func requeueUnconfirmed(before rows: [HistoryRow] = []) {
        guard let n = live?.count, n > 0 else { return queue.enqueue(rows) }
        var all: [HistoryRow] = []
        all.reserveCapacity(n + rows.count)
        live!.removeOldest(n, into: &all)
        all += rows
        counters.withLock {
            $0.liveRequeued += UInt64(n)
            $0.unconfirmed = 0
        }
        queue.enqueue(all)
    }

    /// About once a second while live samples wait for confirmation (at once when half the ring waits, or when
    /// `force`d), asks the broker for a receipt of everything sent so far; its answer confirms them. `client` is
    /// the session's current client (nil when there is none), `tags` gives the request its acknowledgement tag.
    func requestReceipt(force: Bool = false, client: () -> MQTTClient?, tags: AcknowledgementTags) {
        guard let live, live.end > markedUpTo, receipts.count < Self.receiptWindow else { return }
        let now = ContinuousClock.now
        let unmarked = live.end - max(markedUpTo, live.start)
        guard force || now - lastReceiptRequest >= .seconds(1) || unmarked >= UInt64(live.capacity / 2) else {
            return
        }
        guard let client = client() else { return }
        let tag = tags.next()
        do {
            try client.requestReceipt(tag: tag, filter: receiptFilter)
        } catch {
            // Not connected: the disconnect event on its way queues the unconfirmed samples.
            return
        }
        receipts.append((tag, live.end))
        markedUpTo = live.end
        lastReceiptRequest = now
        counters.withLock {
            $0.receiptRequests += 1
            $0.unconfirmed = live.count
        }
    }

    /// Takes the broker's answer to a receipt request; false when `tag` is not one (a replay acknowledgement).
    func acknowledge(_ tag: UInt64) -> Bool {
        guard let i = receipts.firstIndex(where: { $0.tag == tag }) else { return false }
        // Answers come in order: this one also covers any older request still listed.
        let confirmed = live?.confirm(upTo: receipts[i].mark) ?? 0
        receipts.removeFirst(i + 1)
        counters.withLock {
            $0.liveConfirmed += UInt64(confirmed)
            $0.unconfirmed = live?.count ?? 0
        }
        return true
    }

    /// Forgets the outstanding requests: an answer on a later connection proves nothing about the earlier one.
    func forgetRequests() { receipts = [] }
}
