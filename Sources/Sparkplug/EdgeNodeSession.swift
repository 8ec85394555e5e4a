import Foundation

/// Static settings of a Sparkplug edge node.
public struct EdgeNodeConfiguration: Sendable, Hashable {
    public var groupID: String
    public var edgeNodeID: String
    /// The Primary Host Application whose STATE gates the births; nil publishes births right after CONNACK.
    public var primaryHostID: String?
    /// Send aliases in births and only aliases in NDATA/DDATA (smaller data messages).
    public var useAliases: Bool
    /// Whether NCMD Node Control/Next Server is obeyed; when not, it is handed to the caller as a refused
    /// `.nodeCommand` (the command policy of docs/decisions/0017).
    public var allowNextServer: Bool

    public init(
        groupID: String, edgeNodeID: String, primaryHostID: String? = nil, useAliases: Bool = true,
        allowNextServer: Bool = true
    ) {
        self.groupID = groupID
        self.edgeNodeID = edgeNodeID
        self.primaryHostID = primaryHostID
        self.useAliases = useAliases
        self.allowNextServer = allowNextServer
    }
}

/// An MQTT publish the caller must perform.
public struct SparkplugPublication: Sendable, Hashable {
    public var topic: String
    public var payload: [UInt8]
    /// 0 or 1.
    public var qos: Int
    public var retain: Bool
}

/// What the session asks its caller to do, in order.
public enum EdgeNodeAction: Sendable, Hashable {
    case publish(SparkplugPublication)
    case subscribe(topic: String, qos: Int)
    /// Disconnect from the current MQTT server (after the NDEATH published just before).
    case disconnect
    /// Connect to the next MQTT server of the list (Primary Host offline, or NCMD "Node Control/Next Server").
    case nextServer
    /// Writes from the host to node metrics (names resolved from aliases); Node Control metrics are handled by the
    /// session and not included.
    case nodeCommand([SparkplugMetric])
    /// Writes from the host to a device's metrics.
    case deviceCommand(deviceID: String, [SparkplugMetric])
}

/// The Sparkplug B 3.0 edge node session rules (chapters 4–6) as a pure, deterministic state machine.
///
/// It does no I/O and reads no clock: every input carries `now` (ms since the epoch, UTC) and every output is an
/// `EdgeNodeAction` value for the caller to perform with its MQTT client, in order. That keeps the rules testable
/// without a broker and lets the caller own threads and persistence. It is a value type; the caller serialises
/// access (e.g. behind the lock that also guards its MQTT client calls).
///
/// Lifecycle per MQTT session: `prepareConnect` (gives the NDEATH Will with a new bdSeq; persist it, then
/// CONNECT) → `connected` (subscriptions; births unless a Primary Host must be seen first) → data via
/// `updateNode`/`updateDevice`, incoming messages via `handleMessage` → `connectionLost` or `shutdown`.
public struct EdgeNodeSession: Sendable {
    public static let bdSeqMetric = "bdSeq"
    public static let rebirthMetric = "Node Control/Rebirth"
    public static let nextServerMetric = "Node Control/Next Server"

    /// Where the session is.
    public enum Phase: Sendable, Hashable {
        case disconnected
        /// Connected, waiting for the Primary Host's STATE online=true before the births.
        case waitingForPrimaryHost
        /// NBIRTH and DBIRTHs published; data flows.
        case online
    }

    struct MetricState: Sendable {
        var name: String
        var alias: UInt64?
        var dataType: SparkplugDataType
        var value: SparkplugValue?
        var timestamp: UInt64?
        var properties: [SparkplugProperty]
        var isTransient: Bool
    }

    struct MetricTable: Sendable {
        var metrics: [MetricState] = []
        var byName: [String: Int] = [:]
        var byAlias: [UInt64: Int] = [:]
    }

    struct Device: Sendable {
        var table: MetricTable
        var online: Bool
        var born = false
        /// Set when the device's metrics (some of them) are born and sent as one template instance.
        var template: InstanceState?
    }

    public let configuration: EdgeNodeConfiguration
    public private(set) var phase: Phase = .disconnected
    /// The bdSeq of the current (or last) CONNECT's Will; nil before the first `prepareConnect`.
    public private(set) var bdSeq: UInt8?
    /// The seq of the last message published (NBIRTH resets it to 0).
    public private(set) var seq: UInt8 = 0
    private var lastBdSeq: UInt8?
    /// The newest STATE timestamp seen from the Primary Host on this MQTT connection; older (e.g. stale retained)
    /// STATE is ignored.
    public private(set) var lastStateTimestamp: UInt64?
    /// What the session believes of the Primary Host on this connection: the `online` of the last STATE it
    /// accepted, nil before one.
    /// When NCMD Next Server was last obeyed (ms); kept for the session's life, across brokers.
    private var lastNextServer: UInt64?
    public private(set) var primaryHostOnline: Bool?
    /// A STATE timestamp further than this (ms) ahead of the local clock is refused: it could only be forged or
    /// from a badly wrong clock, and accepting it would make every later genuine STATE look stale.
    public static let maxStateSkew: UInt64 = 60_000
    /// Whether the broker may hold the current Will (its CONNECT may have been accepted). False only once the
    /// caller reported that the CONNECT carrying it certainly was not (`connectNotAccepted`): then its bdSeq is
    /// used again, because no host can have seen it (docs/decisions/0016-sparkplug-births-bdseq-replay-rebirth.md).
    private var willMayBeHeld = false
    /// When the last NBIRTH went out (ms), for rebirth coalescing.
    private var lastBirthAt: UInt64?
    /// A rebirth request is pending, to be served at this time (ms) by `serveDueRebirth`.
    public private(set) var rebirthDueAt: UInt64?
    private var node = MetricTable()
    private var devices: [String: Device] = [:]
    private var deviceOrder: [String] = []
    var nextAlias: UInt64 = 1
    /// Template definitions, published in every NBIRTH after the node metrics.
    public internal(set) var templates: [SparkplugTemplateDefinition] = []

    /// `nodeMetrics` are every metric the node itself will ever publish (names unique, values initial or null);
    /// `lastBdSeq` is what the `BdSeqStore` holds.
    public init(configuration: EdgeNodeConfiguration, nodeMetrics: [SparkplugMetric], lastBdSeq: UInt8?)
        throws(SparkplugError)
    {
        try SparkplugTopic.validateID(configuration.groupID, role: "group id")
        try SparkplugTopic.validateID(configuration.edgeNodeID, role: "edge node id")
        if let host = configuration.primaryHostID { try SparkplugTopic.validateID(host, role: "primary host id") }
        self.configuration = configuration
        self.lastBdSeq = lastBdSeq
        node = try makeTable(nodeMetrics, owner: "edge node '\(configuration.edgeNodeID)'")
    }

    /// Whether data (NDATA, DDATA) may go out now: born, and no rebirth pending — a node asked to rebirth stops
    /// sending data until its births (tck-id-operational-behavior-data-commands-rebirth-action-1); what changes
    /// meanwhile is carried by those births.
    public var isOnline: Bool { phase == .online && rebirthDueAt == nil }

    // MARK: Topics

    public func topic(_ type: SparkplugTopic.MessageType, device: String? = nil) -> String {
        SparkplugTopic(
            groupID: configuration.groupID, messageType: type, edgeNodeID: configuration.edgeNodeID, deviceID: device
        ).description
    }

    // MARK: Connection lifecycle

    /// The Will for the next CONNECT: NDEATH with a bdSeq one greater than the last CONNECT's (0 after 255, and 0
    /// for the very first), QoS 1, not retained (tck-id-payloads-ndeath-will-message, -will-message-qos,
    /// -will-message-retain, tck-id-payloads-ndeath-bdseq,
    /// tck-id-message-flow-edge-node-birth-publish-will-message-payload-bdSeq). A CONNECT the broker certainly did
    /// not accept (`connectNotAccepted`) does not count: its bdSeq is used again. The caller persists `bdSeq`
    /// before connecting.
    public mutating func prepareConnect(now: UInt64) -> SparkplugPublication {
        if bdSeq == nil || willMayBeHeld {
            let next: UInt8 = lastBdSeq.map { $0 &+ 1 } ?? 0
            lastBdSeq = next
            bdSeq = next
        }
        // Until told otherwise the CONNECT may be accepted, and the broker may then publish this Will at any time.
        willMayBeHeld = true
        phase = .disconnected
        return ndeath(now: now)
    }

    /// The CONNECT carrying the current Will certainly did not reach an accepting broker (TCP or TLS failed before
    /// it was sent, or the broker refused it in CONNACK): the broker never held the Will and no host saw the bdSeq,
    /// so the next CONNECT uses it again instead of burning one per failed attempt.
    public mutating func connectNotAccepted() {
        guard phase == .disconnected else { return }
        willMayBeHeld = false
    }

    /// CONNACK accepted: subscribe NCMD and DCMD at QoS 1 (and the Primary Host's STATE), then birth unless the
    /// Primary Host must be seen online first (tck-id-operational-behavior-edge-node-birth-sequence-wait).
    public mutating func connected(now: UInt64) -> [EdgeNodeAction] {
        precondition(bdSeq != nil, "prepareConnect must provide the Will before connected")
        var actions: [EdgeNodeAction] = [
            .subscribe(topic: topic(.ncmd), qos: 1),
            .subscribe(
                topic: "\(SparkplugTopic.namespace)/\(configuration.groupID)/DCMD/\(configuration.edgeNodeID)/+", qos: 1
            ),
        ]
        for id in deviceOrder { devices[id]?.born = false }
        willMayBeHeld = true
        // STATE counts per connection: a wrong timestamp seen on an earlier one must not silence this one.
        lastStateTimestamp = nil
        primaryHostOnline = nil
        if let host = configuration.primaryHostID {
            actions.append(.subscribe(topic: SparkplugTopic.state(hostID: host), qos: 1))
            phase = .waitingForPrimaryHost
        } else {
            actions += birth(now: now)
        }
        return actions
    }

    /// The MQTT connection ended (the broker publishes the Will); nothing may be published until the next CONNECT.
    public mutating func connectionLost() {
        phase = .disconnected
        rebirthDueAt = nil
        for id in deviceOrder { devices[id]?.born = false }
    }

    /// Intentional disconnect: NDEATH first, then DISCONNECT (tck-id-operational-behavior-edge-node-intentional-
    /// disconnect-ndeath), since MQTT 3.1.1's DISCONNECT makes the broker drop the Will.
    public mutating func shutdown(now: UInt64) -> [EdgeNodeAction] {
        guard phase != .disconnected, bdSeq != nil else { return [] }
        let death = ndeath(now: now)
        connectionLost()
        return [.publish(death), .disconnect]
    }

    // MARK: Data

    /// Changed node metrics → one NDATA (only while online; otherwise the values are kept for the next NBIRTH).
    /// Each metric needs its declared name, a value of the declared type (or null) and a timestamp. Metrics
    /// marked historical do not replace the live value carried by later births.
    public mutating func updateNode(_ changes: [SparkplugMetric], now: UInt64) throws(SparkplugError)
        -> [EdgeNodeAction]
    {
        let metrics = try apply(changes, to: &node, owner: "edge node")
        guard isOnline, !metrics.isEmpty else { return [] }
        return [.publish(try message(.ndata, device: nil, metrics: metrics, now: now))]
    }

    /// Changed device metrics → one DDATA (only while the node is online and the device born).
    public mutating func updateDevice(_ deviceID: String, _ changes: [SparkplugMetric], now: UInt64)
        throws(SparkplugError) -> [EdgeNodeAction]
    {
        guard var device = devices[deviceID] else { throw .invalidRequest("unknown device '\(deviceID)'") }
        var indices: [Int]? = device.template == nil ? nil : []
        let metrics = try apply(changes, to: &device.table, owner: "device '\(deviceID)'", indices: &indices)
        devices[deviceID] = device
        guard isOnline, device.born, !metrics.isEmpty else { return [] }
        var out = metrics
        if let instance = device.template, let indices { out = instance.data(metrics, indices: indices) }
        return [.publish(try message(.ddata, device: deviceID, metrics: out, now: now))]
    }

    /// Stores the node's current values without publishing them, for the next NBIRTH to carry; only while no data
    /// can go out (`isOnline` false), since a change stored silently while online would never reach the host.
    /// Returns whether they were taken.
    @discardableResult
    public mutating func refreshNode(_ current: [SparkplugMetric]) throws(SparkplugError) -> Bool {
        guard !isOnline else { return false }
        _ = try apply(current, to: &node, owner: "edge node")
        return true
    }

    /// Stores a device's current values (with their Quality) without publishing them, so that the next birth
    /// carries what the device holds now even for metrics whose changes were never published. Only while no data
    /// of the device can go out (node not online, or device not born): otherwise the table is what the host has
    /// seen, and a change still on its way to DDATA would be taken for one the host already has and never sent.
    /// Returns whether they were taken.
    @discardableResult
    public mutating func refreshDevice(_ deviceID: String, _ current: [SparkplugMetric]) throws(SparkplugError)
        -> Bool
    {
        guard var device = devices[deviceID] else { throw .invalidRequest("unknown device '\(deviceID)'") }
        guard !isOnline || !device.born else { return false }
        _ = try apply(current, to: &device.table, owner: "device '\(deviceID)'")
        devices[deviceID] = device
        return true
    }

    // MARK: Devices

    /// Declares a device with every metric it will ever publish. If the node is online and the device is
    /// reachable, its DBIRTH goes out now.
    ///
    /// With `template`, the bound metrics are born and sent as members of one template instance metric (beside the
    /// flat metrics when the binding keeps them); its definition must be declared first (`declareTemplate`).
    public mutating func addDevice(
        _ deviceID: String, metrics: [SparkplugMetric], template: SparkplugTemplateBinding? = nil, online: Bool = true,
        now: UInt64
    ) throws(SparkplugError) -> [EdgeNodeAction] {
        try SparkplugTopic.validateID(deviceID, role: "device id")
        guard devices[deviceID] == nil else { throw .invalidRequest("device '\(deviceID)' is already declared") }
        let table = try makeTable(metrics, owner: "device '\(deviceID)'")
        var instance: InstanceState?
        if let template { instance = try instanceState(template, table: table, device: deviceID) }
        devices[deviceID] = Device(table: table, online: online, template: instance)
        deviceOrder.append(deviceID)
        return online ? try deviceBirth(deviceID, now: now) : []
    }

    /// The device answers again: DBIRTH (when the node is online).
    public mutating func deviceOnline(_ deviceID: String, now: UInt64) throws(SparkplugError) -> [EdgeNodeAction] {
        guard devices[deviceID] != nil else { throw .invalidRequest("unknown device '\(deviceID)'") }
        devices[deviceID]!.online = true
        return try deviceBirth(deviceID, now: now)
    }

    /// The device stopped answering: DDEATH with seq and timestamp (tck-id-operational-behavior-device-ddeath).
    public mutating func deviceOffline(_ deviceID: String, now: UInt64) throws(SparkplugError) -> [EdgeNodeAction] {
        guard let device = devices[deviceID] else { throw .invalidRequest("unknown device '\(deviceID)'") }
        devices[deviceID]!.online = false
        guard phase == .online, device.born else { return [] }
        devices[deviceID]!.born = false
        return [.publish(try message(.ddeath, device: deviceID, metrics: [], now: now))]
    }

    // MARK: Incoming messages

    /// A message on one of the session's subscriptions. Malformed payloads throw and leave the state unchanged.
    public mutating func handleMessage(topic: String, payload: [UInt8], now: UInt64) throws(SparkplugError)
        -> [EdgeNodeAction]
    {
        if let host = configuration.primaryHostID, topic == SparkplugTopic.state(hostID: host) {
            return try handleState(payload, now: now)
        }
        let t = try SparkplugTopic(parsing: topic)
        guard t.groupID == configuration.groupID, t.edgeNodeID == configuration.edgeNodeID else {
            throw .invalidTopic(topic)
        }
        switch t.messageType {
        case .ncmd: return try handleNodeCommand(payload, now: now)
        case .dcmd:
            guard let id = t.deviceID, let device = devices[id] else {
                throw .invalidRequest("DCMD for undeclared device '\(t.deviceID ?? "")'")
            }
            let p = try SparkplugPayload(
                decoding: payload,
                typeOf: { name, alias in
                    Self.lookup(device.table, name: name, alias: alias)?.dataType
                        ?? device.template?.dataType(ofCommandNamed: name, alias: alias, in: device.table)
                },
                memberTypeOf: { instance, alias, member in
                    device.template?.memberType(instance: instance, alias: alias, member: member, in: device.table)
                })
            var metrics = p.metrics
            if let instance = device.template {
                metrics = try instance.flatten(metrics, table: device.table, owner: "device '\(id)'")
            }
            return [.deviceCommand(deviceID: id, try resolveNames(metrics, in: device.table, owner: "device '\(id)'"))]
        default:
            throw .invalidTopic(topic)
        }
    }

    private struct StateMessage: Decodable {
        var online: Bool
        var timestamp: UInt64
    }

    private mutating func handleState(_ payload: [UInt8], now: UInt64) throws(SparkplugError) -> [EdgeNodeAction] {
        let state: StateMessage
        do {
            state = try JSONDecoder().decode(StateMessage.self, from: Data(payload))
        } catch {
            throw .malformedPayload(
                "STATE of '\(configuration.primaryHostID ?? "")' is not {\"online\": Bool, \"timestamp\": ms}: "
                    + String(decoding: payload.prefix(200), as: UTF8.self))
        }
        if state.timestamp > now &+ Self.maxStateSkew {
            throw .invalidValue(
                context: "STATE of '\(configuration.primaryHostID ?? "")'",
                reason: "timestamp \(state.timestamp) is more than \(Self.maxStateSkew / 1000) s ahead of the local "
                    + "clock (\(now)); ignored")
        }
        // tck-id-message-flow-edge-node-birth-publish-phid-wait-timestamp: only STATE at least as new as the last
        // one counts; an older retained message from a previous host session is stale.
        if let last = lastStateTimestamp, state.timestamp < last { return [] }
        lastStateTimestamp = state.timestamp
        primaryHostOnline = state.online
        if state.online {
            // tck-id-message-flow-edge-node-birth-publish-phid-wait-online
            return phase == .waitingForPrimaryHost ? birth(now: now) : []
        }
        guard phase != .disconnected else { return [] }
        // tck-id-operational-behavior-primary-application-state-with-multiple-servers-walk and
        // tck-id-message-flow-edge-node-birth-publish-phid-offline: NDEATH, disconnect, next server.
        return shutdown(now: now) + [.nextServer]
    }

    private mutating func handleNodeCommand(_ payload: [UInt8], now: UInt64) throws(SparkplugError) -> [EdgeNodeAction]
    {
        let p = try SparkplugPayload(decoding: payload) { name, alias in
            if name == Self.rebirthMetric || name == Self.nextServerMetric { return .boolean }
            return Self.lookup(node, name: name, alias: alias)?.dataType
        }
        var writes: [SparkplugMetric] = []
        var rebirth = false
        var nextServer = false
        for m in p.metrics {
            switch m.name {
            case Self.rebirthMetric?: rebirth = rebirth || m.value == .boolean(true)
            case Self.nextServerMetric? where !configuration.allowNextServer: writes.append(m)
            case Self.nextServerMetric?: nextServer = nextServer || m.value == .boolean(true)
            default: writes.append(m)
            }
        }
        var actions: [EdgeNodeAction] = []
        if !writes.isEmpty {
            actions.append(.nodeCommand(try resolveNames(writes, in: node, owner: "edge node")))
        }
        if nextServer && phase != .disconnected {
            if let last = lastNextServer, now &- last < Self.nextServerMinimumInterval {
                nextServerIgnored &+= 1
            } else {
                lastNextServer = now
                return actions + shutdown(now: now) + [.nextServer]
            }
        }
        // Rebirth: not at once but coalesced (`requestRebirth`), so a burst of requests gives one set of births.
        if rebirth { requestRebirth(now: now) }
        return actions
    }

    /// NCMD Next Server is obeyed at most once per this many ms: each one ends the session (NDEATH, then the next
    /// broker), so a client repeating it could otherwise keep the node away from every broker (issue 15, Low).
    public static let nextServerMinimumInterval: UInt64 = 30_000
    /// Next Server commands ignored because one was obeyed less than `nextServerMinimumInterval` before.
    public private(set) var nextServerIgnored: UInt64 = 0

    /// How long a rebirth request waits for others to join it (ms).
    public static let rebirthSettle: UInt64 = 200
    /// Rebirths are at least this far apart (ms).
    public static let rebirthInterval: UInt64 = 1000

    /// A rebirth request (NCMD Node Control/Rebirth, or the operator's): served by `serveDueRebirth` once
    /// `rebirthSettle` has passed and at least `rebirthInterval` after the last NBIRTH; requests meanwhile join the
    /// pending one, so every request is answered by a birth published after it, and a burst by one set of births.
    public mutating func requestRebirth(now: UInt64) {
        guard phase == .online, rebirthDueAt == nil else { return }
        let settled = now + Self.rebirthSettle
        rebirthDueAt = max(settled, lastBirthAt.map { $0 + Self.rebirthInterval } ?? settled)
    }

    /// The pending rebirth's NBIRTH and DBIRTHs (same bdSeq, seq 0) once it is due; nothing otherwise.
    public mutating func serveDueRebirth(now: UInt64) -> [EdgeNodeAction] {
        guard let due = rebirthDueAt, now >= due else { return [] }
        rebirthDueAt = nil
        guard phase == .online else { return [] }
        return birth(now: now)
    }

    // MARK: Births and deaths

    private func ndeath(now: UInt64) -> SparkplugPublication {
        // tck-id-payloads-ndeath-seq: no seq in NDEATH.
        let payload = SparkplugPayload(
            timestamp: now,
            metrics: [SparkplugMetric(name: Self.bdSeqMetric, timestamp: now, value: .int64(Int64(bdSeq ?? 0)))])
        // Encoding constant, well-typed metrics cannot fail.
        let bytes = (try? payload.serialized()) ?? []
        return SparkplugPublication(topic: topic(.ndeath), payload: bytes, qos: 1, retain: false)
    }

    /// NBIRTH (seq 0, bdSeq of this connection's Will, Node Control metrics, every node metric) followed by one
    /// DBIRTH per reachable device (tck-id-payloads-nbirth-seq, -nbirth-bdseq, -nbirth-rebirth-req,
    /// tck-id-payloads-dbirth-order).
    private mutating func birth(now: UInt64) -> [EdgeNodeAction] {
        phase = .online
        seq = 0
        lastBirthAt = now
        // These births answer any rebirth request still waiting.
        rebirthDueAt = nil
        var metrics: [SparkplugMetric] = [
            SparkplugMetric(name: Self.bdSeqMetric, timestamp: now, value: .int64(Int64(bdSeq ?? 0))),
            // Never aliased: hosts send Rebirth by name, and it must work even when alias state is lost.
            SparkplugMetric(name: Self.rebirthMetric, timestamp: now, value: .boolean(false)),
            SparkplugMetric(name: Self.nextServerMetric, timestamp: now, value: .boolean(false)),
        ]
        metrics += node.metrics.map { birthMetric($0, now: now) }
        // tck-id-payloads-template-definition-nbirth: definitions only here, after the metrics.
        metrics += templates.map { $0.birthMetric(now: now) }
        let payload = SparkplugPayload(timestamp: now, seq: 0, metrics: metrics)
        // The table only holds values whose type was checked on the way in, so encoding cannot fail.
        let bytes = (try? payload.serialized()) ?? []
        var actions: [EdgeNodeAction] = [
            .publish(SparkplugPublication(topic: topic(.nbirth), payload: bytes, qos: 0, retain: false))
        ]
        for id in deviceOrder {
            devices[id]!.born = false
            if devices[id]!.online, let a = try? deviceBirth(id, now: now) { actions += a }
        }
        return actions
    }

    private mutating func deviceBirth(_ id: String, now: UInt64) throws(SparkplugError) -> [EdgeNodeAction] {
        guard phase == .online, let device = devices[id], device.online, !device.born else { return [] }
        devices[id]!.born = true
        var metrics: [SparkplugMetric]
        if let instance = device.template {
            metrics = device.table.metrics.indices.compactMap { i in
                instance.memberOf[i] != nil && !instance.binding.keepFlatMetrics
                    ? nil : birthMetric(device.table.metrics[i], now: now)
            }
            metrics.append(instance.birthMetric(device.table, now: now) { birthMetric($0, now: now) })
        } else {
            metrics = device.table.metrics.map { birthMetric($0, now: now) }
        }
        return [.publish(try message(.dbirth, device: id, metrics: metrics, now: now, namesOnly: true))]
    }

    private func birthMetric(_ m: MetricState, now: UInt64) -> SparkplugMetric {
        var out = SparkplugMetric(
            name: m.name, alias: m.alias, timestamp: m.timestamp ?? now, nullOf: m.dataType, properties: m.properties,
            isTransient: m.isTransient)
        out.value = m.value
        return out
    }

    /// A seq-carrying message (DBIRTH, NDATA, DDATA, DDEATH): seq = previous + 1, 255 → 0
    /// (tck-id-payloads-sequence-num-incrementing). Data metrics carry only the alias when aliases are used
    /// (tck-id-payloads-alias-data-cmd-requirement).
    private mutating func message(
        _ type: SparkplugTopic.MessageType, device: String?, metrics: [SparkplugMetric], now: UInt64,
        namesOnly: Bool = false
    ) throws(SparkplugError) -> SparkplugPublication {
        seq = seq &+ 1
        let payload = SparkplugPayload(timestamp: now, seq: UInt64(seq), metrics: metrics)
        return SparkplugPublication(
            topic: topic(type, device: device), payload: try payload.serialized(), qos: 0, retain: false)
    }
}
