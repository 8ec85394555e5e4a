import ArgumentParser
import Foundation
import LocalControl

/// The CLI's exit codes, the same for every command (README, "Exit codes"): scripts and monitoring read them.
///
/// `health` keeps the monitoring-plugin codes it documents (0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN), which agree on 0
/// and 3.
enum CLIExit {
    static let ok: Int32 = 0
    /// The agent or the device refused, or the operation failed.
    static let failed: Int32 = 1
    /// The command line is wrong, or what it names (tag, loop, file, node) does not exist.
    static let usageOrNotFound: Int32 = 2
    /// The agent could not be asked: not running, no permission on its socket, or it did not answer.
    static let agentUnreachable: Int32 = 3

    /// The code for an error that reached `main`; nil keeps ArgumentParser's own handling (help, version, ExitCode).
    static func code(for error: Error) -> Int32? {
        switch error {
        case let socket as ControlSocketError:
            switch socket {
            case .refused, .forbidden: return failed
            case .notFound: return usageOrNotFound
            case .notRunning, .permissionDenied, .staleSocket, .alreadyRunning, .io: return agentUnreachable
            }
        case let cli as CLIError: return cli.notFound ? usageOrNotFound : failed
        case is ExitCode, is CleanExit: return nil
        default:
            // ArgumentParser's own: a parse or validation error is a usage error (it would exit 64).
            return EdgePilot.exitCode(for: error).rawValue == ExitCode.validationFailure.rawValue
                ? usageOrNotFound : nil
        }
    }
}

extension EdgePilot {
    /// ArgumentParser's `main`, with the exit codes above.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            guard let code = CLIExit.code(for: error) else { exit(withError: error) }
            let message = fullMessage(for: error)
            if !message.isEmpty { FileHandle.standardError.write(Data((message + "\n").utf8)) }
            Foundation.exit(code)
        }
    }
}
