import ArgumentParser
import Foundation
import LocalControl

/// `edgepilot health`: the agent's own verdict per component, with the exit code a monitoring system reads.
struct HealthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health", abstract: "Check devices, history, Sparkplug, loops, clock and certificates.",
        discussion: """
            Each check is OK, WARN or CRIT with a one-line reason; the first line is the worst of them. The exit \
            code follows the Nagios plugin convention, so monitoring systems can run the command as is: 0 OK, \
            1 WARN, 2 CRIT, 3 UNKNOWN (the agent could not be asked: not running, or no permission on its socket).
            """)

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let report: HealthReport
        do {
            let response = try ControlClient(path: connection.resolvedPath()).send(ControlRequest(command: .health))
            guard response.ok, let health = response.health else {
                return try unknown(response.error ?? "the agent sent no health report (is it an older version?)")
            }
            report = health
        } catch let error as ControlSocketError {
            return try unknown(error.description)
        }
        if output.json {
            try printJSON(report)
        } else {
            print(healthText(report))
        }
        throw ExitCode(report.status.exitCode)
    }

    /// The agent could not be asked: UNKNOWN, exit 3, with the reason (and its hint) on stdout, where a monitoring
    /// system reads a plugin's message.
    func unknown(_ reason: String) throws {
        if output.json {
            try printJSON(UnknownHealth(reason: reason))
        } else {
            print("EDGEPILOT UNKNOWN: \(reason)")
        }
        throw ExitCode(HealthStatus.unknown.exitCode)
    }

    struct UnknownHealth: Encodable {
        var status = HealthStatus.unknown
        var reason: String
        var checks: [HealthCheck] = []
    }
}

/// The first line names the worst check(s), as a monitoring system shows it; then one line per check.
func healthText(_ report: HealthReport) -> String {
    let worst = report.checks.filter { $0.status == report.status && $0.status != .ok }
    let summary =
        worst.isEmpty
        ? "all \(report.checks.count) checks OK"
        : worst.map { "\($0.component) \($0.name): \($0.reason)" }.joined(separator: "; ")
    let rows = report.checks.map { [$0.status.rawValue, $0.component, $0.name, $0.reason] }
    return "EDGEPILOT \(report.status.rawValue): \(summary)\n\n"
        + table(["STATUS", "COMPONENT", "NAME", "REASON"], rows)
}
