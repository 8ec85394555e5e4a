import Foundation
import TestSupport

/// Simulators/opcua_server.py (asyncua) on 127.0.0.1, with its certificate in `serverPKI`.
final class OPCUASimulator: @unchecked Sendable {
    let peer: PythonPeer
    let endpoint: String
    let port: Int
    let serverPKI: String

    init(port: Int = 0, serverPKI: String, extra: Int = 0) throws {
        self.serverPKI = serverPKI
        peer = try PythonPeer(
            script: "Simulators/opcua_server.py",
            arguments: [
                "--port", String(port), "--pki-dir", serverPKI, "--period", "0.05", "--extra", String(extra),
            ])
        endpoint = peer.ready["endpoint"] as! String
        self.port = peer.ready["port"] as! Int
    }

    var certificatePath: String { serverPKI + "/server_cert.der" }

    /// SIGKILL: no goodbye to the clients, as in a crash or a power cut.
    func kill() {
        guard peer.process.isRunning else { return }
        Foundation.kill(peer.process.processIdentifier, SIGKILL)
        peer.process.waitUntilExit()
    }

    /// Puts the server's certificate into `pki`/trusted, as a technician would after checking it.
    func trust(in pki: String) throws {
        try FileManager.default.createDirectory(atPath: pki + "/trusted", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: certificatePath, toPath: pki + "/trusted/sim.der")
    }

    deinit { kill() }
}

/// `edgepilot run` with its own directory, socket and history; stopped with SIGTERM at the end of the test.
final class AgentProcess {
    let dir: TemporaryDirectory
    let process = Process()
    let socket: String
    let binary = productsDirectory.appendingPathComponent("edgepilot").path
    let logPath: String

    init(config: String, dir: TemporaryDirectory) throws {
        self.dir = dir
        socket = dir.path + "/control.sock"
        logPath = dir.path + "/agent.log"
        let configPath = dir.path + "/edgepilot.yaml"
        try config.replacingOccurrences(of: "@DIR@", with: dir.path).write(
            toFile: configPath, atomically: true, encoding: .utf8)
        let check = try runCommand(binary, ["config", "check", configPath])
        guard check.status == 0 else { throw PeerError("config check failed:\n\(check.stdout)\(check.stderr)") }
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["run", "--config", configPath]
        let log = FileHandle(forWritingAtPath: logPath)!
        process.standardOutput = log
        process.standardError = log
        try process.run()
        guard eventually(timeout: 20, { FileManager.default.fileExists(atPath: socket) }) else {
            throw PeerError("the agent did not create its socket; log:\n\(self.log)")
        }
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func cli(_ arguments: [String]) throws -> CommandResult {
        try runCommand(binary, arguments + ["--socket", socket])
    }

    func json(_ arguments: [String]) throws -> Any {
        let result = try cli(arguments + ["--json"])
        guard result.status == 0 else { throw PeerError("\(arguments) failed: \(result.stderr)") }
        return try JSONSerialization.jsonObject(with: Data(result.stdout.utf8))
    }

    func tag(_ name: String) throws -> [String: Any] { try json(["read", name]) as! [String: Any] }

    func tags() throws -> [String: [String: Any]] {
        let list = try json(["tags"]) as! [[String: Any]]
        return Dictionary(uniqueKeysWithValues: list.map { ($0["name"] as! String, $0) })
    }

    func device(_ name: String) throws -> [String: Any] {
        let status = try json(["status"]) as! [String: Any]
        return (status["devices"] as! [[String: Any]]).first { $0["name"] as? String == name }!
    }

    func stop() -> Int32 {
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            _ = eventually(timeout: 20) { !process.isRunning }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit { _ = stop() }
}

/// Runs the `edgepilot` binary without an agent (the `opcua` commissioning commands).
func edgepilot(_ arguments: [String]) throws -> CommandResult {
    try runCommand(productsDirectory.appendingPathComponent("edgepilot").path, arguments)
}

func jsonObject(_ result: CommandResult) throws -> Any {
    guard result.status == 0 else { throw PeerError("command failed (\(result.status)): \(result.stderr)") }
    return try JSONSerialization.jsonObject(with: Data(result.stdout.utf8))
}
