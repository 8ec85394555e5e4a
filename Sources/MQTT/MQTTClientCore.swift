import CMosquitto
import Foundation

private let libraryInitialised: Bool = {
    // mosquitto_lib_init is not thread-safe; a lazy global runs it exactly once.
    mosquitto_lib_init()
    return true
}()

extension MQTTClient {
    /// Everything behind an `MQTTClient`: its libmosquitto handles, created and configured (credentials, TLS,
    /// callbacks) here, and every mutable field, guarded by `cond`. Its operations, the supervisor thread and the
    /// libmosquitto callbacks are in the `MQTTClientCore+…` files.
    final class Core: @unchecked Sendable {
        let configuration: MQTTClientConfiguration
        let onEvent: @Sendable (MQTTClientEvent) -> Void
        let cond = NSCondition()
        /// One libmosquitto handle per distinct `MQTTSecurity`, created in init and destroyed in deinit only.
        var handles: [OpaquePointer] = []
        /// For each broker of the list, the index of its handle in `handles`.
        var handleOfBroker: [Int] = []

        // All fields below are guarded by `cond`.
        /// The handle of the current (or last) attempt; only the supervisor changes it, between attempts.
        var mosq: OpaquePointer!
        var willProvider: (@Sendable (MQTTBroker) -> MQTTMessage?)?
        var connected = false
        var currentBroker: MQTTBroker?
        var pendingTags: [Int32: UInt64] = [:]
        var receiptTags: [Int32: UInt64] = [:]
        var subscriptions: [String: MQTTQoS] = [:]
        var started = false
        var supervisor: Thread?
        var supervisorDone = false
        var stopRequested = false
        var nextBrokerRequested = false
        var attemptEnded = false
        var attemptError: MQTTClientError?
        var established = false
        var aborting = false
        var lastLogError: String?
        /// Since when a request (a QoS 1 publish or a receipt) has waited with nothing at all coming back from the
        /// broker; nil while nothing is outstanding. A broker frozen behind a live TCP connection is noticed by this
        /// within 1.5 × keepalive, where libmosquitto's own PINGREQ check takes up to twice the keepalive.
        var awaitingSince: ContinuousClock.Instant?
        /// Message ids of QoS 1/2 publishes not yet acknowledged: libmosquitto reports a QoS 0 publish as soon as it
        /// is written to the socket, which says nothing about the broker.
        var awaitingAcks: Set<Int32> = []

        /// When the broker's last packet came (CONNACK, SUBACK is not reported, UNSUBACK, PUBACK, PUBLISH).
        var lastHeard = ContinuousClock.now
        /// Message ids of idle probes (`MQTTClientConfiguration.idleProbeFilter`) not yet answered.
        var probeMids: Set<Int32> = []

        /// Called under `cond` for every packet from the broker: it is alive, so outstanding requests get a new
        /// window.
        func brokerAnswered() {
            lastHeard = .now
            awaitingSince = awaitingAcks.isEmpty && receiptTags.isEmpty && probeMids.isEmpty ? nil : lastHeard
        }

        /// Called under `cond` when a request was sent. With idle probes the broker has been heard within half a
        /// keepalive (or a probe is outstanding), so the silence counts from its last packet, as a probe's does;
        /// without them that packet may be long ago (libmosquitto reports no PINGRESP), so it counts from now.
        func requestSent() {
            if awaitingSince == nil { awaitingSince = configuration.idleProbeFilter == nil ? .now : lastHeard }
        }

        init(configuration: MQTTClientConfiguration, onEvent: @escaping @Sendable (MQTTClientEvent) -> Void)
            throws(MQTTClientError)
        {
            _ = libraryInitialised
            guard !configuration.brokers.isEmpty else {
                throw MQTTClientError(kind: .configuration, broker: nil, code: 0, message: "no brokers configured")
            }
            guard (5...65535).contains(configuration.keepAlive) else {
                throw MQTTClientError(
                    kind: .configuration, broker: nil, code: 0,
                    message: "keepAlive \(configuration.keepAlive) s is outside 5...65535")
            }
            self.configuration = configuration
            self.onEvent = onEvent
            var settings: [MQTTSecurity] = []
            for broker in configuration.brokers {
                let security = Self.security(of: broker, in: configuration)
                if let i = settings.firstIndex(of: security) {
                    handleOfBroker.append(i)
                    continue
                }
                guard let handle = mosquitto_new(configuration.clientID, configuration.cleanSession, nil) else {
                    for h in handles { mosquitto_destroy(h) }
                    handles = []
                    throw MQTTClientError(
                        kind: .configuration, broker: nil, code: MOSQ_ERR_NOMEM.rawValue,
                        message:
                            "mosquitto_new failed for client id '\(configuration.clientID)': \(errorString(MOSQ_ERR_ERRNO.rawValue))"
                    )
                }
                handles.append(handle)
                mosquitto_user_data_set(handle, Unmanaged.passUnretained(self).toOpaque())
                do {
                    try configure(handle, security, for: broker)
                } catch {
                    for h in handles { mosquitto_destroy(h) }
                    handles = []
                    throw error
                }
                settings.append(security)
                handleOfBroker.append(handles.count - 1)
            }
            mosq = handles[0]
        }

        deinit {
            for h in handles { mosquitto_destroy(h) }
        }

        static func security(of broker: MQTTBroker, in c: MQTTClientConfiguration) -> MQTTSecurity {
            broker.security ?? MQTTSecurity(username: c.username, password: c.password, tls: c.tls)
        }

        @inline(__always) func locked<T>(_ body: () throws -> T) rethrows -> T {
            cond.lock()
            defer { cond.unlock() }
            return try body()
        }

        private func configure(_ handle: OpaquePointer, _ security: MQTTSecurity, for broker: MQTTBroker)
            throws(MQTTClientError)
        {
            // A broker is named only when the list mixes settings: then the operator needs to know which entry.
            let mixed = configuration.brokers.contains { Self.security(of: $0, in: configuration) != security }
            func check(_ rc: Int32, _ what: String) throws(MQTTClientError) {
                guard rc == MOSQ_ERR_SUCCESS.rawValue else {
                    throw MQTTClientError(
                        kind: .configuration, broker: mixed ? broker : nil, code: rc,
                        message: "\(what): \(errorString(rc))")
                }
            }
            let c = configuration
            if c.protocolVersion == .v5 {
                try check(
                    mosquitto_int_option(handle, MOSQ_OPT_PROTOCOL_VERSION, Int32(MQTT_PROTOCOL_V5)),
                    "selecting MQTT 5")
            }
            if security.username != nil || security.password != nil {
                try check(
                    mosquitto_username_pw_set(handle, security.username, security.password),
                    "setting username/password")
            }
            if let tls = security.tls {
                for (label, path) in [
                    ("CA file", tls.caFile), ("certificate", tls.certificateFile), ("key", tls.keyFile),
                ]
                where path != nil {
                    guard access(path!, R_OK) == 0 else {
                        throw MQTTClientError(
                            kind: .configuration, broker: mixed ? broker : nil, code: MOSQ_ERR_INVAL.rawValue,
                            message: "TLS \(label) '\(path!)' is not readable: \(String(cString: strerror(errno)))")
                    }
                }
                try check(
                    mosquitto_tls_set(handle, tls.caFile, nil, tls.certificateFile, tls.keyFile, nil),
                    "loading TLS files (CA \(tls.caFile))")
                // cert_reqs 1 = SSL_VERIFY_PEER; insecure=false additionally checks the host name against the
                // certificate, which is what stops a man in the middle with any CA-signed certificate.
                try check(
                    mosquitto_tls_opts_set(handle, tls.verifyServer ? 1 : 0, tls.tlsVersion, nil),
                    "setting TLS options")
                try check(mosquitto_tls_insecure_set(handle, !tls.verifyServer), "setting TLS host name check")
            }
            Self.installCallbacks(on: handle)
        }
    }
}
