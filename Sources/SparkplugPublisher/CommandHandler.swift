import Devices
import Dispatch
import History
import Logging
import Sparkplug
import Synchronization
import Tags

/// NCMD and DCMD writes (see docs/decisions/0011-store-and-forward.md and 0017-sparkplug-command-trust.md): a DCMD
/// is first checked against the command policy (`sparkplug.commands`, allow-list) and the limits
/// (`sparkplug.command_limits`), then queued; each value is converted by kind, then the device's
/// `DeviceDriver.writeTag` checks it before anything reaches the device. Every attempt is audited and counted with
/// the connection that delivered it as its source, and afterwards the tag's current value is published again so the
/// host shows what the device holds. Node metrics are read-only.
///
/// Device writes run on a serial queue of their own, because a Modbus write may wait for its device for seconds;
/// that queue is bounded (`maxQueue` DCMDs of at most `maxMetrics` writes) and a write taken off it more than
/// `maxAge` after its DCMD arrived is not carried out but audited as expired: a command that waited behind a slow
/// device must not reach the PLC late. The rest is called on the publisher thread.
final class CommandHandler: @unchecked Sendable {
    private let queue = DispatchQueue(label: "edgepilot.sparkplug.commands")
    private let audit: @Sendable (AuditRecord) -> Void
    private let policy: SparkplugCommandPolicy
    private let allowList: Set<String>
    private let limits: SparkplugCommandLimits
    private let counters: PublisherCounters
    /// DCMDs queued and not yet started.
    private let waiting = Mutex(0)
    private let logger = Logger(label: "edgepilot.sparkplug")

    init(
        policy: SparkplugCommandPolicy, allowList: [String], limits: SparkplugCommandLimits,
        counters: PublisherCounters, audit: @escaping @Sendable (AuditRecord) -> Void
    ) {
        self.policy = policy
        self.allowList = Set(allowList)
        self.limits = limits
        self.counters = counters
        self.audit = audit
    }

    /// DCMDs waiting for the device.
    var queued: Int { waiting.withLock { $0 } }

    private func record(_ source: String, _ tag: String, _ value: String, _ result: String, _ detail: String) {
        audit(
            AuditRecord(
                timestamp: HistoryClock.now(), source: source, tag: tag, value: value, result: result, detail: detail))
    }

    /// Refuses an NCMD write to node metrics (they are read-only) or a Next Server the policy does not allow,
    /// audited.
    func refuseNodeWrites(_ metrics: [SparkplugMetric], source: String) {
        counters.withLock { $0.commandsRefused += UInt64(metrics.count) }
        for m in metrics {
            let detail =
                m.name == EdgeNodeSession.nextServerMetric
                ? "Next Server is not accepted with sparkplug.commands: \(policy.rawValue)"
                : "node metrics are read-only"
            logger.warning("NCMD \(m.label) refused: \(detail)", metadata: ["source": "\(source)"])
            record(source, m.label, m.value.map { "\($0)" } ?? "null", "refused", detail)
        }
    }

    /// Why the policy refuses an NCMD write of the Node Control metric `name` (decision 0017: a remote write, allowed
    /// only under `allow_list` with the metric's full name listed), nil when it allows it.
    func nodeControlRefusal(_ name: String) -> String? {
        switch policy {
        case .off: return "remote writes are off (sparkplug.commands: off)"
        case .readOnlyMetrics: return "remote writes are refused (sparkplug.commands: read_only_metrics)"
        case .allowList: return allowList.contains(name) ? nil : "\(name) is not in sparkplug.command_allow_list"
        }
    }

    /// Audits and counts the outcome of an NCMD Node Control write carried out (or refused) by the publisher.
    func recordNodeControl(_ m: SparkplugMetric, source: String, refusal: String?, detail: String) {
        let value = m.value.map { "\($0)" } ?? "null"
        if let refusal {
            counters.withLock { $0.commandsRefused += 1 }
            logger.warning("NCMD \(m.label) refused: \(refusal)", metadata: ["source": "\(source)"])
            record(source, m.label, value, "refused", refusal)
        } else {
            counters.withLock { $0.commandsWritten += 1 }
            logger.notice("NCMD \(m.label): \(detail)", metadata: ["source": "\(source)"])
            record(source, m.label, value, "ok", detail)
        }
    }

    /// A DCMD or NCMD whose payload is over `max_payload`: refused before it is decoded, one audit row.
    func refuseOversize(topic: String, bytes: Int, source: String) {
        counters.withLock { $0.commandsDropped += 1 }
        let detail =
            "payload of \(bytes) bytes is over command_limits.max_payload (\(limits.maxPayloadBytes)); not decoded"
        logger.warning("command refused: \(detail)", metadata: ["topic": "\(topic)", "source": "\(source)"])
        record(source, topic, "\(bytes) bytes", "refused", detail)
    }

    /// Why the policy refuses a remote write of `name` on `device`, nil when it allows it.
    private func policyRefusal(device: String, name: String) -> String? {
        switch policy {
        case .off: return "remote writes are off (sparkplug.commands: off)"
        case .readOnlyMetrics: return "remote writes are refused (sparkplug.commands: read_only_metrics)"
        case .allowList:
            if allowList.contains(name) || allowList.contains(device + "/" + name) { return nil }
            return "\(device)/\(name) is not in sparkplug.command_allow_list"
        }
    }

    /// Checks a DCMD against the policy and the limits and queues the writes it allows; they are carried out in
    /// order against the devices of `view`, and after each attempt on a known tag (written or refused by the
    /// device) `republish` is called, so the tag's current value goes out again.
    func run(
        device: String, _ metrics: [SparkplugMetric], source: String, view: EdgeNodePublisher.View,
        republish: @escaping @Sendable (_ device: String, _ tag: String) -> Void
    ) {
        guard metrics.count <= limits.maxMetrics else {
            counters.withLock { $0.commandsDropped += UInt64(metrics.count) }
            let detail = "\(metrics.count) metrics is over command_limits.max_metrics (\(limits.maxMetrics))"
            logger.warning("DCMD refused: \(detail)", metadata: ["device": "\(device)", "source": "\(source)"])
            record(source, device, "\(metrics.count) metrics", "refused", detail)
            return
        }
        var allowed: [SparkplugMetric] = []
        for m in metrics {
            let name = m.name ?? m.label
            if let reason = policyRefusal(device: device, name: name) {
                counters.withLock { $0.commandsRefused += 1 }
                record(source, name, m.value.map { "\($0)" } ?? "null", "refused", reason)
            } else {
                allowed.append(m)
            }
        }
        if allowed.count < metrics.count {
            logger.warning(
                "DCMD refused by the command policy",
                metadata: [
                    "device": "\(device)", "refused": "\(metrics.count - allowed.count)", "source": "\(source)",
                ])
        }
        guard !allowed.isEmpty else { return }
        let admitted = waiting.withLock { n -> Bool in
            guard n < limits.maxQueue else { return false }
            n += 1
            return true
        }
        guard admitted else {
            counters.withLock { $0.commandsDropped += UInt64(allowed.count) }
            let detail = "command queue full (\(limits.maxQueue) DCMDs waiting, command_limits.max_queue)"
            logger.warning("DCMD refused: \(detail)", metadata: ["device": "\(device)", "source": "\(source)"])
            record(source, Self.names(allowed), "\(allowed.count) writes", "refused", detail)
            return
        }
        let received = ContinuousClock.now
        let maxAge = Duration.milliseconds(limits.maxAgeMilliseconds)
        queue.async { [self, allowed] in
            waiting.withLock { $0 -= 1 }
            // Refusals and failures are summed into one journal line per DCMD, not one per metric: a DCMD of
            // `max_metrics` unknown names must not write that many lines (each is still audited).
            var tally = OutcomeTally()
            defer { tally.journal(logger, device: device, source: source) }
            for (i, m) in allowed.enumerated() {
                // Checked as each write is taken: one slow write must not carry the rest of its DCMD along late.
                let age = ContinuousClock.now - received
                if age > maxAge {
                    expire(Array(allowed[i...]), device: device, age: age, source: source)
                    return
                }
                tally.add(write(m, device: device, source: source, view: view, republish: republish))
            }
        }
    }

    /// Waits until every command queued so far has run.
    func waitUntilIdle() { queue.sync {} }

    private static func names(_ metrics: [SparkplugMetric]) -> String {
        let names = metrics.prefix(5).map { $0.name ?? $0.label }
        return names.joined(separator: ",") + (metrics.count > 5 ? ",…" : "")
    }

    /// Writes that waited too long: not carried out, one audit row for the rest of their DCMD.
    private func expire(_ metrics: [SparkplugMetric], device: String, age: Duration, source: String) {
        counters.withLock { $0.commandsExpired += UInt64(metrics.count) }
        let seconds = Double(age.components.seconds) + Double(age.components.attoseconds) / 1e18
        let detail =
            "DCMD for \(device) waited \((seconds * 10).rounded() / 10) s, over command_limits.max_age "
            + "(\(limits.maxAgeMilliseconds) ms): not written"
        logger.warning("DCMD expired: \(detail)", metadata: ["writes": "\(metrics.count)", "source": "\(source)"])
        record(source, Self.names(metrics), "\(metrics.count) writes", "expired", detail)
    }

    /// Carries out one write; returns nil when it was written, else the audit result and the reason.
    private func write(
        _ m: SparkplugMetric, device: String, source: String, view: EdgeNodePublisher.View,
        republish: (_ device: String, _ tag: String) -> Void
    ) -> (result: String, reason: String)? {
        let name = m.name ?? m.label
        let text = m.value.map { "\($0)" } ?? "null"
        func record(_ result: String, _ detail: String) { self.record(source, name, text, result, detail) }
        guard let d = view.devices.first(where: { $0.name == device }), let index = d.table.index(of: name) else {
            counters.withLock { $0.commandsRefused += 1 }
            record("refused", "device \(device) has no tag \(name)")
            return ("refused", "unknown tag \(name)")
        }
        defer { republish(device, name) }
        let definition = d.table.definitions[index]
        let value: TagValue
        switch SparkplugMapping.commandValue(m.value, for: definition) {
        case .success(let v): value = v
        case .failure(let refusal):
            counters.withLock { $0.commandsRefused += 1 }
            record("refused", refusal.description)
            return ("refused", "\(name): \(refusal)")
        }
        guard let driver = d.driver else {
            counters.withLock { $0.commandsFailed += 1 }
            record("failed", "device \(device) has no driver")
            return ("failed", "device \(device) has no driver")
        }
        do {
            // The driver checks writable, area, limits, type and range before anything reaches the device.
            let result = try driver.writeTag(index, value)
            counters.withLock { $0.commandsWritten += 1 }
            record("ok", result.detail)
            logger.notice("DCMD write", metadata: ["tag": "\(name)", "value": "\(value)", "source": "\(source)"])
            return nil
        } catch {
            counters.withLock {
                switch error {
                case .refused: $0.commandsRefused += 1
                case .expired: $0.commandsExpired += 1
                case .failed: $0.commandsFailed += 1
                }
            }
            record(error.auditResult, "\(error)")
            return (error.auditResult, "\(name): \(error)")
        }
    }
}

/// The writes of one DCMD that did not happen, by result, for one journal line per DCMD.
private struct OutcomeTally {
    private var counts: [String: Int] = [:]
    private var first: String?

    mutating func add(_ outcome: (result: String, reason: String)?) {
        guard let outcome else { return }
        counts[outcome.result, default: 0] += 1
        if first == nil { first = outcome.reason }
    }

    func journal(_ logger: Logger, device: String, source: String) {
        guard let first else { return }
        let summary = counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        logger.warning(
            "DCMD writes not carried out: \(summary) (each audited)",
            metadata: ["device": "\(device)", "first": "\(first)", "source": "\(source)"])
    }
}
