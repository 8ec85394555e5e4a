import ArgumentParser
import Foundation
import LocalControl

/// `edgepilot config diff FILE`: what a reload of FILE would do to the running agent, before anything is touched.
struct ConfigDiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff", abstract: "Show what a reload of a configuration file would change in the running agent.",
        discussion: """
            The agent reads FILE as a reload would (as the service's user) and compares it with what it runs: \
            each device and loop is kept (runs on without a gap), restarted, added or removed; settings a reload \
            cannot apply are listed. Nothing changes. Exit code: 0 the reload would be accepted, 1 it would be \
            refused (the errors are printed with file and line), 2 FILE cannot be read, 3 the agent is unreachable.
            """)

    @Argument(help: "The configuration file (default: the file the agent runs from).") var file: String?
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func run() throws { try previewReload(of: file, connection: connection, json: output.json) }
}

/// `edgepilot reload --dry-run`: the same preview for the agent's own configuration file, the one SIGHUP rereads.
struct ReloadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload", abstract: "Preview a reload of the agent's configuration file (--dry-run).",
        discussion: """
            With --dry-run, shows what 'systemctl reload edgepilot' would change, as 'config diff' does for the \
            file the agent runs from. The reload itself is systemd's: 'sudo systemctl reload edgepilot'.
            """)

    @Flag(name: .long, help: "Show what the reload would change without applying it.") var dryRun = false
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        guard dryRun else {
            throw ValidationError(
                "apply a reload with 'sudo systemctl reload edgepilot'; 'edgepilot reload --dry-run' previews it")
        }
        try previewReload(of: nil, connection: connection, json: output.json)
    }
}

private func previewReload(of file: String?, connection: ConnectionOptions, json: Bool) throws {
    var request = ControlRequest(command: .configDiff)
    // The agent has its own working directory: send an absolute path.
    request.path = file.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
    let response: ControlResponse
    do {
        response = try ControlClient(path: connection.resolvedPath()).send(request)
    } catch ControlSocketError.refused(let message), ControlSocketError.notFound(let message) {
        // The file cannot be read: like a missing file, nothing to compare (exit 2).
        FileHandle.standardError.write(Data("\(message)\n".utf8))
        throw ExitCode(2)
    }
    guard let preview = response.reloadPreview else {
        FileHandle.standardError.write(
            Data("\(response.error ?? "the agent sent no preview (is it an older version?)")\n".utf8))
        throw ExitCode(2)
    }
    if json {
        try printJSON(preview)
    } else {
        for d in preview.diagnostics {
            let location = d.line > 0 ? "\(d.file):\(d.line):\(d.column)" : d.file
            var text = "\(location): \(d.severity): \(d.message)"
            if let hint = d.hint { text += "\n    hint: \(hint)" }
            FileHandle.standardError.write(Data((text + "\n").utf8))
        }
        print(reloadPreviewText(preview))
    }
    if !preview.accepted { throw ExitCode(1) }
}

/// One row per device and loop, then what a reload leaves alone, then the verdict.
func reloadPreviewText(_ p: ReloadPreview) -> String {
    guard p.accepted else {
        let errors = p.diagnostics.filter { $0.severity == "error" }.count
        return "A reload of \(p.file) would be refused (\(errors) error\(errors == 1 ? "" : "s")): "
            + "the agent would go on with the configuration it runs."
    }
    var text = "A reload of \(p.file)"
    text += p.file == p.runningFile ? ":\n\n" : " (the agent runs \(p.runningFile)):\n\n"
    let rows = p.items.map { [$0.action, $0.kind, $0.name, $0.reasons.joined(separator: "; ")] }
    text += table(["ACTION", "KIND", "NAME", "WHY"], rows)
    if p.newBirths { text += "\nSparkplug: a new session with new births (devices or tags change)." }
    if !p.needsRestart.isEmpty {
        text += "\nLeft as they run (a restart applies them): \(p.needsRestart.joined(separator: ", "))."
    }
    let counts = ["keep", "restart", "add", "remove"].compactMap { action -> String? in
        let n = p.items.filter { $0.action == action }.count
        return n == 0 ? nil : "\(n) \(action == "keep" ? "kept" : action == "add" ? "added" : action + "ed")"
    }
    let changes = p.items.contains { $0.action != "keep" } || !p.needsRestart.isEmpty
    text += "\nWould be accepted: " + (changes ? counts.joined(separator: ", ") : "nothing changes") + "."
    return text
}
