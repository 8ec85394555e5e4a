import CMosquitto
import Foundation

/// An MQTT client over libmosquitto that keeps itself connected to one broker of a list.
///
/// Threads: `start()` launches a small supervisor thread that picks the broker, registers the Will, connects
/// and waits (interruptibly) between attempts; each connection is then driven by libmosquitto's own network thread
/// (`mosquitto_loop_start`), on which all `MQTTClientEvent`s except `.connectionFailed` are delivered.
/// `publish` and `subscribe` only queue packets for that thread and never wait for the network, so callers on
/// polling or control threads are never blocked by a slow or absent broker.
///
/// Each broker is connected with its own credentials and TLS settings (`MQTTBroker.security`, else the
/// configuration's): libmosquitto keeps them in its handle and cannot drop TLS from one, so the client keeps one
/// handle per distinct setting and each attempt uses its broker's.
///
/// Sendable: every mutable field lives in `Core` behind one `NSCondition` (`core.cond`); libmosquitto's handles are
/// thread-safe for publish/subscribe/disconnect in threaded mode, and they are created once and destroyed only
/// after both threads have ended. Hence `@unchecked Sendable`.
public final class MQTTClient: @unchecked Sendable {
    private let core: Core

    /// Builds the Will for each CONNECT, called on the supervisor thread just before connecting; returning nil
    /// falls back to `configuration.will`. Sparkplug needs this: its NDEATH Will carries a bdSeq that changes
    /// per connection. Set before `start()`.
    public var willProvider: (@Sendable (MQTTBroker) -> MQTTMessage?)? {
        get { core.locked { core.willProvider } }
        set { core.locked { core.willProvider = newValue } }
    }

    /// Creates a client; nothing connects until `start()`. `onEvent` runs on the client's threads (see the type
    /// documentation) and must not block.
    public init(configuration: MQTTClientConfiguration, onEvent: @escaping @Sendable (MQTTClientEvent) -> Void)
        throws(MQTTClientError)
    {
        core = try Core(configuration: configuration, onEvent: onEvent)
    }

    deinit {
        core.shutdown(graceful: true)
    }

    /// Starts connecting (after the random startup delay) and keeps reconnecting until `stop()`.
    public func start() {
        core.start()
    }

    /// Waits (at most `configuration.drainTimeout`) for outstanding acknowledgements, sends DISCONNECT if connected
    /// (the broker then discards the Will), ends both threads and returns when they have. `sendWill` asks an MQTT 5 broker to publish the Will anyway (reason code 0x04); MQTT 3.1.1 has no
    /// such option, so the caller must publish its death message itself before stopping.
    public func stop(sendWill: Bool = false) {
        core.shutdown(graceful: true, sendWill: sendWill)
    }

    /// Drops the TCP connection without DISCONNECT, exactly as a crashed process would: the broker publishes the
    /// Will. Used by tests and by a watchdog that must make the node's death visible. The client is stopped.
    public func abort() {
        core.shutdown(graceful: false)
    }

    /// Closes the current connection (if any) and connects to the next broker of the list without a backoff
    /// delay; Sparkplug's "Next Server" command and a primary host going offline use this.
    public func moveToNextBroker() {
        core.requestNextBroker()
    }

    /// Whether CONNACK was accepted and the connection has not ended since.
    public var isConnected: Bool { core.locked { core.connected } }

    /// The broker of the current or last attempt.
    public var currentBroker: MQTTBroker? { core.locked { core.currentBroker } }

    /// Queues a message for the network thread. `tag` comes back in `.published(tag:)` once the broker has
    /// acknowledged it (QoS 1/2), which store-and-forward uses to delete buffered samples; the mapping from
    /// libmosquitto's message id is made under the client's lock, so the event can never overtake it.
    /// Throws `.notConnected` rather than letting libmosquitto buffer invisibly: buffering is the caller's job.
    public func publish(_ message: MQTTMessage, tag: UInt64 = 0) throws(MQTTClientError) {
        try core.publish(message, tag: tag)
    }

    /// Subscribes now if connected and again after every reconnect (sessions are clean, so the broker forgets).
    public func subscribe(_ topicFilter: String, qos: MQTTQoS) throws(MQTTClientError) {
        try core.subscribe(topicFilter, qos: qos)
    }

    /// Removes a subscription made with `subscribe`.
    public func unsubscribe(_ topicFilter: String) throws(MQTTClientError) {
        try core.unsubscribe(topicFilter)
    }

    /// Asks the broker to acknowledge everything this connection has sent so far; `.receipt(tag:)` reports the
    /// answer. A broker reads a connection's packets in order, so the answer proves that every QoS 0 message
    /// published before this call reached it. The request is an UNSUBSCRIBE of `filter`, which must be a filter
    /// this client never subscribes to: the broker must answer it (UNSUBACK, even when nothing was subscribed),
    /// it routes no message to anyone and needs no publish permission. A request that was not answered when the
    /// connection ended is never answered (it is not re-sent on the next connection).
    public func requestReceipt(tag: UInt64, filter: String) throws(MQTTClientError) {
        try core.requestReceipt(tag: tag, filter: filter)
    }

    /// Messages published with QoS ≥ 1 whose acknowledgement has not arrived yet.
    public var unacknowledgedCount: Int { core.locked { core.pendingTags.count } }

    /// Receipt requests whose answer has not arrived yet.
    public var pendingReceiptCount: Int { core.locked { core.receiptTags.count } }
}

// MARK: - Implementation

private let libraryInitialised: Bool = {
    // mosquitto_lib_init is not thread-safe; a lazy global runs it exactly once.
    mosquitto_lib_init()
    return true
}()

private func errorString(_ rc: Int32) -> String {
    if rc == MOSQ_ERR_ERRNO.rawValue {
        return String(cString: strerror(errno))
    }
    return String(cString: mosquitto_strerror(rc))
}

private func isTLSMessage(_ text: String) -> Bool {
    text.contains("SSL") || text.contains("TLS") || text.contains("certificate")
}

private func errorKind(forMosquittoCode rc: Int32) -> MQTTClientError.Kind {
    switch rc {
    case MOSQ_ERR_TLS.rawValue, MOSQ_ERR_TLS_HANDSHAKE.rawValue, MOSQ_ERR_OCSP.rawValue: return .tls
    case MOSQ_ERR_CONN_REFUSED.rawValue, MOSQ_ERR_AUTH.rawValue: return .connectionRefused
    case MOSQ_ERR_NO_CONN.rawValue: return .notConnected
    default: return .network
    }
}

extension MQTTClient {
    fileprivate final class Core: @unchecked Sendable {
        let configuration: MQTTClientConfiguration
        let onEvent: @Sendable (MQTTClientEvent) -> Void
        let cond = NSCondition()
        /// One libmosquitto handle per distinct `MQTTSecurity`, created in init and destroyed in deinit only.
        private var handles: [OpaquePointer] = []
        /// For each broker of the list, the index of its handle in `handles`.
        private var handleOfBroker: [Int] = []

        // All fields below are guarded by `cond`.
        /// The handle of the current (or last) attempt; only the supervisor changes it, between attempts.
        private(set) var mosq: OpaquePointer!
        var willProvider: (@Sendable (MQTTBroker) -> MQTTMessage?)?
        var connected = false
        var currentBroker: MQTTBroker?
        var pendingTags: [Int32: UInt64] = [:]
        var receiptTags: [Int32: UInt64] = [:]
        var subscriptions: [String: MQTTQoS] = [:]
        private var started = false
        private var supervisor: Thread?
        private var supervisorDone = false
        private var stopRequested = false
        private var nextBrokerRequested = false
        private var attemptEnded = false
        private var attemptError: MQTTClientError?
        private var established = false
        private var aborting = false
        private var lastLogError: String?

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
            mosquitto_connect_callback_set(handle, onConnectTrampoline)
            mosquitto_disconnect_callback_set(handle, onDisconnectTrampoline)
            mosquitto_publish_callback_set(handle, onPublishTrampoline)
            mosquitto_unsubscribe_callback_set(handle, onUnsubscribeTrampoline)
            mosquitto_message_callback_set(handle, onMessageTrampoline)
            mosquitto_log_callback_set(handle, onLogTrampoline)
        }

        // MARK: Public operations

        func start() {
            cond.lock()
            defer { cond.unlock() }
            guard !started else { return }
            started = true
            let thread = Thread { [self] in
                supervise()
                locked {
                    supervisorDone = true
                    cond.broadcast()
                }
            }
            thread.name = "mqtt-supervisor"
            thread.stackSize = 256 * 1024
            supervisor = thread
            thread.start()
        }

        func shutdown(graceful: Bool, sendWill: Bool = false) {
            cond.lock()
            if !started || stopRequested {
                // Wait for a concurrent stop to finish so that `stop()` always returns with the threads ended.
                while started && !supervisorDone { cond.wait() }
                cond.unlock()
                return
            }
            if graceful {
                // libmosquitto 2.0 marks the handle disconnected before DISCONNECT is written; an acknowledgement
                // arriving in between is then a protocol error to it, and it closes the socket without sending
                // DISCONNECT — so the broker publishes the Will after all. Waiting for outstanding
                // acknowledgements first closes that window (and lets a final QoS 1 message, such as Sparkplug's
                // NDEATH, actually reach the broker).
                let deadline = Date(timeIntervalSinceNow: configuration.drainTimeout.seconds)
                while connected && !(pendingTags.isEmpty && receiptTags.isEmpty) && cond.wait(until: deadline) {}
            }
            stopRequested = true
            aborting = !graceful
            // Read with stopRequested set: no attempt starts after this, so the handle can no longer change.
            let mosq = self.mosq
            cond.broadcast()
            cond.unlock()
            if !graceful {
                // Closing the TCP connection under libmosquitto is what a crash does: no DISCONNECT reaches the
                // broker, so it publishes the Will.
                let fd = mosquitto_socket(mosq)
                if fd >= 0 { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
            } else {
                if configuration.protocolVersion == .v5 && sendWill {
                    _ = mosquitto_disconnect_v5(mosq, Int32(MQTT_RC_DISCONNECT_WITH_WILL_MSG.rawValue), nil)
                } else {
                    _ = mosquitto_disconnect(mosq)
                }
            }
            locked {
                while !supervisorDone { cond.wait() }
            }
        }

        func requestNextBroker() {
            locked {
                nextBrokerRequested = true
                cond.broadcast()
            }
        }

        func publish(_ message: MQTTMessage, tag: UInt64) throws(MQTTClientError) {
            cond.lock()
            defer { cond.unlock() }
            guard connected else {
                throw MQTTClientError(
                    kind: .notConnected, broker: currentBroker, code: MOSQ_ERR_NO_CONN.rawValue,
                    message: "cannot publish to '\(message.topic)': not connected")
            }
            var mid: Int32 = 0
            let rc = message.payload.withUnsafeBytes { raw in
                mosquitto_publish(
                    mosq, &mid, message.topic, Int32(raw.count), raw.baseAddress, message.qos.rawValue, message.retain)
            }
            guard rc == MOSQ_ERR_SUCCESS.rawValue else {
                throw MQTTClientError(
                    kind: rc == MOSQ_ERR_NO_CONN.rawValue ? .notConnected : .rejected, broker: currentBroker,
                    code: rc,
                    message: "publish to '\(message.topic)' (\(message.payload.count) bytes): \(errorString(rc))")
            }
            // Registered under the same lock the on_publish trampoline takes, so the event cannot overtake it.
            pendingTags[mid] = tag
        }

        func subscribe(_ filter: String, qos: MQTTQoS) throws(MQTTClientError) {
            cond.lock()
            defer { cond.unlock() }
            subscriptions[filter] = qos
            guard connected else { return }
            let rc = mosquitto_subscribe(mosq, nil, filter, qos.rawValue)
            guard rc == MOSQ_ERR_SUCCESS.rawValue else {
                subscriptions[filter] = nil
                throw MQTTClientError(
                    kind: .rejected, broker: currentBroker, code: rc,
                    message: "subscribe '\(filter)': \(errorString(rc))")
            }
        }

        func requestReceipt(tag: UInt64, filter: String) throws(MQTTClientError) {
            cond.lock()
            defer { cond.unlock() }
            guard subscriptions[filter] == nil else {
                throw MQTTClientError(
                    kind: .configuration, broker: currentBroker, code: MOSQ_ERR_INVAL.rawValue,
                    message: "receipt filter '\(filter)' is subscribed: the request would remove the subscription")
            }
            guard connected else {
                throw MQTTClientError(
                    kind: .notConnected, broker: currentBroker, code: MOSQ_ERR_NO_CONN.rawValue,
                    message: "cannot request a receipt: not connected")
            }
            var mid: Int32 = 0
            let rc = mosquitto_unsubscribe(mosq, &mid, filter)
            guard rc == MOSQ_ERR_SUCCESS.rawValue else {
                throw MQTTClientError(
                    kind: rc == MOSQ_ERR_NO_CONN.rawValue ? .notConnected : .rejected, broker: currentBroker,
                    code: rc, message: "receipt request (unsubscribe '\(filter)'): \(errorString(rc))")
            }
            // Under the lock the on_unsubscribe trampoline takes, so the answer cannot overtake the registration.
            receiptTags[mid] = tag
        }

        func unsubscribe(_ filter: String) throws(MQTTClientError) {
            cond.lock()
            defer { cond.unlock() }
            guard subscriptions.removeValue(forKey: filter) != nil, connected else { return }
            let rc = mosquitto_unsubscribe(mosq, nil, filter)
            guard rc == MOSQ_ERR_SUCCESS.rawValue else {
                throw MQTTClientError(
                    kind: .rejected, broker: currentBroker, code: rc,
                    message: "unsubscribe '\(filter)': \(errorString(rc))")
            }
        }

        // MARK: Supervisor thread

        /// Waits until `deadline`, stop, or a next-broker request; returns false when stopping.
        private func sleep(until deadline: Date) -> Bool {
            cond.lock()
            defer { cond.unlock() }
            while !stopRequested && !nextBrokerRequested && Date() < deadline {
                _ = cond.wait(until: deadline)
            }
            return !stopRequested
        }

        private func randomUnit() -> Double { Double.random(in: 0..<1) }

        private func supervise() {
            let policy = configuration.reconnect
            let brokers = configuration.brokers
            let startup = policy.startupDelayMax.seconds * randomUnit()
            guard sleep(until: Date(timeIntervalSinceNow: startup)) else { return }
            var index = 0
            var failures = 0
            while true {
                let outcome = attempt(index % brokers.count)
                if outcome.stopped { return }
                // The request that ended this attempt is served by moving on; a new one may cut the pause short.
                locked { nextBrokerRequested = false }
                let pause: Duration
                if outcome.moveOn {
                    // Moving on on request (Sparkplug: Primary Host offline, Next Server) counts as a failure for
                    // the backoff, so that a host that stays offline cannot make us reconnect in a tight loop.
                    index += 1
                    failures += 1
                    pause = policy.delay(afterFailures: failures, unit: randomUnit())
                } else if outcome.established {
                    // A broker that worked is retried first, after a short jittered pause so that a broker that
                    // accepts and then drops us cannot make this a busy loop.
                    failures = 0
                    pause = policy.delay(afterFailures: 1, unit: randomUnit())
                } else {
                    index += 1
                    failures += 1
                    pause = policy.delay(afterFailures: failures, unit: randomUnit())
                    if let error = outcome.error {
                        onEvent(.connectionFailed(error, retryIn: pause))
                    }
                }
                guard sleep(until: Date(timeIntervalSinceNow: pause.seconds)) else { return }
            }
        }

        private struct Outcome {
            var stopped = false
            var established = false
            var moveOn = false
            var error: MQTTClientError?
        }

        private func attempt(_ brokerIndex: Int) -> Outcome {
            let broker = configuration.brokers[brokerIndex]
            let mosq = handles[handleOfBroker[brokerIndex]]
            let usesTLS = Self.security(of: broker, in: configuration).tls != nil
            var outcome = Outcome()
            let provider: (@Sendable (MQTTBroker) -> MQTTMessage?)?? = locked {
                // stop() reads the handle once it has set stopRequested; none may be switched in after that.
                guard !stopRequested else { return nil }
                if self.mosq != mosq {
                    // QoS 1 messages of another handle are re-sent only when that handle reconnects, which may
                    // never happen: they would never be acknowledged.
                    pendingTags = [:]
                }
                self.mosq = mosq
                // Receipt requests are not re-sent on a new connection, so an old one is never answered.
                receiptTags = [:]
                currentBroker = broker
                attemptEnded = false
                attemptError = nil
                lastLogError = nil
                established = false
                nextBrokerRequested = false
                return .some(willProvider)
            }
            guard let provider else {
                outcome.stopped = true
                return outcome
            }
            mosquitto_will_clear(mosq)
            if let will = provider?(broker) ?? configuration.will {
                let rc = will.payload.withUnsafeBytes { raw in
                    mosquitto_will_set(
                        mosq, will.topic, Int32(raw.count), raw.baseAddress, will.qos.rawValue, will.retain)
                }
                if rc != MOSQ_ERR_SUCCESS.rawValue {
                    outcome.error = MQTTClientError(
                        kind: .configuration, broker: broker, code: rc,
                        message: "setting the Will on '\(will.topic)': \(errorString(rc))")
                    return outcome
                }
            }
            let rc = mosquitto_connect_async(mosq, broker.host, Int32(broker.port), Int32(configuration.keepAlive))
            if rc != MOSQ_ERR_SUCCESS.rawValue {
                // The TLS handshake may already fail inside connect_async; OpenSSL's reason is in the log line.
                let detail = locked { lastLogError }.map { " (\($0))" } ?? ""
                outcome.error = MQTTClientError(
                    kind: errorKind(forMosquittoCode: rc), broker: broker, code: rc,
                    message: "connecting to \(broker): \(errorString(rc))\(detail)")
                return outcome
            }
            let loopRC = mosquitto_loop_start(mosq)
            if loopRC != MOSQ_ERR_SUCCESS.rawValue {
                _ = mosquitto_disconnect(mosq)
                outcome.error = MQTTClientError(
                    kind: .configuration, broker: broker, code: loopRC,
                    message: "starting the network thread: \(errorString(loopRC))")
                return outcome
            }
            let connackDeadline = Date(timeIntervalSinceNow: configuration.connectTimeout.seconds)
            // libmosquitto 2.0.11 takes a refused TCP connect under a pending TLS handshake (SSL_ERROR_SYSCALL) for
            // "try again": its loop thread then spins at full CPU until keepalive ends it, and cannot be stopped
            // otherwise.
            var stuck = false
            cond.lock()
            while !attemptEnded && !stopRequested && !nextBrokerRequested {
                // Polled in slices because libmosquitto 2.0 ends its loop thread on a failed TLS handshake without
                // calling on_disconnect; the socket being gone before CONNACK is then the only sign.
                _ = cond.wait(until: Date(timeIntervalSinceNow: 0.05))
                if established || attemptEnded { continue }
                let fd = mosquitto_socket(mosq)
                let socketGone = fd < 0
                if usesTLS && !socketGone && Self.connectFailed(fd) {
                    let log = lastLogError.map { ": \($0)" } ?? ""
                    let tlsFailure = lastLogError.map(isTLSMessage) == true
                    attemptError = MQTTClientError(
                        kind: tlsFailure ? .tls : .network, broker: broker,
                        code: tlsFailure ? MOSQ_ERR_TLS.rawValue : MOSQ_ERR_CONN_REFUSED.rawValue,
                        message: "connecting to \(broker) failed: connection refused or reset before CONNACK\(log)")
                    attemptEnded = true
                    stuck = true
                } else if socketGone || Date() >= connackDeadline {
                    let log = lastLogError.map { ": \($0)" } ?? ""
                    let tlsFailure = usesTLS && (lastLogError.map(isTLSMessage) ?? socketGone)
                    attemptError = MQTTClientError(
                        kind: tlsFailure ? .tls : .network, broker: broker,
                        code: tlsFailure ? MOSQ_ERR_TLS.rawValue : MOSQ_ERR_TIMEOUT.rawValue,
                        message: socketGone
                            ? "connection to \(broker) closed before CONNACK\(log)"
                            : "no CONNACK from \(broker) within \(configuration.connectTimeout)\(log)")
                    attemptEnded = true
                }
            }
            if stopRequested && aborting && connected {
                // abort() shut the socket down; the network thread notices and reports the loss. Waiting for
                // that keeps DISCONNECT from being queued on the dying connection.
                while !attemptEnded { cond.wait() }
            }
            if usesTLS && !established && Self.connectFailed(mosquitto_socket(mosq)) { stuck = true }
            outcome.stopped = stopRequested
            outcome.moveOn = nextBrokerRequested && !stopRequested
            outcome.established = established
            outcome.error = attemptError
            let ended = attemptEnded
            cond.unlock()

            if !ended && !(outcome.stopped && !aborting) {
                // Next broker requested, or abort() before CONNACK: DISCONNECT (if the socket is up) and the
                // disconnected state make libmosquitto's loop thread end; without it loop_stop would wait forever.
                // stop() has queued its DISCONNECT already.
                _ = mosquitto_disconnect(mosq)
            }
            if stuck {
                // See `stuck`: DISCONNECT cannot be sent on a socket that never connected, and the loop thread
                // only leaves its spin when cancelled; it spins through pselect, a cancellation point, holding no
                // lock there.
                _ = mosquitto_disconnect(mosq)
                _ = mosquitto_loop_stop(mosq, true)
            } else {
                _ = mosquitto_loop_stop(mosq, false)
            }
            let event: MQTTClientEvent? = locked {
                let was = connected || established
                connected = false
                guard was else { return nil }
                let err: MQTTClientError? = (outcome.stopped && !aborting) || outcome.moveOn ? nil : attemptError
                return .disconnected(broker, error: err)
            }
            if let event { onEvent(event) }
            return outcome
        }

        /// Whether `fd`'s connect failed: such a socket is back in TCP's CLOSED state, which poll reports as a
        /// hang-up; one still connecting is not. libmosquitto misses it under a pending TLS handshake (see `stuck`).
        private static func connectFailed(_ fd: Int32) -> Bool {
            guard fd >= 0 else { return false }
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            return poll(&p, 1, 0) == 1 && p.revents & Int16(POLLHUP) != 0
        }

        // MARK: Callbacks (libmosquitto network thread)

        fileprivate func handleConnect(_ mosq: OpaquePointer, rc: Int32) {
            if rc == 0 {
                let subs: [(String, MQTTQoS)] = locked {
                    connected = true
                    established = true
                    return subscriptions.map { ($0.key, $0.value) }
                }
                // Re-sent before the connected event so that, for Sparkplug, NCMD/STATE subscriptions precede
                // NBIRTH on the wire.
                for (filter, qos) in subs {
                    _ = mosquitto_subscribe(mosq, nil, filter, qos.rawValue)
                }
                onEvent(.connected(currentBrokerUnlocked()))
            } else {
                let broker = currentBrokerUnlocked()
                let text =
                    configuration.protocolVersion == .v5
                    ? String(cString: mosquitto_reason_string(rc)) : String(cString: mosquitto_connack_string(rc))
                locked {
                    attemptError = MQTTClientError(
                        kind: .connectionRefused, broker: broker, code: rc,
                        message: "broker \(broker) refused CONNECT for client '\(configuration.clientID)': \(text)")
                }
            }
        }

        private func currentBrokerUnlocked() -> MQTTBroker {
            locked { currentBroker ?? configuration.brokers[0] }
        }

        fileprivate func handleDisconnect(_ mosq: OpaquePointer, rc: Int32) {
            // Puts libmosquitto in the disconnected state so that its loop thread ends instead of running its own
            // reconnect logic, which knows neither the broker list nor jitter: the supervisor decides.
            _ = mosquitto_disconnect(mosq)
            locked {
                if rc != 0 && attemptError == nil {
                    let broker = currentBroker ?? configuration.brokers[0]
                    let what = established ? "connection to \(broker) lost" : "connecting to \(broker) failed"
                    let detail = lastLogError.map { " (\($0))" } ?? ""
                    var kind = errorKind(forMosquittoCode: rc)
                    let usesTLS = Self.security(of: broker, in: configuration).tls != nil
                    if kind == .network && usesTLS && lastLogError.map(isTLSMessage) == true {
                        kind = .tls
                    }
                    attemptError = MQTTClientError(
                        kind: kind, broker: broker, code: rc, message: "\(what): \(errorString(rc))\(detail)")
                }
                connected = false
                attemptEnded = true
                cond.broadcast()
            }
        }

        /// Keeps libmosquitto's last error/warning line: for TLS failures it holds OpenSSL's reason (for example
        /// "certificate verify failed"), which its result codes do not.
        fileprivate func handleLog(level: Int32, text: UnsafePointer<CChar>?) {
            guard level & (MOSQ_LOG_ERR | MOSQ_LOG_WARNING) != 0, let text else { return }
            let line = String(cString: text)
            locked { lastLogError = line }
        }

        fileprivate func handlePublish(mid: Int32) {
            let tag: UInt64? = locked {
                defer { cond.broadcast() }  // a graceful stop may be waiting for the last acknowledgement
                return pendingTags.removeValue(forKey: mid)
            }
            if let tag { onEvent(.published(tag: tag)) }
        }

        fileprivate func handleUnsubscribe(mid: Int32) {
            let tag: UInt64? = locked {
                defer { cond.broadcast() }  // a graceful stop may be waiting for the last answer
                return receiptTags.removeValue(forKey: mid)
            }
            if let tag { onEvent(.receipt(tag: tag)) }
        }

        fileprivate func handleMessage(_ message: UnsafePointer<mosquitto_message>) {
            let m = message.pointee
            let payload: [UInt8]
            if let raw = m.payload, m.payloadlen > 0 {
                payload = Array(UnsafeRawBufferPointer(start: raw, count: Int(m.payloadlen)))
            } else {
                payload = []
            }
            let qos = MQTTQoS(rawValue: m.qos) ?? .atMostOnce
            onEvent(
                .message(MQTTMessage(topic: String(cString: m.topic), payload: payload, qos: qos, retain: m.retain)))
        }
    }
}

@inline(__always) private func core(_ userdata: UnsafeMutableRawPointer?) -> MQTTClient.Core? {
    guard let userdata else { return nil }
    return Unmanaged<MQTTClient.Core>.fromOpaque(userdata).takeUnretainedValue()
}

private let onConnectTrampoline: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32) -> Void = {
    mosq, userdata, rc in
    if let mosq { core(userdata)?.handleConnect(mosq, rc: rc) }
}

private let onDisconnectTrampoline: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32) -> Void = {
    mosq, userdata, rc in
    if let mosq { core(userdata)?.handleDisconnect(mosq, rc: rc) }
}

private let onLogTrampoline:
    @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32, UnsafePointer<CChar>?) -> Void = {
        _, userdata, level, text in core(userdata)?.handleLog(level: level, text: text)
    }

private let onPublishTrampoline: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32) -> Void = {
    _, userdata, mid in core(userdata)?.handlePublish(mid: mid)
}

private let onUnsubscribeTrampoline: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32) -> Void = {
    _, userdata, mid in core(userdata)?.handleUnsubscribe(mid: mid)
}

private let onMessageTrampoline:
    @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, UnsafePointer<mosquitto_message>?) -> Void = {
        _, userdata, message in
        guard let message else { return }
        core(userdata)?.handleMessage(message)
    }
