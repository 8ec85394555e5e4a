import Tags

/// What the runtime needs of the thing that keeps one device's tag table current, whatever its protocol.
///
/// Modbus pollers and OPC UA drivers both conform, so starting, stopping, writing and `status` treat every device
/// alike; protocol-specific detail stays in the driver.
public protocol DeviceDriver: AnyObject, Sendable {
    var device: DeviceDefinition { get }
    var table: TagTable { get }
    func start()
    func stop()
    /// Checks and performs a write of `value` (engineering units) to tag `index` of `table`; callable from any thread.
    func writeTag(_ index: Int, _ value: TagValue) throws(DeviceWriteError) -> DeviceWriteOutcome
    /// A snapshot of the counters, readable from any thread.
    var driverStatus: DeviceDriverStatus { get }
    /// The period of the driver's fastest poll group as configured (ms); nil for a driver that does not poll.
    var fastestPollPeriodMilliseconds: Int? { get }
    /// Multiplies every poll group's configured period by `factor` (1 = as configured), from the next cycle on;
    /// callable from any thread. Sparkplug's `Node Control/Scan Rate` sets it (docs/decisions/0032).
    func scalePollPeriods(by factor: Double)
}

extension DeviceDriver {
    /// Drivers that do not poll (OPC UA subscriptions: the server samples) have no scan rate to change.
    public var fastestPollPeriodMilliseconds: Int? { nil }
    public func scalePollPeriods(by factor: Double) {}
}

/// Why a write through a `DeviceDriver` did not happen or did not succeed.
public enum DeviceWriteError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Refused before reaching the device (not writable, outside limits, wrong type); the text says why.
    case refused(String)
    /// The device or the connection failed it.
    case failed(String)
    /// It waited in the device's write queue longer than `agent.write_limits.max_age` and was not carried out.
    case expired(String)

    public var description: String {
        switch self {
        case .refused(let reason): return "write refused: \(reason)"
        case .failed(let reason): return "write failed: \(reason)"
        case .expired(let reason): return "write expired: \(reason)"
        }
    }

    public var isRefusal: Bool {
        if case .refused = self { return true }
        return false
    }

    /// The audit trail's result for this error: `refused`, `expired` or `failed`.
    public var auditResult: String {
        switch self {
        case .refused: return "refused"
        case .expired: return "expired"
        case .failed: return "failed"
        }
    }
}

/// A write the device accepted.
public struct DeviceWriteOutcome: Sendable, Equatable {
    /// For the audit trail: how it was written (`function 16`, `Variant Double`).
    public var detail: String
    /// The value read back right after the write, nil if that read failed.
    public var readBack: TagValue?

    public init(detail: String, readBack: TagValue?) {
        self.detail = detail
        self.readBack = readBack
    }
}

/// Connection state and counters of one driver, as `edgepilot status` shows them.
public struct DeviceDriverStatus: Sendable, Equatable {
    /// `connecting`, `connected`, `not_answering`, `backing_off`, `reconnecting`, `stopped`, `disabled`, `idle`.
    public var state: String = "idle"
    /// Modbus: Unix microseconds since when a connected device has not answered (`not_answering`); nil otherwise.
    public var notAnsweringSince: Int64?
    public var connects: UInt64 = 0
    /// Connections lost and made again (without counting the first connect).
    public var reconnects: UInt64 = 0
    public var polls: UInt64 = 0
    public var requests: UInt64 = 0
    public var errors: UInt64 = 0
    public var timeouts: UInt64 = 0
    public var exceptions: UInt64 = 0
    public var writes: UInt64 = 0
    public var lastError: String?
    /// Unix microseconds of `lastError`.
    public var lastErrorTime: Int64 = 0
    public var requestsPerCycle: Int = 0
    public var lastCycleNanoseconds: Int64 = 0
    /// Every poll cycle's duration (polled reads; empty for subscriptions and loop devices).
    public var cycleDurations = DurationHistogram()
    /// OPC UA: monitored items in subscriptions, and value changes received through them.
    public var monitoredItems: Int?
    public var notifications: UInt64?
    /// OPC UA: how the last reconnect got the session back, e.g. `reactivated (4 missed messages republished)` or
    /// `recreated: ActivateSession refused (BadSessionIdInvalid)`; nil before the first reconnect.
    public var lastRecovery: String?
    /// Writes not carried out: expired in the write queue (`agent.write_limits.max_age`) or refused by a full queue
    /// (`max_queue`); nil for drivers without a write queue.
    public var writesExpired: UInt64?
    public var writesDropped: UInt64?

    public init() {}
}

/// Why a driver could not be built from its device definition: a setting the operator must fix (an unreadable
/// certificate or password file, a node id that does not parse). The text says what and where.
public struct DeviceStartError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
