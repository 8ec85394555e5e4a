import ArgumentParser
import Configuration
import Foundation
import LocalControl
import LoopRuntime

/// `edgepilot loop NAME test start|stop|list|show`: plant tests run by the agent (decision 0034).
extension LoopCommand {
    func runTest() throws {
        let usage =
            "usage: edgepilot loop \(name) test start --mv TAG [--mv TAG …] --signal gbn|step [--amplitude A] "
            + "[--switch-time T] [--duration D] [--settling-time T] [--seed N] | stop | list | show ID"
        guard let sub = values.first?.lowercased() else { throw ValidationError(usage) }
        var request: ControlRequest
        switch (sub, values.count) {
        case ("start", 1):
            guard !mv.isEmpty else { throw ValidationError("test start needs --mv TAG (one per MV to move)") }
            guard let signal else { throw ValidationError("test start needs --signal gbn or --signal step") }
            func seconds(_ text: String?, _ option: String) throws -> Double? {
                guard let text else { return nil }
                guard let s = UnitParser.seconds(text), s > 0 else {
                    throw ValidationError("--\(option) must be a duration with its unit (30s, 5m, 1h), not '\(text)'")
                }
                return s
            }
            request = ControlRequest(command: .loopTestStart, loop: name)
            request.plantTest = PlantTestRequest(
                mvs: mv, signal: signal.lowercased(), amplitude: amplitude,
                switchTimeSeconds: try seconds(switchTime, "switch-time"),
                durationSeconds: try seconds(duration, "duration"),
                settlingTimeSeconds: try seconds(settlingTime, "settling-time"), seed: seed)
        case ("stop", 1): request = ControlRequest(command: .loopTestStop, loop: name)
        case ("list", 1): request = ControlRequest(command: .loopTestList, loop: name)
        case ("show", 2): request = ControlRequest(command: .loopTestShow, value: values[1], loop: name)
        default: throw ValidationError(usage)
        }
        let response = try connection.send(request)
        guard response.ok else { throw CLIError(response.error ?? "the agent refused") }
        let tests = response.tests ?? []
        if output.json {
            try printJSON(sub == "list" ? tests : (tests.first.map { [$0] } ?? []))
            return
        }
        switch sub {
        case "start":
            if let t = tests.first {
                print("\(name): test \(t.id.map(String.init) ?? "?") starts at the next cycle")
                print(Self.renderTest(t))
            }
        case "stop": print("\(name): the test stops at the next cycle; the loop returns to its previous mode")
        case "list": print(Self.renderTests(tests, loop: name))
        default: if let t = tests.first { print(Self.renderTest(t)) }
        }
    }

    static func renderTests(_ tests: [PlantTestReport], loop: String) -> String {
        if tests.isEmpty { return "loop \(loop) has no plant tests yet" }
        let rows = tests.map { t -> [String] in
            [
                t.id.map(String.init) ?? "-", formatTimestamp(t.startedAt), t.endedAt.map(formatTimestamp) ?? "-",
                t.signal, t.mvs.joined(separator: ","),
                t.outcome + (t.percent.map { String(format: " %.0f %%", $0) } ?? ""), t.startedBy,
            ]
        }
        return table(["ID", "STARTED", "ENDED", "SIGNAL", "MVS", "OUTCOME", "BY"], rows)
    }

    static func renderTest(_ t: PlantTestReport) -> String {
        func n(_ v: Double) -> String { String(format: "%.4g", v) }
        let id = t.id.map(String.init) ?? "?"
        var head = "test \(id) on loop \(t.loop): \(t.outcome)"
        if let p = t.percent { head += String(format: ", %.0f %% done", p) }
        if let left = t.secondsLeft { head += ", " + formatDuration(left) + " left" }
        let moves = zip(t.mvs, t.amplitudes).map { "\($0) ±\(n($1))" }.joined(separator: ", ")
        var timing = "  switch time \(formatDuration(t.switchTimeSeconds))"
        if let hold = t.minimumHoldSeconds { timing += ", minimum hold \(formatDuration(hold))" }
        if let p = t.switchProbability { timing += ", switch probability \(n(p))" }
        timing += ", duration \(formatDuration(t.durationSeconds))"
        timing += ", settling time \(formatDuration(t.settlingTimeSeconds)), seed \(t.seed)"
        var lines = [
            head, "  signal \(t.signal), MVs \(moves)", timing,
            "  started \(formatTimestamp(t.startedAt)) by \(t.startedBy), returns to \(t.returnMode)",
        ]
        if let end = t.endedAt { lines.append("  ended \(formatTimestamp(end))") }
        if let r = t.reason { lines.append("  reason: \(r)") }
        return lines.joined(separator: "\n")
    }
}
