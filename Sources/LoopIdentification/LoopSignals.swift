import Foundation
import History
import Identification
import Tags

/// One stretch of the window left out of identification, in the engineer's terms.
public struct LeftOutStretch: Sendable, Equatable, Encodable {
    /// Microseconds since the Unix epoch.
    public var start: Int64
    public var end: Int64
    /// `bad-quality`, `saturated`, `mode`, `no-data`, `non-finite` or `too-short`.
    public var reason: String
    /// The tag that caused it (the loop's mode tag for `mode`); nil for `too-short`.
    public var tag: String?
    /// Why, in words: "tank1/level bad (timeout)", "pump1/voltage at its high limit 8", "loop mode manual".
    public var detail: String

    public var seconds: Double { Double(end - start) / 1_000_000 }
}

/// History rows of a loop's tags → Identification's signals, with a condition per sample.
///
/// A sample is unusable when its quality is not good, when it is an MV at its low or high limit (the plant did
/// not see the move the controller asked for), or when the loop's mode at that time is not one of `usableModes`
/// (manual by default, and unknown before the first recorded mode). The mode is folded into every signal's
/// conditions at each mode change, so `DataPreparation` cuts the grid there; the stretches it reports are then
/// put back into tag names and reasons an engineer recognises.
public struct LoopSignals: Sendable {
    public var loop: LoopDefinition
    public var history: LoopHistory
    /// Loop modes whose data may be used (`mpc`, `pid`, `manual`); nil uses every stretch whatever the mode.
    public var usableModes: Set<String>?

    public init(loop: LoopDefinition, history: LoopHistory, usableModes: Set<String>?) {
        self.loop = loop
        self.history = history
        self.usableModes = usableModes
    }

    /// Inputs in the order MVs then DVs; `dropping` leaves those tags out.
    public func inputTags(dropping dropped: Set<String> = []) -> [String] {
        (loop.mvs.map(\.tag) + loop.dvs).filter { !dropped.contains($0) }
    }

    public var outputTags: [String] { loop.cvs.map(\.tag) }

    /// Seconds since the window start.
    func seconds(_ timestamp: Int64) -> Double { Double(timestamp - history.since) / 1_000_000 }

    func microseconds(_ seconds: Double) -> Int64 { history.since + Int64((seconds * 1_000_000).rounded()) }

    /// Mode changes as (time s, usable); before the first one the mode is unknown.
    var modeTimeline: [(Double, Bool)] {
        guard let usableModes else { return [] }
        return (history.rows[LoopHistory.modeTag(loop: loop.name)] ?? []).map { row in
            let text: String
            if case .text(let t) = row.value { text = t.lowercased() } else { text = "" }
            return (seconds(row.timestamp), row.quality.isGood && usableModes.contains(text))
        }
    }

    /// The signal of one tag, its conditions including the loop mode.
    public func signal(_ tag: String) -> SignalHistory {
        let rows = history.rows[tag] ?? []
        let mv = loop.mvs.first { $0.tag == tag }
        var times = [Double]()
        var values = [Double]()
        var conditions = [SampleCondition]()
        times.reserveCapacity(rows.count)
        values.reserveCapacity(rows.count)
        conditions.reserveCapacity(rows.count)
        for row in rows {
            let value = numeric(row.value) ?? .nan
            var condition = SampleCondition.usable
            if !row.quality.isGood {
                condition = .badQuality
            } else if let mv, Self.atLimit(value, mv) != nil {
                condition = .saturated
            }
            times.append(seconds(row.timestamp))
            values.append(value)
            conditions.append(condition)
        }
        guard usableModes != nil, !rows.isEmpty else {
            return SignalHistory(name: tag, timestamps: times, values: values, conditions: conditions)
        }
        // Merge the two timelines: at every change of either, the signal's value holds and the mode decides
        // whether an otherwise usable sample stays usable.
        let modes = modeTimeline
        var out = (t: [Double](), v: [Double](), c: [SampleCondition]())
        var i = 0
        var m = 0
        var modeUsable = false
        while i < times.count || m < modes.count {
            let takeSignal = m >= modes.count || (i < times.count && times[i] <= modes[m].0)
            let t: Double
            if takeSignal {
                t = times[i]
                if m < modes.count && modes[m].0 == t {
                    modeUsable = modes[m].1
                    m += 1
                }
                i += 1
            } else {
                t = modes[m].0
                modeUsable = modes[m].1
                m += 1
                // Before the signal's first sample there is nothing to hold.
                if i == 0 { continue }
            }
            let k = i - 1
            let condition = conditions[k] == .usable && !modeUsable ? SampleCondition.manual : conditions[k]
            out.t.append(t)
            out.v.append(values[k])
            out.c.append(condition)
        }
        return SignalHistory(name: tag, timestamps: out.t, values: out.v, conditions: out.c)
    }

    /// "low" or "high" when `value` sits at the MV's limit (within a millionth of its span).
    static func atLimit(_ value: Double, _ mv: LoopMVDefinition) -> String? {
        let tolerance = 1e-6 * (mv.high - mv.low)
        if value <= mv.low + tolerance { return "low" }
        if value >= mv.high - tolerance { return "high" }
        return nil
    }

    /// The row of `tag` in force at `time` (s since the window start).
    func row(_ tag: String, at time: Double) -> HistoryRow? {
        let rows = history.rows[tag] ?? []
        let t = microseconds(time) + 1
        var lo = 0
        var hi = rows.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if rows[mid].timestamp <= t { lo = mid + 1 } else { hi = mid }
        }
        return lo > 0 ? rows[lo - 1] : nil
    }

    /// DataPreparation's exclusions in tags and words.
    public func describe(_ excluded: [ExcludedStretch], minimumSegmentSamples: Int) -> [LeftOutStretch] {
        let modeTag = LoopHistory.modeTag(loop: loop.name)
        return excluded.map { stretch in
            let start = microseconds(stretch.start)
            let end = microseconds(stretch.end)
            let tag = stretch.signal
            let held = tag.flatMap { row($0, at: stretch.start) }
            switch stretch.reason {
            case .badQuality:
                return LeftOutStretch(
                    start: start, end: end, reason: "bad-quality", tag: tag,
                    detail: "\(tag ?? "?") \(held?.quality.description ?? "bad")")
            case .saturated:
                let mv = loop.mvs.first { $0.tag == tag }
                let value = held.flatMap { numeric($0.value) } ?? .nan
                let side = mv.flatMap { Self.atLimit(value, $0) } ?? "a"
                let limit = mv.map { side == "low" ? $0.low : $0.high }
                return LeftOutStretch(
                    start: start, end: end, reason: "saturated", tag: tag,
                    detail: "\(tag ?? "?") at its \(side) limit" + (limit.map { " \(formatNumber($0))" } ?? ""))
            case .manual:
                let mode = row(modeTag, at: stretch.start)
                let text: String
                if let mode, case .text(let t) = mode.value {
                    text = mode.quality.isGood ? "loop mode \(t)" : "loop mode \(t), quality \(mode.quality)"
                } else {
                    text = "loop mode unknown (no mode recorded in \(modeTag))"
                }
                return LeftOutStretch(start: start, end: end, reason: "mode", tag: modeTag, detail: text)
            case .noData:
                return LeftOutStretch(
                    start: start, end: end, reason: "no-data", tag: tag, detail: "no sample of \(tag ?? "?") yet")
            case .nonFinite:
                return LeftOutStretch(
                    start: start, end: end, reason: "non-finite", tag: tag, detail: "\(tag ?? "?") is not a number")
            case .tooShort:
                return LeftOutStretch(
                    start: start, end: end, reason: "too-short", tag: nil,
                    detail: "usable, but shorter than \(minimumSegmentSamples) samples")
            }
        }
    }
}

/// Six significant digits: what the YAML and the report print.
func formatNumber(_ x: Double) -> String {
    guard x.isFinite else { return x.isNaN ? "nan" : (x > 0 ? "inf" : "-inf") }
    return String(format: "%.6g", x)
}
