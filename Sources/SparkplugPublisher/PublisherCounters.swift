import History
import Logging
import Synchronization

/// The publisher's figures for `MQTTStatusReport` and the node metrics, shared by its parts (session driving, live
/// data, replay, commands): written on the publisher thread, the command queue and libmosquitto's thread, read by
/// any thread.
final class PublisherCounters: Sendable {
    /// One snapshot of every figure.
    struct Values: Sendable {
        var messagesPublished: UInt64 = 0
        var births: UInt64 = 0
        var connects: UInt64 = 0
        var replayedMetrics: UInt64 = 0
        var commandsWritten: UInt64 = 0
        var commandsRefused: UInt64 = 0
        var commandsFailed: UInt64 = 0
        var commandsRejected: UInt64 = 0
        /// Writes not carried out because they waited longer than max_age.
        var commandsExpired: UInt64 = 0
        /// Writes (or whole payloads) refused by a queue, payload or metric-count limit.
        var commandsDropped: UInt64 = 0
        /// STATE messages refused (timestamp too far ahead, malformed).
        var statesRejected: UInt64 = 0
        var primaryHostStateTimestamp: UInt64?
        var lastError: String?
        var backlog = ForwardQueueStats(rows: 0, bytes: 0, dropped: 0)
        var replayInFlight = 0
        /// Replayed metrics acknowledged per second over the last 10 s (nil before the first two samples).
        var replayDrainRate: Double?
        /// `replay.delivery: in_order` is holding live data back until the backlog is drained.
        var liveHeld = false
        var primaryHostOnline: Bool?
        /// Unix µs since when the session has not been online (nil while online), refreshed once a second; a new
        /// publisher is not online yet.
        var notOnlineSince: Int64? = HistoryClock.now()
        var unconfirmed = 0
        var receiptRequests: UInt64 = 0
        var liveConfirmed: UInt64 = 0
        var liveRequeued: UInt64 = 0
        /// The random startup delay drawn (ms; nil when `startup_delay_max` is off), and the Unix µs of the first
        /// CONNECT it allows.
        var startupDelay: Int?
        var firstConnectAt: Int64?
    }

    private let values = Mutex(Values())
    private let logger = Logger(label: "edgepilot.sparkplug")

    /// Reads or updates the figures under their lock.
    func withLock<R: Sendable>(_ body: (inout Values) -> R) -> R {
        values.withLock { body(&$0) }
    }

    /// Logs an error and keeps it as the report's `lastError`.
    func noteError(_ text: String) {
        logger.error("\(text)")
        withLock { $0.lastError = text }
    }
}
