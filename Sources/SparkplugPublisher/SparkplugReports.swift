import Devices

/// What `edgepilot mqtt status` (and the Sparkplug part of `edgepilot status`) shows.
public struct MQTTStatusReport: Codable, Sendable, Equatable {
    public var groupID: String
    public var edgeNodeID: String
    public var primaryHostID: String?
    /// The broker of the current or last connection attempt.
    public var broker: String?
    public var connected: Bool
    /// disconnected, waiting_for_primary_host or online.
    public var sessionState: String
    public var bdSeq: Int?
    /// The seq of the last message published.
    public var seq: Int
    /// The Primary Host's last STATE (nil when none is configured or none was seen).
    public var primaryHostOnline: Bool?
    /// Samples waiting in the store-and-forward queue, and the bytes they count against the bound.
    public var backlog: Int64
    public var backlogBytes: Int64
    /// Samples dropped because the queue hit its bound.
    public var dropped: Int64
    /// Replay messages published but not yet acknowledged.
    public var replayInFlight: Int
    public var replayedMetrics: UInt64
    public var messagesPublished: UInt64
    public var births: UInt64
    public var connects: UInt64
    public var commandsWritten: UInt64
    public var commandsRefused: UInt64
    public var commandsFailed: UInt64
    /// Malformed or unsupported NCMD/DCMD messages.
    public var commandsRejected: UInt64
    /// `sparkplug.commands`: off, read_only_metrics or allow_list.
    public var commandPolicy: String?
    /// Writes expired in the queue (older than max_age), refused by a queue/payload/metric-count limit, and DCMDs
    /// waiting now.
    public var commandsExpired: UInt64?
    public var commandsDropped: UInt64?
    public var commandQueue: Int?
    /// The timestamp of the Primary Host STATE the session accepted on this connection, and STATE messages refused.
    public var primaryHostStateTimestamp: UInt64?
    public var statesRejected: UInt64?
    /// NCMD Next Server commands ignored: one was obeyed less than 30 s before.
    public var nextServerIgnored: UInt64? = nil
    /// Changes the publisher's feed queue lost because it fell behind.
    public var feedDropped: UInt64
    /// Live samples published but not yet confirmed by a broker receipt (`confirm_live`).
    public var unconfirmed: Int
    /// Receipt requests sent, live samples they confirmed, and live samples moved to the queue unconfirmed
    /// (connection lost, or the unconfirmed buffer full).
    public var receiptRequests: UInt64
    public var liveConfirmed: UInt64
    public var liveRequeued: UInt64
    public var lastError: String?
    /// Unix µs since when the session has not been online (broker lost or Primary Host offline); nil while online.
    public var notOnlineSince: Int64? = nil
    /// The random delay (ms) drawn before the first CONNECT (`startup_delay_max`), and the Unix µs it ends; nil
    /// when off.
    public var startupDelay: Int? = nil
    public var firstConnectAt: Int64? = nil
    /// `replay.delivery` (in_order or alongside), and the drain rate configured: metrics per message, messages per
    /// second (0 = unthrottled).
    public var replayDelivery: String? = nil
    public var replayMetricsPerMessage: Int? = nil
    public var replayMessagesPerSecond: Double? = nil
    /// The drain measured: replayed metrics the broker confirmed per second over the last 10 s, and the seconds the
    /// backlog left would take at that rate (nil when nothing drains or nothing is left).
    public var replayDrainRate: Double? = nil
    public var replayETASeconds: Int? = nil
    /// in_order only: live data is being queued behind the backlog.
    public var liveHeld: Bool? = nil
    /// `sparkplug.compression`: off, deflate or gzip.
    public var compression: String? = nil
}
