/// MQTT delivery guarantee of a publish, subscription or Will.
public enum MQTTQoS: Int32, Sendable, Hashable, CaseIterable {
    case atMostOnce = 0
    case atLeastOnce = 1
    case exactlyOnce = 2
}

/// MQTT protocol level sent in CONNECT.
public enum MQTTProtocolVersion: Sendable, Hashable {
    /// MQTT 3.1.1 (protocol level 4).
    case v311
    /// MQTT 5.0 (protocol level 5).
    case v5
}

/// An application message: published, received from a subscription, or registered as the Will.
public struct MQTTMessage: Sendable, Hashable {
    public var topic: String
    public var payload: [UInt8]
    public var qos: MQTTQoS
    public var retain: Bool

    public init(topic: String, payload: [UInt8], qos: MQTTQoS = .atMostOnce, retain: Bool = false) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
    }
}

/// One MQTT server the client may connect to.
public struct MQTTBroker: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    /// This broker's own credentials and TLS; nil uses those of the `MQTTClientConfiguration`. Brokers of one list
    /// often differ here (a plain local broker as fallback for a TLS one in the cloud).
    public var security: MQTTSecurity?

    public init(host: String, port: Int, security: MQTTSecurity? = nil) {
        self.host = host
        self.port = port
        self.security = security
    }

    public var description: String { "\(host):\(port)" }
}

/// TLS settings; the server's certificate chain and host name are verified unless `verifyServer` is false.
public struct MQTTTLSConfiguration: Sendable, Hashable {
    /// PEM file with the certificate authorities trusted for the server certificate.
    public var caFile: String
    /// PEM client certificate for mutual TLS, or nil.
    public var certificateFile: String?
    /// PEM private key of `certificateFile` (unencrypted), or nil.
    public var keyFile: String?
    /// Verify the server certificate chain and that it names the host connected to. Turning this off makes the
    /// connection open to interception; it exists for commissioning only.
    public var verifyServer: Bool
    /// "tlsv1.2" or "tlsv1.3"; nil lets OpenSSL negotiate the highest both sides support.
    public var tlsVersion: String?

    public init(
        caFile: String, certificateFile: String? = nil, keyFile: String? = nil, verifyServer: Bool = true,
        tlsVersion: String? = nil
    ) {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.verifyServer = verifyServer
        self.tlsVersion = tlsVersion
    }
}

/// The credentials and TLS settings a connection is made with.
public struct MQTTSecurity: Sendable, Hashable {
    public var username: String?
    public var password: String?
    /// nil: plain TCP.
    public var tls: MQTTTLSConfiguration?

    public init(username: String? = nil, password: String? = nil, tls: MQTTTLSConfiguration? = nil) {
        self.username = username
        self.password = password
        self.tls = tls
    }
}

/// How the client waits between connection attempts.
///
/// After the n-th consecutive failure the wait is `min(maxDelay, initialDelay * multiplier^(n-1))`, then scaled by
/// a random factor in `1-jitter ... 1`, so that many edge nodes that lost the same broker do not reconnect in
/// lockstep. A random delay in `0 ... startupDelayMax` precedes the very first attempt for the same reason
/// (a plant-wide power return restarts every node at once).
public struct MQTTReconnectPolicy: Sendable, Hashable {
    public var initialDelay: Duration
    public var maxDelay: Duration
    public var multiplier: Double
    /// Fraction of the delay that is randomised, 0 ... 1.
    public var jitter: Double
    public var startupDelayMax: Duration

    public init(
        initialDelay: Duration = .seconds(1), maxDelay: Duration = .seconds(60), multiplier: Double = 2,
        jitter: Double = 0.5, startupDelayMax: Duration = .seconds(2)
    ) {
        self.initialDelay = initialDelay
        self.maxDelay = maxDelay
        self.multiplier = multiplier
        self.jitter = jitter
        self.startupDelayMax = startupDelayMax
    }

    /// The wait before the next attempt after `failures` consecutive failures (≥ 1); `unit` is a random number
    /// in 0 ..< 1 (injected so that the computation is testable).
    public func delay(afterFailures failures: Int, unit: Double) -> Duration {
        let initial = initialDelay.seconds
        let cap = max(maxDelay.seconds, initial)
        let exponent = Double(max(failures, 1) - 1)
        // Cap the exponent's effect before multiplying so that large failure counts cannot overflow to inf.
        let raw = min(cap, initial * pow(max(multiplier, 1), min(exponent, 64)))
        let j = min(max(jitter, 0), 1)
        let scaled = raw * (1 - j * min(max(unit, 0), 1))
        return .milliseconds(Int64((scaled * 1000).rounded()))
    }
}

/// Everything the client needs to connect; a value so the caller can build it from configuration files.
public struct MQTTClientConfiguration: Sendable {
    /// Tried one at a time, in order; a failed attempt moves on to the next one, wrapping around.
    public var brokers: [MQTTBroker]
    public var clientID: String
    public var protocolVersion: MQTTProtocolVersion
    /// MQTT 3.1.1 clean session / MQTT 5 clean start (with session expiry 0, libmosquitto's default).
    public var cleanSession: Bool
    /// Keepalive in seconds (libmosquitto's minimum is 5).
    public var keepAlive: Int
    /// Credentials and TLS of every broker whose `security` is nil.
    public var username: String?
    public var password: String?
    public var tls: MQTTTLSConfiguration?
    /// Static Will; `MQTTClient.willProvider` overrides it per CONNECT (Sparkplug's NDEATH changes with bdSeq).
    public var will: MQTTMessage?
    public var reconnect: MQTTReconnectPolicy
    /// How long an attempt may take from TCP connect to CONNACK before it counts as failed.
    public var connectTimeout: Duration
    /// How long `stop()` waits for acknowledgements of messages already published before it disconnects.
    public var drainTimeout: Duration
    /// A topic filter never subscribed, whose UNSUBSCRIBE asks the broker for an answer when the connection has been
    /// idle (nothing outstanding, nothing heard) for half the keepalive, so that a broker frozen behind a live TCP
    /// connection is given up within 1.5 × keepalive of its last packet even when nothing is sent (decision 0027).
    /// nil: no probes; an idle connection then relies on libmosquitto's PINGREQ check (up to 2 × keepalive).
    public var idleProbeFilter: String? = nil
    /// MQTT 5 only: every DISCONNECT this client sends (stop, move to the next broker) carries reason code 0x04,
    /// "Disconnect with Will Message", so the broker publishes the Will as well — what Sparkplug 3.0 asks of an edge
    /// node (tck-id-payloads-ndeath-will-message-publisher-disconnect-mqtt50). MQTT 3.1.1 has no such code.
    public var disconnectWithWill = false

    public init(
        brokers: [MQTTBroker], clientID: String, protocolVersion: MQTTProtocolVersion = .v311,
        cleanSession: Bool = true, keepAlive: Int = 30, username: String? = nil, password: String? = nil,
        tls: MQTTTLSConfiguration? = nil, will: MQTTMessage? = nil, reconnect: MQTTReconnectPolicy = .init(),
        connectTimeout: Duration = .seconds(10), drainTimeout: Duration = .seconds(2)
    ) {
        self.brokers = brokers
        self.clientID = clientID
        self.protocolVersion = protocolVersion
        self.cleanSession = cleanSession
        self.keepAlive = keepAlive
        self.username = username
        self.password = password
        self.tls = tls
        self.will = will
        self.reconnect = reconnect
        self.connectTimeout = connectTimeout
        self.drainTimeout = drainTimeout
    }
}

/// A failure of the MQTT client, with the broker involved and libmosquitto's own explanation.
public struct MQTTClientError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong, coarsely, so callers can react without parsing text.
    public enum Kind: Sendable, Hashable {
        /// The configuration cannot work (no brokers, unreadable TLS files, bad option).
        case configuration
        /// The broker answered CONNECT with a refusal (bad credentials, not authorised, bad client id…).
        case connectionRefused
        /// TLS handshake or certificate verification failed.
        case tls
        /// TCP connect failed or an established connection was lost.
        case network
        /// The call needs a connection and there is none.
        case notConnected
        /// libmosquitto rejected a publish or subscribe (payload too large, bad topic…).
        case rejected
    }

    public var kind: Kind
    public var broker: MQTTBroker?
    /// libmosquitto's result code (MOSQ_ERR_*) or the CONNACK / MQTT 5 reason code for `.connectionRefused`.
    public var code: Int32
    public var message: String
    /// For a failed connection attempt: whether the broker may have accepted the CONNECT (and so may hold its
    /// Will) although no CONNACK was seen: the TCP connection was up and the attempt ended without an answer.
    /// False when the CONNECT certainly was not accepted: TCP or TLS failed first, or CONNACK refused it.
    public var connectMayHaveBeenAccepted = false

    public init(kind: Kind, broker: MQTTBroker?, code: Int32, message: String) {
        self.kind = kind
        self.broker = broker
        self.code = code
        self.message = message
    }

    public var description: String {
        let at = broker.map { " (\($0))" } ?? ""
        return "MQTT \(kind)\(at): \(message) [code \(code)]"
    }
}

/// What the client reports; delivered on libmosquitto's network thread (or the client's supervisor thread for
/// attempt failures), so handlers must return quickly and must not block.
public enum MQTTClientEvent: Sendable {
    /// CONNACK accepted; subscriptions registered with `subscribe` have been re-sent before this event.
    case connected(MQTTBroker)
    /// A connection attempt failed; the next attempt starts after `retryIn`.
    case connectionFailed(MQTTClientError, retryIn: Duration)
    /// An established connection ended. `error` is nil when `stop()` ended it.
    case disconnected(MQTTBroker, error: MQTTClientError?)
    /// A message arrived on a subscription.
    case message(MQTTMessage)
    /// The publish made with this tag completed: PUBACK received for QoS 1, PUBCOMP for QoS 2, written to the
    /// socket for QoS 0.
    case published(tag: UInt64)
    /// The broker answered the receipt request made with this tag (`MQTTClient.requestReceipt`): it has read
    /// every packet this connection sent before the request.
    case receipt(tag: UInt64)
}

extension Duration {
    var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) * 1e-18
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif
