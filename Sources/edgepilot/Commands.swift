import Agent
import ArgumentParser
import Configuration
import Foundation
import LocalControl
import LoopRuntime
import SparkplugPublisher
import Tags

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Run the agent in the foreground (what systemd starts).",
        discussion: "SIGTERM stops it with history flushed; SIGHUP reloads the configuration.")

    @Option(name: .long, help: "The configuration file.")
    var config: String = "/etc/edgepilot/edgepilot.yaml"

    func run() throws {
        do {
            try AgentDaemon(configPath: config).run()
        } catch let error as ConfigurationError {
            throw CLIError("cannot start: the configuration has errors\n\(error)")
        } catch let error as AgentStartError {
            throw CLIError("cannot start: \(error)")
        }
    }
}

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show uptime, devices, and the history database.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        guard let s = try connection.send(ControlRequest(command: .status)).status else {
            throw CLIError("the agent sent no status")
        }
        if output.json { return try printJSON(s) }
        print("EdgePilot \(s.version)  pid \(s.pid)  up \(formatDuration(s.uptimeSeconds))  config \(s.configPath)")
        print("tags \(s.tagCount)  reloads \(s.reloads)")
        print("")
        let rows = s.devices.map { d in
            [
                d.name, d.endpoint,
                d.notAnsweringSince.map { "not answering for \(formatAge(microseconds: $0))" } ?? d.state,
                String(d.polls), String(d.requestsPerCycle), String(d.errors),
                d.lastError.map { "\($0) (\(formatAge(microseconds: d.lastErrorAt ?? 0)) ago)" } ?? "-",
            ]
        }
        print(table(["DEVICE", "ENDPOINT", "STATE", "POLLS", "REQ/CYCLE", "ERRORS", "LAST ERROR"], rows))
        for d in s.devices {
            if let recovery = d.lastRecovery { print("\(d.name): last reconnect: session \(recovery)") }
        }
        for d in s.devices where (d.writesExpired ?? 0) + (d.writesDropped ?? 0) > 0 {
            print(
                "writes to \(d.name): \(d.writesExpired ?? 0) expired in the write queue, "
                    + "\(d.writesDropped ?? 0) refused by a full queue")
        }
        print("")
        let h = s.history
        print(
            "history \(h.path): \(formatBytes(h.bytes)), \(h.rows) rows"
                + (h.oldest.map { ", oldest \(formatTimestamp($0))" } ?? "")
                + ", pending \(h.pending), dropped \(h.dropped)"
                + (h.lastError.map { ", last error: \($0)" } ?? ""))
        if let rows = h.auditRows {
            print(
                "audit: \(rows) rows, \(h.auditDeleted ?? 0) deleted by audit retention, "
                    + "\(h.auditDropped ?? 0) dropped (queue full)")
        }
        if let spb = s.sparkplug {
            print(
                "sparkplug \(spb.groupID)/\(spb.edgeNodeID): \(spb.sessionState), backlog \(spb.backlog) samples "
                    + "(\(formatBytes(spb.backlogBytes))), dropped \(spb.dropped)")
        }
        if let metrics = s.metrics { print("metrics http://\(metrics)/metrics") }
    }
}

func formatDuration(_ seconds: Double) -> String {
    let s = Int(seconds)
    if s < 60 { return "\(s)s" }
    if s < 3600 { return "\(s / 60)m\(s % 60)s" }
    if s < 86400 { return "\(s / 3600)h\((s % 3600) / 60)m" }
    return "\(s / 86400)d\((s % 86400) / 3600)h"
}

struct TagsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tags", abstract: "List tags with value, units, quality and age.")

    @Argument(help: "Only tags whose name matches this glob pattern (e.g. 'tank*/level').")
    var pattern: String?

    @Flag(name: .long, help: "Refresh every --interval until interrupted.")
    var watch = false

    @Option(name: .long, help: "Refresh interval for --watch, in seconds.")
    var interval: Double = 1

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        if interval < 0.1 { throw ValidationError("--interval must be at least 0.1 seconds") }
    }

    func run() throws {
        let path = try connection.resolvedPath()
        repeat {
            // A connection per refresh: the agent closes one that sends no request within two seconds.
            let tags = try ControlClient(path: path).send(ControlRequest(command: .tags, tag: pattern)).tags ?? []
            if watch && !output.json { print("\u{1B}[H\u{1B}[2J", terminator: "") }
            if output.json {
                try printJSON(tags)
            } else {
                if tags.isEmpty, let pattern { print("no tag matches '\(pattern)'") }
                let rows = tags.map { t in
                    [
                        t.name, t.value?.description ?? "-", t.units ?? "", t.qualityText,
                        formatAge(microseconds: t.timestamp),
                    ]
                }
                print(table(["TAG", "VALUE", "UNITS", "QUALITY", "AGE"], rows))
            }
            if watch { Thread.sleep(forTimeInterval: interval) }
        } while watch
    }
}

struct ReadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "read", abstract: "Show one tag's current value.")

    @Argument(help: "The tag name.") var tag: String
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        guard let t = try connection.send(ControlRequest(command: .read, tag: tag)).tags?.first else {
            throw CLIError("the agent sent no value for \(tag)")
        }
        if output.json { return try printJSON(t) }
        print(
            "\(t.name) = \(t.value?.description ?? "-")\(t.units.map { " " + $0 } ?? "")  "
                + "[\(t.qualityText), \(formatAge(microseconds: t.timestamp)) old, device \(t.device), \(t.type)]")
    }
}

struct WriteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "write", abstract: "Write a value to a writable tag (within its limits).",
        discussion: "Every attempt, refused or not, is recorded in the audit table with its source.")

    @Argument(help: "The tag name.") var tag: String
    @Argument(help: "The value, in the tag's engineering units (true/false for booleans).") var value: String
    @Flag(name: .long, help: "Do not ask for confirmation.") var yes = false
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        if !yes {
            guard isatty(0) != 0 else {
                throw CLIError("refusing to write without confirmation: stdin is not a terminal; add --yes")
            }
            let current = try connection.send(ControlRequest(command: .read, tag: tag)).tags?.first
            let units = current?.units.map { " " + $0 } ?? ""
            print(
                "Write \(value)\(units) to \(tag) on device \(current?.device ?? "?") "
                    + "(now \(current?.value?.description ?? "-")\(units))? [y/N] ", terminator: "")
            guard let answer = readLine(), ["y", "yes"].contains(answer.lowercased()) else {
                print("not written")
                throw ExitCode(1)
            }
        }
        let response = try connection.send(ControlRequest(command: .write, tag: tag, value: value))
        guard let w = response.write else { throw CLIError("the agent sent no write result") }
        if output.json { return try printJSON(w) }
        print("\(w.tag): \(w.result), read back \(w.readBack?.description ?? "-")")
    }
}

struct HistoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history", abstract: "Show a tag's stored samples.")

    @Argument(help: "The tag name.") var tag: String
    @Option(name: .long, help: "Start: a duration back from now (10m, 2h, 1d) or an ISO-8601 time.")
    var since: String = "10m"
    @Option(name: .long, help: "End: a duration back from now or an ISO-8601 time (default: now).")
    var until: String?
    @Option(name: .long, help: "At most this many samples, asked of the agent 10000 at a time.") var limit: Int = 10_000
    @Flag(name: .long, help: "Print CSV (timestamp,value,quality).") var csv = false
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        if limit < 1 { throw ValidationError("--limit must be at least 1") }
        if csv && output.json { throw ValidationError("choose one of --csv and --json") }
    }

    func run() throws {
        let end = try until.map { try parseSince($0) }
        let (points, more) = try TimestampPaging.collect(
            limit: limit, since: try parseSince(since), timestamp: \HistoryPoint.timestamp
        ) { from, count in
            try connection.send(ControlRequest(command: .history, tag: tag, since: from, until: end, limit: count))
                .history ?? []
        }
        if more, let last = points.last {
            FileHandle.standardError.write(
                Data(
                    ("showing the first \(points.count) samples; more may follow: raise --limit, or continue with "
                        + "--since \(formatTimestamp(last.timestamp))\n").utf8))
        }
        if output.json { return try printJSON(points) }
        if csv {
            print("timestamp,value,quality")
            for p in points {
                print("\(formatTimestamp(p.timestamp)),\(csvField(p.value?.description ?? "")),\(p.quality)")
            }
            return
        }
        if points.isEmpty { print("no samples of \(tag) in that range") }
        print(
            table(
                ["TIME (UTC)", "VALUE", "QUALITY"],
                points.map { [formatTimestamp($0.timestamp), $0.value?.description ?? "-", $0.quality] }))
    }
}

func csvField(_ s: String) -> String {
    s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" })
        ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
}

struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "Show recorded write attempts: who, what, and the outcome.")

    @Option(name: .long, help: "Start: a duration back from now (10m, 2h, 1d) or an ISO-8601 time.")
    var since: String = "1d"
    @Option(name: .long, help: "At most this many records, asked of the agent 10000 at a time.") var limit: Int = 1000
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        if limit < 1 { throw ValidationError("--limit must be at least 1") }
    }

    func run() throws {
        let (entries, more) = try TimestampPaging.collect(
            limit: limit, since: try parseSince(since), timestamp: \AuditReport.timestamp
        ) { from, count in
            try connection.send(ControlRequest(command: .audit, since: from, limit: count)).audit ?? []
        }
        if more, let last = entries.last {
            FileHandle.standardError.write(
                Data(
                    ("showing the first \(entries.count) records; more may follow: raise --limit, or continue with "
                        + "--since \(formatTimestamp(last.timestamp))\n").utf8))
        }
        if output.json { return try printJSON(entries) }
        print(
            table(
                ["TIME (UTC)", "SOURCE", "TAG", "VALUE", "RESULT", "DETAIL"],
                entries.map {
                    [formatTimestamp($0.timestamp), $0.source, $0.tag, $0.value, $0.result, $0.detail ?? ""]
                }))
    }
}

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Work with configuration files.",
        subcommands: [Check.self, ConfigDiffCommand.self])

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a configuration file and report every error with file, line and what to change.")

        @Argument(help: "The configuration file.") var file: String
        @OptionGroup var output: OutputOptions

        struct Report: Encodable {
            var file: String
            var ok: Bool
            var devices: Int
            var tags: Int
            var diagnostics: [Diagnostic]
        }

        struct Diagnostic: Encodable {
            var severity: String
            var file: String
            var line: Int
            var column: Int
            var message: String
            var hint: String?
        }

        func run() throws {
            let report: Report
            do {
                let loaded = try ConfigurationLoader.load(contentsOf: file)
                // Controllers are built as the agent would build them: stability and tuning errors only show then.
                let loopProblems = LoopFactory.check(loaded.configuration).map {
                    Diagnostic(severity: "error", file: file, line: 0, column: 1, message: $0, hint: nil)
                }
                report = Report(
                    file: file, ok: loopProblems.isEmpty, devices: loaded.configuration.devices.count,
                    tags: loaded.configuration.tags.count,
                    diagnostics: loaded.warnings.map(Self.diagnostic) + loopProblems)
            } catch {
                report = Report(
                    file: file, ok: false, devices: 0, tags: 0, diagnostics: error.diagnostics.map(Self.diagnostic))
            }
            if output.json {
                try printJSON(report)
            } else {
                for d in report.diagnostics {
                    let location = d.line > 0 ? "\(d.file):\(d.line):\(d.column)" : d.file
                    var text = "\(location): \(d.severity): \(d.message)"
                    if let hint = d.hint { text += "\n    hint: \(hint)" }
                    FileHandle.standardError.write(Data((text + "\n").utf8))
                }
                let errors = report.diagnostics.filter { $0.severity == "error" }.count
                if report.ok {
                    print(
                        "\(file): OK (\(report.devices) device\(report.devices == 1 ? "" : "s"), \(report.tags) tags)")
                } else {
                    FileHandle.standardError.write(Data("\(file): \(errors) error\(errors == 1 ? "" : "s")\n".utf8))
                }
            }
            // A file that is not there is "not found" (2); a file with errors is refused (1).
            if !report.ok { throw ExitCode(FileManager.default.fileExists(atPath: file) ? 1 : 2) }
        }

        static func diagnostic(_ d: ConfigDiagnostic) -> Diagnostic {
            Diagnostic(
                severity: d.severity.rawValue, file: d.file, line: d.line, column: d.column, message: d.message,
                hint: d.hint)
        }
    }
}
