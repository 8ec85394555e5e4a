import Foundation
import Identification
import Tags

/// One line of a plot: points by usable stretch, so the gaps between stretches stay gaps.
public struct PlotTrace: Sendable {
    public var name: String
    /// `[stretch][point]` of (seconds since the window start, value).
    public var stretches: [[(Double, Double)]]
}

/// One plot of the validation page.
public struct ValidationPlot: Sendable {
    public var title: String
    public var traces: [PlotTrace]
}

/// What `edgepilot model validate` found, for the CLI to print (text or JSON) and the HTML page to draw.
/// Numbers that are not finite are nil, since JSON has no NaN.
public struct LoopValidationReport: Sendable, Encodable {
    public struct OpenLoopFit: Sendable, Encodable {
        public var cv: String
        public var candidateFitPercent: Double?
        public var activeFitPercent: Double?
    }

    public struct ClosedLoopCV: Sendable, Encodable {
        public var cv: String
        /// Σ |error|·period over the replayed stretches (CV units × s).
        public var iae: Double?
        public var violations: Int
        /// The worst distance outside the soft limits (CV units); 0 when none.
        public var worstViolation: Double?
    }

    public struct ClosedLoopMV: Sendable, Encodable {
        public var mv: String
        /// Σ |Δu| (MV units).
        public var travel: Double?
    }

    public var loop: String
    public var historyFile: String
    public var since: String
    public var until: String
    public var periodSeconds: Double
    public var usableSeconds: Double
    public var stretches: Int
    public var leftOut: [LoopIdentificationReport.LeftOut]
    public var candidate: String
    public var active: String
    public var openLoop: [OpenLoopFit]
    /// The lowest of the candidate's fits, and whether it reaches the loop's `model_min_fit`.
    public var candidateLowestFitPercent: Double?
    public var minimumFitPercent: Double
    public var candidateMeetsMinimumFit: Bool
    /// `candidate` or `active`: the model the candidate MPC was run against, and why.
    public var plant: String
    public var plantReason: String
    public var closedLoopCVs: [ClosedLoopCV]
    public var closedLoopMVs: [ClosedLoopMV]
    public var closedLoopSteps: Int
    public var nonOptimalSteps: Int
    /// p99 of the QP solve times measured while replaying, µs.
    public var solveP99Microseconds: Double
    /// Recorded vs predicted per CV, and the closed-loop response per CV and MV; not in the JSON.
    public var plots: [ValidationPlot] = []

    enum CodingKeys: String, CodingKey {
        case loop, historyFile, since, until, periodSeconds, usableSeconds, stretches, leftOut, candidate, active
        case openLoop, candidateLowestFitPercent, minimumFitPercent, candidateMeetsMinimumFit, plant, plantReason
        case closedLoopCVs, closedLoopMVs, closedLoopSteps, nonOptimalSteps, solveP99Microseconds
    }

    init(
        loop: LoopDefinition, history: LoopHistory, prepared: PreparedData, leftOut: [LeftOutStretch],
        candidate: ValidatedModel, active: ValidatedModel, candidateFits: [Double], activeFits: [Double],
        predictions: ([[[Double]]], [[[Double]]]), plantIsActive: Bool, plantReason: String, runs: [ClosedLoopRun]
    ) {
        func finite(_ x: Double) -> Double? { x.isFinite ? x : nil }
        self.loop = loop.name
        historyFile = history.path
        since = isoTime(history.since)
        until = isoTime(history.until)
        periodSeconds = prepared.period
        usableSeconds = Double(prepared.sampleCount) * prepared.period
        stretches = prepared.segments.count
        self.leftOut = leftOut.map {
            LoopIdentificationReport.LeftOut(
                start: isoTime($0.start), end: isoTime($0.end), seconds: $0.seconds, reason: $0.reason, tag: $0.tag,
                detail: $0.detail)
        }
        self.candidate = candidate.label
        self.active = active.label
        openLoop = loop.cvs.indices.map {
            OpenLoopFit(
                cv: loop.cvs[$0].tag, candidateFitPercent: finite(candidateFits[$0]),
                activeFitPercent: finite(activeFits[$0]))
        }
        let lowest = candidateFits.contains { !$0.isFinite } ? nil : candidateFits.min()
        candidateLowestFitPercent = lowest
        minimumFitPercent = loop.modelMinFitPercent
        candidateMeetsMinimumFit = (lowest ?? -.infinity) >= loop.modelMinFitPercent
        plant = plantIsActive ? "active" : "candidate"
        self.plantReason = plantReason
        closedLoopCVs = loop.cvs.indices.map { j in
            ClosedLoopCV(
                cv: loop.cvs[j].tag, iae: finite(runs.reduce(0) { $0 + $1.iae[j] }),
                violations: runs.reduce(0) { $0 + $1.violations[j] },
                worstViolation: finite(runs.reduce(0) { max($0, $1.worstViolation[j]) }))
        }
        closedLoopMVs = loop.mvs.indices.map { l in
            ClosedLoopMV(mv: loop.mvs[l].tag, travel: finite(runs.reduce(0) { $0 + $1.mvTravel[l] }))
        }
        closedLoopSteps = runs.reduce(0) { $0 + $1.solveNanoseconds.count }
        nonOptimalSteps = runs.reduce(0) { $0 + $1.nonOptimalSteps }
        solveP99Microseconds = Double(ClosedLoopReplay.quantile(runs.flatMap(\.solveNanoseconds), 0.99)) / 1000
        plots = Self.plots(
            loop: loop, prepared: prepared, candidate: candidate.label, active: active.label,
            predictions: predictions, runs: runs)
    }

    /// At most this many points per stretch and trace: the page stays small whatever the window.
    static let maximumPoints = 1500

    static func plots(
        loop: LoopDefinition, prepared: PreparedData, candidate: String, active: String,
        predictions: ([[[Double]]], [[[Double]]]), runs: [ClosedLoopRun]
    ) -> [ValidationPlot] {
        let period = prepared.period
        func trace(_ name: String, _ value: (Int, Int) -> Double) -> PlotTrace {
            PlotTrace(
                name: name,
                stretches: prepared.segments.enumerated().map { s, segment in
                    let stride = max(1, segment.count / maximumPoints)
                    return Swift.stride(from: 0, to: segment.count, by: stride).map { k in
                        (segment.startTime + Double(k) * period, value(s, k))
                    }
                })
        }
        var plots: [ValidationPlot] = []
        for (j, cv) in loop.cvs.enumerated() {
            func recorded(_ s: Int, _ k: Int) -> Double {
                prepared.segments[s].outputs[j][k] + prepared.segments[s].outputOffsets[j]
            }
            plots.append(
                ValidationPlot(
                    title: "\(cv.tag): recorded and predicted (open loop)",
                    traces: [
                        trace("recorded", recorded),
                        trace("candidate (\(candidate))") { s, k in
                            predictions.0[s][j][k] + prepared.segments[s].outputOffsets[j]
                        },
                        trace("active (\(active))") { s, k in
                            predictions.1[s][j][k] + prepared.segments[s].outputOffsets[j]
                        },
                    ]))
        }
        for (j, cv) in loop.cvs.enumerated() {
            plots.append(
                ValidationPlot(
                    title: "\(cv.tag): closed loop, candidate MPC",
                    traces: [
                        trace("setpoint") { s, k in runs[s].setpoints[j][k] },
                        trace("simulated") { s, k in runs[s].outputs[j][k] },
                        trace("recorded") { s, k in
                            prepared.segments[s].outputs[j][k] + prepared.segments[s].outputOffsets[j]
                        },
                    ]))
        }
        for (l, mv) in loop.mvs.enumerated() {
            plots.append(
                ValidationPlot(
                    title: "\(mv.tag): closed loop, candidate MPC",
                    traces: [
                        trace("simulated") { s, k in runs[s].inputs[l][k] },
                        trace("recorded") { s, k in
                            prepared.segments[s].inputs[l][k] + prepared.segments[s].inputOffsets[l]
                        },
                    ]))
        }
        return plots
    }
}
