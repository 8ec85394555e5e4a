import Configuration
import Foundation
import LocalControl
import LoopRuntime
import Tags

/// `edgepilot config diff FILE`: loads FILE exactly as a SIGHUP reload would (as the service's user, relative
/// paths from its own folder), and answers what the reload would keep, restart, add, remove or refuse.
extension AgentRuntime {
    func reloadPreview(_ request: ControlRequest) -> ControlResponse {
        let path = request.path ?? configPath
        guard FileManager.default.isReadableFile(atPath: path) else {
            let exists = FileManager.default.fileExists(atPath: path)
            let message =
                exists
                ? "the agent cannot read \(path): a reload would read it as the service's user; "
                    + "make it readable by that user (e.g. put it in /etc/edgepilot)"
                : "no such file: \(path) (the agent reads the path as given; use an absolute path)"
            return exists ? .failure(message) : .notFound(message)
        }
        var preview = ReloadPreview(
            file: path, runningFile: configPath, accepted: false, diagnostics: [], items: [], needsRestart: [],
            newBirths: false)
        do {
            let loaded = try ConfigurationLoader.load(contentsOf: path)
            preview.diagnostics = loaded.warnings.map { Self.diagnostic($0, file: path) }
            // A loop the agent could not build (unstable model, bad tuning) would fail the reload as a whole.
            let loopProblems = LoopFactory.check(loaded.configuration)
            preview.diagnostics += loopProblems.map {
                ReloadPreview.Diagnostic(severity: "error", file: path, line: 0, column: 1, message: $0, hint: nil)
            }
            if loopProblems.isEmpty {
                let plan = plan(loaded.configuration)
                preview.accepted = true
                preview.items = plan.items.map {
                    ReloadPreview.Item(kind: $0.kind, name: $0.name, action: $0.action.rawValue, reasons: $0.reasons)
                }
                preview.needsRestart = plan.needsRestart
                preview.newBirths = plan.newBirths && current.configuration.sparkplug != nil
            }
        } catch {
            preview.diagnostics = error.diagnostics.map { Self.diagnostic($0, file: path) }
        }
        var response = ControlResponse()
        response.reloadPreview = preview
        return response
    }

    private static func diagnostic(_ d: ConfigDiagnostic, file: String) -> ReloadPreview.Diagnostic {
        ReloadPreview.Diagnostic(
            severity: d.severity.rawValue, file: d.file, line: d.line, column: d.column, message: d.message,
            hint: d.hint)
    }
}
