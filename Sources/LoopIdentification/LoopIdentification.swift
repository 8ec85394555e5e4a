import Foundation
import Identification
import Tags

/// Which model to identify for a loop.
public enum LoopModelStructure: Sendable, Equatable {
    /// First order plus dead time per MV→CV (and DV→CV) path: the YAML `type: fopdt` model.
    case fopdt
    /// One discrete state-space model by PO-MOESP at the loop period; order nil selects it from the data.
    case stateSpace(order: Int?)
}

/// Settings of one identification from history.
public struct LoopIdentificationSettings: Sendable {
    public var structure: LoopModelStructure
    /// Loop modes whose data is used; nil ignores the mode. Manual is left out by default: see
    /// docs/decisions/0019-identify-from-history-file.md.
    public var usableModes: Set<String>?
    /// Usable stretches shorter than this many loop periods are left out (see `DataPreparation`).
    public var minimumSegmentSamples: Int

    public init(
        structure: LoopModelStructure = .fopdt, usableModes: Set<String>? = ["mpc", "pid"],
        minimumSegmentSamples: Int = 100
    ) {
        self.structure = structure
        self.usableModes = usableModes
        self.minimumSegmentSamples = minimumSegmentSamples
    }
}

/// Identifies a loop's model from its history: the glue between the history file and `Identifier`.
public enum LoopIdentification {
    /// Prepares, checks and fits; the report holds what was left out, the parameters, fits and the YAML block.
    public static func run(
        loop: LoopDefinition, history: LoopHistory, settings: LoopIdentificationSettings,
        progress: (String) -> Void = { _ in }
    ) throws(LoopIdentificationError) -> LoopIdentificationReport {
        let window = "between \(isoTime(history.since)) and \(isoTime(history.until))"
        try checkCoverage(loop: loop, history: history, window: window)
        let signals = LoopSignals(loop: loop, history: history, usableModes: settings.usableModes)
        var dropped = Set(loop.dvs.filter { constant(values(of: $0, in: history)) != nil })
        let period = Double(loop.periodMilliseconds) / 1000
        let span = Double(history.until - history.since) / 1_000_000
        let lastSample = history.rows.values.compactMap { $0.last?.timestamp }.max() ?? history.until
        // The grid ends at the last recorded sample: past it, holding values would invent data.
        let end = min(span, signals.seconds(lastSample))
        let preparation = DataPreparation(
            period: period, minimumSegmentSamples: settings.minimumSegmentSamples, window: 0...max(0, end))
        progress("resampling to the loop period (\(formatNumber(period)) s)")
        var prepared: PreparedData
        var inputTags: [String]
        repeat {
            inputTags = signals.inputTags(dropping: dropped)
            do {
                prepared = try preparation.prepare(
                    inputs: inputTags.map(signals.signal), outputs: signals.outputTags.map(signals.signal))
            } catch {
                throw LoopIdentificationError("cannot prepare the data of loop '\(loop.name)' \(window): \(error)")
            }
            let unmoved = inputTags.indices.filter { i in
                loop.dvs.contains(inputTags[i]) && !moved(prepared, input: i)
            }.map { inputTags[$0] }
            if unmoved.isEmpty { break }
            dropped.formUnion(unmoved)
        } while true
        let leftOut = signals.describe(prepared.excluded, minimumSegmentSamples: settings.minimumSegmentSamples)
        guard !prepared.segments.isEmpty else {
            throw LoopIdentificationError(
                "no usable data for loop '\(loop.name)' \(window) in \(history.path): every stretch was left out"
                    + "\n" + summary(leftOut) + modeHint(leftOut, settings))
        }
        for (i, mv) in loop.mvs.enumerated() where !moved(prepared, input: i) {
            throw LoopIdentificationError(
                "MV \(mv.tag) did not move in the \(prepared.sampleCount) usable samples of loop '\(loop.name)' "
                    + "\(window) (it moved only in stretches left out); expected steps of every MV in usable data"
                    + "\n" + summary(leftOut) + modeHint(leftOut, settings))
        }
        progress(
            "fitting \(settings.structure == .fopdt ? "first order plus dead time" : "a state-space model") to "
                + "\(prepared.sampleCount) samples in \(prepared.segments.count) stretches")
        var options = IdentificationOptions()
        switch settings.structure {
        case .fopdt: options.structure = .fopdt
        case .stateSpace(let order): options.structure = .stateSpace(order: order)
        }
        let result: IdentificationResult
        do {
            result = try Identifier(options: options).identify(prepared)
        } catch {
            throw LoopIdentificationError("identification of loop '\(loop.name)' \(window) failed: \(error)")
        }
        progress("done")
        return LoopIdentificationReport(
            loop: loop, history: history, settings: settings, prepared: prepared, result: result,
            inputTags: inputTags, dropped: loop.dvs.filter(dropped.contains), leftOut: leftOut)
    }

    /// Refuses a window in which the loop's CVs and MVs have no history at all, naming them.
    static func checkCoverage(loop: LoopDefinition, history: LoopHistory, window: String)
        throws(LoopIdentificationError)
    {
        let tags = loop.cvs.map(\.tag) + loop.mvs.map(\.tag) + loop.dvs
        let inWindow = tags.filter { tag in (history.rows[tag] ?? []).contains { $0.timestamp >= history.since } }
        guard !inWindow.isEmpty else {
            throw LoopIdentificationError(
                "no samples of loop '\(loop.name)' \(window) in \(history.path); expected history of "
                    + tags.joined(separator: ", ") + " (was the agent running then, and is this its history file?)")
        }
        let missing = tags.filter { (history.rows[$0] ?? []).isEmpty }
        guard missing.isEmpty else {
            throw LoopIdentificationError(
                "no samples of \(missing.joined(separator: ", ")) in or before the window \(window) in "
                    + "\(history.path); expected history of every CV, MV and DV of loop '\(loop.name)'")
        }
        for mv in loop.mvs {
            if let value = constant(values(of: mv.tag, in: history)) {
                throw LoopIdentificationError(
                    "MV \(mv.tag) never moved \(window) (held at \(formatNumber(value))); expected steps or other "
                        + "moves of every MV to identify its effect: step it in the loop's mode, or run a plant test")
            }
        }
    }

    static func values(of tag: String, in history: LoopHistory) -> [Double] {
        (history.rows[tag] ?? []).filter { $0.quality.isGood }.compactMap { numeric($0.value) }.filter(\.isFinite)
    }

    /// The value when every value is the same (within a millionth of its size), else nil.
    static func constant(_ values: [Double]) -> Double? {
        guard let low = values.min(), let high = values.max() else { return nil }
        return high - low <= 1e-6 * max(1, abs(high)) ? high : nil
    }

    static func moved(_ data: PreparedData, input i: Int) -> Bool {
        var all = [Double]()
        for segment in data.segments { all += segment.inputs[i].map { $0 + segment.inputOffsets[i] } }
        return constant(all) == nil
    }

    /// "left out: 3 stretches, 612 s: bad-quality 60 s (tank1/level), mode 540 s (loop/tanks/mode)".
    static func summary(_ leftOut: [LeftOutStretch]) -> String {
        var byReason = [(String, Double, Set<String>)]()
        for stretch in leftOut {
            if let i = byReason.firstIndex(where: { $0.0 == stretch.reason }) {
                byReason[i].1 += stretch.seconds
                if let tag = stretch.tag { byReason[i].2.insert(tag) }
            } else {
                byReason.append((stretch.reason, stretch.seconds, stretch.tag.map { [$0] } ?? []))
            }
        }
        let parts = byReason.map { reason, seconds, tags in
            "\(reason) \(formatNumber(seconds)) s" + (tags.isEmpty ? "" : " (\(tags.sorted().joined(separator: ", ")))")
        }
        return "left out: \(leftOut.count) stretches: " + parts.joined(separator: "; ")
    }

    static func modeHint(_ leftOut: [LeftOutStretch], _ settings: LoopIdentificationSettings) -> String {
        guard leftOut.contains(where: { $0.reason == "mode" }), let modes = settings.usableModes else { return "" }
        return "\nonly modes \(modes.sorted().joined(separator: ", ")) are used; for a step test made in manual, "
            + "add it: --modes \((modes.sorted() + ["manual"]).joined(separator: ","))"
    }
}
