import Agent
import ArgumentParser
import Foundation
import LocalControl
import LoopRuntime
import SparkplugPublisher

struct LoopsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loops",
        abstract: "Show control loops: mode and why, CVs against setpoints, MVs, solve time and jitter.",
        discussion: "With --kpi: IAE, time in each mode (service factor), MV saturation and oscillation per loop.")

    @Argument(help: "Only this loop.") var name: String?
    @Flag(name: .long, help: "Show loop performance KPIs over the rolling window instead.") var kpi = false
    @Flag(name: .long, help: "Refresh every --interval until interrupted.") var watch = false
    @Option(name: .long, help: "Refresh interval for --watch, in seconds.") var interval: Double = 1
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        repeat {
            let response = try connection.send(ControlRequest(command: .loops, loop: name))
            guard response.ok else { throw CLIError(response.error ?? "the agent refused") }
            if watch && !output.json { print("\u{1B}[H\u{1B}[2J", terminator: "") }
            if kpi {
                let kpis = response.kpis ?? []
                if output.json { try printJSON(kpis) } else { print(Self.render(kpis)) }
            } else {
                let loops = response.loops ?? []
                if output.json { try printJSON(loops) } else { print(Self.render(loops)) }
            }
            if watch { Thread.sleep(forTimeInterval: max(0.1, interval)) }
        } while watch
    }

    static func number(_ v: Double?, _ digits: Int = 3) -> String {
        guard let v else { return "-" }
        return String(format: "%.\(digits)f", v)
    }

    static func render(_ loops: [LoopSnapshot]) -> String {
        if loops.isEmpty { return "no loops configured" }
        var out: [String] = []
        for l in loops {
            var head = "\(l.name)  mode \(l.mode.uppercased())"
            if l.mode != l.requestedMode { head += " (requested \(l.requestedMode.uppercased()))" }
            if let r = l.reason { head += "  reason: \(r)" }
            if let since = l.modeSince { head += "  since \(formatAge(microseconds: since)) ago" }
            if let version = l.modelVersion { head += "  model v\(version)" }
            if let nrmse = l.modelNRMSE {
                head += "  nrmse \(number(nrmse, 3))" + (l.modelDegraded == true ? " DEGRADED" : "")
            }
            if let version = l.shadowVersion {
                head += "  shadow v\(version) nrmse " + (l.shadowNRMSE.map { number($0, 3) } ?? "(pending)")
            }
            out.append(head)
            if let t = l.test, t.outcome == "running" {
                out.append(
                    "  plant test \(t.id.map(String.init) ?? "?") (\(t.signal) on \(t.mvs.joined(separator: ", "))): "
                        + String(format: "%.0f %% done", t.percent ?? 0)
                        + (t.secondsLeft.map { ", \(formatDuration($0)) left" } ?? "")
                        + ", returns to \(t.returnMode.uppercased())")
            }
            let t = l.timing
            out.append(
                "  period \(l.periodMilliseconds)ms  cycles \(t.cycles)  jitter p50/p99/max "
                    + "\(number(t.jitterP50Microseconds, 0))/\(number(t.jitterP99Microseconds, 0))/"
                    + "\(number(t.jitterMaxMicroseconds, 0)) µs  missed \(t.missedDeadlines)  "
                    + "solve \(number(l.solver.lastMicroseconds, 1)) µs (p99 \(number(l.solver.p99Microseconds, 1)))"
                    + (l.solver.status.map { " \($0)" } ?? "") + "  \(l.scheduling)")
            var rows: [[String]] = []
            for cv in l.cvs {
                let target =
                    cv.setpoint.map { "SP \(number($0))" }
                    ?? "range \(number(cv.rangeLow)) … \(number(cv.rangeHigh))"
                rows.append(["CV", cv.tag, number(cv.value), target, cv.units ?? "", cv.good ? "good" : "BAD"])
            }
            for mv in l.mvs {
                let state =
                    mv.writeErrors > 0
                    ? "\(mv.writeErrors) write errors" + (mv.lastWriteError.map { ": \($0)" } ?? "")
                    : (mv.saturated ? "AT LIMIT" : "ok")
                rows.append([
                    "MV", mv.tag, number(mv.value), "limits \(number(mv.low)) … \(number(mv.high))", mv.units ?? "",
                    state,
                ])
            }
            for dv in l.dvs { rows.append(["DV", dv.tag, number(dv.value), "", "", dv.good ? "good" : "BAD"]) }
            out.append(
                table(["", "TAG", "VALUE", "TARGET", "UNITS", "STATE"], rows).split(separator: "\n").map { "  " + $0 }
                    .joined(separator: "\n"))
        }
        return out.joined(separator: "\n")
    }

    static func render(_ kpis: [LoopKPIReport]) -> String {
        if kpis.isEmpty { return "no loops configured" }
        var out: [String] = []
        for k in kpis {
            let sf = k.serviceFactor
            out.append(
                "\(k.name)  window \(formatDuration(k.windowSeconds)) (covered \(formatDuration(k.coveredSeconds)))  "
                    + "service: MPC \(number(100 * (sf["mpc"] ?? 0), 1))%  PID \(number(100 * (sf["pid"] ?? 0), 1))%  "
                    + "MANUAL \(number(100 * (sf["manual"] ?? 0), 1))%")
            var rows: [[String]] = []
            for cv in k.cvs {
                rows.append([
                    "CV", cv.tag, number(cv.iae), number(cv.iaeTotal), String(cv.loadDisturbances),
                    number(cv.oscillationIndex, 1) + (cv.oscillating ? " OSCILLATING" : ""),
                    "below soft \(number(cv.belowSoftLowPercent, 1))%  above soft \(number(cv.aboveSoftHighPercent, 1))%",
                    "\(cv.violations)" + (cv.violations > 0 ? " (worst \(number(cv.worstViolation)))" : "")
                        + (cv.violating ? " NOW" : ""),
                ])
            }
            for mv in k.mvs {
                rows.append([
                    "MV", mv.tag, "", "", "", "saturated \(number(mv.saturationPercent, 1))%",
                    "low \(number(mv.atLowPercent, 1))%  high \(number(mv.atHighPercent, 1))%  "
                        + "rate \(number(mv.atRateLimitPercent, 1))%", "",
                ])
            }
            out.append(
                table(
                    [
                        "", "TAG", "IAE", "IAE TOTAL", "LOADS", "OSCILLATION / SATURATION", "TIME AT LIMITS",
                        "VIOLATIONS",
                    ], rows
                ).split(separator: "\n")
                    .map { "  " + $0 }.joined(separator: "\n"))
        }
        return out.joined(separator: "\n")
    }
}

struct LoopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loop",
        abstract: "Operate one control loop: mode, setpoint, manual MV, tuning, model versions, plant tests.",
        discussion: """
            Changes take effect at the loop's next cycle, bumplessly, and are audited with who made them:

              edgepilot loop NAME mode mpc|pid|manual
              edgepilot loop NAME setpoint CV VALUE
              edgepilot loop NAME mv MV VALUE      (in manual; approached at the MV's rate limit)
              edgepilot loop NAME tune [--cv-weight CV=W] [--move-weight MV=W] [--pid-gain MV=K]
                                       [--pid-ti MV=SECONDS] [--pid-td MV=SECONDS]
              edgepilot loop NAME model list | show ID | add FILE [--note TEXT]
              edgepilot loop NAME model activate ID [--force] [--note TEXT] | rollback [--note TEXT]
              edgepilot loop NAME model shadow ID|off
              edgepilot loop NAME test start --mv MV [--mv MV …] --signal gbn|step [--amplitude A]
                                 [--switch-time T] [--duration D] [--settling-time T] [--seed N]
              edgepilot loop NAME test stop | list | show ID

            Model versions live in the history file's ledger; 'add' registers a file 'edgepilot identify --output' \
            wrote (with its window, data hash and fit); 'activate' refuses a model whose tags or dimensions do not \
            match the loop, or whose recorded validation fit is below the loop's model_min_fit (--force overrides \
            the fit check only). 'shadow' runs a version beside the model in force, predicting every cycle without \
            acting: loop/NAME/shadow/nrmse against loop/NAME/model/nrmse. The shadow is kept across restarts and \
            reloads until 'shadow off'; the loop's 'shadow: VERSION' in the configuration is the initial one.

            A plant test moves the named MVs around their current values (the others hold) in mode TEST, within \
            their limits and rate limits, and returns to the previous mode when it completes, is stopped, or a CV \
            leaves its soft limits or an input goes bad. Defaults come from the settling time (or the loop's \
            model); 'edgepilot identify --loop NAME --test ID' identifies over exactly the test's window.
            """)

    @Argument(help: "The loop's name.") var name: String
    @Argument(help: "mode, setpoint, mv, tune, model or test.") var action: String
    @Argument(help: "The action's arguments.") var values: [String] = []
    @Option(name: .customLong("cv-weight"), help: "CV=WEIGHT (MPC tracking weight).") var cvWeight: [String] = []
    @Option(name: .customLong("move-weight"), help: "MV=WEIGHT (MPC move suppression).") var moveWeight: [String] = []
    @Option(name: .customLong("pid-gain"), help: "MV=GAIN of the MV's fallback PID.") var pidGain: [String] = []
    @Option(name: .customLong("pid-ti"), help: "MV=SECONDS integral time of the MV's PID.") var pidTi: [String] = []
    @Option(name: .customLong("pid-td"), help: "MV=SECONDS derivative time of the MV's PID.") var pidTd: [String] = []
    @Flag(name: .long, help: "model activate: activate although the recorded fit is below the threshold.")
    var force = false
    @Option(name: .long, help: "model activate|rollback|add: a note kept in the ledger.") var note: String?
    @Option(name: .long, help: "test start: an MV to move (repeat for several).") var mv: [String] = []
    @Option(name: .long, help: "test start: gbn (generalized binary noise) or step.") var signal: String?
    @Option(name: .long, help: "test start: amplitude in the MVs' units (default: 5 % of each MV's span).")
    var amplitude: Double?
    @Option(name: .customLong("switch-time"), help: "test start: GBN mean switch time or step hold (30s, 5m).")
    var switchTime: String?
    @Option(name: .long, help: "test start: how long (default: 6 × settling time for GBN, 4 × for steps).")
    var duration: String?
    @Option(name: .customLong("settling-time"), help: "test start: the process's settling time (e.g. 5m).")
    var settlingTime: String?
    @Option(name: .long, help: "test start: the GBN seed (default: from the clock; recorded either way).")
    var seed: UInt64?
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    static func pairs(_ items: [String], _ option: String) throws -> [String: Double]? {
        guard !items.isEmpty else { return nil }
        var out: [String: Double] = [:]
        for item in items {
            guard let eq = item.lastIndex(of: "="), let v = Double(item[item.index(after: eq)...]) else {
                throw ValidationError("--\(option) expects TAG=NUMBER, got '\(item)'")
            }
            out[String(item[..<eq])] = v
        }
        return out
    }

    func run() throws {
        if action.lowercased() == "model" {
            try runModel()
            return
        }
        if action.lowercased() == "test" {
            try runTest()
            return
        }
        let request: ControlRequest
        switch action.lowercased() {
        case "mode":
            guard values.count == 1 else { throw ValidationError("usage: edgepilot loop \(name) mode mpc|pid|manual") }
            request = ControlRequest(command: .loopMode, value: values[0], loop: name)
        case "setpoint", "sp":
            guard values.count == 2 else { throw ValidationError("usage: edgepilot loop \(name) setpoint CV VALUE") }
            request = ControlRequest(
                command: .loopSetpoint, tag: values[0], value: values[1], loop: name)
        case "mv":
            guard values.count == 2 else { throw ValidationError("usage: edgepilot loop \(name) mv MV VALUE") }
            request = ControlRequest(command: .loopManual, tag: values[0], value: values[1], loop: name)
        case "tune":
            let tune = LoopTuneRequest(
                cvWeights: try Self.pairs(cvWeight, "cv-weight"),
                moveWeights: try Self.pairs(moveWeight, "move-weight"),
                pidGains: try Self.pairs(pidGain, "pid-gain"), pidIntegralSeconds: try Self.pairs(pidTi, "pid-ti"),
                pidDerivativeSeconds: try Self.pairs(pidTd, "pid-td"))
            guard
                [tune.cvWeights, tune.moveWeights, tune.pidGains, tune.pidIntegralSeconds, tune.pidDerivativeSeconds]
                    .contains(where: { $0 != nil })
            else {
                throw ValidationError(
                    "tune needs at least one of --cv-weight, --move-weight, --pid-gain, --pid-ti, --pid-td")
            }
            request = ControlRequest(command: .loopTune, loop: name, tune: tune)
        default:
            throw ValidationError("unknown action '\(action)': use mode, setpoint, mv, tune, model or test")
        }
        let response = try connection.send(request)
        guard response.ok else { throw CLIError(response.error ?? "the agent refused") }
        if output.json {
            try printJSON(response.loops ?? [])
        } else {
            print("\(name): \(action) accepted; applied at the next cycle")
        }
    }
}
