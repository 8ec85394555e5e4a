import Foundation
import MQTT

/// Collects a client's events from libmosquitto's threads and lets a test wait for a condition on them.
final class EventLog: @unchecked Sendable {
    private let cond = NSCondition()
    private var events: [MQTTClientEvent] = []

    var handler: @Sendable (MQTTClientEvent) -> Void {
        { [self] event in
            cond.lock()
            events.append(event)
            cond.broadcast()
            cond.unlock()
        }
    }

    var all: [MQTTClientEvent] {
        cond.lock()
        defer { cond.unlock() }
        return events
    }

    /// Waits until `predicate` holds for the events so far; returns false on timeout.
    @discardableResult
    func wait(timeout: TimeInterval = 10, until predicate: ([MQTTClientEvent]) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        cond.lock()
        defer { cond.unlock() }
        while !predicate(events) {
            if !cond.wait(until: deadline) { return predicate(events) }
        }
        return true
    }

    var connectedCount: Int { all.connectedCount }
    var messages: [MQTTMessage] { all.messages }
    var publishedTags: [UInt64] { all.publishedTags }
    var failures: [(MQTTClientError, Duration)] { all.failures }
    var disconnects: [MQTTClientError?] { all.disconnects }

    func waitConnected(count: Int = 1, timeout: TimeInterval = 10) -> Bool {
        wait(timeout: timeout) { events in
            events.connectedCount >= count
        }
    }
}

/// Views on an event list; predicates of `EventLog.wait` must use these on the list they are given (the log's
/// own accessors take its lock, which `wait` holds).
extension Array where Element == MQTTClientEvent {
    var connectedCount: Int { filter { if case .connected = $0 { true } else { false } }.count }
    var messages: [MQTTMessage] { compactMap { if case .message(let m) = $0 { m } else { nil } } }
    var publishedTags: [UInt64] { compactMap { if case .published(let t) = $0 { t } else { nil } } }
    var failures: [(MQTTClientError, Duration)] {
        compactMap { if case .connectionFailed(let e, let d) = $0 { (e, d) } else { nil } }
    }
    var disconnects: [MQTTClientError?] {
        compactMap { if case .disconnected(_, let e) = $0 { .some(e) } else { nil } }
    }
}

/// A configuration for tests: no startup delay and short backoff so tests stay fast.
func testConfiguration(
    port: Int, clientID: String, brokers: [MQTTBroker]? = nil, protocolVersion: MQTTProtocolVersion = .v311
) -> MQTTClientConfiguration {
    MQTTClientConfiguration(
        brokers: brokers ?? [MQTTBroker(host: "127.0.0.1", port: port)], clientID: clientID,
        protocolVersion: protocolVersion, keepAlive: 10,
        reconnect: MQTTReconnectPolicy(
            initialDelay: .milliseconds(100), maxDelay: .seconds(1), multiplier: 2, jitter: 0.5,
            startupDelayMax: .milliseconds(50)))
}
