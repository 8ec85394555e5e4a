import Control
import Foundation
import Identification
import Tags

/// A model to validate, as the report names it.
public struct ValidatedModel: Sendable {
    /// "version 7", "file candidate.yaml", "configuration".
    public var label: String
    public var model: StateSpaceModel

    public init(label: String, model: StateSpaceModel) {
        self.label = label
        self.model = model
    }
}

/// Validation of a candidate model by replaying a loop's history (`edgepilot model validate`, decision 0035):
/// the glue between the history file and `ModelReplay` / `ClosedLoopReplay`.
public enum LoopValidation {
    /// The setpoint tag `LoopStateDevice` records for a CV.
    public static func setpointTag(loop: String, cv: String) -> String { "loop/\(loop)/cv/\(cv)/setpoint" }

    /// Prepares the window as identify does (same stretches left out), replays both models open loop, then runs
    /// `controller` (the candidate's MPC with the loop's tuning) closed loop against the better-fitting model.
    public static func run(
        loop: LoopDefinition, history: LoopHistory, candidate: ValidatedModel, active: ValidatedModel,
        controller: ModelPredictiveController, settings: LoopIdentificationSettings = LoopIdentificationSettings()
    ) throws(LoopIdentificationError) -> LoopValidationReport {
        let window = "between \(isoTime(history.since)) and \(isoTime(history.until))"
        try LoopIdentification.checkCoverage(loop: loop, history: history, window: window)
        for m in [candidate, active] where m.model.inputCount != loop.mvs.count || m.model.outputCount != loop.cvs.count
        {
            throw LoopIdentificationError(
                "\(m.label) has \(m.model.inputCount) MVs and \(m.model.outputCount) CVs; loop '\(loop.name)' has "
                    + "\(loop.mvs.count) and \(loop.cvs.count)")
        }
        let signals = LoopSignals(loop: loop, history: history, usableModes: settings.usableModes)
        let period = Double(loop.periodMilliseconds) / 1000
        let span = Double(history.until - history.since) / 1_000_000
        let lastSample = history.rows.values.compactMap { $0.last?.timestamp }.max() ?? history.until
        let preparation = DataPreparation(
            period: period, minimumSegmentSamples: settings.minimumSegmentSamples,
            window: 0...max(0, min(span, signals.seconds(lastSample))))
        let prepared: PreparedData
        do {
            prepared = try preparation.prepare(
                inputs: signals.inputTags().map(signals.signal), outputs: signals.outputTags.map(signals.signal))
        } catch {
            throw LoopIdentificationError("cannot prepare the data of loop '\(loop.name)' \(window): \(error)")
        }
        let leftOut = signals.describe(prepared.excluded, minimumSegmentSamples: settings.minimumSegmentSamples)
        guard !prepared.segments.isEmpty else {
            throw LoopIdentificationError(
                "no usable data for loop '\(loop.name)' \(window) in \(history.path): every stretch was left out"
                    + "\n" + LoopIdentification.summary(leftOut) + LoopIdentification.modeHint(leftOut, settings))
        }
        let candidatePrediction = ModelReplay.simulate(candidate.model, prepared)
        let activePrediction = ModelReplay.simulate(active.model, prepared)
        let candidateFits = ModelReplay.fitPercent(predicted: candidatePrediction, prepared)
        let activeFits = ModelReplay.fitPercent(predicted: activePrediction, prepared)

        // The plant for the closed loop: whichever model describes the recorded data better (decision 0035).
        func mean(_ fits: [Double]) -> Double {
            let finite = fits.filter(\.isFinite)
            return finite.isEmpty ? -.infinity : finite.reduce(0, +) / Double(finite.count)
        }
        let activeIsPlant = mean(activeFits) > mean(candidateFits)
        let plant = activeIsPlant ? active : candidate
        let (plantFit, otherFit) =
            activeIsPlant ? (mean(activeFits), mean(candidateFits)) : (mean(candidateFits), mean(activeFits))
        let plantReason =
            "\(activeIsPlant ? "the active model" : "the candidate") fits the recorded data "
            + (plantFit == otherFit ? "as well as the other" : "better")
            + " (mean fit \(percent(plantFit)) vs \(percent(otherFit)))"

        let nu = loop.mvs.count
        let ny = loop.cvs.count
        let targets = loop.cvs.map { cv -> CVTarget in
            if let sp = cv.setpoint { return .setpoint(sp) }
            return .range(low: cv.rangeLow ?? -.infinity, high: cv.rangeHigh ?? .infinity)
        }
        var runs: [ClosedLoopRun] = []
        for segment in prepared.segments {
            func absolute(_ values: [Double], _ offset: Double) -> [Double] { values.map { $0 + offset } }
            let setpoints = loop.cvs.map { cv in
                (0..<segment.count).map { k -> Double in
                    let t = segment.startTime + Double(k) * period
                    guard let row = signals.row(setpointTag(loop: loop.name, cv: cv.tag), at: t), row.quality.isGood
                    else { return .nan }
                    return numeric(row.value) ?? .nan
                }
            }
            let scenario = ClosedLoopScenario(
                setpoints: setpoints,
                disturbances: (0..<loop.dvs.count).map {
                    absolute(segment.inputs[nu + $0], segment.inputOffsets[nu + $0])
                },
                targets: targets,
                initialInputs: (0..<nu).map { segment.inputs[$0][0] + segment.inputOffsets[$0] },
                initialOutputs: (0..<ny).map { segment.outputs[$0][0] + segment.outputOffsets[$0] },
                softLow: loop.cvs.map(\.softLow), softHigh: loop.cvs.map(\.softHigh), steps: segment.count)
            runs.append(ClosedLoopReplay.run(controller: controller, plant: plant.model, scenario: scenario))
        }
        return LoopValidationReport(
            loop: loop, history: history, prepared: prepared, leftOut: leftOut, candidate: candidate,
            active: active, candidateFits: candidateFits, activeFits: activeFits,
            predictions: (candidatePrediction, activePrediction), plantIsActive: activeIsPlant,
            plantReason: plantReason, runs: runs)
    }

    static func percent(_ x: Double) -> String { x.isFinite ? String(format: "%.1f %%", x) : "n/a" }
}
