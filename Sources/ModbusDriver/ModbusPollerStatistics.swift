import Tags

/// What a poller is doing about its connection.
public enum ModbusConnectionState: String, Sendable {
    case idle
    case connecting
    case connected
    /// Connected, and the device answered on this connection, but its latest requests timed out: a frozen PLC or a
    /// gateway that lost the device behind it. Back to `connected` with the next answer.
    case notAnswering = "not_answering"
    /// Waiting out the reconnect backoff after a failed connect or a dropped connection.
    case backingOff = "backing_off"
    case stopped
    /// The device is disabled in the configuration; its tags are out of service.
    case disabled
}

/// Counters and health of one poller, readable from any thread.
public struct ModbusPollerStatistics: Sendable, Equatable {
    public var state: ModbusConnectionState = .idle
    public var connects: UInt64 = 0
    public var connectFailures: UInt64 = 0
    /// Completed poll cycles (all groups).
    public var polls: UInt64 = 0
    public var requests: UInt64 = 0
    /// Failed requests and connects.
    public var errors: UInt64 = 0
    public var timeouts: UInt64 = 0
    public var exceptions: UInt64 = 0
    /// Requests the device refused as spanning unmapped addresses, now read in pieces.
    public var splitRequests: UInt64 = 0
    public var writes: UInt64 = 0
    public var writeErrors: UInt64 = 0
    /// Writes not carried out because they waited longer than `write_limits.max_age` (expired) or found the queue
    /// full (`max_queue`).
    public var writesExpired: UInt64 = 0
    public var writesDropped: UInt64 = 0
    /// Poll cycles that started later than one period after they were due (skipped, not queued).
    public var overruns: UInt64 = 0
    public var lastError: String?
    /// Unix microseconds of `lastError`.
    public var lastErrorTime: Int64 = 0
    public var lastCycleNanoseconds: Int64 = 0
    /// Every poll cycle's duration, for the metrics endpoint's latency histogram.
    public var cycleDurations = DurationHistogram()
    /// Requests the last poll cycle sent (including retries).
    public var lastRequestsPerCycle: Int = 0
    /// The backoff the poller is currently waiting out, in milliseconds (0 when connected).
    public var backoffMilliseconds: Int = 0
    /// Unix microseconds of the first timeout of the current `notAnswering` stretch; nil in any other state.
    public var notAnsweringSince: Int64?
}
