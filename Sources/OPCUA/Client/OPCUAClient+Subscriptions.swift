import Foundation

// Subscriptions and their monitored items, created on the server and kept for recreating them after reconnects.
extension OPCUAClient {
    /// A subscription as the client keeps it, to route its notifications and to create it again after a reconnect.
    final class SubscriptionState {
        let items: [MonitoredItem]
        /// Client handles are consecutive from `handleBase`, so a handle maps to its item by subtraction.
        let handleBase: UInt32
        let publishingInterval: Double
        let keepAliveCount: UInt32
        /// Runs on the channel's reader thread with each DataChangeNotification.
        let deliver: @Sendable (DataValueBatch) -> Void
        /// Runs on the client's thread after each Publish response for this subscription, keep-alives included.
        let onResponse: (@Sendable () -> Void)?
        var serverId: UInt32?
        var revisedInterval: Double
        /// The server's id of the subscription while its channel is lost: what a reactivated session transfers.
        var lostServerId: UInt32?
        /// Sequence number of the last NotificationMessage whose values were delivered (set on the reader thread
        /// under the client's lock); what a recovery republishes after. Nil until the first one.
        var lastSequence: UInt32?

        init(
            items: [MonitoredItem], handleBase: UInt32, publishingInterval: Double, keepAliveCount: UInt32,
            deliver: @escaping @Sendable (DataValueBatch) -> Void, onResponse: (@Sendable () -> Void)? = nil
        ) {
            self.items = items
            self.handleBase = handleBase
            self.publishingInterval = publishingInterval
            self.keepAliveCount = keepAliveCount
            self.deliver = deliver
            self.onResponse = onResponse
            self.revisedInterval = publishingInterval
        }

        var handles: Range<UInt32> { handleBase..<handleBase &+ UInt32(items.count) }
    }

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
    ///
    /// `onResponse`, when given, runs on the client's thread after every Publish response for the subscription,
    /// keep-alives included: each one tells that the values of items that did not report are still current.
    public func subscribe(
        _ items: [MonitoredItem], publishingInterval: Double = 500, keepAliveCount: UInt32 = 10,
        onResponse: (@Sendable () -> Void)? = nil, onValues: @escaping @Sendable (DataValueBatch) -> Void
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
            keepAliveCount: max(1, keepAliveCount), deliver: onValues, onResponse: onResponse)
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

    func createOnServer(_ sub: SubscriptionState, link l: Link) throws -> [StatusCode] {
        // The subscription must outlive a lost channel as long as the session does (a reactivation finds it with
        // its unsent notifications), not just four keep-alive periods; at least 3 keep-alives, as OPC 10000-4 asks.
        let lifetime = max(
            Double(sub.keepAliveCount) * 4,
            (configuration.sessionTimeout * 1000 / max(1, sub.publishingInterval)).rounded(.up))
        var cs = CreateSubscriptionRequest(
            publishingInterval: sub.publishingInterval, lifetimeCount: UInt32(min(lifetime, Double(UInt32.max / 2))),
            maxKeepAliveCount: sub.keepAliveCount)
        cs.header.authenticationToken = l.authToken
        let created = try l.channel.call(cs, timeout: configuration.requestTimeout)
        lock.lock()
        if let old = sub.serverId, byServerId[old] === sub { byServerId[old] = nil }
        sub.serverId = created.subscriptionId
        sub.lostServerId = nil
        // A new subscription numbers its messages from 1 again.
        sub.lastSequence = nil
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
}
