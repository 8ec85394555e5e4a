import CMosquitto
import Foundation

// What `MQTTClient`'s methods do: start, stop, publish, subscribe and receipt requests.
extension MQTTClient.Core {
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
            if configuration.protocolVersion == .v5 && (sendWill || configuration.disconnectWithWill) {
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
        if message.qos != .atMostOnce {
            awaitingAcks.insert(mid)
            requestSent()
        }
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
        requestSent()
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
}
