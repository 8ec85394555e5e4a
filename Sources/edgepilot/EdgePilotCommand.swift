import Agent
import ArgumentParser
import Configuration
import Foundation
import LocalControl
import LoopRuntime
import SparkplugPublisher
import Tags
import Yams

@main
struct EdgePilot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edgepilot",
        abstract: "EdgePilot edge agent: polls PLCs, keeps history, and answers technicians.",
        discussion: """
            'edgepilot run' is what systemd starts. The other commands talk to the running agent over its \
            control socket (default \(AgentConfiguration.defaultControlSocketPath)), except 'config check', \
            'modbus probe' and 'identify' (which reads the history file), which work without it.
            """,
        version: AgentVersion.current,
        subcommands: [
            RunCommand.self, StatusCommand.self, HealthCommand.self, TagsCommand.self, ReadCommand.self,
            WriteCommand.self,
            HistoryCommand.self,
            AuditCommand.self, ConfigCommand.self, ReloadCommand.self, DiagCommand.self,
            LoopsCommand.self, LoopCommand.self,
            ModbusCommand.self, OPCUACommand.self,
            MQTTCommand.self, IdentifyCommand.self, ModelCommand.self, MonitorsCommand.self,
        ]
    )
}

/// How the CLI finds the running agent.
struct ConnectionOptions: ParsableArguments {
    @Option(name: .long, help: "Path of the agent's control socket (default: $EDGEPILOT_SOCKET, else the config's).")
    var socket: String?

    @Option(name: .long, help: "Read the control socket path from this configuration file.")
    var config: String?

    func resolvedPath() throws -> String {
        if let socket { return socket }
        if let env = ProcessInfo.processInfo.environment["EDGEPILOT_SOCKET"], !env.isEmpty { return env }
        if let config {
            do {
                return try ConfigurationLoader.load(contentsOf: config).configuration.controlSocketPath
            } catch {
                throw ValidationError("cannot read the control socket from \(config):\n\(error)")
            }
        }
        return AgentConfiguration.defaultControlSocketPath
    }

    /// Errors are `ControlSocketError`s: `EdgePilot.main` turns each kind into its exit code.
    func send(_ request: ControlRequest) throws -> ControlResponse {
        try ControlClient(path: resolvedPath()).send(request)
    }
}

/// An error already worded for the technician; exit status 1, or 2 when what it names does not exist.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    var notFound = false
    init(_ message: String, notFound: Bool = false) {
        description = message
        self.notFound = notFound
    }
}

struct OutputOptions: ParsableArguments {
    @Flag(name: .customLong("json"), help: "Print JSON instead of a table (as --format json).")
    var jsonFlag = false
    @Option(name: .long, help: "table (default), json or yaml.")
    var format: OutputFormat?

    /// True for every structured form: the command then prints through `printJSON`, which writes the chosen one.
    var json: Bool { jsonFlag || (format ?? .table) != .table }

    mutating func validate() throws {
        if jsonFlag, let format, format != .json {
            throw ValidationError("--json and --format \(format.rawValue) ask for different forms; choose one")
        }
        OutputFormat.current = jsonFlag ? .json : format ?? .table
    }
}

/// How data is printed. `--format`, not `--output`, because `identify` and `diag bundle` name a file with --output.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json, yaml
    /// The form this invocation asked for (one command per process).
    nonisolated(unsafe) static var current = OutputFormat.table
}

/// Prints a command's data as JSON, or as YAML with `--format yaml`.
func printJSON<T: Encodable>(_ value: T) throws {
    if OutputFormat.current == .yaml {
        print(try YAMLEncoder().encode(value), terminator: "")
        return
    }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// Renders rows as aligned columns.
func table(_ header: [String], _ rows: [[String]]) -> String {
    var widths = header.map(\.count)
    for row in rows {
        for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
    }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { i, c in
            i == cells.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0)
        }
        .joined(separator: "  ")
    }
    return ([line(header)] + rows.map(line)).joined(separator: "\n")
}

func formatAge(microseconds: Int64, now: Int64 = Int64(Date().timeIntervalSince1970 * 1_000_000)) -> String {
    guard microseconds > 0 else { return "-" }
    let seconds = Double(now - microseconds) / 1_000_000
    if seconds < 0 { return "0s" }
    if seconds < 10 { return String(format: "%.1fs", seconds) }
    if seconds < 120 { return "\(Int(seconds))s" }
    if seconds < 7200 { return "\(Int(seconds / 60))m" }
    if seconds < 172_800 { return "\(Int(seconds / 3600))h" }
    return "\(Int(seconds / 86400))d"
}

func formatTimestamp(_ microseconds: Int64) -> String {
    let date = Date(timeIntervalSince1970: Double(microseconds) / 1_000_000)
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "UTC")
    formatter.dateFormat = "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"
    return formatter.string(from: date)
}

func formatBytes(_ bytes: Int64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
}

/// `10m`, `2h`, `1d`, `90s` → microseconds; also accepts an ISO-8601 time.
func parseSince(_ text: String, now: Date = Date()) throws -> Int64 {
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400), ("w", 604_800)]
    for (suffix, factor) in units where text.hasSuffix(suffix) {
        if let n = Double(text.dropLast(suffix.count)), n >= 0 {
            return Int64((now.timeIntervalSince1970 - n * factor) * 1_000_000)
        }
    }
    let iso = ISO8601DateFormatter()
    if let date = iso.date(from: text) { return Int64(date.timeIntervalSince1970 * 1_000_000) }
    // With milliseconds, as the CLI itself prints times (identify's report), so they can be pasted back.
    iso.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    if let date = iso.date(from: text) { return Int64((date.timeIntervalSince1970 * 1_000_000).rounded()) }
    throw ValidationError(
        "cannot read '\(text)' as a time: use a duration back from now (90s, 10m, 2h, 1d) or an ISO-8601 time")
}
