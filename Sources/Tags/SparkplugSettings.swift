/// The MQTT protocol level the Sparkplug publisher connects with.
public enum SparkplugMQTTVersion: String, Sendable, Hashable, CaseIterable {
    case v311 = "3.1.1"
    case v5 = "5"
}

/// TLS settings of one broker; the server certificate and host name are verified unless `verify` is false.
public struct SparkplugTLSSettings: Sendable, Hashable {
    public var caFile: String
    public var certificateFile: String?
    public var keyFile: String?
    public var verify: Bool

    public init(caFile: String, certificateFile: String? = nil, keyFile: String? = nil, verify: Bool = true) {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.verify = verify
    }
}

/// One MQTT server of the publisher's list, tried in order.
public struct SparkplugBrokerSettings: Sendable, Hashable {
    public var host: String
    public var port: Int
    public var tls: SparkplugTLSSettings?
    public var username: String?
    /// A file whose first line is the password, so the password never sits in the configuration file.
    public var passwordFile: String?

    public init(
        host: String, port: Int, tls: SparkplugTLSSettings? = nil, username: String? = nil, passwordFile: String? = nil
    ) {
        self.host = host
        self.port = port
        self.tls = tls
        self.username = username
        self.passwordFile = passwordFile
    }
}

/// How Sparkplug's store-and-forward buffer is bounded; beyond either bound the oldest samples are dropped (counted).
public struct StoreAndForwardSettings: Sendable, Hashable {
    public var maxBytes: Int64
    public var maxSamples: Int
    /// Keep live (QoS 0) samples in memory until the broker confirms it has read them, and queue the unconfirmed
    /// ones when the connection dies: closes the window in which a broker outage loses live data.
    public var confirmLive: Bool
    /// Capacity of that memory (samples); when full, its oldest samples go to the queue before confirmation.
    public var unconfirmedSamples: Int

    public init(
        maxBytes: Int64 = 256 << 20, maxSamples: Int = 5_000_000, confirmLive: Bool = true,
        unconfirmedSamples: Int = 16_384
    ) {
        self.maxBytes = maxBytes
        self.maxSamples = maxSamples
        self.confirmLive = confirmLive
        self.unconfirmedSamples = unconfirmedSamples
    }
}

/// Whether live data waits for the stored backlog (`sparkplug.replay.delivery`).
public enum ReplayDelivery: String, Sendable, Hashable, CaseIterable {
    /// The backlog is drained before live data resumes; changes meanwhile join the queue behind it, so the host
    /// receives every metric in time order.
    case inOrder = "in_order"
    /// Live data keeps flowing while the backlog drains beside it (the default).
    case alongside
}

/// How fast the stored backlog is replayed after a reconnect, and whether live data flows beside it.
public struct ReplaySettings: Sendable, Hashable {
    public var metricsPerMessage: Int
    /// 0 means unthrottled (still bounded by the acknowledgement window).
    public var messagesPerSecond: Double
    public var delivery: ReplayDelivery

    public init(metricsPerMessage: Int = 500, messagesPerSecond: Double = 20, delivery: ReplayDelivery = .alongside) {
        self.metricsPerMessage = metricsPerMessage
        self.messagesPerSecond = messagesPerSecond
        self.delivery = delivery
    }
}

/// `sparkplug.compression`: births and data published compressed, as MQTT Engine and Transmission do it.
public enum SparkplugPayloadCompression: String, Sendable, Hashable, CaseIterable {
    case off
    case deflate
    case gzip
}

/// Which commands from the broker the node carries out (`sparkplug.commands`, docs/SECURITY.md). NCMD Node
/// Control/Rebirth is honoured under every policy: it only makes the node publish what it already publishes, and it
/// is rate-limited.
public enum SparkplugCommandPolicy: String, Sendable, Hashable, CaseIterable {
    /// No remote writes: every DCMD and NCMD write, and Node Control/Next Server, is refused and audited.
    case off
    /// Node Control (Rebirth, Next Server) is honoured; every metric write is refused.
    case readOnlyMetrics = "read_only_metrics"
    /// As `readOnlyMetrics`, plus DCMD writes to the metrics of `SparkplugSettings.commandAllowList`, which then
    /// pass the device's own checks (writable, limits, type) like any write.
    case allowList = "allow_list"
}

/// Bounds on the DCMD queue (`sparkplug.command_limits`): every command dropped by one is counted and audited.
public struct SparkplugCommandLimits: Sendable, Hashable {
    /// DCMD messages waiting for the device; beyond it new ones are refused.
    public var maxQueue: Int
    /// A write taken off the queue later than this after its DCMD arrived is not carried out (expired).
    public var maxAgeMilliseconds: Int
    /// A DCMD/NCMD payload larger than this is refused before it is decoded.
    public var maxPayloadBytes: Int
    /// A DCMD with more metrics than this is refused whole.
    public var maxMetrics: Int

    public init(
        maxQueue: Int = 1000, maxAgeMilliseconds: Int = 5000, maxPayloadBytes: Int = 65_536, maxMetrics: Int = 500
    ) {
        self.maxQueue = maxQueue
        self.maxAgeMilliseconds = maxAgeMilliseconds
        self.maxPayloadBytes = maxPayloadBytes
        self.maxMetrics = maxMetrics
    }
}

/// The range NCMD `Node Control/Scan Rate` may set (`sparkplug.scan_rate_limits`), in ms; a value outside it is
/// refused and audited (docs/decisions/0032-engine-node-metrics-and-scan-rate.md).
public struct ScanRateLimits: Sendable, Hashable {
    public var minimumMilliseconds: Int
    public var maximumMilliseconds: Int

    /// 100 ms to 1 h: a host must not be able to make the node hammer its PLCs, nor stop polling them.
    public init(minimumMilliseconds: Int = 100, maximumMilliseconds: Int = 3_600_000) {
        self.minimumMilliseconds = minimumMilliseconds
        self.maximumMilliseconds = maximumMilliseconds
    }
}

/// The `sparkplug:` section: EdgePilot as a Sparkplug B 3.0 edge node.
public struct SparkplugSettings: Sendable, Hashable {
    public var groupID: String
    public var edgeNodeID: String
    public var primaryHostID: String?
    public var brokers: [SparkplugBrokerSettings]
    public var mqttVersion: SparkplugMQTTVersion
    public var keepAliveSeconds: Int
    /// Where the last bdSeq is kept; nil = `sparkplug.bdseq` beside the history database.
    public var bdSeqPath: String?
    public var storeAndForward: StoreAndForwardSettings
    public var replay: ReplaySettings
    /// Backoff between connection attempts: starts here, doubles up to the maximum (with jitter).
    public var reconnectMinMilliseconds: Int = 1000
    public var reconnectMaxMilliseconds: Int = 30_000
    /// Which commands from the broker are carried out; off by default (docs/decisions/0017).
    public var commands: SparkplugCommandPolicy = .off
    /// With `commands: allow_list`: the metrics DCMD may write, as `<metric>` (any device) or `<device>/<metric>`.
    public var commandAllowList: [String] = []
    public var commandLimits = SparkplugCommandLimits()
    /// The first CONNECT waits a random time up to this (ms, 0 = off), so nodes powered up together after a site
    /// outage do not all connect and publish their births in the same second.
    public var startupDelayMaxMilliseconds = 0
    /// What NCMD `Node Control/Scan Rate` may set.
    public var scanRateLimits = ScanRateLimits()
    /// NBIRTH, DBIRTH, NDATA and DDATA compressed (off by default; deaths and what hosts send are never).
    public var compression: SparkplugPayloadCompression = .off

    // Templates (docs/decisions/0037-sparkplug-templates.md).
    /// Loops as template instances, and how.
    public var templates = SparkplugTemplateSettings()

    public init(
        groupID: String, edgeNodeID: String, primaryHostID: String? = nil, brokers: [SparkplugBrokerSettings],
        mqttVersion: SparkplugMQTTVersion = .v311, keepAliveSeconds: Int = 30, bdSeqPath: String? = nil,
        storeAndForward: StoreAndForwardSettings = .init(), replay: ReplaySettings = .init()
    ) {
        self.groupID = groupID
        self.edgeNodeID = edgeNodeID
        self.primaryHostID = primaryHostID
        self.brokers = brokers
        self.mqttVersion = mqttVersion
        self.keepAliveSeconds = keepAliveSeconds
        self.bdSeqPath = bdSeqPath
        self.storeAndForward = storeAndForward
        self.replay = replay
    }

    /// `bdSeqPath`, or `sparkplug.bdseq` in the directory of `historyPath`.
    public func resolvedBdSeqPath(historyPath: String) -> String {
        if let bdSeqPath { return bdSeqPath }
        guard let slash = historyPath.lastIndex(of: "/") else { return "sparkplug.bdseq" }
        return String(historyPath[..<slash]) + "/sparkplug.bdseq"
    }
}
