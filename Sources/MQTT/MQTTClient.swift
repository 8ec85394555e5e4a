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
