import Devices
import Foundation
import History
import Logging
import MQTT
import Sparkplug
import Synchronization
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
/// the backlog is replayed oldest first as historical DDATA, throttled, beside live data, and rows leave the queue
/// only when a receipt from the broker covers the message that carried them. NDATA and DDATA, live and replayed,
/// are QoS 0 as Sparkplug requires; with `confirm_live` live samples stay in `UnconfirmedSamples` until a receipt from the broker confirms
/// them, and join the queue if the connection ends first.
///
/// The publisher is the coordinator: this file holds its state, lifecycle, event mailbox and thread loop; session
/// driving (connect, Will and bdSeq, births, rebirth, STATE, the session step) is in `EdgeNodePublisher+Session`,
/// the status report and node metrics in `EdgeNodePublisher+Status`. Its parts, each with its own state: live data
/// (`LiveDataSender`, `ReceiptTracker`), replay (`BacklogReplayer`), the queue (`StoreAndForwardQueue`) and
/// commands (`CommandHandler`).
package final class EdgeNodePublisher: @unchecked Sendable {
    /// The devices and tags the publisher serves; replaced on reload.
    package struct View: @unchecked Sendable {
        var devices: [(name: String, table: TagTable, driver: (any DeviceDriver)?)]
        /// Resolves change ids, including those of tables a reload just replaced.
        var directory: TagDirectory
        /// Devices published as template instances, by device name (docs/decisions/0037-sparkplug-templates.md).
        var templates: [String: DeviceTemplate]

        /// Device names with their tags' names, types, units, writable and description (DBIRTH properties), and whether anything is polled (NBIRTH declares
        /// Scan Rate then): when it changes, the births must change.
        var signature: [String] {
            let polled = devices.contains { $0.driver?.fastestPollPeriodMilliseconds != nil }
            return ["polled:\(polled)"]
                + devices.map { d in
                    d.name + "|"
                        + d.table.definitions.map {
                            "\($0.name):\(SparkplugMapping.dataType(of: $0)):\($0.units ?? ""):\($0.writable):"
                                + ($0.description ?? "")
                        }
                        .joined(separator: ",")
                }.sorted()
                + templates.map { "template:\($0.key)|\($0.value.signature)" }.sorted()
        }

        package init(
            devices: [(name: String, table: TagTable, driver: (any DeviceDriver)?)], directory: TagDirectory,
            templates: [String: DeviceTemplate] = [:]
        ) {
            self.devices = devices
            self.directory = directory
            self.templates = templates
        }
    }

    /// What other threads hand to the publisher thread.
    enum Event {
        case connected(MQTTBroker)
        case disconnected
        case message(MQTTMessage)
        case acknowledged(UInt64)
        case republish(device: String, tag: String)
        case rebirth
        case reload(View)
    }

    let settings: SparkplugSettings
    let feed: ChangeFeed
    let consumer: Int
    let bdSeqStore: FileBdSeqStore
    let logger = Logger(label: "edgepilot.sparkplug")
    let startedAt = Date()
    /// Shown as `Properties/Version` in NBIRTH.
    let agentVersion: String
    /// Shown as `Properties/Hardware Make`, `Hardware Model`, `OS` and `OS Version` in NBIRTH.
    let hostIdentity = HostIdentity.read()

    let sessionLock = NSLock()
    var session: EdgeNodeSession?
    var client: MQTTClient?

    let cond = NSCondition()
    var events: [Event] = []
    private var stopRequested = false
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)

    let counters = PublisherCounters()
    let queue: StoreAndForwardQueue
    let receipts: ReceiptTracker
    let liveData: LiveDataSender
    let replayer: BacklogReplayer
    let commands: CommandHandler
    let tags = AcknowledgementTags()
    /// `sparkplug.compression`; nil when off. Used on the publisher thread under `sessionLock`.
    let compressor: SparkplugCompressor?

    // Publisher-thread state.
    var view: View
    var deviceOnline: [String: Bool] = [:]
    var lastNodeMetrics = ContinuousClock.now
    var lastStatsRefresh = ContinuousClock.now
    var sentNodeValues: [String: SparkplugValue] = [:]
    /// `replay.delivery: in_order`: live changes are being queued behind the backlog.
    var holdingLive = false
    /// Benchmarks/sparkplug only: replay at QoS 1 confirmed by PUBACK, the path 0016 replaced, so one run can
    /// compare it with QoS 0 and receipts. Sparkplug forbids QoS 1 data: never for a real node.
    let replayAtQoS1ForBenchmark = ProcessInfo.processInfo.environment["EDGEPILOT_BENCH_REPLAY_QOS1"] == "1"
    /// While the startup delay runs: when the first CONNECT may go (set before the thread starts, then its own).
    var firstConnectDue: ContinuousClock.Instant?
    /// The factor NCMD Scan Rate set on every poll period, as a Double's bit pattern (read by `nodeMetrics` on the
    /// supervisor thread too).
    let scanRateBits = Atomic<UInt64>(1.0.bitPattern)
    /// The bdSeq last written to the store (supervisor thread, under `sessionLock`).
    var savedBdSeq: UInt8?
    /// The audit source of commands: the connection that delivers them (`commandSource(_:broker:)`).
    var commandSource: String

    /// Each password_file's first line.
    var passwords: [String: String] = [:]

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
            policy: settings.commands, allowList: settings.commandAllowList, limits: settings.commandLimits,
            counters: counters, audit: audit)
        commandSource = Self.commandSource(settings, broker: nil)
        switch settings.compression {
        case .off: compressor = nil
        case .deflate: compressor = SparkplugCompressor(algorithm: .deflate)
        case .gzip: compressor = SparkplugCompressor(algorithm: .gzip)
        }
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

    /// Starts the publisher thread, and connecting: at once, or after a random delay up to `startup_delay_max`
    /// (changes meanwhile go to the store-and-forward queue, as while the broker is away).
    package func start() {
        let most = settings.startupDelayMaxMilliseconds
        if most > 0 {
            let delay = Int.random(in: 0...most)
            firstConnectDue = ContinuousClock.now + .milliseconds(delay)
            let at = HistoryClock.now() + Int64(delay) * 1000
            counters.withLock {
                $0.startupDelay = delay
                $0.firstConnectAt = at
            }
            logger.notice("first connection in \(delay) ms (sparkplug.startup_delay_max \(most) ms)")
        } else {
            sessionLock.withLock { client }?.start()
        }
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

    func post(_ event: Event) {
        cond.withLock {
            events.append(event)
            cond.broadcast()
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
            if let due = firstConnectDue, ContinuousClock.now >= due {
                firstConnectDue = nil
                sessionLock.withLock { client }?.start()
            }
            serveDueRebirth()
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

    func process(_ event: Event) {
        switch event {
        case .connected(let broker): connected(to: broker)
        case .disconnected: connectionLost()
        case .message(let m): received(m)
        case .acknowledged(let tag):
            // A receipt for live data, else one for a replay message.
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
        case .rebirth: rebirthNow()
        case .reload(let next): reload(next)
        }
    }

    /// Live data: every pending change, published through the session or queued. With `replay.delivery:
    /// in_order` changes are queued behind the backlog until it is drained, then what changed meanwhile is sent
    /// live once (`catchUpLive`).
    private func drainFeed() {
        let hold = settings.replay.delivery == .inOrder && !replayer.caughtUp
        if holdingLive != hold {
            holdingLive = hold
            counters.withLock { $0.liveHeld = hold }
            if !hold { catchUpLive() }
        }
        liveData.drain(view.directory, hold: hold) { device, metrics in
            step { s in try s.updateDevice(device, metrics, now: Self.nowMs()) }
        }
    }

    /// After an in-order drain: every device's current values through the session, which sends as live DDATA
    /// those that differ from what the host last had live (the changes meanwhile reached it as history only). Kept
    /// until confirmed like any live sample.
    private func catchUpLive() {
        for d in view.devices where deviceOnline[d.name] == true {
            var metrics: [SparkplugMetric] = []
            var rows: [HistoryRow] = []
            for i in d.table.definitions.indices {
                let sample = d.table.read(i)
                guard sample.timestamp > 0 else { continue }
                let def = d.table.definitions[i]
                metrics.append(
                    SparkplugMapping.metric(
                        def, value: d.table.value(of: i, sample), quality: sample.quality,
                        timestampMicros: sample.timestamp))
                rows.append(
                    HistoryRow(
                        tag: def.name, timestamp: sample.timestamp,
                        value: HistoryValue(sample.value, text: d.table.text(of: i)), quality: sample.quality))
            }
            guard !metrics.isEmpty else { continue }
            let r = step { s in try s.updateDevice(d.name, metrics, now: Self.nowMs()) }
            if r.online && r.ok { receipts.keepUntilConfirmed(rows) }
        }
    }

    /// About once a second while live samples wait (or when `force`d): a receipt request for them.
    func requestReceipt(force: Bool = false) {
        receipts.requestReceipt(force: force, client: { sessionLock.withLock { client } }, tags: tags)
    }

    /// Replay: the next slice of the backlog, as historical DDATA at QoS 0 followed by a receipt request whose
    /// answer confirms it; with `confirm_live: false` the broker must see no receipt request, and the message counts
    /// as delivered once written to the socket (docs/decisions/0023-confirm-live-off-means-no-receipts.md).
    private func replayStep() {
        let byReceipt = settings.storeAndForward.confirmLive && !replayAtQoS1ForBenchmark
        replayer.step(
            directory: view.directory, deviceOnline: deviceOnline,
            isOnline: { sessionLock.withLock { session?.isOnline ?? false } },
            publish: { device, metrics in
                let tag = tags.next()
                let r = step(receiptTag: tag, byReceipt: byReceipt, atLeastOnce: replayAtQoS1ForBenchmark) { s in
                    try s.updateDevice(device, metrics, now: Self.nowMs())
                }
                return r.ok && r.published > 0 ? tag : nil
            })
    }

    // MARK: - Helpers

    static func nowMs() -> UInt64 { UInt64(Date().timeIntervalSince1970 * 1000) }

    /// What audit rows of commands name as their source: MQTT does not tell who published a command, so the row
    /// says which broker connection delivered it and how that connection is authenticated
    /// (`sparkplug:host=<primary host or none>,broker=<url>,auth=<none | user:NAME | cert | user:NAME+cert>`).
    static func commandSource(_ settings: SparkplugSettings, broker: MQTTBroker?) -> String {
        let b = broker.flatMap { broker in settings.brokers.first { $0.host == broker.host && $0.port == broker.port } }
        var auth: [String] = []
        if let user = b?.username { auth.append("user:\(user)") }
        if b?.tls?.certificateFile != nil { auth.append("cert") }
        let url = b.map { "\($0.tls == nil ? "mqtt" : "mqtts")://\($0.host):\($0.port)" } ?? "none"
        return "sparkplug:host=\(settings.primaryHostID ?? "none"),broker=\(url),"
            + "auth=\(auth.isEmpty ? "none" : auth.joined(separator: "+"))"
    }

    static func message(_ p: SparkplugPublication) -> MQTTMessage {
        MQTTMessage(
            topic: p.topic, payload: p.payload, qos: p.qos == 1 ? .atLeastOnce : .atMostOnce, retain: p.retain)
    }

    /// The message for a publication, compressed when `sparkplug.compression` is on and it is a birth or data
    /// (what MQTT Engine decompresses); deaths stay plain so any host can read their bdSeq. Publisher thread.
    func outgoing(_ p: SparkplugPublication) throws -> MQTTMessage {
        var m = Self.message(p)
        guard let compressor, Self.isCompressible(topic: p.topic) else { return m }
        m.payload = try compressor.compress(p.payload)
        return m
    }

    /// NBIRTH, DBIRTH, NDATA and DDATA: the third topic level (`spBv1.0/<group>/<type>/...`).
    static func isCompressible(topic: String) -> Bool {
        let type = topic.split(separator: "/", maxSplits: 3, omittingEmptySubsequences: false).dropFirst(2).first
        return type.map { ["NBIRTH", "DBIRTH", "NDATA", "DDATA"].contains($0) } ?? false
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
