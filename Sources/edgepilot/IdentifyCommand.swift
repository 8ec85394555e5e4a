import ArgumentParser
import Configuration
import Foundation
import History
import LoopIdentification
import Tags

struct IdentifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "identify",
        abstract: "Identify a loop's model from its history and write it as a YAML model block.",
        discussion: """
            Reads the loop's CV, MV and DV history from the history file named in the configuration (read-only; \
            the agent need not be running), leaves out bad-quality, saturated (MV at its low or high) and \
            wrong-mode stretches and says which, resamples to the loop period, removes offsets and fits: \
            first order plus dead time per MV→CV path (--structure fopdt) or one state-space model (ss). \
            Fit % is on the last third of the usable data, which the fit did not see. \
            The candidate model goes to --output (or stdout) as the loop's 'model:' block, with its \
            provenance (window, data hash, fit) as comments. Progress goes to stderr.
            """)

    @Option(name: .long, help: "The loop's name.") var loop: String
    @Option(name: .long, help: "Start: a duration back from now (90m, 2h, 1d) or an ISO-8601 time.")
    var since: String?
    @Option(
        name: .long,
        help: "A plant test's id ('edgepilot loop NAME test list'): identify over exactly its window, test mode only.")
    var test: Int64?
    @Option(name: .long, help: "End: a duration back from now or an ISO-8601 time (default: now).")
    var until: String?
    @Option(name: .long, help: "fopdt (first order plus dead time per path) or ss (state space).")
    var structure: String = "fopdt"
    @Option(name: .long, help: "State-space order (with --structure ss); default: chosen from the data.")
    var order: Int?
    @Option(
        name: .long,
        help: "Loop modes whose data is used (mpc, pid, manual, test; default mpc,pid, or test with --test), or any.")
    var modes: String?
    @Option(name: .long, help: "Write the model block to this file instead of stdout.") var output: String?
    @Option(name: .long, help: "The configuration file.") var config: String = "/etc/edgepilot/edgepilot.yaml"
    @Option(name: .long, help: "The history file (default: the configuration's history.path).") var history: String?
    @OptionGroup var format: OutputOptions

    func validate() throws {
        guard (since == nil) != (test == nil) else { throw ValidationError("give either --since or --test") }
        if test != nil && until != nil { throw ValidationError("--test sets the window; leave out --until") }
        guard ["fopdt", "ss"].contains(structure.lowercased()) else {
            throw ValidationError("--structure must be fopdt or ss, found '\(structure)'")
        }
        if order != nil && structure.lowercased() != "ss" { throw ValidationError("--order needs --structure ss") }
        if let order, order < 1 { throw ValidationError("--order must be at least 1") }
    }

    func run() throws {
        let (configuration, definition) = try IdentifyCommand.configuredLoop(loop, in: config)
        let path = history ?? configuration.history.path
        let start: Int64
        let end: Int64
        if let test {
            (start, end) = try Self.testWindow(test, loop: loop, history: path)
        } else {
            start = try parseSince(since ?? "")
            end = try until.map { try parseSince($0) } ?? Int64(Date().timeIntervalSince1970 * 1_000_000)
        }
        guard end > start else {
            throw CLIError("--until (\(formatTimestamp(end))) must be after --since (\(formatTimestamp(start)))")
        }
        var settings = LoopIdentificationSettings(
            structure: structure.lowercased() == "ss" ? .stateSpace(order: order) : .fopdt)
        settings.usableModes = try Self.modes(modes ?? (test == nil ? "mpc,pid" : "test"))
        let report: LoopIdentificationReport
        do {
            let reader = try HistoryReader(path: path)
            let rows = try LoopHistory.read(reader, loop: definition, since: start, until: end, progress: progress)
            reader.close()
            report = try LoopIdentification.run(loop: definition, history: rows, settings: settings, progress: progress)
        } catch let error as LoopIdentificationError {
            throw CLIError(error.description)
        } catch let error as HistoryError {
            throw CLIError("cannot read the history: \(error)")
        }
        if let output {
            do {
                try report.model.write(toFile: output, atomically: true, encoding: .utf8)
            } catch {
                throw CLIError("cannot write \(output): \(error.localizedDescription)")
            }
        }
        if format.json {
            try printJSON(report)
        } else {
            print(Self.render(report))
            if let output {
                print("\nmodel block written to \(output)")
            } else {
                print("\n" + report.model, terminator: "")
            }
        }
    }

    /// The configuration in `path` and its loop `name`; an unknown loop is "not found" (exit 2) naming the loops
    /// there are. Shared by `identify` and `model validate`, which read the same two things first.
    static func configuredLoop(_ name: String, in path: String) throws -> (AgentConfiguration, LoopDefinition) {
        let configuration: AgentConfiguration
        do {
            configuration = try ConfigurationLoader.load(contentsOf: path).configuration
        } catch {
            throw CLIError("cannot read the configuration \(path):\n\(error)")
        }
        guard let definition = configuration.loops.first(where: { $0.name == name }) else {
            let names = configuration.loops.map(\.name)
            throw CLIError(
                "no loop '\(name)' in \(path); "
                    + (names.isEmpty ? "it defines no loops" : "loops defined: \(names.joined(separator: ", "))"),
                notFound: true)
        }
        return (configuration, definition)
    }

    /// The recorded window of plant test `id` of `loop`.
    static func testWindow(_ id: Int64, loop: String, history path: String) throws -> (Int64, Int64) {
        let record: PlantTestRecord?
        do {
            let reader = try HistoryReader(path: path)
            defer { reader.close() }
            record = try reader.plantTest(id: id)
        } catch let error as HistoryError {
            throw CLIError("cannot read the history: \(error)")
        }
        guard let record, record.loop == loop else {
            throw CLIError(
                "loop '\(loop)' has no plant test \(id) in \(path); 'edgepilot loop \(loop) test list' shows them")
        }
        guard let ended = record.endedAt else {
            throw CLIError("plant test \(id) has not ended (still running, or cut short when the agent stopped)")
        }
        return (record.startedAt, ended)
    }

    func progress(_ message: String) {
        FileHandle.standardError.write(Data("identify: \(message)\n".utf8))
    }

    static func modes(_ text: String) throws -> Set<String>? {
        let items = text.lowercased().split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        if items == ["any"] { return nil }
        let known = Set(LoopModeSetting.allCases.map(\.rawValue) + ["test"])
        for item in items where !known.contains(item) {
            throw ValidationError(
                "--modes: unknown mode '\(item)'; use mpc, pid, manual, test (comma-separated) or any")
        }
        guard !items.isEmpty else { throw ValidationError("--modes needs at least one mode, or any") }
        return Set(items)
    }

    static func render(_ r: LoopIdentificationReport) -> String {
        func n(_ v: Double?, _ digits: Int = 4) -> String { v.map { String(format: "%.\(digits)g", $0) } ?? "-" }
        func pm(_ v: Double?, _ sd: Double?, _ unit: String = "") -> String {
            guard let v else { return "-" }
            return n(v) + unit + (sd.map { " ± " + n($0, 2) + unit } ?? "")
        }
        var out = [
            "loop \(r.loop): \(r.structure) at \(n(r.periodSeconds)) s from \(r.historyFile)",
            "window \(r.since) … \(r.until): used \(n(r.usableSeconds, 6)) s "
                + "(\(r.estimationSamples) samples to fit, \(r.validationSamples) to validate), data hash \(r.dataHash)"
                + (r.usableModes.map { ", modes \($0.joined(separator: ", "))" } ?? ", any mode"),
        ]
        if r.leftOut.isEmpty {
            out.append("left out: nothing")
        } else {
            out.append("left out:")
            out.append(
                table(
                    ["  FROM (UTC)", "TO", "SECONDS", "REASON", "WHY"],
                    r.leftOut.map { ["  " + $0.start, $0.end, n($0.seconds, 6), $0.reason, $0.detail] }))
        }
        if !r.droppedDisturbances.isEmpty {
            out.append("DVs that did not move, left out of the model: \(r.droppedDisturbances.joined(separator: ", "))")
        }
        out.append("")
        if r.stateSpace == nil {
            out.append(
                table(
                    ["CV", "INPUT", "GAIN", "TIME CONSTANT", "DEAD TIME"],
                    r.paths.map {
                        [
                            $0.cv, $0.input, pm($0.gain, $0.gainSD), pm($0.timeConstant, $0.timeConstantSD, " s"),
                            pm($0.deadTime, $0.deadTimeSD, " s"),
                        ]
                    }))
        } else if let ss = r.stateSpace {
            out.append(table(["CV", "INPUT", "STEADY-STATE GAIN"], r.paths.map { [$0.cv, $0.input, n($0.gain)] }))
            let taus = ss.timeConstants.map { n($0) + " s" }.joined(separator: ", ")
            out.append("order \(ss.order); time constants of its real poles: \(taus.isEmpty ? "none" : taus)")
        }
        out.append("")
        out.append(
            table(
                ["CV", "FIT % (VALIDATION)", "FIT % (ESTIMATION)", "RESIDUALS WHITE", "UNCORRELATED WITH INPUTS"],
                r.outputs.map {
                    [
                        $0.cv, n($0.validationFitPercent, 3), n($0.estimationFitPercent, 3),
                        ($0.residualsWhite ? "yes" : "no")
                            + " (\($0.autocorrelationLagsOutside) lags outside, \($0.autocorrelationLagsAllowed) allowed)",
                        $0.residualsUncorrelatedWithInputs ? "yes" : "no",
                    ]
                }))
        return out.joined(separator: "\n")
    }
}
