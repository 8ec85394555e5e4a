import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// `edgepilot run` as a child process with its own directory, configuration, socket and history, driven through the
/// real CLI; stopped with SIGTERM (SIGKILL after 20 s) at the end of the test. Restartable on the same directory and
/// files (`stop()` or `kill9()`, then `start()`), as a service restart or a power cut would leave them.
public final class AgentProcess: @unchecked Sendable {
    public let dir: TemporaryDirectory
    public let socket: String
    public let logPath: String
    public let configPath: String
    public let binary = productsDirectory.appendingPathComponent("edgepilot").path
    private var process: SpawnedProcess?
    /// The umask the agent starts with; nil: the test runner's.
    private let umask: mode_t?

    /// Writes `config` (with `@DIR@` replaced by the directory) and, unless `start` is false, starts the agent; with
    /// `check`, the file must first pass `edgepilot config check`; with `umask`, the agent starts with that umask.
    /// Returns once the control socket exists.
    public init(
        config: String, dir: TemporaryDirectory? = nil, check: Bool = false, start: Bool = true, umask: mode_t? = nil
    ) throws {
        self.umask = umask
        self.dir = try dir ?? TemporaryDirectory("edgepilot-agent")
        socket = self.dir.path + "/control.sock"
        logPath = self.dir.path + "/agent.log"
        configPath = self.dir.path + "/edgepilot.yaml"
        try config.replacingOccurrences(of: "@DIR@", with: self.dir.path).write(
            toFile: configPath, atomically: true, encoding: .utf8)
        if check {
            let result = try runCommand(binary, ["config", "check", configPath])
            guard result.status == 0 else {
                throw PeerError("config check failed:\n\(result.stdout)\(result.stderr)")
            }
        }
        if start { try self.start(appendingToLog: false) }
    }

    /// Starts (or restarts) the agent on the same files; returns once the control socket exists.
    public func start() throws { try start(appendingToLog: true) }

    private func start(appendingToLog: Bool) throws {
        unlink(socket)
        if let umask {
            // The shell execs the agent, so the pid (signals, wait) is the agent's.
            process = try SpawnedProcess(
                "/bin/sh",
                [
                    "-c", "umask \(String(umask, radix: 8)) && exec \"$0\" \"$@\"", binary, "run", "--config",
                    configPath,
                ],
                output: logPath, append: appendingToLog)
        } else {
            process = try SpawnedProcess(
                binary, ["run", "--config", configPath], output: logPath, append: appendingToLog)
        }
        guard eventually(timeout: 20, { FileManager.default.fileExists(atPath: socket) }) else {
            throw PeerError("the agent did not create its socket; log:\n\(log)")
        }
    }

    /// The agent's history database.
    public var historyPath: String { dir.path + "/history.db" }

    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
    public var isRunning: Bool { process?.exitStatus() == nil && process != nil }

    /// Runs `edgepilot ARGUMENTS --socket <this agent's socket>`.
    public func cli(_ arguments: [String]) throws -> CommandResult {
        try runCommand(binary, arguments + ["--socket", socket])
    }

    /// The parsed `--json` output of a CLI command; throws with its stderr when the command fails.
    public func json(_ arguments: [String]) throws -> Any {
        let result = try cli(arguments + ["--json"])
        guard result.status == 0 else { throw PeerError("\(arguments) failed: \(result.stderr)") }
        return try JSONSerialization.jsonObject(with: Data(result.stdout.utf8))
    }

    /// The parsed `--json` output of a CLI command that prints one JSON object.
    public func object(_ arguments: [String]) throws -> [String: Any] {
        guard let object = try json(arguments) as? [String: Any] else {
            throw PeerError("\(arguments) did not print a JSON object")
        }
        return object
    }

    /// `edgepilot mqtt status --json`.
    public func mqttStatus() throws -> [String: Any] { try object(["mqtt", "status"]) }

    /// Writes a new configuration (with `@DIR@` replaced) and sends SIGHUP, as `systemctl reload` does.
    public func reload(config: String) throws {
        try config.replacingOccurrences(of: "@DIR@", with: dir.path).write(
            toFile: configPath, atomically: true, encoding: .utf8)
        process?.signal(SIGHUP)
    }

    /// kill -9: what a crash or a power cut does to the process.
    public func kill9() {
        process?.signal(SIGKILL)
        process?.wait()
        process = nil
    }

    /// SIGTERM (the agent flushes history and exits), SIGKILL after 20 s; returns the exit status (0 when clean).
    @discardableResult
    public func stop() -> Int32 {
        guard let p = process else { return 0 }
        process = nil
        let status = p.terminate()
        // The raw wait status: exit code in the high byte, or the signal that ended it.
        return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    deinit { stop() }
}
