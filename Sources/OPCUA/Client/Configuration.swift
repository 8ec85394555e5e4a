import Foundation

/// How the channel to the server is secured. The default initialiser gives Basic256Sha256 with
/// SignAndEncrypt; an unsecured channel must be asked for explicitly with `.none`.
public struct SecurityConfiguration: Sendable {
    public var policy: SecurityPolicy
    public var mode: MessageSecurityMode
    /// The client's certificate and key; required unless the policy is None.
    public var identity: ApplicationIdentity?
    /// How the server's certificate is checked; required unless the policy is None.
    public var trust: ServerTrust?

    public init(
        identity: ApplicationIdentity, trust: ServerTrust, policy: SecurityPolicy = .basic256Sha256,
        mode: MessageSecurityMode = .signAndEncrypt
    ) {
        self.policy = policy
        self.mode = mode
        self.identity = identity
        self.trust = trust
    }

    private init(policy: SecurityPolicy, mode: MessageSecurityMode) {
        self.policy = policy
        self.mode = mode
    }

    /// No signing, no encryption. Passwords are still encrypted if the server's token policy asks for it.
    public static let none = SecurityConfiguration(policy: .none, mode: .none)

    func validate() throws {
        if (policy == .none) != (mode == .none) {
            throw OPCUAError.invalidArgument("security policy \(policy) cannot be used with mode \(mode)")
        }
        if policy != .none && (identity == nil || trust == nil) {
            throw OPCUAError.invalidArgument(
                "security policy \(policy) needs an application identity and a trust setting")
        }
    }
}

/// Who the session acts for.
public enum UserIdentity: Sendable, Hashable {
    case anonymous
    case userName(String, password: String)
}

/// Connection state of an `OPCUAClient`, reported through `ClientConfiguration.onStateChange`.
public enum ConnectionState: Sendable, Hashable {
    case disconnected
    case connecting
    case connected
    /// Lost the server; trying again. `attempt` counts failed attempts since the loss.
    case reconnecting(attempt: Int)
}

/// Client-wide settings. Times are in seconds.
public struct ClientConfiguration: Sendable {
    public var applicationUri: String
    public var applicationName: String
    public var productUri: String
    public var requestTimeout: Double
    public var sessionTimeout: Double
    /// Interval of the session keep-alive Read (ServerStatus.State) when idle; also detects a dead peer.
    public var keepAliveInterval: Double
    public var reconnectMinDelay: Double
    public var reconnectMaxDelay: Double
    /// Requested secure channel token lifetime; renewed at 75%.
    public var channelLifetime: Double
    public var decodingLimits: DecodingLimits
    public var maxMessageSize: UInt32
    /// Most Republish requests one recovery sends (over all subscriptions): bounds the time a reactivation takes
    /// after a long outage. Missed messages beyond it are counted as unavailable (`RecoveryReport`).
    public var maxRepublishPerRecovery = 256
    /// Called on the client's thread on every state change.
    public var onStateChange: (@Sendable (ConnectionState) -> Void)?
    /// Test hook, see `LoopProbe`.
    var loopProbe: LoopProbe?

    public init(
        applicationUri: String = "urn:edgepilot:opcua-client", applicationName: String = "EdgePilot",
        productUri: String = "urn:edgepilot", requestTimeout: Double = 10, sessionTimeout: Double = 60,
        keepAliveInterval: Double = 5, reconnectMinDelay: Double = 0.5, reconnectMaxDelay: Double = 30,
        channelLifetime: Double = 600, decodingLimits: DecodingLimits = DecodingLimits(),
        maxMessageSize: UInt32 = 64 << 20, onStateChange: (@Sendable (ConnectionState) -> Void)? = nil
    ) {
        self.applicationUri = applicationUri
        self.applicationName = applicationName
        self.productUri = productUri
        self.requestTimeout = requestTimeout
        self.sessionTimeout = sessionTimeout
        self.keepAliveInterval = keepAliveInterval
        self.reconnectMinDelay = reconnectMinDelay
        self.reconnectMaxDelay = reconnectMaxDelay
        self.channelLifetime = channelLifetime
        self.decodingLimits = decodingLimits
        self.maxMessageSize = maxMessageSize
        self.onStateChange = onStateChange
    }
}

/// One item to monitor in a subscription.
public struct MonitoredItem: Sendable, Hashable {
    public var nodeId: NodeId
    /// Sampling interval in milliseconds; -1 uses the publishing interval.
    public var samplingInterval: Double
    public var deadband: Deadband
    public var trigger: DataChangeTrigger
    public var queueSize: UInt32

    public init(
        _ nodeId: NodeId, samplingInterval: Double = -1, deadband: Deadband = .none,
        trigger: DataChangeTrigger = .statusValue, queueSize: UInt32 = 1
    ) {
        self.nodeId = nodeId
        self.samplingInterval = samplingInterval
        self.deadband = deadband
        self.trigger = trigger
        self.queueSize = queueSize
    }
}

/// A reported change of one monitored item.
public struct DataChange: Sendable, Hashable {
    /// Index of the item in the array passed to `subscribe`.
    public var itemIndex: Int
    public var nodeId: NodeId
    public var value: DataValue
}

/// Identifies a subscription made with `subscribe`; stays valid across reconnects.
public struct SubscriptionID: Sendable, Hashable {
    let raw: Int
}
