import Foundation
import History
import LocalControl
import OPCUA
import Tags

/// `edgepilot health`: gathers what the runtime already knows (driver status, tag tables, the history writer, the
/// publisher, the loops, the clocks, certificate files) and lets `HealthEvaluator` judge it.
extension AgentRuntime {
    /// The earliest wall-clock time this version can run at (the day it was cut, Unix µs): a clock before it is
    /// certainly wrong. Swift has no compile-time date, so the constant moves with `AgentVersion.current`.
    static let notBefore: Int64 = 1_796_083_200 * 1_000_000  // 2026-12-01T00:00:00Z

    func health() -> HealthReport {
        let evaluator = HealthEvaluator()
        let now = HistoryClock.now()
        let g = current
        var checks: [HealthCheck] = []

        for device in g.configuration.devices {
            if case .agent = device.transport { continue }
            let status = g.drivers[device.name]?.driverStatus
            let table = g.tables[device.name]
            checks.append(
                evaluator.device(
                    HealthEvaluator.Device(
                        name: device.name, enabled: device.enabled, state: status?.state ?? "stopped",
                        pollPeriodSeconds: pollPeriod(of: device, in: g.configuration),
                        lastGoodSample: table.flatMap(newestGoodSample),
                        lastError: status?.lastError,
                        lastErrorTime: status?.lastError == nil ? nil : status?.lastErrorTime),
                    now: now))
        }

        let writer = historyStatistics
        let path = g.configuration.history.path
        let volume = volumeSpace(of: path)
        checks += evaluator.history(
            HealthEvaluator.History(
                path: path, pending: feed.pending(consumer: Self.historyConsumer), lastCommit: writer.lastCommitTime,
                lastCommitError: writer.lastCommitErrorTime, lastError: writer.lastError,
                startedAt: Int64(startedAt.timeIntervalSince1970 * 1_000_000),
                volumeAvailableBytes: volume?.available, volumeTotalBytes: volume?.total),
            now: now)

        if let s = sparkplugStatus() {
            checks.append(
                evaluator.sparkplug(
                    HealthEvaluator.Sparkplug(
                        edgeNode: "\(s.groupID)/\(s.edgeNodeID)", broker: s.broker, connected: s.connected,
                        sessionState: s.sessionState, primaryHostID: s.primaryHostID,
                        notOnlineSince: s.notOnlineSince),
                    now: now))
        }

        for runner in g.loops.values.sorted(by: { $0.definition.name < $1.definition.name }) {
            let snapshot = runner.snapshot()
            checks.append(
                evaluator.loop(
                    name: snapshot.name, mode: snapshot.mode, requestedMode: snapshot.requestedMode,
                    reason: snapshot.reason))
        }

        let wallElapsed = now - Int64(startedAt.timeIntervalSince1970 * 1_000_000)
        let bootElapsed = bootTimeMicroseconds() - startedAtBootTime
        checks.append(evaluator.clock(now: now, notBefore: Self.notBefore, step: wallElapsed - bootElapsed))

        for (name, file) in certificateFiles(g.configuration) {
            let summary = FileManager.default.contents(atPath: file).flatMap { certificateSummary(Array($0)) }
            checks.append(
                evaluator.certificate(
                    name: name, subject: summary?.subject,
                    notAfter: summary.map { Int64($0.notAfter.timeIntervalSince1970 * 1_000_000) }, now: now))
        }
        return HealthReport(checks: checks)
    }

    /// The fastest period of the device's tags. For OPC UA the age is judged from when the driver last vouched for
    /// a value (a poll reply, a data change or a subscription keep-alive), not from the server's source timestamps.
    func pollPeriod(of device: DeviceDefinition, in configuration: AgentConfiguration) -> Double? {
        let periods = configuration.tags.filter { $0.device == device.name }
            .compactMap { configuration.pollGroup(named: $0.pollGroup)?.periodMilliseconds }
        return periods.min().map { Double($0) / 1000 }
    }

    /// The last time the driver vouched for a good value of the device: a Modbus poll stores every sample with the
    /// poll's time; an OPC UA reply or keep-alive confirms values whose source timestamps stay old.
    func newestGoodSample(_ table: TagTable) -> Int64? {
        var newest: Int64?
        for i in 0..<table.count where table.read(i).quality.isGood {
            newest = max(newest ?? .min, table.confirmedAt(i))
        }
        return newest
    }

    /// Bytes available to an unprivileged writer and the volume's size, for the directory holding `path`.
    func volumeSpace(of path: String) -> (available: Int64, total: Int64)? {
        var info = statvfs()
        let directory = (path as NSString).deletingLastPathComponent
        guard statvfs(directory.isEmpty ? "." : directory, &info) == 0 else { return nil }
        let unit = Int64(info.f_frsize)
        return (Int64(info.f_bavail) * unit, Int64(info.f_blocks) * unit)
    }

    /// The certificates the agent presents or trusts: each secured OPC UA device's own certificate, and each MQTT
    /// broker's CA and client certificate.
    func certificateFiles(_ configuration: AgentConfiguration) -> [(name: String, path: String)] {
        var files: [(name: String, path: String)] = []
        for device in configuration.devices {
            if case .opcua(let settings) = device.transport, settings.mode != .none {
                files.append(("\(device.name) OPC UA client", settings.pkiDirectory + "/own/cert.der"))
            }
        }
        for broker in configuration.sparkplug?.brokers ?? [] {
            guard let tls = broker.tls else { continue }
            files.append(("MQTT \(broker.host):\(broker.port) CA", tls.caFile))
            if let client = tls.certificateFile { files.append(("MQTT \(broker.host):\(broker.port) client", client)) }
        }
        var seen = Set<String>()
        return files.filter { seen.insert($0.path).inserted }
    }
}

/// CLOCK_BOOTTIME in µs: monotonic, counts suspend, and cannot be set, unlike the wall clock.
func bootTimeMicroseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_BOOTTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
}
