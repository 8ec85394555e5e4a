import Crypto
import Foundation
import X509
import _CryptoExtras

/// An OPC UA client over the binary protocol (opc.tcp).
///
/// Service calls (`read`, `write`, `browse`, …) block the calling thread and may be made from any thread.
/// The client owns one thread of its own (`opcua-client`): it keeps Publish requests outstanding and
/// acknowledges them, delivers `onChange` callbacks, renews the secure channel token, sends session keep-alives
/// and, when the server or the network goes away, reconnects with exponential backoff and jitter: a new channel,
/// the session reactivated on it and the missed notifications republished when the server still has the session,
/// else a new session with its subscriptions made again (decision record 0025). Call `disconnect()` to stop that thread. Each secure channel has a
/// reader thread too (`opcua-reader`), which walks Publish responses in place and runs `onValues` callbacks
/// (decision record 0013).
public final class OPCUAClient: @unchecked Sendable {
    public let configuration: ClientConfiguration

    struct Target {
        var url: String
        var security: SecurityConfiguration
        var identity: UserIdentity
    }

    struct Link {
        var channel: SecureChannel
        var authToken: NodeId
        var sessionId: NodeId
        var generation: Int
        var revisedSessionTimeout: Double
        /// The nonce of the session's last ActivateSession response, which the next activation signs (a
        /// reactivation on a new channel, OPC 10000-4 §6.7).
        var serverNonce: [UInt8]
        var serverCertificate: [UInt8]
    }

    // State shared between callers and the client thread, guarded by `lock`.
    let lock = NSLock()
    var target: Target?
    var link: Link?
    var generation = 0
    var currentState: ConnectionState = .disconnected
    var subscriptions: [Int: SubscriptionState] = [:]
    /// The subscriptions that exist on the server, by the server's id; what the reader thread looks up.
    var byServerId: [UInt32: SubscriptionState] = [:]
    /// Longest keep-alive period (publishing interval × keep-alive count) of the subscriptions, in seconds.
    var slowestKeepAlive = 0.0
    var nextSubscriptionId = 1
    var nextClientHandle: UInt32 = 1

    /// Publish responses handled by the reader thread, for the client thread; guarded by `cond`.
    var publishOutcomes: [PublishOutcome] = []
    // Touched only on the client thread.
    var drainedOutcomes: [PublishOutcome] = []
    var publishCompletion: (generation: Int, completion: SecureChannel.BorrowedCompletion)?
    var pendingAcks: [SubscriptionAcknowledgement] = []
    var publishWriter = BinaryWriter(capacity: 0)
    var outstandingPublish = 0
    var publishTarget = 2
    var lastPublishActivity = 0.0
    var keepAliveSentAt: Double?
    var lastKeepAlive = 0.0
    var reconnectAttempt = 0
    var nextReconnectAt = 0.0

    let cond = NSCondition()
    var events: [() -> Void] = []
    /// Set by `disconnect()`; each worker thread owns the flag it was started with, so a later
    /// connect's new worker cannot revive an old one.
    var workerStop: StopFlag?
    var worker: Thread?
    let reconnectCounter = Counter()
    var lastLossError: OPCUAError?
    /// The session of the link that was lost, kept until a reconnect reactivates it or gives it up.
    var lostSession: Link?
    var recoveryCounters = RecoveryCounters()
    var lastRecoveryReport: RecoveryReport?
    /// Set on the client thread while a republished message's values are being delivered.
    var republishing = false

    /// Why the connection was lost or, while reconnecting, why the latest attempt failed (an untrusted certificate, a
    /// refused user, a refused connection); read it in `onStateChange` for `.reconnecting`. Nil if it never was.
    public var lastConnectionError: OPCUAError? {
        lock.lock()
        defer { lock.unlock() }
        return lastLossError
    }

    /// Number of successful automatic reconnects since creation.
    public var reconnectCount: Int { reconnectCounter.value }

    public init(configuration: ClientConfiguration = ClientConfiguration()) {
        self.configuration = configuration
        // Room for the outstanding Publish requests' outcomes and acknowledgements, so that queueing them does not
        // allocate per message.
        publishOutcomes.reserveCapacity(16)
        drainedOutcomes.reserveCapacity(16)
        pendingAcks.reserveCapacity(16)
    }

    /// Current connection state.
    public var state: ConnectionState {
        lock.lock()
        defer { lock.unlock() }
        return currentState
    }

    // MARK: Connect / disconnect

    /// Connects, opens the secure channel, and creates and activates a session. Throws if the first
    /// attempt fails; after that the client keeps itself connected until `disconnect()`.
    public func connect(endpointURL: String, security: SecurityConfiguration, identity: UserIdentity = .anonymous)
        throws
    {
        try security.validate()
        lock.lock()
        if target != nil {
            lock.unlock()
            throw OPCUAError.invalidArgument("already connected; call disconnect() first")
        }
        target = Target(url: endpointURL, security: security, identity: identity)
        generation += 1
        let gen = generation
        lock.unlock()
        setState(.connecting)
        let newLink: Link
        do {
            newLink = try establish(gen: gen)
        } catch {
            lock.lock()
            target = nil
            lock.unlock()
            setState(.disconnected)
            throw error
        }
        lock.lock()
        link = newLink
        lock.unlock()
        startWorker()
        post { [self] in
            lastPublishActivity = monotonicSeconds()
            lastKeepAlive = monotonicSeconds()
        }
        setState(.connected)
    }

    /// Deletes subscriptions, closes the session and the channel, and stops the client thread.
    public func disconnect() {
        cond.lock()
        workerStop?.stopped = true
        workerStop = nil
        let w = worker
        worker = nil
        cond.signal()
        cond.unlock()
        if let w, Thread.current != w {
            while !w.isFinished { usleep(1000) }
        }
        lock.lock()
        let l = link
        link = nil
        lostSession = nil
        target = nil
        generation += 1
        let ids = subscriptions.values.compactMap { $0.serverId }
        subscriptions = [:]
        byServerId = [:]
        slowestKeepAlive = 0
        lock.unlock()
        if let l, l.channel.isOpen {
            if !ids.isEmpty {
                var d = DeleteSubscriptionsRequest(subscriptionIds: ids)
                d.header.authenticationToken = l.authToken
                _ = try? l.channel.call(d, timeout: 2)
            }
            var c = CloseSessionRequest()
            c.header.authenticationToken = l.authToken
            _ = try? l.channel.call(c, timeout: 2)
            l.channel.close()
        }
        cond.lock()
        events = []
        publishOutcomes.removeAll()
        cond.unlock()
        publishCompletion = nil
        setState(.disconnected)
    }

    /// Test hook: first sequence number of the next channel (to exercise the wrap-around).
    var initialSequenceNumber: UInt32 = 1

}

/// Stop request for one client thread; read and written under the client's condition lock.
final class StopFlag: @unchecked Sendable {
    var stopped = false
}

/// A thread-safe counter.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var v = 0
    var value: Int {
        lock.lock()
        defer { lock.unlock() }
        return v
    }
    func increment() {
        lock.lock()
        v += 1
        lock.unlock()
    }
}
