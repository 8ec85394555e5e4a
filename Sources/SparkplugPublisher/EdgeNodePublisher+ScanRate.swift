import Foundation
import Sparkplug
import Synchronization

/// `Node Control/Scan Rate` (docs/decisions/0032-engine-node-metrics-and-scan-rate.md): the period of the node's
/// fastest poll group, in ms, as NBIRTH declares it and MQTT Engine shows it under Node Control. An NCMD that
/// writes it scales every poll group of every polled device by the same factor (new / configured fastest), so the
/// groups keep their ratios; it is a remote write under the command policy (decision 0017), checked against
/// `sparkplug.scan_rate_limits`, audited with the connection that delivered it, and answered at once with NDATA
/// carrying the rate now in force. It lasts until the agent restarts; a reload keeps the factor for the new devices.
extension EdgeNodePublisher {
    static let scanRateMetric = "Node Control/Scan Rate"

    /// The configured period of the fastest poll group over every polled device (ms); nil when nothing polls,
    /// and then NBIRTH does not declare Scan Rate (Engine shows only the controls a node supports).
    var configuredScanRate: Int? { view.devices.compactMap { $0.driver?.fastestPollPeriodMilliseconds }.min() }

    /// The factor applied to every configured poll period (1 until an NCMD changes it).
    var scanRateFactor: Double { Double(bitPattern: scanRateBits.load(ordering: .relaxed)) }

    /// The scan rate in force (ms).
    var scanRate: Int64? { configuredScanRate.map { Int64((Double($0) * scanRateFactor).rounded()) } }

    /// Gives every driver of the view the current factor.
    func applyScanRate() {
        let factor = scanRateFactor
        for d in view.devices { d.driver?.scalePollPeriods(by: factor) }
    }

    /// The writes of an NCMD the session did not handle itself: Scan Rate is carried out, anything else is
    /// refused (node metrics are read-only).
    func nodeCommand(_ metrics: [SparkplugMetric]) {
        var others: [SparkplugMetric] = []
        for m in metrics {
            if m.name == Self.scanRateMetric { setScanRate(m) } else { others.append(m) }
        }
        if !others.isEmpty { commands.refuseNodeWrites(others, source: commandSource) }
    }

    private func setScanRate(_ m: SparkplugMetric) {
        let limits = settings.scanRateLimits
        var refusal = commands.nodeControlRefusal(Self.scanRateMetric)
        let requested = Self.milliseconds(m.value)
        let configured = configuredScanRate
        if refusal == nil {
            if configured == nil {
                refusal = "no device is polled: there is no scan rate to set"
            } else if let ms = requested {
                if ms < Int64(limits.minimumMilliseconds) || ms > Int64(limits.maximumMilliseconds) {
                    refusal =
                        "\(ms) ms is outside sparkplug.scan_rate_limits (\(limits.minimumMilliseconds) ms to "
                        + "\(limits.maximumMilliseconds) ms)"
                }
            } else {
                refusal =
                    "Scan Rate takes a whole number of milliseconds, the command carries \(m.value.map { "\($0)" } ?? "null")"
            }
        }
        var detail = ""
        if refusal == nil, let ms = requested, let configured {
            let factor = Double(ms) / Double(configured)
            scanRateBits.store(factor.bitPattern, ordering: .relaxed)
            applyScanRate()
            detail =
                "fastest poll group every \(ms) ms (configured \(configured) ms); every poll group's period scaled by "
                + "\((factor * 1000).rounded() / 1000)"
        }
        commands.recordNodeControl(m, source: commandSource, refusal: refusal, detail: detail)
        // NDATA with the rate now in force, at once rather than with the next 5 s node update. A refused write
        // changes nothing, and the session does not send an unchanged value again: the host keeps the old rate.
        let now = Self.nowMs()
        guard refusal == nil, let rate = scanRate else { return }
        let metric = SparkplugMetric(name: Self.scanRateMetric, timestamp: now, value: .int64(rate))
        if step({ s in try s.updateNode([metric], now: now) }).ok { sentNodeValues[Self.scanRateMetric] = .int64(rate) }
    }

    /// A command value as whole milliseconds: any integer type, or a float without a fraction.
    static func milliseconds(_ v: SparkplugValue?) -> Int64? {
        switch v {
        case .int8(let x)?: return Int64(x)
        case .int16(let x)?: return Int64(x)
        case .int32(let x)?: return Int64(x)
        case .int64(let x)?: return x
        case .uint8(let x)?: return Int64(x)
        case .uint16(let x)?: return Int64(x)
        case .uint32(let x)?: return Int64(x)
        case .uint64(let x)?: return x <= UInt64(Int64.max) ? Int64(x) : nil
        case .float(let x)?: return x.isFinite && x == x.rounded() && abs(x) < 9e18 ? Int64(x) : nil
        case .double(let x)?: return x.isFinite && x == x.rounded() && abs(x) < 9e18 ? Int64(x) : nil
        default: return nil
        }
    }
}
