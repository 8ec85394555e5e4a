import Foundation
import Identification
import Tags

/// What one identification found, for the CLI to print (as text or JSON) and to write as a YAML model block.
/// Numbers that are not finite (a fit on a constant CV) are nil, since JSON has no NaN.
public struct LoopIdentificationReport: Sendable, Encodable {
    /// One MV→CV or DV→CV path.
    public struct Path: Sendable, Encodable {
        public var cv: String
        public var input: String
        /// `firstOrder` for fopdt; `stateSpace` when the gain comes from the state-space model.
        public var kind: String
        public var gain: Double?
        public var gainSD: Double?
        /// Seconds; nil for state space.
        public var timeConstant: Double?
        public var timeConstantSD: Double?
        public var deadTime: Double?
        public var deadTimeSD: Double?
    }

    /// How well the model reproduces one CV, and whether its residuals look like noise.
    public struct Output: Sendable, Encodable {
        public var cv: String
        public var estimationFitPercent: Double?
        /// On the held-out part of the data: the figure to judge the model by.
        public var validationFitPercent: Double?
        public var residualsWhite: Bool
        public var autocorrelationLagsOutside: Int
        public var autocorrelationLagsAllowed: Int
        public var residualsUncorrelatedWithInputs: Bool
    }

    public struct StateSpace: Sendable, Encodable {
        public var order: Int
        /// Mean validation fit % of each order tried.
        public var orderFits: [String: Double]
        /// Time constants (s) of the real poles, slowest first.
        public var timeConstants: [Double]
    }

    public struct LeftOut: Sendable, Encodable {
        public var start: String
        public var end: String
        public var seconds: Double
        public var reason: String
        public var tag: String?
        public var detail: String
    }

    public var loop: String
    public var historyFile: String
    public var since: String
    public var until: String
    public var periodSeconds: Double
    /// `fopdt`, or `state space, order N`.
    public var structure: String
    /// Modes whose data was used; nil when the mode was ignored.
    public var usableModes: [String]?
    public var estimationSamples: Int
    public var validationSamples: Int
    public var usableSeconds: Double
    /// FNV-1a 64 of the samples fitted, exactly as prepared (see `DataFingerprint`).
    public var dataHash: String
    public var leftOut: [LeftOut]
    /// DVs that did not move in the usable data, left out of the model (no effect).
    public var droppedDisturbances: [String]
    public var paths: [Path]
    public var outputs: [Output]
    public var stateSpace: StateSpace?
    /// The loop's `model:` block with its provenance as comments.
    public var model: String

    init(
        loop: LoopDefinition, history: LoopHistory, settings: LoopIdentificationSettings, prepared: PreparedData,
        result: IdentificationResult, inputTags: [String], dropped: [String], leftOut: [LeftOutStretch]
    ) {
        func finite(_ x: Double?) -> Double? { x.flatMap { $0.isFinite ? $0 : nil } }
        self.loop = loop.name
        historyFile = history.path
        since = isoTime(history.since)
        until = isoTime(history.until)
        periodSeconds = prepared.period
        usableModes = settings.usableModes?.sorted()
        estimationSamples = result.estimationSamples
        validationSamples = result.validationSamples
        usableSeconds = Double(prepared.sampleCount) * prepared.period
        dataHash = result.dataFingerprint.hex
        self.leftOut = leftOut.map {
            LeftOut(
                start: isoTime($0.start), end: isoTime($0.end), seconds: $0.seconds, reason: $0.reason, tag: $0.tag,
                detail: $0.detail)
        }
        droppedDisturbances = dropped
        outputs = result.outputs.map {
            Output(
                cv: $0.output, estimationFitPercent: finite($0.estimationFitPercent),
                validationFitPercent: finite($0.validationFitPercent), residualsWhite: $0.residuals.isWhite,
                autocorrelationLagsOutside: $0.residuals.autocorrelationOutside,
                autocorrelationLagsAllowed: $0.residuals.allowedOutside,
                residualsUncorrelatedWithInputs: $0.residuals.isUncorrelatedWithInputs)
        }
        paths = []
        if let transferFunctions = result.transferFunctions {
            structure = "fopdt"
            for output in transferFunctions {
                for (i, path) in output.paths.enumerated() {
                    paths.append(
                        Path(
                            cv: output.output, input: inputTags[i], kind: path.kind.rawValue, gain: finite(path.gain),
                            gainSD: finite(path.uncertainty?.gain), timeConstant: finite(path.timeConstant),
                            timeConstantSD: finite(path.uncertainty?.timeConstant), deadTime: finite(path.deadTime),
                            deadTimeSD: finite(path.uncertainty?.deadTime)))
                }
            }
        } else if let ss = result.stateSpace {
            structure = "state space, order \(ss.order)"
            let gains = ss.steadyStateGain
            for (j, cv) in prepared.outputNames.enumerated() {
                for (i, input) in inputTags.enumerated() {
                    paths.append(
                        Path(cv: cv, input: input, kind: "stateSpace", gain: finite(gains?[j * ss.inputCount + i])))
                }
            }
            var fits = [String: Double]()
            for candidate in result.orderCandidates where candidate.validationFitPercent.isFinite {
                fits[String(candidate.order)] = candidate.validationFitPercent
            }
            stateSpace = StateSpace(
                order: ss.order, orderFits: fits,
                timeConstants: ss.poles.compactMap { $0.timeConstant(period: ss.period) }.sorted(by: >))
        } else {
            structure = "none"
        }
        model = ""
        model = ModelBlock.yaml(
            report: self, loop: loop, history: history, prepared: prepared, result: result, inputTags: inputTags,
            generatedAt: Date())
    }
}

/// The identified model as the loop's YAML `model:` block (Config/README.md, "loops"), provenance as comments.
enum ModelBlock {
    static func yaml(
        report: LoopIdentificationReport, loop: LoopDefinition, history: LoopHistory, prepared: PreparedData,
        result: IdentificationResult, inputTags: [String], generatedAt: Date
    ) -> String {
        let fits = report.outputs.map {
            "\($0.cv) \($0.validationFitPercent.map { String(format: "%.1f", $0) } ?? "n/a") %"
        }
        let stretches = report.leftOut.count == 1 ? "1 stretch" : "\(report.leftOut.count) stretches"
        var lines = [
            "# Identified by `edgepilot identify` for loop '\(loop.name)' at "
                + isoTime(Int64(generatedAt.timeIntervalSince1970 * 1_000_000)),
            "# history: \(report.historyFile)",
            "# window: \(report.since) … \(report.until); used \(formatNumber(report.usableSeconds)) s, "
                + "\(stretches) left out",
            "# data hash (FNV-1a 64 of the samples fitted): \(report.dataHash)",
            "# structure: \(report.structure); fit on validation data: " + fits.joined(separator: ", "),
            "model:",
        ]
        // Operating point: the sample-weighted mean of the per-stretch offsets identification removed.
        func mean(_ offsets: (DataSegment) -> [Double], _ index: Int) -> Double {
            var sum = 0.0
            for segment in prepared.segments { sum += offsets(segment)[index] * Double(segment.count) }
            return sum / Double(max(1, prepared.sampleCount))
        }
        func inputMean(_ tag: String) -> Double {
            if let i = inputTags.firstIndex(of: tag) { return mean(\.inputOffsets, i) }
            // A DV left out for not moving: its constant value.
            return LoopIdentification.values(of: tag, in: history).last ?? 0
        }
        let mvPoint = loop.mvs.map { inputMean($0.tag) }
        let dvPoint = loop.dvs.map { inputMean($0) }
        let cvPoint = loop.cvs.indices.map { mean(\.outputOffsets, $0) }
        if let transferFunctions = result.transferFunctions {
            func entry(_ output: OutputTransferFunctions, _ tag: String) -> String {
                guard let i = inputTags.firstIndex(of: tag) else { return "null" }
                let p = output.paths[i]
                return "{gain: \(formatNumber(p.gain)), time_constant: \(formatNumber(p.timeConstant))s, "
                    + "dead_time: \(formatNumber(p.deadTime))s}"
            }
            lines.append("  type: fopdt")
            lines.append("  gains:")
            for output in transferFunctions {
                lines.append("    - [" + loop.mvs.map { entry(output, $0.tag) }.joined(separator: ", ") + "]")
            }
            if !loop.dvs.isEmpty {
                lines.append("  disturbances:")
                for output in transferFunctions {
                    lines.append("    - [" + loop.dvs.map { entry(output, $0) }.joined(separator: ", ") + "]")
                }
            }
        } else if let ss = result.stateSpace {
            let n = ss.order
            func column(_ tag: String) -> [Double] {
                guard let i = inputTags.firstIndex(of: tag) else { return [Double](repeating: 0, count: n) }
                return (0..<n).map { ss.b[$0 * ss.inputCount + i] }
            }
            func matrix(_ rows: [[Double]]) -> String {
                "[" + rows.map { "[" + $0.map(formatNumber).joined(separator: ", ") + "]" }.joined(separator: ", ")
                    + "]"
            }
            func transpose(_ columns: [[Double]]) -> [[Double]] {
                (0..<n).map { r in columns.map { $0[r] } }
            }
            lines.append("  type: state_space")
            lines.append("  continuous: false  # discrete, at the loop period of \(formatNumber(ss.period)) s")
            lines.append("  a: " + matrix((0..<n).map { r in Array(ss.a[(r * n)..<((r + 1) * n)]) }))
            lines.append("  b: " + matrix(transpose(loop.mvs.map { column($0.tag) })))
            if !loop.dvs.isEmpty { lines.append("  bd: " + matrix(transpose(loop.dvs.map(column)))) }
            lines.append(
                "  c: " + matrix((0..<ss.outputCount).map { r in Array(ss.c[(r * n)..<((r + 1) * n)]) }))
        }
        var point =
            "mvs: [\(mvPoint.map(formatNumber).joined(separator: ", "))], "
            + "cvs: [\(cvPoint.map(formatNumber).joined(separator: ", "))]"
        if !loop.dvs.isEmpty { point += ", dvs: [\(dvPoint.map(formatNumber).joined(separator: ", "))]" }
        lines.append("  operating_point: {\(point)}")
        return lines.joined(separator: "\n") + "\n"
    }
}
