import Crypto
import Foundation
import X509
import _CryptoExtras

/// An OPC UA client over the binary protocol (opc.tcp).
///
/// Service calls (`read`, `write`, `browse`, …) block the calling thread and may be made from any thread.
/// The client owns one thread of its own (`opcua-client`): it keeps Publish requests outstanding and
/// acknowledges them, delivers `onChange` callbacks, renews the secure channel token, sends session keep-alives
/// and, when the server or the network goes away, reconnects with exponential backoff and jitter and recreates
/// the channel, session and subscriptions. Call `disconnect()` to stop that thread. Each secure channel has a
/// reader thread too (`opcua-reader`), which walks Publish responses in place and runs `onValues` callbacks
/// (decision record 0013).
public final class OPCUAClient: @unchecked Sendable {
    public let configuration: ClientConfiguration

    private struct Target {
        var url: String
        var security: SecurityConfiguration
        var identity: UserIdentity
    }

    private struct Link {
        var channel: SecureChannel
        var authToken: NodeId
        var sessionId: NodeId
        var generation: Int
        var revisedSessionTimeout: Double
    }

    private final class SubscriptionState {
        let items: [MonitoredItem]
        /// Client handles are consecutive from `handleBase`, so a handle maps to its item by subtraction.
        let handleBase: UInt32
        let publishingInterval: Double
        let keepAliveCount: UInt32
        /// Runs on the channel's reader thread with each DataChangeNotification.
        let deliver: @Sendable (DataValueBatch) -> Void
        var serverId: UInt32?
        var revisedInterval: Double

        init(
            items: [MonitoredItem], handleBase: UInt32, publishingInterval: Double, keepAliveCount: UInt32,
            deliver: @escaping @Sendable (DataValueBatch) -> Void
        ) {
            self.items = items
            self.handleBase = handleBase
            self.publishingInterval = publishingInterval
            self.keepAliveCount = keepAliveCount
            self.deliver = deliver
            self.revisedInterval = publishingInterval
        }

        var handles: Range<UInt32> { handleBase..<handleBase &+ UInt32(items.count) }
    }

    /// A Publish response as the reader thread hands it to the client thread, its values already delivered.
    private struct PublishOutcome {
        enum Result {
            case delivered(PublishSummary)
            /// The response was a fault or malformed.
            case refused(OPCUAError)
            /// The channel failed; its `onClose` reports the loss.
            case channelFailed
        }
        var generation: Int
        var result: Result
    }

    // State shared between callers and the client thread, guarded by `lock`.
    private let lock = NSLock()
    private var target: Target?
    private var link: Link?
    private var generation = 0
    private var currentState: ConnectionState = .disconnected
    private var subscriptions: [Int: SubscriptionState] = [:]
    /// The subscriptions that exist on the server, by the server's id; what the reader thread looks up.
    private var byServerId: [UInt32: SubscriptionState] = [:]
    /// Longest keep-alive period (publishing interval × keep-alive count) of the subscriptions, in seconds.
    private var slowestKeepAlive = 0.0
    private var nextSubscriptionId = 1
    private var nextClientHandle: UInt32 = 1

    /// Publish responses handled by the reader thread, for the client thread; guarded by `cond`.
    private var publishOutcomes: [PublishOutcome] = []
    // Touched only on the client thread.
    private var drainedOutcomes: [PublishOutcome] = []
    private var publishCompletion: (generation: Int, completion: SecureChannel.BorrowedCompletion)?
    private var pendingAcks: [SubscriptionAcknowledgement] = []
    private var publishWriter = BinaryWriter(capacity: 0)
    private var outstandingPublish = 0
    private var publishTarget = 2
    private var lastPublishActivity = 0.0
    private var keepAliveSentAt: Double?
    private var lastKeepAlive = 0.0
    private var reconnectAttempt = 0
    private var nextReconnectAt = 0.0

    private let cond = NSCondition()
    private var events: [() -> Void] = []
    /// Set by `disconnect()`; each worker thread owns the flag it was started with, so a later
    /// connect's new worker cannot revive an old one.
    private var workerStop: StopFlag?
    private var worker: Thread?
    private let reconnectCounter = Counter()
    private var lastLossError: OPCUAError?

    /// Why the connection was last lost (for logs); nil if it never was.
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

    /// Lists the endpoints a server offers, over an unsecured channel used only for discovery.
    public static func getEndpoints(endpointURL: String, configuration: ClientConfiguration = ClientConfiguration())
        throws -> [EndpointDescription]
    {
        let ch = try SecureChannel.open(channelConfig(configuration, url: endpointURL, security: .none)) { _ in }
        defer { ch.close() }
        return try ch.call(GetEndpointsRequest(endpointUrl: endpointURL)).endpoints
    }

    private static func channelConfig(
        _ c: ClientConfiguration, url: String, security: SecurityConfiguration, serverCertificate: [UInt8]? = nil
    ) -> ChannelConfiguration {
        var cfg = ChannelConfiguration(
            endpointURL: url, policy: security.policy, mode: security.mode, identity: security.identity,
            serverCertificate: serverCertificate)
        cfg.requestedLifetimeMs = UInt32(c.channelLifetime * 1000)
        cfg.timeout = c.requestTimeout
        cfg.decodingLimits = c.decodingLimits
        cfg.maxMessageSize = c.maxMessageSize
        cfg.loopProbe = c.loopProbe
        return cfg
    }

    /// Test hook: first sequence number of the next channel (to exercise the wrap-around).
    var initialSequenceNumber: UInt32 = 1

    private func establish(gen: Int) throws -> Link {
        lock.lock()
        guard let target else {
            lock.unlock()
            throw OPCUAError.notConnected
        }
        lock.unlock()
        let sec = target.security
        let onClose: @Sendable (OPCUAError) -> Void = { [weak self] e in
            self?.post { self?.connectionLost(gen: gen, e) }
        }
        var discoveryConfig = OPCUAClient.channelConfig(configuration, url: target.url, security: .none)
        discoveryConfig.initialSequenceNumber = initialSequenceNumber
        let discovery = try SecureChannel.open(discoveryConfig, onClose: onClose)
        var channel = discovery
        do {
            let endpoints = try discovery.call(GetEndpointsRequest(endpointUrl: target.url)).endpoints
            let candidates = endpoints.filter { $0.securityPolicyUri == sec.policy.uri && $0.securityMode == sec.mode }
            guard let endpoint = candidates.max(by: { $0.securityLevel < $1.securityLevel }) else {
                let offered = endpoints.map {
                    "\($0.securityPolicyUri.split(separator: "#").last ?? "?")/\($0.securityMode)"
                }
                throw OPCUAError.invalidArgument(
                    "server offers no endpoint with \(sec.policy)/\(sec.mode); it offers \(offered.joined(separator: ", "))"
                )
            }
            if sec.policy != .none {
                try sec.trust!.verify(endpoint.serverCertificate)
                discovery.close()
                var cfg = OPCUAClient.channelConfig(
                    configuration, url: target.url, security: sec, serverCertificate: endpoint.serverCertificate)
                cfg.initialSequenceNumber = initialSequenceNumber
                channel = try SecureChannel.open(cfg, onClose: onClose)
            }
            return try createSession(channel: channel, endpoint: endpoint, target: target, gen: gen)
        } catch {
            channel.close()
            discovery.close()
            throw error
        }
    }

    private func createSession(channel: SecureChannel, endpoint: EndpointDescription, target: Target, gen: Int) throws
        -> Link
    {
        let sec = target.security
        let clientNonce = secureRandomBytes(32)
        let cs = CreateSessionRequest(
            clientDescription: ApplicationDescription(
                applicationUri: configuration.applicationUri, productUri: configuration.productUri,
                name: configuration.applicationName, type: 1),
            endpointUrl: target.url, sessionName: "\(configuration.applicationName) \(UUID().uuidString.prefix(8))",
            clientNonce: clientNonce, clientCertificate: sec.identity?.certificateDER,
            requestedSessionTimeout: configuration.sessionTimeout * 1000, maxResponseMessageSize: 0)
        let session = try channel.call(cs)

        var act = ActivateSessionRequest(userIdentityToken: .null)
        act.header.authenticationToken = session.authenticationToken
        if sec.policy != .none, let identity = sec.identity {
            guard session.serverCertificate == endpoint.serverCertificate else {
                throw OPCUAError.security("CreateSession returned a different server certificate than GetEndpoints")
            }
            let ctx = try AsymmetricContext(identity: identity, serverCertificate: session.serverCertificate)
            guard let sig = session.serverSignature.signature,
                ctx.verify(sig[...], for: (identity.certificateDER + clientNonce)[...])
            else {
                throw OPCUAError.security(
                    "server signature in CreateSession does not verify (BadApplicationSignatureInvalid)")
            }
            act.clientSignature = SignatureData(
                algorithm: SecurityPolicy.asymmetricSignatureUri,
                signature: try ctx.sign((session.serverCertificate + session.serverNonce)[...]))
        }
        act.userIdentityToken = try identityToken(target.identity, endpoint: endpoint, serverNonce: session.serverNonce)
        _ = try channel.call(act)
        return Link(
            channel: channel, authToken: session.authenticationToken, sessionId: session.sessionId, generation: gen,
            revisedSessionTimeout: session.revisedSessionTimeout / 1000)
    }

    private func identityToken(_ identity: UserIdentity, endpoint: EndpointDescription, serverNonce: [UInt8]) throws
        -> ExtensionObject
    {
        switch identity {
        case .anonymous:
            guard let p = endpoint.userIdentityTokens.first(where: { $0.tokenType == .anonymous }) else {
                throw OPCUAError.invalidArgument("the endpoint does not accept anonymous sessions")
            }
            return ExtensionObject(
                typeId: AnonymousIdentityToken.typeId, encoding: AnonymousIdentityToken(policyId: p.policyId))
        case .userName(let user, let password):
            guard let p = endpoint.userIdentityTokens.first(where: { $0.tokenType == .userName }) else {
                throw OPCUAError.invalidArgument("the endpoint does not accept user names")
            }
            var policyUri = p.securityPolicyUri ?? ""
            if policyUri.isEmpty { policyUri = endpoint.securityPolicyUri }
            var token = UserNameIdentityToken(policyId: p.policyId, userName: user, password: Array(password.utf8))
            if policyUri != SecurityPolicy.none.uri {
                guard SecurityPolicy(rawValue: policyUri) != nil else {
                    throw OPCUAError.invalidArgument("user token policy \(policyUri) is not supported")
                }
                token.password = try AsymmetricContext.encryptSecret(
                    Array(password.utf8), nonce: serverNonce, serverCertificate: endpoint.serverCertificate)
                token.encryptionAlgorithm = SecurityPolicy.oaepEncryptionUri
            }
            return ExtensionObject(typeId: UserNameIdentityToken.typeId, encoding: token)
        }
    }

    // MARK: Services

    private func currentLink() throws -> Link {
        lock.lock()
        defer { lock.unlock() }
        guard let link, currentState == .connected else { throw OPCUAError.notConnected }
        return link
    }

    private func call<R: ServiceRequest>(_ req: R) throws -> R.Response {
        let l = try currentLink()
        var r = req
        r.header.authenticationToken = l.authToken
        do {
            return try l.channel.call(r, timeout: configuration.requestTimeout)
        } catch let e as OPCUAError {
            if OPCUAClient.isSessionLoss(e) {
                post { [self] in connectionLost(gen: l.generation, e) }
            }
            throw e
        }
    }

    private static func isSessionLoss(_ e: OPCUAError) -> Bool {
        guard case .serviceFault(_, let s) = e else { return false }
        return [
            .badSessionIdInvalid, .badSessionClosed, .badSessionNotActivated, .badSecureChannelIdInvalid,
            .badSecureChannelTokenUnknown,
        ].contains(StatusCode(s.rawValue & 0xFFFF_0000))
    }

    /// Reads one attribute (Value by default) of each node. Results are in the order of `nodes`;
    /// a per-node failure is a DataValue with a bad status, not a thrown error.
    public func read(
        _ nodes: [NodeId], attribute: AttributeId = .value, timestamps: TimestampsToReturn = .both, maxAge: Double = 0
    ) throws -> [DataValue] {
        if nodes.isEmpty { return [] }
        let resp = try call(
            ReadRequest(
                maxAge: maxAge, timestampsToReturn: timestamps,
                nodesToRead: nodes.map { ReadValueId(nodeId: $0, attributeId: attribute.rawValue) }))
        guard resp.results.count == nodes.count else {
            throw OPCUAError.protocolViolation("Read of \(nodes.count) nodes returned \(resp.results.count) results")
        }
        return resp.results
    }

    /// Reads the nodes of `prepared` and hands the results to `body`, on the calling thread, as they lie in the
    /// response: nothing is built per node and, once the buffers of `prepared` have grown to the message sizes,
    /// nothing is allocated per call either. Results are in the order of `prepared.nodes`; a per-node failure is a
    /// value with a bad status. `body` is not called for an empty node list. One `PreparedRead` serves one call at
    /// a time (concurrent calls wait for each other).
    public func read(_ prepared: PreparedRead, _ body: (DataValueBatch) throws -> Void) throws {
        if prepared.nodes.isEmpty { return }
        let l = try currentLink()
        prepared.useLock.lock()
        defer { prepared.useLock.unlock() }
        let timeout = configuration.requestTimeout
        let batch: DataValueBatch
        do {
            try l.channel.call(
                writer: &prepared.request, pending: prepared.pending, response: prepared.response, timeout: timeout,
                what: ReadRequest.name
            ) { w, id in
                var header = RequestHeader()
                header.authenticationToken = l.authToken
                header.requestHandle = id
                header.timeoutHint = UInt32(min(timeout * 1000, Double(UInt32.max)))
                prepared.encodeRequest(header: header, to: &w)
            }
            batch = try InPlaceResponses.read(
                BinaryReader(prepared.response.bytes, limits: configuration.decodingLimits),
                expected: prepared.nodes.count)
        } catch let e as OPCUAError {
            if OPCUAClient.isSessionLoss(e) {
                post { [self] in connectionLost(gen: l.generation, e) }
            }
            throw e
        }
        try body(batch)
    }

    /// Writes values (only the value: no status or timestamps, and the Variant type must match the node's).
    public func write(_ values: [(NodeId, Variant)]) throws -> [StatusCode] {
        if values.isEmpty { return [] }
        let resp = try call(
            WriteRequest(
                nodesToWrite: values.map {
                    WriteValue(nodeId: $0.0, attributeId: AttributeId.value.rawValue, value: DataValue($0.1))
                }))
        guard resp.results.count == values.count else {
            throw OPCUAError.protocolViolation("Write of \(values.count) values returned \(resp.results.count) results")
        }
        return resp.results
    }

    /// Browses all references of a node, following continuation points (BrowseNext) to the end.
    public func browse(
        _ node: NodeId, direction: BrowseDirection = .forward, referenceType: NodeId = NodeId(33),
        includeSubtypes: Bool = true, maxReferencesPerCall: UInt32 = 0
    ) throws -> [ReferenceDescription] {
        let desc = BrowseDescription(
            nodeId: node, direction: direction, referenceTypeId: referenceType, includeSubtypes: includeSubtypes)
        let first = try call(BrowseRequest(requestedMaxReferencesPerNode: maxReferencesPerCall, nodesToBrowse: [desc]))
        guard var result = first.results.first else { throw OPCUAError.protocolViolation("Browse returned no result") }
        var refs: [ReferenceDescription] = []
        while true {
            if result.statusCode.isBad { throw OPCUAError.serviceFault(service: "Browse", status: result.statusCode) }
            refs += result.references
            guard let cp = result.continuationPoint, !cp.isEmpty else { return refs }
            let next = try call(BrowseNextRequest(releaseContinuationPoints: false, continuationPoints: [cp]))
            guard let r = next.results.first else {
                throw OPCUAError.protocolViolation("BrowseNext returned no result")
            }
            result = r
        }
    }

    /// Resolves a path of browse names (following hierarchical references) to a NodeId.
    public func translateBrowsePath(from start: NodeId = NodeId(85), path: [RelativePathElement]) throws -> NodeId {
        let resp = try call(TranslateBrowsePathsRequest(browsePaths: [BrowsePath(startingNode: start, elements: path)]))
        guard let r = resp.results.first else {
            throw OPCUAError.protocolViolation("TranslateBrowsePathsToNodeIds returned no result")
        }
        if r.statusCode.isBad {
            throw OPCUAError.serviceFault(service: "TranslateBrowsePathsToNodeIds", status: r.statusCode)
        }
        guard let t = r.targets.first(where: { $0.1 == UInt32.max }) ?? r.targets.first else {
            throw OPCUAError.serviceFault(service: "TranslateBrowsePathsToNodeIds", status: StatusCode(0x806F_0000))
        }
        return t.0.nodeId
    }

    // MARK: Subscriptions

    /// Creates a subscription with one monitored item per entry of `items`. `onChange` runs on the client's
    /// thread with the changes of each DataChangeNotification, as `DataValue`s (which allocates; the agent's hot
    /// path uses `subscribe(_:publishingInterval:keepAliveCount:onValues:)`). The subscription is recreated after
    /// reconnects. Returns its id and the status of each item (a bad status means that item will never report).
    public func subscribe(
        _ items: [MonitoredItem], publishingInterval: Double = 500, keepAliveCount: UInt32 = 10,
        onChange: @escaping @Sendable ([DataChange]) -> Void
    ) throws -> (id: SubscriptionID, itemResults: [StatusCode]) {
        let nodes = items.map(\.nodeId)
        return try subscribe(items, publishingInterval: publishingInterval, keepAliveCount: keepAliveCount) {
            [weak self] batch in
            var changes: [DataChange] = []
            for e in batch {
                guard let value = try? e.value.dataValue() else { continue }
                changes.append(DataChange(itemIndex: e.index, nodeId: nodes[e.index], value: value))
            }
            if !changes.isEmpty { self?.post { onChange(changes) } }
        }
    }

    /// Creates a subscription whose values are handed to `onValues` as they are decoded from each
    /// DataChangeNotification, without building arrays or `DataValue`s: the batch is walked in the receive
    /// buffer (see `DataValueBatch`).
    ///
    /// `onValues` runs on the secure channel's reader thread. It must be quick and must not call this client
    /// (the reader thread is what would deliver the answer); it should copy what it needs and return.
    public func subscribe(
        _ items: [MonitoredItem], publishingInterval: Double = 500, keepAliveCount: UInt32 = 10,
        onValues: @escaping @Sendable (DataValueBatch) -> Void
    ) throws -> (id: SubscriptionID, itemResults: [StatusCode]) {
        let l = try currentLink()
        lock.lock()
        let subId = nextSubscriptionId
        nextSubscriptionId += 1
        let handleBase = nextClientHandle
        nextClientHandle &+= UInt32(items.count)
        lock.unlock()
        let sub = SubscriptionState(
            items: items, handleBase: handleBase, publishingInterval: publishingInterval,
            keepAliveCount: max(1, keepAliveCount), deliver: onValues)
        // Registered before creation so that a Publish response racing the CreateMonitoredItems
        // response finds its subscription.
        lock.lock()
        subscriptions[subId] = sub
        lock.unlock()
        let results: [StatusCode]
        do {
            results = try createOnServer(sub, link: l)
        } catch {
            lock.lock()
            subscriptions[subId] = nil
            let orphan = sub.serverId
            if let orphan { byServerId[orphan] = nil }
            updateSlowestKeepAlive()
            lock.unlock()
            if let orphan { _ = try? call(DeleteSubscriptionsRequest(subscriptionIds: [orphan])) }
            throw error
        }
        post { [self] in pumpPublish() }
        return (SubscriptionID(raw: subId), results)
    }

    /// Deletes a subscription.
    public func unsubscribe(_ id: SubscriptionID) throws {
        lock.lock()
        let sub = subscriptions.removeValue(forKey: id.raw)
        if let serverId = sub?.serverId { byServerId[serverId] = nil }
        updateSlowestKeepAlive()
        lock.unlock()
        guard let serverId = sub?.serverId else { return }
        _ = try call(DeleteSubscriptionsRequest(subscriptionIds: [serverId]))
    }

    /// Caller holds `lock`.
    private func updateSlowestKeepAlive() {
        slowestKeepAlive = subscriptions.values.map { $0.revisedInterval / 1000 * Double($0.keepAliveCount) }.max() ?? 0
    }

    private func createOnServer(_ sub: SubscriptionState, link l: Link) throws -> [StatusCode] {
        var cs = CreateSubscriptionRequest(
            publishingInterval: sub.publishingInterval, lifetimeCount: sub.keepAliveCount * 4,
            maxKeepAliveCount: sub.keepAliveCount)
        cs.header.authenticationToken = l.authToken
        let created = try l.channel.call(cs, timeout: configuration.requestTimeout)
        lock.lock()
        if let old = sub.serverId, byServerId[old] === sub { byServerId[old] = nil }
        sub.serverId = created.subscriptionId
        sub.revisedInterval = created.revisedPublishingInterval
        byServerId[created.subscriptionId] = sub
        updateSlowestKeepAlive()
        lock.unlock()
        let items = zip(sub.items, sub.handles).map { item, handle in
            let filter: ExtensionObject =
                item.deadband == .none && item.trigger == .statusValue
                ? .null
                : ExtensionObject(
                    typeId: DataChangeFilter.typeId,
                    encoding: DataChangeFilter(trigger: item.trigger, deadband: item.deadband))
            return MonitoredItemCreateRequest(
                item: ReadValueId(nodeId: item.nodeId, attributeId: AttributeId.value.rawValue), clientHandle: handle,
                samplingInterval: item.samplingInterval, filter: filter, queueSize: item.queueSize)
        }
        var cmi = CreateMonitoredItemsRequest(
            subscriptionId: created.subscriptionId, timestampsToReturn: .both, items: items)
        cmi.header.authenticationToken = l.authToken
        let resp = try l.channel.call(cmi, timeout: configuration.requestTimeout)
        guard resp.results.count == items.count else {
            throw OPCUAError.protocolViolation("CreateMonitoredItems returned \(resp.results.count) of \(items.count)")
        }
        return resp.results.map { $0.statusCode }
    }

    // MARK: Client thread

    private func startWorker() {
        cond.lock()
        defer { cond.unlock() }
        if worker != nil { return }
        let flag = StopFlag()
        workerStop = flag
        let t = Thread { [self] in runWorker(flag) }
        t.name = "opcua-client"
        worker = t
        t.start()
    }

    private func post(_ event: @escaping () -> Void) {
        cond.lock()
        events.append(event)
        cond.signal()
        cond.unlock()
    }

    private func runWorker(_ flag: StopFlag) {
        while true {
            configuration.loopProbe?(.client)
            cond.lock()
            if events.isEmpty && publishOutcomes.isEmpty && !flag.stopped {
                _ = cond.wait(until: Date(timeIntervalSinceNow: 0.1))
            }
            let batch = events
            if !events.isEmpty { events = [] }
            // Swapped, not copied: both arrays keep their capacity, so a Publish outcome costs no allocation.
            swap(&publishOutcomes, &drainedOutcomes)
            let stop = flag.stopped
            cond.unlock()
            if stop { return }
            if !batch.isEmpty {
                for e in batch { e() }
            }
            var k = 0
            while k < drainedOutcomes.count {
                handlePublish(drainedOutcomes[k])
                k += 1
            }
            drainedOutcomes.removeAll(keepingCapacity: true)
            housekeeping()
        }
    }

    /// Hands a Publish outcome from the reader thread to the client thread.
    private func enqueue(_ outcome: PublishOutcome) {
        cond.lock()
        publishOutcomes.append(outcome)
        cond.signal()
        cond.unlock()
    }

    private func setState(_ s: ConnectionState) {
        lock.lock()
        let changed = currentState != s
        currentState = s
        lock.unlock()
        if changed { configuration.onStateChange?(s) }
    }

    private func housekeeping() {
        let now = monotonicSeconds()
        lock.lock()
        let l = link
        let st = currentState
        let hasSubs = !byServerId.isEmpty
        let slowest = slowestKeepAlive
        lock.unlock()
        if case .reconnecting = st {
            if now >= nextReconnectAt { reconnect() }
            return
        }
        guard st == .connected, let l else { return }
        l.channel.renewIfDue()
        if let sent = keepAliveSentAt {
            if now - sent > configuration.requestTimeout {
                connectionLost(gen: l.generation, .timeout("session keep-alive got no answer"))
                return
            }
        } else if now - lastKeepAlive >= configuration.keepAliveInterval {
            sendKeepAlive(l)
        }
        if hasSubs && outstandingPublish > 0 && now - lastPublishActivity > 2 * slowest + configuration.requestTimeout {
            connectionLost(gen: l.generation, .timeout("no Publish response within twice the keep-alive period"))
            return
        }
        pumpPublish()
    }

    private func sendKeepAlive(_ l: Link) {
        keepAliveSentAt = monotonicSeconds()
        var req = ReadRequest(
            timestampsToReturn: .neither, nodesToRead: [ReadValueId(nodeId: NodeId(2259), attributeId: 13)])
        req.header.authenticationToken = l.authToken
        do {
            try l.channel.send(req) { [weak self] result in
                self?.post { [weak self] in
                    guard let self, l.generation == self.currentGeneration else { return }
                    self.keepAliveSentAt = nil
                    self.lastKeepAlive = monotonicSeconds()
                    if case .success(let bytes) = result {
                        do { _ = try l.channel.decodeResponse(ReadRequest.self, bytes) } catch let e as OPCUAError {
                            if OPCUAClient.isSessionLoss(e) { self.connectionLost(gen: l.generation, e) }
                        } catch {}
                    }
                }
            }
        } catch {
            keepAliveSentAt = nil
        }
    }

    private var currentGeneration: Int {
        lock.lock()
        defer { lock.unlock() }
        return generation
    }

    private func pumpPublish() {
        lock.lock()
        guard let l = link, currentState == .connected, !byServerId.isEmpty else {
            lock.unlock()
            return
        }
        lock.unlock()
        // One completion per link, reused by every Publish request on it.
        let completion: SecureChannel.BorrowedCompletion
        if let c = publishCompletion, c.generation == l.generation {
            completion = c.completion
        } else {
            completion = { [weak self] result in self?.receivePublish(result, link: l) }
            publishCompletion = (l.generation, completion)
        }
        while outstandingPublish < publishTarget {
            if outstandingPublish == 0 { lastPublishActivity = monotonicSeconds() }
            outstandingPublish += 1
            guard sendPublish(l, completion) else {
                outstandingPublish -= 1
                return
            }
            pendingAcks.removeAll(keepingCapacity: true)
        }
    }

    private func sendPublish(_ l: Link, _ completion: @escaping SecureChannel.BorrowedCompletion) -> Bool {
        do {
            try l.channel.send(writer: &publishWriter, borrowing: completion) { w, id in
                var header = RequestHeader()
                header.authenticationToken = l.authToken
                header.requestHandle = id
                w.write(NodeId(PublishRequest.typeId))
                PublishRequest.encode(header: header, acknowledgements: pendingAcks, to: &w)
            }
            return true
        } catch {
            return false
        }
    }

    /// Runs on the reader thread: walks the response in place, hands the values to their subscription, and
    /// passes what is left to do (acknowledge, recreate, send the next request) to the client thread.
    private func receivePublish(_ result: Result<BinaryReader, OPCUAError>, link l: Link) {
        guard l.generation == currentGeneration else { return }
        switch result {
        case .failure:
            enqueue(PublishOutcome(generation: l.generation, result: .channelFailed))
        case .success(let reader):
            do {
                let summary = try InPlaceResponses.publish(reader) { id in target(forSubscription: id) }
                enqueue(PublishOutcome(generation: l.generation, result: .delivered(summary)))
            } catch {
                enqueue(
                    PublishOutcome(
                        generation: l.generation, result: .refused(error as? OPCUAError ?? .decoding("\(error)"))))
            }
        }
    }

    private func target(forSubscription serverId: UInt32) -> PublishTarget? {
        lock.lock()
        defer { lock.unlock() }
        guard let sub = byServerId[serverId] else { return nil }
        return PublishTarget(handleBase: sub.handleBase, itemCount: sub.items.count, deliver: sub.deliver)
    }

    private func handlePublish(_ outcome: PublishOutcome) {
        guard outcome.generation == currentGeneration else { return }
        outstandingPublish = max(0, outstandingPublish - 1)
        lastPublishActivity = monotonicSeconds()
        let summary: PublishSummary
        switch outcome.result {
        case .channelFailed:
            return
        case .refused(let e):
            if case .serviceFault(_, let s) = e {
                switch s.rawValue & 0xFFFF_0000 {
                case StatusCode.badTooManyPublishRequests.rawValue: publishTarget = max(1, outstandingPublish)
                case StatusCode.badNoSubscription.rawValue, StatusCode.badTimeout.rawValue: break
                default:
                    if OPCUAClient.isSessionLoss(e) { connectionLost(gen: outcome.generation, e) }
                }
            } else {
                connectionLost(gen: outcome.generation, e)
            }
            return
        case .delivered(let s):
            summary = s
        }
        // A Publish response shows the session is alive as well as a keep-alive Read would.
        lastKeepAlive = monotonicSeconds()
        // Acknowledge even notifications nobody wants any more, or the server keeps them for Republish.
        if summary.notificationCount > 0 {
            pendingAcks.append(
                SubscriptionAcknowledgement(
                    subscriptionId: summary.subscriptionId, sequenceNumber: summary.sequenceNumber))
        }
        if let status = summary.statusChange, status.isBad {
            // The server dropped the subscription (e.g. lifetime expired): make it again.
            lock.lock()
            let sub = byServerId.removeValue(forKey: summary.subscriptionId)
            sub?.serverId = nil
            let l = link
            lock.unlock()
            if let sub, let l { _ = try? createOnServer(sub, link: l) }
        }
        pumpPublish()
    }

    private func connectionLost(gen: Int, _ error: OPCUAError) {
        lock.lock()
        guard gen == generation, let l = link, target != nil else {
            lock.unlock()
            return
        }
        link = nil
        lastLossError = error
        for s in subscriptions.values { s.serverId = nil }
        byServerId = [:]
        lock.unlock()
        publishCompletion = nil
        l.channel.fail(error, notify: false)
        outstandingPublish = 0
        pendingAcks = []
        keepAliveSentAt = nil
        publishTarget = 2
        reconnectAttempt = 0
        nextReconnectAt = monotonicSeconds()
        setState(.reconnecting(attempt: 0))
    }

    private func reconnect() {
        lock.lock()
        generation += 1
        let gen = generation
        lock.unlock()
        do {
            let l = try establish(gen: gen)
            lock.lock()
            link = l
            let subs = Array(subscriptions.values)
            lock.unlock()
            do {
                for s in subs { _ = try createOnServer(s, link: l) }
            } catch {
                lock.lock()
                link = nil
                lock.unlock()
                l.channel.fail(error as? OPCUAError ?? .transport("\(error)"), notify: false)
                throw error
            }
            reconnectAttempt = 0
            lastKeepAlive = monotonicSeconds()
            lastPublishActivity = monotonicSeconds()
            reconnectCounter.increment()
            setState(.connected)
            pumpPublish()
        } catch {
            reconnectAttempt += 1
            let base = min(
                configuration.reconnectMaxDelay,
                configuration.reconnectMinDelay * pow(2, Double(min(reconnectAttempt - 1, 20))))
            // Jitter spreads the reconnects of many clients after a server restart.
            nextReconnectAt = monotonicSeconds() + base * Double.random(in: 0.5...1.0)
            setState(.reconnecting(attempt: reconnectAttempt))
        }
    }

    // MARK: Test hooks

    /// Closes the session on the server behind the client's back (tests the BadSessionIdInvalid path).
    func closeSessionBehindClientsBack() throws {
        let l = try currentLink()
        var c = CloseSessionRequest()
        c.deleteSubscriptions = false
        c.header.authenticationToken = l.authToken
        _ = try l.channel.call(c)
    }

    /// Drops the TCP connection without CLO, as a network loss would.
    func dropConnection() throws {
        try currentLink().channel.fail(.connectionClosed("dropped by test"), notify: true)
    }

    /// Makes the next token renewal of the current channel fail.
    func injectRenewalFault() throws {
        try currentLink().channel.injectRenewalFault(
            .serviceFault(service: "OpenSecureChannel", status: .badSecurityChecksFailed))
    }

    /// The current link's channel, for tests that check it is released.
    var currentChannel: SecureChannel? {
        lock.lock()
        defer { lock.unlock() }
        return link?.channel
    }

    var channelTokenInfo: (id: UInt32, age: Double, lifetime: Double)? {
        lock.lock()
        defer { lock.unlock() }
        return link?.channel.tokenInfo
    }
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
