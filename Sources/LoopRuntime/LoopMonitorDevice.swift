import Devices
import Foundation
import LoopMonitoring
import Tags

/// Where a monitor reads one of its tags: the table and index of a configured tag.
package struct MonitorTagBinding: @unchecked Sendable {
    package let table: TagTable
    package let index: Int
    package init(table: TagTable, index: Int) {
        self.table = table
        self.index = index
    }

    /// The tag's value as a number; NaN when it has none or is not good.
    func number() -> Double {
        let sample = table.read(index)
        guard sample.quality.isGood, let v = table.value(of: index, sample)?.doubleValue else { return .nan }
        return v
    }
}

/// A watched loop (`monitors:`) presented as a device of its own (`monitor-<name>`), with tags
/// `monitor/<name>/{harris_index, oscillating, stiction, service_factor, iae, variance}`.
///
/// Like `LoopStateDevice`, being a device is what makes the figures reach history, `edgepilot tags` and the
/// Sparkplug publisher with no second path. Its own thread samples PV, SP, OP (and the auto tag) from the tables
/// at the monitor's period, feeds `LoopPerformanceMonitor` and copies the figures into its table; it writes
/// nothing to any device, and no control loop's thread does any of this work.
public final class LoopMonitorDevice: DeviceDriver, @unchecked Sendable {
    enum Field: CaseIterable {
        case harrisIndex, oscillating, stiction, serviceFactor, iae, variance, stictionIndex, loadCount

        var suffix: String {
            switch self {
            case .harrisIndex: "harris_index"
            case .oscillating: "oscillating"
            case .stiction: "stiction"
            case .serviceFactor: "service_factor"
            case .iae: "iae"
            case .variance: "variance"
            case .stictionIndex: "stiction_index"
            case .loadCount: "load_count"
            }
        }
    }

    static func deviceName(monitor: String) -> String { "monitor-\(monitor)" }

    public let device: DeviceDefinition
    public let table: TagTable
    package let definition: MonitorDefinition
    private let pv: MonitorTagBinding
    private let sp: MonitorTagBinding
    private let op: MonitorTagBinding
    private let auto: MonitorTagBinding?
    private let publishEvery: Int

    private let worker = ComputedDeviceThread(name: "monitor")
    private var cond: NSCondition { worker.cond }
    private var stopRequested: Bool { worker.stopRequested }
    private var samples: UInt64 = 0
    // Guarded by `cond`: the figures last computed, for `edgepilot monitors`.
    private var latest = LoopMonitorKPIs()
    // Sampling-thread state.
    private var monitor: LoopPerformanceMonitor

    package init(
        definition d: MonitorDefinition, pv: MonitorTagBinding, sp: MonitorTagBinding, op: MonitorTagBinding,
        auto: MonitorTagBinding?, feed: ChangeFeed, idBase: Int32
    ) {
        definition = d
        self.pv = pv
        self.sp = sp
        self.op = op
        self.auto = auto
        let name = Self.deviceName(monitor: d.name)
        device = DeviceDefinition(name: name, transport: .agent)
        let units = pv.table.definitions[pv.index].units
        let described: [Field: (TagDataType, String?, String)] = [
            .harrisIndex: (.float64, nil, "Harris index: minimum variance over actual variance of the error"),
            .oscillating: (.bool, nil, "Hägglund oscillation detector"),
            .stiction: (.bool, nil, "valve stiction indicated (Horch): oscillating, odd OP–PV cross-correlation"),
            .serviceFactor: (.float64, nil, "fraction of the window in automatic, output off its limits"),
            .iae: (.float64, units.map { "\($0)·s" }, "integrated absolute error over the window"),
            .variance: (.float64, nil, "variance of the error over the window"),
            .stictionIndex: (.float64, nil, "odd share of the OP–PV cross-correlation (1 odd, 0 even)"),
            .loadCount: (.float64, nil, "load disturbances counted by the oscillation detector"),
        ]
        let defs = Field.allCases.map { f in
            let (type, units, text) = described[f]!
            return TagDefinition(
                name: "monitor/\(d.name)/\(f.suffix)", device: name, source: .computed(f.suffix), type: type,
                units: units, description: text, deadband: 0, pollGroup: "monitor")
        }
        table = TagTable(definitions: defs, changes: feed, idBase: idBase)
        let period = Double(d.periodMilliseconds) / 1000
        let delay = Int((d.deadTimeSeconds / period).rounded()) + 1
        monitor = LoopPerformanceMonitor(
            settings: LoopMonitorSettings(
                samplePeriod: period, delaySamples: delay, windowSamples: d.windowMilliseconds / d.periodMilliseconds,
                arOrder: max(10, delay + 2), oscillationPeriod: d.effectiveOscillationPeriodSeconds,
                amplitude: d.amplitude ?? 0.01, outputLow: d.outputLow, outputHigh: d.outputHigh))
        // The on-demand figures cost a pass over the window; every few seconds is often enough for a tag.
        publishEvery = max(1, 5000 / d.periodMilliseconds)
    }

    /// The figures last computed (none before the first publication).
    package var kpis: LoopMonitorKPIs { cond.withLock { latest } }

    // MARK: - DeviceDriver

    public func start() { worker.start { [self] in run() } }

    public func stop() { worker.stop() }

    public var driverStatus: DeviceDriverStatus {
        cond.withLock {
            var s = DeviceDriverStatus()
            s.state = worker.state
            s.polls = samples
            return s
        }
    }

    public func writeTag(_ index: Int, _ value: TagValue) throws(DeviceWriteError) -> DeviceWriteOutcome {
        throw .refused("monitor tags are read-only")
    }

    // MARK: - Sampling thread

    private func run() {
        let period = UInt64(definition.periodMilliseconds) * 1_000_000
        var due = loopMonotonicNanoseconds()
        var n = 0
        while true {
            due += Int64(period)
            let stopping = cond.withLock { () -> Bool in
                while !stopRequested {
                    let left = due - loopMonotonicNanoseconds()
                    if left <= 0 { break }
                    _ = cond.wait(until: Date(timeIntervalSinceNow: Double(left) / 1e9))
                }
                return stopRequested
            }
            if stopping { break }
            // A thread that fell behind (suspended machine) starts afresh rather than sampling in a burst.
            if loopMonotonicNanoseconds() - due > Int64(period) { due = loopMonotonicNanoseconds() }
            sample()
            n += 1
            if n % publishEvery == 0 { publish() }
        }
        let now = loopWallMicroseconds()
        for i in Field.allCases.indices { table.markQuality(i, Quality(.outOfService), timestamp: now) }
    }

    /// Takes one sample of the loop's tags.
    func sample() {
        let automatic =
            auto.map { a -> Bool in
                let v = a.number()
                return !v.isNaN && v != 0
            } ?? true
        monitor.add(pv: pv.number(), sp: sp.number(), op: op.number(), automatic: automatic)
        cond.withLock { samples &+= 1 }
    }

    /// Computes the figures and copies them into the table.
    func publish() {
        let k = monitor.kpis()
        cond.withLock { latest = k }
        let now = loopWallMicroseconds()
        for (i, field) in Field.allCases.enumerated() {
            let value: SampleValue?
            switch field {
            case .harrisIndex: value = k.harrisIndex.map { .double($0) }
            case .oscillating: value = .bool(k.oscillating)
            case .stiction: value = .bool(k.stiction)
            case .serviceFactor: value = .double(k.serviceFactor)
            case .iae: value = .double(k.iae)
            case .variance: value = .double(k.variance)
            case .stictionIndex: value = k.stictionIndex.map { .double($0) }
            case .loadCount: value = .double(k.loadCount)
            }
            if let value {
                table.update(i, TagSample(value: value, quality: .good, timestamp: now))
            } else {
                // Too little data in the window yet for this figure.
                table.markQuality(i, Quality(.waitingForInitialData), timestamp: now)
            }
        }
    }
}
