import Devices
import Dispatch
import History
import Logging
import Sparkplug
import Tags

/// NCMD and DCMD writes (see docs/decisions/0011-store-and-forward.md): a DCMD value is converted by kind, then the
/// device's `DeviceDriver.writeTag` checks it before anything reaches the device; every attempt is audited and
/// counted, and afterwards the tag's current value is published again so the host shows what the device holds.
/// Node metrics are read-only.
///
/// Device writes run on a serial queue of their own, because a Modbus write may wait for its device for seconds;
/// the rest is called on the publisher thread.
final class CommandHandler: @unchecked Sendable {
    private let queue = DispatchQueue(label: "edgepilot.sparkplug.commands")
    private let audit: @Sendable (AuditRecord) -> Void
    /// `sparkplug:<primary host>`, or `sparkplug:<group>/<node>` without one.
    private let auditSource: String
    private let counters: PublisherCounters
    private let logger = Logger(label: "edgepilot.sparkplug")

    init(auditSource: String, counters: PublisherCounters, audit: @escaping @Sendable (AuditRecord) -> Void) {
        self.auditSource = auditSource
        self.counters = counters
        self.audit = audit
    }

    /// Refuses an NCMD write to node metrics (they are read-only), audited.
    func refuseNodeWrites(_ metrics: [SparkplugMetric]) {
        counters.withLock { $0.commandsRefused += UInt64(metrics.count) }
        for m in metrics {
            logger.warning("NCMD write to node metric \(m.label) refused: node metrics are read-only")
            audit(
                AuditRecord(
                    timestamp: HistoryClock.now(), source: auditSource, tag: m.label,
                    value: m.value.map { "\($0)" } ?? "null", result: "refused",
                    detail: "node metrics are read-only"))
        }
    }

    /// Carries out a DCMD's writes on the command queue, in order, against the devices of `view`; after each attempt
    /// on a known tag (written or refused) `republish` is called, so the tag's current value goes out again.
    func run(
        device: String, _ metrics: [SparkplugMetric], view: EdgeNodePublisher.View,
        republish: @escaping @Sendable (_ device: String, _ tag: String) -> Void
    ) {
        queue.async { [self] in
            for m in metrics { write(m, device: device, view: view, republish: republish) }
        }
    }

    /// Waits until every command queued so far has run.
    func waitUntilIdle() { queue.sync {} }

    private func write(
        _ m: SparkplugMetric, device: String, view: EdgeNodePublisher.View,
        republish: (_ device: String, _ tag: String) -> Void
    ) {
        let name = m.name ?? m.label
        let text = m.value.map { "\($0)" } ?? "null"
        func record(_ result: String, _ detail: String) {
            audit(
                AuditRecord(
                    timestamp: HistoryClock.now(), source: auditSource, tag: name, value: text, result: result,
                    detail: detail))
        }
        guard let d = view.devices.first(where: { $0.name == device }), let index = d.table.index(of: name) else {
            counters.withLock { $0.commandsRefused += 1 }
            record("refused", "device \(device) has no tag \(name)")
            logger.warning(
                "DCMD refused", metadata: ["device": "\(device)", "tag": "\(name)", "reason": "unknown tag"])
            return
        }
        defer { republish(device, name) }
        let definition = d.table.definitions[index]
        let value: TagValue
        switch SparkplugMapping.commandValue(m.value, for: definition) {
        case .success(let v): value = v
        case .failure(let refusal):
            counters.withLock { $0.commandsRefused += 1 }
            record("refused", refusal.description)
            logger.warning(
                "DCMD refused", metadata: ["tag": "\(name)", "value": "\(text)", "reason": "\(refusal)"])
            return
        }
        guard let driver = d.driver else {
            counters.withLock { $0.commandsFailed += 1 }
            record("failed", "device \(device) has no driver")
            return
        }
        do {
            // The driver checks writable, area, limits, type and range before anything reaches the device.
            let result = try driver.writeTag(index, value)
            counters.withLock { $0.commandsWritten += 1 }
            record("ok", result.detail)
            logger.notice("DCMD write", metadata: ["tag": "\(name)", "value": "\(value)", "source": "\(auditSource)"])
        } catch {
            let refused = error.isRefusal
            counters.withLock {
                if refused { $0.commandsRefused += 1 } else { $0.commandsFailed += 1 }
            }
            record(refused ? "refused" : "failed", "\(error)")
            logger.warning(
                "DCMD \(refused ? "refused" : "failed")",
                metadata: ["tag": "\(name)", "value": "\(text)", "reason": "\(error)"])
        }
    }
}
