import ArgumentParser
import Configuration
import Control
import Foundation
import History
import LoopIdentification
import LoopRuntime
import Tags

/// `edgepilot model …`: work on loop models away from the running agent (the ledger itself is `loop NAME model`).
struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model", abstract: "Validate loop models against the loop's recorded history.",
        subcommands: [ModelValidateCommand.self])
}

struct ModelValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Replay a loop's history through a candidate model and the active one, open and closed loop.",
        discussion: """
            CANDIDATE is a model ledger version id (see 'edgepilot loop NAME model list') or a YAML file with a \
            'model:' block (as 'edgepilot identify --output' writes it). The active model is the ledger's version \
            in force, or the configuration's model when the ledger has none. The window is prepared as identify \
            prepares it (bad-quality, saturated and wrong-mode stretches left out). Open loop: both models driven \
            by the recorded MVs and DVs, fit % per CV. Closed loop: the candidate's MPC with the loop's configured \
            tuning, run against whichever of the two models fits the recorded data better, stepping the recorded \
            setpoints with the recorded DVs: IAE, soft-limit violations, MV travel and QP solve time p99. \
            Reads the history file read-only; the agent need not be running, and the ledger is not changed.
            """)

    @Option(name: .long, help: "The loop's name.") var loop: String
    @Argument(help: "A ledger version id, or a YAML model file.") var candidate: String
    @Option(name: .long, help: "Start: a duration back from now (90m, 2h, 1d) or an ISO-8601 time.")
    var since: String = "1d"
    @Option(name: .long, help: "End: a duration back from now or an ISO-8601 time (default: now).")
    var until: String?
    @Option(
        name: .long,
        help: "Loop modes whose data is used, comma-separated (mpc, pid, manual), or 'any' to ignore the mode.")
    var modes: String = "mpc,pid"
    @Option(name: .long, help: "Write a self-contained HTML report with plots to this file.") var report: String?
    @Option(name: .long, help: "The configuration file.") var config: String = "/etc/edgepilot/edgepilot.yaml"
    @Option(name: .long, help: "The history file (default: the configuration's history.path).") var history: String?
    @OptionGroup var format: OutputOptions

    func run() throws {
        let (configuration, definition) = try IdentifyCommand.configuredLoop(loop, in: config)
        let start = try parseSince(since)
        let end = try until.map { try parseSince($0) } ?? Int64(Date().timeIntervalSince1970 * 1_000_000)
        guard end > start else {
            throw CLIError("--until (\(formatTimestamp(end))) must be after --since (\(formatTimestamp(start)))")
        }
        var settings = LoopIdentificationSettings()
        settings.usableModes = try IdentifyCommand.modes(modes)
        let path = history ?? configuration.history.path
        let result: LoopValidationReport
        do {
            let reader = try HistoryReader(path: path)
            defer { reader.close() }
            let candidateDefinition = try candidateLoop(definition, reader)
            let activeVersion = try reader.activeModelVersion(loop: loop)
            var activeDefinition = definition
            var activeLabel = "configuration"
            if let activeVersion {
                activeDefinition = try LoopModelContent.decode(activeVersion.content).applied(to: definition)
                activeLabel = "version \(activeVersion.id)"
            }
            let candidateModel = ValidatedModel(
                label: candidateLabel, model: try buildModel(candidateDefinition, "the candidate"))
            let activeModel = ValidatedModel(
                label: activeLabel, model: try buildModel(activeDefinition, "the active model"))
            let controller: ModelPredictiveController
            do {
                controller = try ModelPredictiveController(
                    model: candidateModel.model,
                    configuration: LoopFactory.mpcConfiguration(
                        candidateDefinition, tuning: LoopTuning(definition), targets: LoopFactory.targets(definition)))
            } catch {
                throw CLIError("the candidate's MPC cannot be built with the loop's tuning: \(error)")
            }
            let clockStart = DispatchTime.now().uptimeNanoseconds
            controller.clock = { DispatchTime.now().uptimeNanoseconds &- clockStart }
            let setpoints = definition.cvs.map { LoopValidation.setpointTag(loop: loop, cv: $0.tag) }
            let rows = try LoopHistory.read(
                reader, loop: definition, since: start, until: end, extra: setpoints, progress: progress)
            progress("replaying \(candidateModel.label) and \(activeModel.label)")
            result = try LoopValidation.run(
                loop: definition, history: rows, candidate: candidateModel, active: activeModel,
                controller: controller, settings: settings)
        } catch let error as LoopIdentificationError {
            throw CLIError(error.description)
        } catch let error as HistoryError {
            throw CLIError("cannot read the history: \(error)")
        }
        if let report {
            do {
                try ValidationPage.html(result).write(toFile: report, atomically: true, encoding: .utf8)
            } catch {
                throw CLIError("cannot write \(report): \(error.localizedDescription)")
            }
        }
        if format.json {
            try printJSON(result)
        } else {
            print(Self.render(result))
            if let report { print("\nreport written to \(report)") }
        }
    }

    var candidateLabel: String { Int64(candidate) != nil ? "version \(candidate)" : "file \(candidate)" }

    /// The loop with the candidate's model and operating point in place of its own.
    func candidateLoop(_ d: LoopDefinition, _ reader: HistoryReader) throws -> LoopDefinition {
        let content: LoopModelContent
        if let id = Int64(candidate) {
            guard let version = try reader.modelVersion(loop: d.name, id: id) else {
                throw CLIError(
                    "loop '\(d.name)' has no model version \(id) in \(reader.path); "
                        + "see 'edgepilot loop \(d.name) model list'", notFound: true)
            }
            content = try LoopModelContent.decode(version.content)
        } else {
            let text: String
            do {
                text = try String(contentsOfFile: candidate, encoding: .utf8)
            } catch {
                throw CLIError("cannot read \(candidate): \((error as NSError).localizedDescription)", notFound: true)
            }
            let file: ModelFile
            do {
                file = try ModelFile.parse(yaml: text, file: candidate)
            } catch {
                throw CLIError("\(error)")
            }
            content = LoopModelContent(
                model: file.model, nominalMVs: file.nominalMVs, nominalCVs: file.nominalCVs,
                nominalDVs: file.nominalDVs, cvs: d.cvs.map(\.tag), mvs: d.mvs.map(\.tag), dvs: d.dvs)
        }
        if let why = content.mismatch(with: d) {
            throw CLIError("\(candidateLabel) does not fit loop '\(d.name)': \(why)")
        }
        return content.applied(to: d)
    }

    func buildModel(_ d: LoopDefinition, _ what: String) throws -> StateSpaceModel {
        do {
            return try LoopFactory.model(d)
        } catch {
            throw CLIError("\(what) cannot be built: \(error)")
        }
    }

    func progress(_ message: String) {
        FileHandle.standardError.write(Data("validate: \(message)\n".utf8))
    }

    static func render(_ r: LoopValidationReport) -> String {
        func n(_ v: Double?, _ digits: Int = 4) -> String { v.map { String(format: "%.\(digits)g", $0) } ?? "-" }
        var out = [
            "loop \(r.loop): \(r.candidate) against the active \(r.active), from \(r.historyFile)",
            "window \(r.since) … \(r.until): used \(n(r.usableSeconds, 6)) s in \(r.stretches) stretches, "
                + "\(r.leftOut.count) left out",
            "",
            "open loop (fit %, recorded MVs and DVs):",
            table(
                ["CV", "CANDIDATE", "ACTIVE"],
                r.openLoop.map { [$0.cv, n($0.candidateFitPercent, 3), n($0.activeFitPercent, 3)] }),
            "candidate's lowest fit \(n(r.candidateLowestFitPercent, 3)) %, model_min_fit \(n(r.minimumFitPercent, 3)) %: "
                + (r.candidateMeetsMinimumFit ? "reached" : "NOT reached"),
            "",
            "closed loop: candidate MPC against the \(r.plant) model (\(r.plantReason)):",
            table(
                ["CV", "IAE", "VIOLATIONS", "WORST"],
                r.closedLoopCVs.map { [$0.cv, n($0.iae), String($0.violations), n($0.worstViolation)] }),
            table(["MV", "TRAVEL"], r.closedLoopMVs.map { [$0.mv, n($0.travel)] }),
            "\(r.closedLoopSteps) steps, \(r.nonOptimalSteps) not optimal, QP solve p99 \(n(r.solveP99Microseconds)) µs",
        ]
        if !r.leftOut.isEmpty {
            out.append("left out:")
            out.append(
                table(
                    ["  FROM (UTC)", "TO", "SECONDS", "REASON", "WHY"],
                    r.leftOut.map { ["  " + $0.start, $0.end, n($0.seconds, 6), $0.reason, $0.detail] }))
        }
        return out.joined(separator: "\n")
    }
}
