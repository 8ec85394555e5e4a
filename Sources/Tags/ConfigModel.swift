/// Where a Modbus value lives on the device.
public enum ModbusArea: String, Sendable, Hashable, CaseIterable {
    case coil
    case discreteInput = "discrete_input"
    case inputRegister = "input_register"
    case holdingRegister = "holding_register"

    /// Bit areas carry booleans; register areas carry 16-bit words.
    public var isBitArea: Bool { self == .coil || self == .discreteInput }
    /// Only coils and holding registers can be written over Modbus.
    public var isWritable: Bool { self == .coil || self == .holdingRegister }
}

/// How the bytes of a multi-register value are ordered, named by where bytes A (most significant) … D land.
///
/// `ABCD` is Modbus' big-endian default; `CDAB` (word-swapped) is what many PLCs use for 32-bit floats.
public enum WordOrder: String, Sendable, Hashable, CaseIterable {
    case abcd = "ABCD"
    case badc = "BADC"
    case cdab = "CDAB"
    case dcba = "DCBA"

    /// Registers appear in reverse order (least significant word first).
    public var swapsWords: Bool { self == .cdab || self == .dcba }
    /// The two bytes inside each register are swapped.
    public var swapsBytes: Bool { self == .badc || self == .dcba }
}

/// Linear conversion between a device's raw number and engineering units.
public struct Scaling: Sendable, Hashable {
    public var rawLow: Double
    public var rawHigh: Double
    public var engineeringLow: Double
    public var engineeringHigh: Double

    public init(rawLow: Double, rawHigh: Double, engineeringLow: Double, engineeringHigh: Double) {
        self.rawLow = rawLow
        self.rawHigh = rawHigh
        self.engineeringLow = engineeringLow
        self.engineeringHigh = engineeringHigh
    }

    @inline(__always) public func toEngineering(_ raw: Double) -> Double {
        engineeringLow + (raw - rawLow) * (engineeringHigh - engineeringLow) / (rawHigh - rawLow)
    }

    @inline(__always) public func toRaw(_ engineering: Double) -> Double {
        rawLow + (engineering - engineeringLow) * (rawHigh - rawLow) / (engineeringHigh - engineeringLow)
    }
}

/// The range a writable tag accepts, in engineering units; writes outside it are refused, never clamped silently.
public struct WriteLimits: Sendable, Hashable {
    public var minimum: Double
    public var maximum: Double

    public init(minimum: Double, maximum: Double) {
        self.minimum = minimum
        self.maximum = maximum
    }

    public func contains(_ value: Double) -> Bool { value >= minimum && value <= maximum }
}

/// The address of a tag's value on its device.
public enum TagSource: Sendable, Hashable {
    case modbus(area: ModbusArea, address: Int)
    /// An OPC UA node, as its string form (`ns=2;s=Tank1.Level`) or a browse path.
    case opcua(node: String)
    /// An OPC UA node found by browse path from the Objects folder (`Objects/2:Plant/2:Level`), resolved at connect.
    case opcuaBrowsePath(String)
    /// A value the agent computes itself, e.g. a control loop's mode or setpoint; the key names it for its producer.
    case computed(String)
}

/// One configured tag: what to read, how to decode and scale it, and whether it may be written.
public struct TagDefinition: Sendable, Hashable {
    public var name: String
    public var device: String
    public var source: TagSource
    public var type: TagDataType
    public var order: WordOrder
    public var scaling: Scaling?
    public var units: String?
    public var description: String?
    /// Changes smaller than this (in engineering units) are not reported to consumers.
    public var deadband: Double
    public var writable: Bool
    public var limits: WriteLimits?
    public var pollGroup: String

    public init(
        name: String, device: String, source: TagSource, type: TagDataType, order: WordOrder = .abcd,
        scaling: Scaling? = nil, units: String? = nil, description: String? = nil, deadband: Double = 0,
        writable: Bool = false, limits: WriteLimits? = nil, pollGroup: String = "default"
    ) {
        self.name = name
        self.device = device
        self.source = source
        self.type = type
        self.order = order
        self.scaling = scaling
        self.units = units
        self.description = description
        self.deadband = deadband
        self.writable = writable
        self.limits = limits
        self.pollGroup = pollGroup
    }

    /// Values of numeric tags with scaling are presented as doubles in engineering units.
    public var presentsAsDouble: Bool {
        switch type {
        case .float32, .float64: return true
        case .bool, .string: return false
        default: return scaling != nil
        }
    }
}

/// Serial line parity for Modbus RTU.
public enum SerialParity: String, Sendable, Hashable, CaseIterable {
    case none, even, odd

    /// The letter libmodbus expects.
    public var letter: Character {
        switch self {
        case .none: return "N"
        case .even: return "E"
        case .odd: return "O"
        }
    }
}

/// How to reach a device.
public enum DeviceTransport: Sendable, Hashable {
    case modbusTCP(host: String, port: Int)
    case modbusRTU(serialDevice: String, baud: Int, parity: SerialParity, dataBits: Int, stopBits: Int)
    case opcua(OPCUAEndpointSettings)
    /// No protocol: the agent's own state (a control loop's mode, setpoints, health) presented as a device so that
    /// history, the CLI and Sparkplug treat it like any other.
    case agent
}

/// One PLC or I/O device the agent polls.
public struct DeviceDefinition: Sendable, Hashable {
    public var name: String
    public var transport: DeviceTransport
    public var unitID: Int
    /// Time to wait for one response, in milliseconds.
    public var timeoutMilliseconds: Int
    /// Extra attempts for a request that timed out before the tags go bad.
    public var retries: Int
    /// Unused addresses a coalesced read may span to save a request.
    public var maxGap: Int
    /// The largest read request, in registers (Modbus allows at most 125).
    public var maxRegistersPerRequest: Int
    /// The largest read request, in bits (Modbus allows at most 2000).
    public var maxBitsPerRequest: Int
    /// Backoff after a failed connect starts here and doubles up to `reconnectMaxMilliseconds`.
    public var reconnectMinMilliseconds: Int
    public var reconnectMaxMilliseconds: Int
    public var enabled: Bool
    /// The device's write queue (`agent.write_limits`, the same for every device).
    public var writeLimits = DeviceWriteLimits()

    public init(
        name: String, transport: DeviceTransport, unitID: Int = 1, timeoutMilliseconds: Int = 1000, retries: Int = 1,
        maxGap: Int = 16, maxRegistersPerRequest: Int = 125, maxBitsPerRequest: Int = 2000,
        reconnectMinMilliseconds: Int = 500, reconnectMaxMilliseconds: Int = 30_000, enabled: Bool = true
    ) {
        self.name = name
        self.transport = transport
        self.unitID = unitID
        self.timeoutMilliseconds = timeoutMilliseconds
        self.retries = retries
        self.maxGap = maxGap
        self.maxRegistersPerRequest = maxRegistersPerRequest
        self.maxBitsPerRequest = maxBitsPerRequest
        self.reconnectMinMilliseconds = reconnectMinMilliseconds
        self.reconnectMaxMilliseconds = reconnectMaxMilliseconds
        self.enabled = enabled
    }
}

/// A set of tags read together at one period.
public struct PollGroup: Sendable, Hashable {
    public var name: String
    public var periodMilliseconds: Int
    /// Set for `mode: subscribe`: the group's OPC UA tags are monitored, not polled.
    public var subscription: OPCUASubscriptionSettings? = nil

    public init(name: String, periodMilliseconds: Int) {
        self.name = name
        self.periodMilliseconds = periodMilliseconds
    }
}

/// Where history goes and how long it is kept.
public struct HistorySettings: Sendable, Hashable {
    public var path: String
    /// Samples older than this are deleted; nil keeps them until the size limit.
    public var retentionSeconds: Int?
    /// The database is kept under this size by deleting the oldest samples; nil means no limit.
    public var maxBytes: Int64?
    /// How often buffered samples are committed, in milliseconds.
    public var commitIntervalMilliseconds: Int
    /// Audit rows are kept by their own limits, never by `maxBytes` while plant history remains: the newest
    /// `auditMaxRows` (nil: any number) and none older than `auditRetentionSeconds` (nil: no age limit).
    public var auditMaxRows: Int? = 100_000
    public var auditRetentionSeconds: Int? = nil

    public init(
        path: String, retentionSeconds: Int? = 30 * 86_400, maxBytes: Int64? = 1 << 30,
        commitIntervalMilliseconds: Int = 500
    ) {
        self.path = path
        self.retentionSeconds = retentionSeconds
        self.maxBytes = maxBytes
        self.commitIntervalMilliseconds = commitIntervalMilliseconds
    }
}

/// Log verbosity, ordered from most to least verbose.
public enum LogLevel: String, Sendable, Hashable, CaseIterable, Comparable {
    case trace, debug, info, notice, warning, error, critical

    public static func < (a: LogLevel, b: LogLevel) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// The whole, validated configuration of one agent.
public struct AgentConfiguration: Sendable, Hashable {
    public var devices: [DeviceDefinition]
    public var tags: [TagDefinition]
    public var pollGroups: [PollGroup]
    public var history: HistorySettings
    public var controlSocketPath: String
    /// The group (name or number) whose members may use the read-only control socket; nil: no such socket.
    public var readOnlyGroup: String? = AgentConfiguration.defaultReadOnlyGroup
    public var logLevel: LogLevel
    /// Control loops (MPC with a PID base layer) the agent runs.
    public var loops: [LoopDefinition] = []
    /// Loops the agent only watches (`monitors:`), publishing their performance as tags.
    public var monitors: [MonitorDefinition] = []
    /// The Sparkplug B edge node (MQTT publisher); nil when the agent does not publish.
    public var sparkplug: SparkplugSettings? = nil
    /// The Prometheus/OpenMetrics endpoint; nil (the default) when the agent serves no metrics.
    public var metrics: MetricsSettings? = nil

    public static let defaultControlSocketPath = "/run/edgepilot/control.sock"
    public static let defaultReadOnlyGroup = "edgepilot-ro"

    public init(
        devices: [DeviceDefinition], tags: [TagDefinition], pollGroups: [PollGroup], history: HistorySettings,
        controlSocketPath: String = AgentConfiguration.defaultControlSocketPath, logLevel: LogLevel = .info
    ) {
        self.devices = devices
        self.tags = tags
        self.pollGroups = pollGroups
        self.history = history
        self.controlSocketPath = controlSocketPath
        self.logLevel = logLevel
    }

    public func device(named name: String) -> DeviceDefinition? { devices.first { $0.name == name } }
    public func pollGroup(named name: String) -> PollGroup? { pollGroups.first { $0.name == name } }
}

/// Where the agent serves its metrics (`metrics: {listen: 127.0.0.1:9464}`): an IPv4 address and a TCP port.
public struct MetricsSettings: Sendable, Hashable {
    public static let defaultPort = 9464
    /// A dotted IPv4 address (`localhost` is read as 127.0.0.1).
    public var host: String
    /// 0 lets the system pick a free port (`edgepilot status` shows which).
    public var port: Int

    public init(host: String = "127.0.0.1", port: Int = MetricsSettings.defaultPort) {
        self.host = host
        self.port = port
    }

    /// Whether only this machine can reach the endpoint (127.0.0.0/8).
    public var isLoopback: Bool { host.hasPrefix("127.") }
}

/// Bounds of a device's write queue, where CLI, loop and command writes wait for the device: a write finding
/// `maxQueue` writes waiting is refused, and one taken off the queue more than `maxAgeMilliseconds` after it was
/// queued is not carried out (it expired): a write that waited behind a slow or frozen device never reaches the
/// PLC late (issue 15).
public struct DeviceWriteLimits: Sendable, Hashable {
    public var maxQueue: Int
    public var maxAgeMilliseconds: Int

    public init(maxQueue: Int = 64, maxAgeMilliseconds: Int = 5000) {
        self.maxQueue = maxQueue
        self.maxAgeMilliseconds = maxAgeMilliseconds
    }
}
