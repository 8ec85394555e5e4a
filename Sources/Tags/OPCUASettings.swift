/// How to reach and trust one OPC UA server, as configured for a device of `type: opcua`.
///
/// Plain strings and enums only: the Tags module knows nothing of the OPC UA client, the Agent maps these onto it.
public struct OPCUAEndpointSettings: Sendable, Hashable {
    /// Security policies the client implements; `none` must be chosen explicitly.
    public enum Policy: String, Sendable, Hashable, CaseIterable {
        case none
        case basic256Sha256 = "Basic256Sha256"
        case aes128Sha256RsaOaep = "Aes128_Sha256_RsaOaep"
    }

    /// Message security modes; `none` goes with policy `none` only.
    public enum Mode: String, Sendable, Hashable, CaseIterable {
        case none
        case sign = "Sign"
        case signAndEncrypt = "SignAndEncrypt"
    }

    /// How the server's certificate is accepted.
    public enum Trust: Sendable, Hashable {
        /// Certificates in `<pki>/trusted/`; an unknown one lands in `<pki>/rejected/` for review.
        case trustList
        /// Exactly the certificate with this SHA-1 thumbprint (40 hex digits).
        case pinnedThumbprint(String)
    }

    /// `opc.tcp://host:port/path`
    public var endpointURL: String
    public var policy: Policy
    public var mode: Mode
    /// User name for a user-name identity; nil for an anonymous session.
    public var userName: String?
    /// File holding the password of `userName` (first line; read at every connect, so it can be rotated).
    public var passwordFile: String?
    /// Holds `own/` (the client certificate), `trusted/` and `rejected/`.
    public var pkiDirectory: String
    public var trust: Trust
    /// ApplicationUri of the client; must match the URI in its certificate.
    public var applicationUri: String
    /// Upper bound on nodes per Read request; the server's MaxNodesPerRead lowers it further when it has one.
    public var maxNodesPerRead: Int

    public init(
        endpointURL: String, policy: Policy = .basic256Sha256, mode: Mode = .signAndEncrypt, userName: String? = nil,
        passwordFile: String? = nil, pkiDirectory: String, trust: Trust = .trustList, applicationUri: String,
        maxNodesPerRead: Int = 1000
    ) {
        self.endpointURL = endpointURL
        self.policy = policy
        self.mode = mode
        self.userName = userName
        self.passwordFile = passwordFile
        self.pkiDirectory = pkiDirectory
        self.trust = trust
        self.applicationUri = applicationUri
        self.maxNodesPerRead = maxNodesPerRead
    }
}

/// A poll group whose OPC UA tags are monitored items of one subscription instead of polled Reads.
///
/// The group's period is the publishing interval. Modbus tags in such a group are still polled at the period.
public struct OPCUASubscriptionSettings: Sendable, Hashable {
    /// How the server filters changes before sending them.
    public enum Deadband: Sendable, Hashable {
        case none
        /// In the variable's units.
        case absolute(Double)
        /// Percent of the variable's EURange (servers without an EURange reject or ignore it).
        case percent(Double)
    }

    /// Milliseconds between the server's samples; nil samples at the publishing interval.
    public var samplingIntervalMilliseconds: Int?
    /// Server-side filter; `none` falls back to each tag's own `deadband` as an absolute one.
    public var deadband: Deadband
    /// Samples the server keeps per item between publishes (1 = only the latest).
    public var queueSize: Int

    public init(samplingIntervalMilliseconds: Int? = nil, deadband: Deadband = .none, queueSize: Int = 1) {
        self.samplingIntervalMilliseconds = samplingIntervalMilliseconds
        self.deadband = deadband
        self.queueSize = queueSize
    }
}
