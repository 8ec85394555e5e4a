import Devices
import Foundation
import History
import Logging
import MQTT
import Sparkplug
import Tags

/// The agent as a Sparkplug B edge node: every Modbus device is a Sparkplug device, every tag a metric.
///
/// Threads (see docs/decisions/0011-store-and-forward.md): one publisher thread owns the `EdgeNodeSession`, its own
/// `HistoryStore` connection for the store-and-forward queue, and the MQTT client calls; it drains its own
/// `ChangeFeed` queue, so pollers only ever push into a bounded queue and are never blocked by MQTT or SQLite.
/// MQTT events arrive on libmosquitto's thread and are handed to the publisher thread as values; the Will is
/// built on the client's supervisor thread under the session lock. Device commands (DCMD) are carried out on a
/// separate serial queue because a Modbus write may wait for its device for seconds.
///
/// While the broker or the Primary Host is unavailable every change goes to the SQLite queue; after the births
/// the backlog is replayed oldest first as historical DDATA at QoS 1, throttled, beside live data, and rows leave
/// the queue only when the broker acknowledged the message that carried them. Live data is QoS 0 as Sparkplug
/// requires; with `confirm_live` its samples stay in `UnconfirmedSamples` until a receipt from the broker confirms
/// them, and join the queue if the connection ends first.
package final class EdgeNodePublisher: @unchecked Sendable {
    /// The devices and tags the publisher serves; replaced on reload.
    package struct View: @unchecked Sendable {
        var devices: [(name: String, table: TagTable, driver: (any DeviceDriver)?)]
        /// Resolves change ids, including those of tables a reload just replaced.
        var directory: TagDirectory

        /// Device names with their tags' names, types and units: when it changes, the births must change.
        var signature: [String] {
            devices.map { d in
                d.name + "|"
                    + d.table.definitions.map { "\($0.name):\(SparkplugMapping.dataType(of: $0)):\($0.units ?? "")" }
                    .joined(separator: ",")
            }.sorted()
        }

        package init(
            devices: [(name: String, table: TagTable, driver: (any DeviceDriver)?)], directory: TagDirectory
        ) {
            self.devices = devices
            self.directory = directory
        }
    }

    private enum Event {
        case connected(MQTTBroker)
        case disconnected
        case message(MQTTMessage)
        case acknowledged(UInt64)
        case republish(device: String, tag: String)
        case rebirth
        case reload(View)
    }

    let settings: SparkplugSettings
    private let feed: ChangeFeed
    private let consumer: Int
    private let bdSeqStore: FileBdSeqStore
    private let logger = Logger(label: "edgepilot.sparkplug")
    private let startedAt = Date()
    /// Shown as `Properties/Version` in NBIRTH.
    private let agentVersion: String

    private let sessionLock = NSLock()
    private var session: EdgeNodeSession?
    private var client: MQTTClient?

    private let cond = NSCondition()
    private var events: [Event] = []
    private var stopRequested = false
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)

    private let counters = PublisherCounters()
    private let queue: StoreAndForwardQueue
    private let receipts: ReceiptTracker
    private let liveData: LiveDataSender
    private let replayer: BacklogReplayer
    private let commands: CommandHandler
    private let tags = AcknowledgementTags()

    // Publisher-thread state.
    private var view: View
    private var deviceOnline: [String: Bool] = [:]
    private var lastNodeMetrics = ContinuousClock.now
    private var lastStatsRefresh = ContinuousClock.now
    private var sentNodeValues: [String: SparkplugValue] = [:]

    /// Each password_file's first line.
    private var passwords: [String: String] = [:]

    /// Opens the queue (its own connection to the history file) and builds the session and MQTT client; nothing
    /// connects before `start()`. Throws on what the operator must fix: unreadable files, bad TLS settings.
    package init(
        settings: SparkplugSettings, historyPath: String, feed: ChangeFeed, consumer: Int, view: View,
        agentVersion: String, audit: @escaping @Sendable (AuditRecord) -> Void
    ) throws {
        self.agentVersion = agentVersion
        self.settings = settings
        self.feed = feed
        self.consumer = consumer
        self.view = view
        bdSeqStore = FileBdSeqStore(path: settings.resolvedBdSeqPath(historyPath: historyPath))
        queue = StoreAndForwardQueue(bounds: settings.storeAndForward, counters: counters)
        receipts = ReceiptTracker(
            capacity: settings.storeAndForward.confirmLive ? settings.storeAndForward.unconfirmedSamples : nil,
            receiptFilter: "edgepilot/confirm/\(settings.groupID)/\(settings.edgeNodeID)", queue: queue,
            counters: counters)
        liveData = LiveDataSender(feed: feed, consumer: consumer, receipts: receipts)
        replayer = BacklogReplayer(settings: settings.replay, queue: queue, counters: counters)
        commands = CommandHandler(
            auditSource: "sparkplug:" + (settings.primaryHostID ?? "\(settings.groupID)/\(settings.edgeNodeID)"),
            counters: counters, audit: audit)
        for file in settings.brokers.compactMap(\.passwordFile) where passwords[file] == nil {
            do {
                let text = try String(contentsOfFile: file, encoding: .utf8)
                passwords[file] = text.split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init)
            } catch {
                throw PublisherStartError("sparkplug: cannot read password_file \(file): \(error.localizedDescription)")
            }
        }
        do {
            try queue.open(path: historyPath)
            try startSession(connect: false)
        } catch let error as PublisherStartError {
            throw error
        } catch {
            throw PublisherStartError("sparkplug: \(error)")
        }
    }

    // MARK: - Lifecycle (any thread)

    /// Starts connecting, and the publisher thread.
    package func start() {
        sessionLock.withLock { client }?.start()
        let t = Thread { [self] in
            run()
            finished.signal()
        }
        t.name = "sparkplug"
        thread = t
        t.start()
    }

    /// Publishes what is still queued (or stores it), sends NDEATH and disconnects.
    package func stop() {
        let started = cond.withLock {
            stopRequested = true
            cond.broadcast()
            return thread != nil
        }
        guard started else { return }
        finished.wait()
        commands.waitUntilIdle()
        queue.close()
    }

    /// Serves the tables of a new configuration; if devices or metrics changed the session is rebuilt (NDEATH,
    /// new CONNECT with the next bdSeq, new births), as Sparkplug requires for a changed metric set.
    package func use(_ view: View) { post(.reload(view)) }

    /// Asks for a fresh NBIRTH and DBIRTHs (same bdSeq), as an NCMD Rebirth would.
    package func rebirth() { post(.rebirth) }

    package var report: MQTTStatusReport {
        let (phase, bdSeq, seq) = sessionLock.withLock { (session?.phase, session?.bdSeq, session?.seq ?? 0) }
        let c = counters.withLock { $0 }
        let client = sessionLock.withLock { self.client }
        let state: String
        switch phase {
        case .online?: state = "online"
        case .waitingForPrimaryHost?: state = "waiting_for_primary_host"
        default: state = "disconnected"
        }
        return MQTTStatusReport(
            groupID: settings.groupID, edgeNodeID: settings.edgeNodeID, primaryHostID: settings.primaryHostID,
            broker: client?.currentBroker?.description, connected: client?.isConnected ?? false, sessionState: state,
            bdSeq: bdSeq.map(Int.init), seq: Int(seq), primaryHostOnline: c.primaryHostOnline,
            backlog: c.backlog.rows, backlogBytes: c.backlog.bytes, dropped: c.backlog.dropped,
            replayInFlight: c.replayInFlight, replayedMetrics: c.replayedMetrics,
            messagesPublished: c.messagesPublished, births: c.births, connects: c.connects,
            commandsWritten: c.commandsWritten, commandsRefused: c.commandsRefused,
            commandsFailed: c.commandsFailed, commandsRejected: c.commandsRejected,
            feedDropped: feed.dropped(consumer: consumer), unconfirmed: c.unconfirmed,
            receiptRequests: c.receiptRequests, liveConfirmed: c.liveConfirmed, liveRequeued: c.liveRequeued,
            lastError: c.lastError)
    }

    private func post(_ event: Event) {
        cond.withLock {
            events.append(event)
            cond.broadcast()
        }
    }

    // MARK: - Session (publisher thread, except `start`)

    private func startSession(connect: Bool = true) throws {
        let now = Self.nowMs()
        var s = try EdgeNodeSession(
            configuration: EdgeNodeConfiguration(
                groupID: settings.groupID, edgeNodeID: settings.edgeNodeID, primaryHostID: settings.primaryHostID),
            nodeMetrics: nodeMetrics(now: now), lastBdSeq: bdSeqStore.load())
        deviceOnline = [:]
        for d in view.devices {
            let metrics = d.table.definitions.indices.map {
                SparkplugMapping.birthMetric(d.table.definitions[$0], table: d.table, index: $0, now: now)
            }
            let online = d.driver?.driverStatus.state == "connected"
            deviceOnline[d.name] = online
            _ = try s.addDevice(d.name, metrics: metrics, online: online, now: now)
        }
        sentNodeValues = [:]
        let c = try makeClient()
        sessionLock.withLock {
            session = s
            client = c
        }
        if connect { c.start() }
    }

    private func endSession() {
        // A last receipt request: the client's graceful stop waits for its answer, so live samples the broker has
        // read are not queued again.
        requestReceipt(force: true)
        let c: MQTTClient? = sessionLock.withLock {
            if let actions = session?.shutdown(now: Self.nowMs()) {
                for case .publish(let p) in actions { try? client?.publish(Self.message(p)) }
            }
            return client
        }
        // Not on a client callback thread: stop() joins libmosquitto's thread.
        c?.stop()
        sessionLock.withLock {
            client = nil
            session = nil
        }
        // The answers that arrived while the client drained, then what is still unconfirmed goes to the queue.
        for tag in takeAcknowledgements() { process(.acknowledged(tag)) }
        receipts.requeueUnconfirmed()
        receipts.forgetRequests()
        replayer.restart()
    }

    /// Removes the acknowledgements from the pending events, keeping the others in order.
    private func takeAcknowledgements() -> [UInt64] {
        cond.withLock {
            var tags: [UInt64] = []
            var rest: [Event] = []
            for e in events {
                if case .acknowledged(let tag) = e { tags.append(tag) } else { rest.append(e) }
            }
            events = rest
            return tags
        }
    }

    private func makeClient() throws -> MQTTClient {
        // Every broker with its own TLS and credentials.
        let brokers = settings.brokers.map { b in
            let tls = b.tls.map {
                MQTTTLSConfiguration(
                    caFile: $0.caFile, certificateFile: $0.certificateFile, keyFile: $0.keyFile,
                    verifyServer: $0.verify)
            }
            let security = MQTTSecurity(
                username: b.username, password: b.passwordFile.flatMap { passwords[$0] }, tls: tls)
            return MQTTBroker(host: b.host, port: b.port, security: security)
        }
        let config = MQTTClientConfiguration(
            brokers: brokers, clientID: "edgepilot-\(settings.groupID)-\(settings.edgeNodeID)",
            protocolVersion: settings.mqttVersion == .v5 ? .v5 : .v311, keepAlive: max(5, settings.keepAliveSeconds),
            reconnect: MQTTReconnectPolicy(
                initialDelay: .milliseconds(max(10, settings.reconnectMinMilliseconds)),
                maxDelay: .milliseconds(max(10, settings.reconnectMaxMilliseconds)),
                startupDelayMax: .milliseconds(min(2000, settings.reconnectMaxMilliseconds))))
        let c: MQTTClient
        do {
            c = try MQTTClient(configuration: config) { [weak self] in self?.handle($0) }
        } catch {
            throw PublisherStartError("sparkplug: \(error)")
        }
        c.willProvider = { [weak self] _ in self?.prepareWill() }
        return c
    }

    /// On the client's supervisor thread, before each CONNECT: the NDEATH Will with the next bdSeq, persisted
    /// first so a crash right after cannot reuse it.
    private func prepareWill() -> MQTTMessage? {
        sessionLock.withLock {
            guard session != nil else { return nil }
            let will = session!.prepareConnect(now: Self.nowMs())
            do {
                try bdSeqStore.save(session!.bdSeq!)
            } catch {
                logger.error("cannot persist bdSeq to \(bdSeqStore.path): \(error)")
            }
            return Self.message(will)
        }
    }

    /// On libmosquitto's thread: hand over, never block.
    private func handle(_ event: MQTTClientEvent) {
        switch event {
        case .connected(let b): post(.connected(b))
        case .disconnected(let b, let error):
            if let error { logger.warning("MQTT connection to \(b) lost: \(error)") }
            post(.disconnected)
        case .connectionFailed(let error, let retry):
            counters.withLock { $0.lastError = "\(error)" }
            logger.warning("MQTT connect failed, retrying in \(retry): \(error)")
        case .message(let m): post(.message(m))
        case .published(let tag): if tag != 0 { post(.acknowledged(tag)) }
        case .receipt(let tag): post(.acknowledged(tag))
        }
    }

    // MARK: - Publisher thread

    private func run() {
        while true {
            let (pending, stopping) = cond.withLock { () -> ([Event], Bool) in
                if events.isEmpty && !stopRequested { _ = cond.wait(until: Date(timeIntervalSinceNow: 0.01)) }
                let e = events
                events.removeAll(keepingCapacity: true)
                return (e, stopRequested)
            }
            for e in pending { process(e) }
            checkDevices()
            drainFeed()
            requestReceipt()
            replayStep()
            periodic()
            if stopping { break }
        }
        drainFeed()
        endSession()
        queue.refreshBacklog()
    }

    private func process(_ event: Event) {
        switch event {
        case .connected(let broker):
            counters.withLock {
                $0.connects += 1
                $0.lastError = nil
            }
            logger.notice("MQTT connected to \(broker)")
            replayer.restart()
            receipts.forgetRequests()
            step { $0.connected(now: Self.nowMs()) }
        case .disconnected:
            sessionLock.withLock { session?.connectionLost() }
            replayer.restart()
            // What the broker did not confirm may have died with the connection: queued, replayed after the births.
            receipts.forgetRequests()
            receipts.requeueUnconfirmed()
        case .message(let m):
            if let host = settings.primaryHostID, m.topic == SparkplugTopic.state(hostID: host),
                let json = try? JSONSerialization.jsonObject(with: Data(m.payload)) as? [String: Any],
                let online = json["online"] as? Bool
            {
                counters.withLock { $0.primaryHostOnline = online }
            }
            step { try $0.handleMessage(topic: m.topic, payload: m.payload, now: Self.nowMs()) }
        case .acknowledged(let tag):
            // A receipt for live data, else a replay message's PUBACK.
            if receipts.acknowledge(tag) { return }
            replayer.acknowledge(tag)
        case .republish(let device, let tag):
            guard let d = view.devices.first(where: { $0.name == device }), let i = d.table.index(of: tag) else {
                return
            }
            let sample = d.table.read(i)
            let m = SparkplugMapping.metric(
                d.table.definitions[i], value: d.table.value(of: i, sample), quality: sample.quality,
                timestampMicros: sample.timestamp)
            step { try $0.updateDevice(device, [m], now: Self.nowMs()) }
        case .rebirth:
            let payload = SparkplugPayload(
                timestamp: Self.nowMs(),
                metrics: [
                    SparkplugMetric(name: EdgeNodeSession.rebirthMetric, timestamp: Self.nowMs(), value: .boolean(true))
                ])
            guard let bytes = try? payload.serialized() else { return }
            step { s in try s.handleMessage(topic: s.topic(.ncmd), payload: bytes, now: Self.nowMs()) }
        case .reload(let next):
            let changed = next.signature != view.signature
            view = next
            if changed {
                logger.notice("devices or tags changed: new Sparkplug session with new births")
                endSession()
                do {
                    try startSession()
                } catch {
                    counters.noteError("cannot rebuild the Sparkplug session: \(error)")
                }
            }
        }
    }

    /// What one session step did: whether every publish was accepted by the client, how many there were, and
    /// whether the session was online afterwards (read under the same lock, so a Will prepared on the supervisor
    /// thread in between cannot make data look published when it was not).
    struct StepResult {
        var ok = true
        var published = 0
        var online = false
    }

    /// Runs a session transition and performs its actions under the session lock, so wire order is seq order.
    @discardableResult
    private func step(
        qos1Tag: UInt64? = nil, _ transition: (inout EdgeNodeSession) throws -> [EdgeNodeAction]
    ) -> StepResult {
        var commandsToRun: [(String, [SparkplugMetric])] = []
        var result = StepResult()
        sessionLock.withLock {
            defer { result.online = session?.isOnline ?? false }
            guard session != nil, let client else { return }
            let actions: [EdgeNodeAction]
            do {
                actions = try transition(&session!)
            } catch {
                counters.withLock { $0.commandsRejected += 1 }
                logger.warning("Sparkplug message rejected: \(error)")
                return
            }
            for action in actions {
                switch action {
                case .publish(var p):
                    if qos1Tag != nil { p.qos = 1 }
                    do {
                        try client.publish(Self.message(p), tag: qos1Tag ?? 0)
                        result.published += 1
                        counters.withLock {
                            $0.messagesPublished += 1
                            if p.topic.contains("/NBIRTH/") { $0.births += 1 }
                        }
                    } catch {
                        result.ok = false
                    }
                case .subscribe(let topic, let qos):
                    do {
                        try client.subscribe(topic, qos: qos == 1 ? .atLeastOnce : .atMostOnce)
                    } catch {
                        counters.withLock { $0.lastError = "\(error)" }
                    }
                case .disconnect:
                    // Followed by .nextServer (Primary Host offline, NCMD Next Server): the move closes the
                    // connection. A lone disconnect only comes from shutdown, which endSession handles.
                    break
                case .nextServer:
                    logger.notice("moving to the next MQTT server")
                    client.moveToNextBroker()
                case .nodeCommand(let metrics):
                    commands.refuseNodeWrites(metrics)
                case .deviceCommand(let device, let metrics):
                    commandsToRun.append((device, metrics))
                }
            }
        }
        for (device, metrics) in commandsToRun {
            commands.run(device: device, metrics, view: view) { [self] device, tag in
                post(.republish(device: device, tag: tag))
            }
        }
        return result
    }

    private func checkDevices() {
        for d in view.devices {
            let online = d.driver?.driverStatus.state == "connected"
            guard deviceOnline[d.name] != online else { continue }
            deviceOnline[d.name] = online
            let now = Self.nowMs()
            if online {
                step { s in try s.deviceOnline(d.name, now: now) }
                replayer.deviceCameOnline()
            } else {
                step { s in try s.deviceOffline(d.name, now: now) }
            }
        }
    }

    /// Live data: every pending change, published through the session or queued.
    private func drainFeed() {
        liveData.drain(view.directory) { device, metrics in
            step { s in try s.updateDevice(device, metrics, now: Self.nowMs()) }
        }
    }

    /// About once a second while live samples wait (or when `force`d): a receipt request for them.
    private func requestReceipt(force: Bool = false) {
        receipts.requestReceipt(force: force, client: { sessionLock.withLock { client } }, tags: tags)
    }

    /// Replay: the next slice of the backlog, as historical DDATA at QoS 1 with its own acknowledgement tag.
    private func replayStep() {
        replayer.step(
            directory: view.directory, deviceOnline: deviceOnline,
            isOnline: { sessionLock.withLock { session?.isOnline ?? false } },
            publish: { device, metrics in
                let tag = tags.next()
                let r = step(qos1Tag: tag) { s in try s.updateDevice(device, metrics, now: Self.nowMs()) }
                return r.ok && r.published > 0 ? tag : nil
            })
    }

    private func periodic() {
        let now = ContinuousClock.now
        if now - lastStatsRefresh >= .seconds(1) {
            lastStatsRefresh = now
            let replayInFlight = replayer.inFlight
            let unconfirmed = receipts.unconfirmed
            counters.withLock {
                $0.replayInFlight = replayInFlight
                $0.unconfirmed = unconfirmed
            }
            replayer.revisitSkipped(deviceOnline: deviceOnline)
        }
        guard now - lastNodeMetrics >= .seconds(5) else { return }
        lastNodeMetrics = now
        let ms = Self.nowMs()
        let changed = nodeMetrics(now: ms).filter { m in
            guard let name = m.name, let v = m.value else { return false }
            return sentNodeValues[name] != v
        }
        guard !changed.isEmpty else { return }
        if step({ s in try s.updateNode(changed, now: ms) }).ok {
            for m in changed { sentNodeValues[m.name!] = m.value }
        }
    }

    /// Every node metric with its current value: what NBIRTH declares and NDATA updates.
    private func nodeMetrics(now: UInt64) -> [SparkplugMetric] {
        let c = counters.withLock { $0 }
        var polls: UInt64 = 0
        var errors: UInt64 = 0
        var connected: Int64 = 0
        for d in view.devices {
            guard let s = d.driver?.driverStatus else { continue }
            polls += s.polls
            errors += s.errors
            if s.state == "connected" { connected += 1 }
        }
        func m(_ name: String, _ v: SparkplugValue) -> SparkplugMetric {
            SparkplugMetric(name: name, timestamp: now, value: v)
        }
        return [
            m("Properties/Version", .string(agentVersion)),
            m("Properties/Uptime", .uint64(UInt64(max(0, Date().timeIntervalSince(startedAt))))),
            m("Store and Forward/Backlog", .int64(c.backlog.rows)),
            m("Store and Forward/Backlog Bytes", .int64(c.backlog.bytes)),
            m("Store and Forward/Dropped", .int64(c.backlog.dropped)),
            m("Polling/Devices", .int32(Int32(view.devices.count))),
            m("Polling/Devices Connected", .int32(Int32(connected))),
            m("Polling/Polls", .uint64(polls)),
            m("Polling/Errors", .uint64(errors)),
            m("Commands/Written", .uint64(c.commandsWritten)),
            m("Commands/Refused", .uint64(c.commandsRefused + c.commandsFailed + c.commandsRejected)),
        ]
    }

    // MARK: - Helpers

    static func nowMs() -> UInt64 { UInt64(Date().timeIntervalSince1970 * 1000) }

    static func message(_ p: SparkplugPublication) -> MQTTMessage {
        MQTTMessage(
            topic: p.topic, payload: p.payload, qos: p.qos == 1 ? .atLeastOnce : .atMostOnce, retain: p.retain)
    }
}

/// Tags for the acknowledgements the publisher waits for: receipt requests and replay messages draw from one
/// sequence, so an acknowledgement names exactly one of them. Publisher thread only.
final class AcknowledgementTags {
    private var last: UInt64 = 0

    /// A tag never handed out before (0 means "no acknowledgement wanted" to the client).
    func next() -> UInt64 {
        last += 1
        return last
    }
}

/// Why the publisher could not be built: a setting the operator must fix (unreadable password file, bad TLS).
public struct PublisherStartError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
