import CMosquitto
import Foundation

// libmosquitto's callbacks, on its network thread, and the C trampolines that reach them.
extension MQTTClient.Core {
    fileprivate func handleConnect(_ mosq: OpaquePointer, rc: Int32) {
        if rc == 0 {
            let subs: [(String, MQTTQoS)] = locked {
                connected = true
                established = true
                // QoS 1 messages of the last connection are re-sent now: their answers are due from here.
                awaitingSince = awaitingAcks.isEmpty ? nil : .now
                lastHeard = .now
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
            let tag = pendingTags.removeValue(forKey: mid)
            if awaitingAcks.remove(mid) != nil { brokerAnswered() }
            return tag
        }
        if let tag { onEvent(.published(tag: tag)) }
    }

    fileprivate func handleUnsubscribe(mid: Int32) {
        let tag: UInt64? = locked {
            defer { cond.broadcast() }  // a graceful stop may be waiting for the last answer
            let tag = receiptTags.removeValue(forKey: mid)
            probeMids.remove(mid)
            brokerAnswered()
            return tag
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
        locked { brokerAnswered() }
        onEvent(
            .message(MQTTMessage(topic: String(cString: m.topic), payload: payload, qos: qos, retain: m.retain)))
    }

    /// Routes libmosquitto's callbacks on `handle` to the `Core` in its user data (see the trampolines below).
    static func installCallbacks(on handle: OpaquePointer) {
        mosquitto_connect_callback_set(handle, onConnectTrampoline)
        mosquitto_disconnect_callback_set(handle, onDisconnectTrampoline)
        mosquitto_publish_callback_set(handle, onPublishTrampoline)
        mosquitto_unsubscribe_callback_set(handle, onUnsubscribeTrampoline)
        mosquitto_message_callback_set(handle, onMessageTrampoline)
        mosquitto_log_callback_set(handle, onLogTrampoline)
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
