import History
import Logging
import Tags

/// The store-and-forward queue as the publisher uses it: its own connection to the history file (see
/// docs/decisions/0011-store-and-forward.md), the operator's bounds, and the backlog figures kept current.
///
/// Publisher thread only (opened in the publisher's init, closed by `stop()` after the thread ended). Before `open`
/// and after `close` every call does nothing.
final class StoreAndForwardQueue {
    private let bounds: StoreAndForwardSettings
    private let counters: PublisherCounters
    private let logger = Logger(label: "edgepilot.sparkplug")
    private var store: HistoryStore?
    /// The drops of the queue's current stretch at its bound: the journal hears of them once when it starts, then at
    /// most once a minute, and once more when the queue empties; not once per stored batch (ten a second offline).
    private var dropping: (reportedAt: ContinuousClock.Instant, unreported: Int64, total: Int64)?

    init(bounds: StoreAndForwardSettings, counters: PublisherCounters) {
        self.bounds = bounds
        self.counters = counters
    }

    /// Opens the publisher's own connection to the history file and reads the backlog figures.
    func open(path: String) throws {
        store = try HistoryStore(path: path)
        refreshBacklog()
    }

    func close() {
        store?.close()
        store = nil
    }

    var isOpen: Bool { store != nil }

    /// Samples waiting in the queue, as last counted.
    var backlogRows: Int64 { counters.withLock { $0.backlog.rows } }

    /// Appends made so far: replay compares it to tell whether rows arrived since it last found the queue drained.
    private(set) var enqueues: UInt64 = 0

    /// Appends `rows` in order; beyond the bounds the oldest rows are dropped (counted by the store).
    func enqueue(_ rows: [HistoryRow]) {
        guard !rows.isEmpty, let store else { return }
        enqueues &+= 1
        do {
            let dropped = try store.enqueueForward(rows, maxRows: bounds.maxSamples, maxBytes: bounds.maxBytes)
            if dropped > 0 { noteDropped(dropped) }
        } catch {
            counters.noteError("store-and-forward enqueue failed, \(rows.count) samples lost: \(error)")
        }
        refreshBacklog()
    }

    /// The oldest rows after the row id `cursor`, at most `limit`; none when the queue is closed.
    func peek(after cursor: Int64, limit: Int) throws -> [ForwardRow] {
        guard let store else { return [] }
        return try store.peekForward(after: cursor, limit: limit)
    }

    /// Deletes the rows `first...last`; nothing when the queue is closed.
    func delete(from first: Int64, through last: Int64) throws {
        _ = try store?.deleteForward(from: first, through: last)
    }

    func refreshBacklog() {
        guard let store else { return }
        guard let stats = try? store.forwardStats() else { return }
        counters.withLock { $0.backlog = stats }
        if stats.rows == 0, let d = dropping {
            dropping = nil
            let text =
                "store-and-forward queue empty again: \(d.total) oldest samples were dropped while it was full "
                + "(\(stats.dropped) since the history file was created)"
            logger.notice("\(text)")
        }
    }

    /// Journals drops: a warning when the queue reaches its bound, a reminder with the count at most once a minute.
    private func noteDropped(_ n: Int64) {
        let now = ContinuousClock.now
        guard var d = dropping else {
            dropping = (now, 0, n)
            let text =
                "store-and-forward queue full (\(boundsText)): dropping the oldest samples, \(n) so far; "
                + "`edgepilot mqtt status` counts them"
            logger.warning("\(text)")
            return
        }
        d.unreported += n
        d.total += n
        if now - d.reportedAt >= .seconds(60) {
            let text =
                "store-and-forward queue full (\(boundsText)): \(d.unreported) more oldest samples dropped, "
                + "\(d.total) since it filled"
            logger.warning("\(text)")
            d.reportedAt = now
            d.unreported = 0
        }
        dropping = d
    }

    private var boundsText: String {
        let mib = bounds.maxBytes % (1 << 20) == 0 ? "\(bounds.maxBytes >> 20)MiB" : "\(bounds.maxBytes) bytes"
        return "max_samples \(bounds.maxSamples), max_bytes \(mib)"
    }
}
