import History
import Sparkplug
import Tags

/// Replay of the store-and-forward queue after the births (see docs/decisions/0011-store-and-forward.md): oldest
/// first, as historical DDATA at QoS 0 (Sparkplug allows no other QoS for data) with the original timestamps and a
/// Quality property, at most
/// `replay.metrics_per_message` metrics of one device per message and `replay.messages_per_second` messages, with
/// at most `replayWindow` unconfirmed. Each message is followed by a receipt request (an UNSUBSCRIBE the broker
/// answers only after reading everything sent before it); rows leave the queue only on the answer to the request
/// that followed the message carrying them, so nothing is deleted that the broker did not get.
///
/// Publisher thread only.
final class BacklogReplayer {
    /// Replay messages allowed in flight (published, not acknowledged): bounds both the duplicates a crash can
    /// cause and what libmosquitto holds in memory.
    static let replayWindow = 8

    private let settings: ReplaySettings
    private let queue: StoreAndForwardQueue
    private let counters: PublisherCounters
    /// The id of the last row published (or passed over); the next message starts after it.
    private var replayCursor: Int64 = 0
    /// Rows of a device that was down were passed over; the cursor must come back for them.
    private var replaySkipped = false
    /// Messages published and not acknowledged, by acknowledgement tag: the rows they carry.
    private var inflight: [UInt64: (first: Int64, last: Int64, metrics: Int)] = [:]
    private var replayTokens: Double = 0
    private var lastTokenRefill = ContinuousClock.now
    /// `queue.enqueues` when replay last found nothing more it could publish with nothing in flight (rows of devices
    /// that are down may remain); nil after a new connection or when the cursor went back.
    private var caughtUpAt: UInt64?
    /// Metrics acknowledged, sampled once a second over the last `rateWindow` seconds: the drain rate shown.
    private var drained: [(at: ContinuousClock.Instant, metrics: UInt64)] = []
    private var acknowledgedMetrics: UInt64 = 0
    static let rateWindow = 10

    init(settings: ReplaySettings, queue: StoreAndForwardQueue, counters: PublisherCounters) {
        self.settings = settings
        self.queue = queue
        self.counters = counters
    }

    /// Replay messages published and not acknowledged yet.
    var inFlight: Int { inflight.count }

    /// Whether the backlog is drained as far as it can be: nothing queued, or nothing that could be published is
    /// left (only rows of devices that are down) and nothing is in flight. `replay.delivery: in_order` holds live
    /// data until then.
    var caughtUp: Bool {
        inflight.isEmpty && (queue.backlogRows == 0 || (caughtUpAt != nil && caughtUpAt == queue.enqueues))
    }

    /// Once a second: the metrics acknowledged over the last `rateWindow` seconds, per second (nil before two
    /// samples).
    func sampleDrainRate() -> Double? {
        let now = ContinuousClock.now
        drained.append((now, acknowledgedMetrics))
        if drained.count > Self.rateWindow + 1 { drained.removeFirst(drained.count - Self.rateWindow - 1) }
        guard let first = drained.first, drained.count > 1 else { return nil }
        let d = now - first.at
        let seconds = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
        return seconds > 0 ? Double(acknowledgedMetrics - first.metrics) / seconds : nil
    }

    /// A new or lost connection: what was in flight is forgotten (the rows stay queued) and replay starts over from
    /// the oldest row after the next births.
    func restart() {
        inflight = [:]
        replayCursor = 0
        caughtUpAt = nil
    }

    /// Publishes the next slice of the backlog if the session is online, the window has room and the rate allows.
    /// `publish` sends one historical DDATA and its receipt request and returns the request's tag, nil when the client
    /// refused it.
    func step(
        directory: TagDirectory, deviceOnline: [String: Bool], isOnline: () -> Bool,
        publish: (_ device: String, [SparkplugMetric]) -> UInt64?
    ) {
        guard queue.isOpen, queue.backlogRows > 0 else { return }
        guard isOnline() else { return }
        let rate = settings.messagesPerSecond
        let now = ContinuousClock.now
        if rate > 0 {
            let elapsed = now - lastTokenRefill
            replayTokens = min(
                max(1, rate / 10),
                replayTokens + rate
                    * (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18))
        }
        lastTokenRefill = now
        let limit = max(1, settings.metricsPerMessage)
        while inflight.count < Self.replayWindow && (rate <= 0 || replayTokens >= 1) {
            let rows: [ForwardRow]
            do {
                rows = try queue.peek(after: replayCursor, limit: limit)
            } catch {
                counters.noteError("store-and-forward read failed: \(error)")
                return
            }
            guard let first = rows.first else {
                if inflight.isEmpty { caughtUpAt = queue.enqueues }
                return
            }
            guard let (table, _) = directory.locate(name: first.tag) else {
                // A tag removed by a reload: its stored samples can no longer be published.
                try? queue.delete(from: first.id, through: first.id)
                queue.refreshBacklog()
                continue
            }
            let device = table.definitions[0].device
            var metrics: [SparkplugMetric] = []
            var last = first.id
            for row in rows {
                guard let (t, i) = directory.locate(name: row.tag), t.definitions[i].device == device else {
                    break
                }
                let d = t.definitions[i]
                let type = SparkplugMapping.dataType(of: d)
                let ts = UInt64(max(0, row.timestamp / 1000))
                let props = [SparkplugProperty.quality(SparkplugMapping.quality(row.quality))]
                if let v = SparkplugMapping.value(row.value, for: d, as: type) {
                    metrics.append(
                        SparkplugMetric(name: d.name, timestamp: ts, value: v, properties: props, isHistorical: true))
                } else {
                    metrics.append(
                        SparkplugMetric(
                            name: d.name, timestamp: ts, nullOf: type, properties: props, isHistorical: true))
                }
                last = row.id
            }
            replayCursor = last
            guard deviceOnline[device] == true else {
                // Its DDATA must wait for its DBIRTH; the rows stay queued and the cursor comes back for them.
                replaySkipped = true
                continue
            }
            guard let tag = publish(device, metrics) else {
                // Not connected after all (the events saying so are on their way): start over after them.
                replayCursor = 0
                return
            }
            inflight[tag] = (first.id, last, metrics.count)
            replayTokens -= 1
        }
        counters.withLock { $0.replayInFlight = inflight.count }
    }

    /// The broker answered the receipt request that followed a replay message: its rows leave the queue. False when `tag` is not one in flight.
    @discardableResult
    func acknowledge(_ tag: UInt64) -> Bool {
        guard let range = inflight.removeValue(forKey: tag) else { return false }
        do {
            try queue.delete(from: range.first, through: range.last)
            counters.withLock { $0.replayedMetrics += UInt64(range.metrics) }
            acknowledgedMetrics += UInt64(range.metrics)
        } catch {
            counters.noteError("store-and-forward delete failed: \(error)")
        }
        queue.refreshBacklog()
        return true
    }

    /// A device came back (its DBIRTH is out): rows passed over while it was down are replayed from after what is
    /// in flight.
    func deviceCameOnline() {
        if replaySkipped {
            replaySkipped = false
            replayCursor = inflight.values.map(\.last).max() ?? 0
            caughtUpAt = nil
        }
    }

    /// Once a second: rows of devices that were down were passed over; once every device is up and nothing is in
    /// flight, replay looks at them again from the start.
    func revisitSkipped(deviceOnline: [String: Bool]) {
        if replaySkipped && inflight.isEmpty && queue.backlogRows > 0 {
            // Rows of devices that are down were passed over; look at them again from the start.
            let deviceDown = deviceOnline.values.contains(false)
            if !deviceDown {
                replaySkipped = false
                replayCursor = 0
                caughtUpAt = nil
            }
        }
    }
}
