import Foundation
import Sparkplug

/// The status report (`edgepilot mqtt status`) and the node metrics: what NBIRTH declares about the agent and NDATA
/// updates every 5 s when it changed.
extension EdgeNodePublisher {
    package var report: MQTTStatusReport {
        let (phase, bdSeq, seq, ignored) = sessionLock.withLock {
            (session?.phase, session?.bdSeq, session?.seq ?? 0, session?.nextServerIgnored)
        }
        let c = counters.withLock { $0 }
        let client = sessionLock.withLock { self.client }
        let state: String
        switch phase {
        case .online?: state = "online"
        case .waitingForPrimaryHost?: state = "waiting_for_primary_host"
        default: state = "disconnected"
        }
        var report = MQTTStatusReport(
            groupID: settings.groupID, edgeNodeID: settings.edgeNodeID, primaryHostID: settings.primaryHostID,
            broker: client?.currentBroker?.description, connected: client?.isConnected ?? false, sessionState: state,
            bdSeq: bdSeq.map(Int.init), seq: Int(seq), primaryHostOnline: c.primaryHostOnline,
            backlog: c.backlog.rows, backlogBytes: c.backlog.bytes, dropped: c.backlog.dropped,
            replayInFlight: c.replayInFlight, replayedMetrics: c.replayedMetrics,
            messagesPublished: c.messagesPublished, births: c.births, connects: c.connects,
            commandsWritten: c.commandsWritten, commandsRefused: c.commandsRefused,
            commandsFailed: c.commandsFailed, commandsRejected: c.commandsRejected,
            commandPolicy: settings.commands.rawValue, commandsExpired: c.commandsExpired,
            commandsDropped: c.commandsDropped, commandQueue: commands.queued,
            primaryHostStateTimestamp: c.primaryHostStateTimestamp, statesRejected: c.statesRejected,
            feedDropped: feed.dropped(consumer: consumer), unconfirmed: c.unconfirmed,
            receiptRequests: c.receiptRequests, liveConfirmed: c.liveConfirmed, liveRequeued: c.liveRequeued,
            lastError: c.lastError, notOnlineSince: c.notOnlineSince)
        report.nextServerIgnored = ignored
        report.startupDelay = c.startupDelay
        report.firstConnectAt = c.firstConnectAt
        report.replayDelivery = settings.replay.delivery.rawValue
        report.replayMetricsPerMessage = settings.replay.metricsPerMessage
        report.replayMessagesPerSecond = settings.replay.messagesPerSecond
        report.replayDrainRate = c.replayDrainRate
        if let rate = c.replayDrainRate, rate > 0, c.backlog.rows > 0 {
            report.replayETASeconds = Int((Double(c.backlog.rows) / rate).rounded(.up))
        }
        report.liveHeld = c.liveHeld
        report.compression = settings.compression.rawValue
        return report
    }

    /// Publisher thread, every loop: the report's in-flight figures and skipped replay rows once a second, the
    /// node metrics that changed every 5 s.
    func periodic() {
        let now = ContinuousClock.now
        if now - lastStatsRefresh >= .seconds(1) {
            lastStatsRefresh = now
            let replayInFlight = replayer.inFlight
            let drainRate = replayer.sampleDrainRate()
            let unconfirmed = receipts.unconfirmed
            let online = sessionLock.withLock { session?.phase == .online }
            let wall = Int64(Self.nowMs()) * 1000
            counters.withLock {
                $0.replayInFlight = replayInFlight
                $0.replayDrainRate = drainRate
                $0.unconfirmed = unconfirmed
                if online {
                    $0.notOnlineSince = nil
                } else if $0.notOnlineSince == nil {
                    $0.notOnlineSince = wall
                }
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
    func nodeMetrics(now: UInt64) -> [SparkplugMetric] {
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
        var metrics = [
            m("Properties/Version", .string(agentVersion)),
            m("Properties/Hardware Make", .string(hostIdentity.hardwareMake)),
            m("Properties/Hardware Model", .string(hostIdentity.hardwareModel)),
            m("Properties/OS", .string(hostIdentity.os)),
            m("Properties/OS Version", .string(hostIdentity.osVersion)),
            m("Properties/Uptime", .uint64(UInt64(max(0, Date().timeIntervalSince(startedAt))))),
            m("Store and Forward/Backlog", .int64(c.backlog.rows)),
            m("Store and Forward/Backlog Bytes", .int64(c.backlog.bytes)),
            m("Store and Forward/Dropped", .int64(c.backlog.dropped)),
            m("Polling/Devices", .int32(Int32(view.devices.count))),
            m("Polling/Devices Connected", .int32(Int32(connected))),
            m("Polling/Polls", .uint64(polls)),
            m("Polling/Errors", .uint64(errors)),
            m("Commands/Written", .uint64(c.commandsWritten)),
            m(
                "Commands/Refused",
                .uint64(
                    c.commandsRefused + c.commandsFailed + c.commandsRejected + c.commandsExpired + c.commandsDropped)),
        ]
        if let rate = scanRate { metrics.append(m(Self.scanRateMetric, .int64(rate))) }
        return metrics
    }
}
