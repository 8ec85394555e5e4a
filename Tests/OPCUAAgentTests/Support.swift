import Foundation
import TestSupport

/// Simulators/opcua_server.py (asyncua) on 127.0.0.1, with its certificate in `serverPKI`.
final class OPCUASimulator: @unchecked Sendable {
    let peer: PythonPeer
    let endpoint: String
    let port: Int
    let serverPKI: String

    /// `churnPeriod` (seconds) sets every Extra.k to k + n at the n-th tick, with its source timestamp.
    init(port: Int = 0, serverPKI: String, extra: Int = 0, churnPeriod: Double? = nil) throws {
        self.serverPKI = serverPKI
        peer = try PythonPeer(
            script: "Simulators/opcua_server.py",
            arguments: [
                "--port", String(port), "--pki-dir", serverPKI, "--period", "0.05", "--extra", String(extra),
            ] + (churnPeriod.map { ["--churn-period", String($0)] } ?? []))
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

extension AgentProcess {
    func tag(_ name: String) throws -> [String: Any] { try json(["read", name]) as! [String: Any] }

    func tags() throws -> [String: [String: Any]] {
        let list = try json(["tags"]) as! [[String: Any]]
        return Dictionary(uniqueKeysWithValues: list.map { ($0["name"] as! String, $0) })
    }

    func device(_ name: String) throws -> [String: Any] {
        let status = try json(["status"]) as! [String: Any]
        return (status["devices"] as! [[String: Any]]).first { $0["name"] as? String == name }!
    }
}

/// Runs the `edgepilot` binary without an agent (the `opcua` commissioning commands).
func edgepilot(_ arguments: [String]) throws -> CommandResult {
    try runCommand(productsDirectory.appendingPathComponent("edgepilot").path, arguments)
}

func jsonObject(_ result: CommandResult) throws -> Any {
    guard result.status == 0 else { throw PeerError("command failed (\(result.status)): \(result.stderr)") }
    return try JSONSerialization.jsonObject(with: Data(result.stdout.utf8))
}
