import CMosquitto
import Foundation

// The supervisor thread: which broker next, one connection attempt at a time, and the backoff between them.
extension MQTTClient.Core {
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

    func supervise() {
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
                awaitingAcks = []
            }
            self.mosq = mosq
            // Receipt requests are not re-sent on a new connection, so an old one is never answered.
            receiptTags = [:]
            probeMids = []
            awaitingSince = nil
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
        // Whether the TCP connection was ever seen up: only then can the CONNECT have reached the broker.
        var tcpUp = false
        // MQTT gives a broker 1.5 × keepalive to hear from a silent client; the same bound for a silent broker.
        let silenceLimit = Duration.milliseconds(configuration.keepAlive * 1500)
        // An idle connection asks for an answer after half a keepalive, so the silence rule covers it too.
        let probeAfter = Duration.milliseconds(configuration.keepAlive * 500)
        cond.lock()
        while !attemptEnded && !stopRequested && !nextBrokerRequested {
            // Polled in slices because libmosquitto 2.0 ends its loop thread on a failed TLS handshake without
            // calling on_disconnect; the socket being gone before CONNACK is then the only sign.
            _ = cond.wait(until: Date(timeIntervalSinceNow: 0.05))
            if established && !attemptEnded, let since = awaitingSince, since.duration(to: .now) > silenceLimit {
                // TCP is up and the broker reads nothing (frozen, or a half-open NAT entry): closing the socket
                // makes the network thread report the loss, with this as the reason.
                awaitingSince = nil
                attemptError = MQTTClientError(
                    kind: .network, broker: broker, code: MOSQ_ERR_KEEPALIVE.rawValue,
                    message: "connection to \(broker) lost: no answer from the broker for \(silenceLimit) "
                        + "(1.5 × keepalive) with requests outstanding")
                let fd = mosquitto_socket(mosq)
                if fd >= 0 { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
                continue
            }
            if established && connected && !attemptEnded && attemptError == nil && awaitingSince == nil,
                lastHeard.duration(to: .now) >= probeAfter
            {
                sendIdleProbe()
                continue
            }
            if established || attemptEnded { continue }
            let fd = mosquitto_socket(mosq)
            let socketGone = fd < 0
            if !socketGone && !tcpUp && Self.hasPeer(fd) { tcpUp = true }
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
        if var e = outcome.error, !established {
            // A refusal in CONNACK or a TLS failure means the broker never accepted this CONNECT. Without a CONNACK
            // on a TCP connection that was up, it may have: the caller must assume its Will is held. A connection
            // that came and went between two polls is not seen, and is taken as never up.
            e.connectMayHaveBeenAccepted = tcpUp && e.kind == .network
            outcome.error = e
        }
        let ended = attemptEnded
        cond.unlock()

        if !ended && !(outcome.stopped && !aborting) {
            // Next broker requested, or abort() before CONNACK: DISCONNECT (if the socket is up) and the
            // disconnected state make libmosquitto's loop thread end; without it loop_stop would wait forever.
            // stop() has queued its DISCONNECT already.
            if configuration.protocolVersion == .v5 && configuration.disconnectWithWill && !outcome.stopped {
                _ = mosquitto_disconnect_v5(mosq, Int32(MQTT_RC_DISCONNECT_WITH_WILL_MSG.rawValue), nil)
            } else {
                _ = mosquitto_disconnect(mosq)
            }
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

    /// Under `cond`: an UNSUBSCRIBE of `idleProbeFilter` (when there is one and it is not subscribed), whose answer
    /// says the broker still reads. The silence it starts counts from the broker's last packet, not from the probe:
    /// the bound is 1.5 × keepalive after the broker was last heard, idle or not.
    private func sendIdleProbe() {
        guard let filter = configuration.idleProbeFilter, subscriptions[filter] == nil else { return }
        var mid: Int32 = 0
        guard mosquitto_unsubscribe(mosq, &mid, filter) == MOSQ_ERR_SUCCESS.rawValue else { return }
        probeMids.insert(mid)
        awaitingSince = lastHeard
    }

    /// Whether `fd` is a connected socket (its TCP handshake completed).
    private static func hasPeer(_ fd: Int32) -> Bool {
        var addr = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        return withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &len) == 0 }
        }
    }

    /// Whether `fd`'s connect failed: such a socket is back in TCP's CLOSED state, which poll reports as a
    /// hang-up; one still connecting is not. libmosquitto misses it under a pending TLS handshake (see `stuck`).
    private static func connectFailed(_ fd: Int32) -> Bool {
        guard fd >= 0 else { return false }
        var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        return poll(&p, 1, 0) == 1 && p.revents & Int16(POLLHUP) != 0
    }
}
