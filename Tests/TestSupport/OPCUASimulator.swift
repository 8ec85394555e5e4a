import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Simulators/opcua_server.py (asyncua) as a child process on 127.0.0.1, started with `SpawnedProcess` so that a
/// test can kill it (SIGKILL, as in a crash or power loss) and start it again on the same port. Ready once it has
/// printed its `{"event":"listening",...}` line. Tests fail, never skip, if Python or asyncua is missing.
public final class OPCUASimulator: @unchecked Sendable {
    public let endpoint: String
    public let port: Int
    public let namespace: UInt16
    /// Where the server keeps its certificate and trust lists (`--pki-dir`).
    public let pkiDirectory: String
    /// The server's DER certificate (secured simulators only).
    public let certificatePath: String?
    private let process: SpawnedProcess
    /// Holds the output log (and the PKI unless the caller gave one); removed when the simulator goes.
    private let privateDirectory: TemporaryDirectory

    /// The interpreter: `OPCUA_SIM_PYTHON`, else the project's venv (`EDGEPILOT_PYTHON` or `.venv/bin/python`).
    public static var python: String { ProcessInfo.processInfo.environment["OPCUA_SIM_PYTHON"] ?? pythonPath }

    /// `extra` adds that many Double nodes (ns=2;i=100000…); `port` 0 lets the server choose. A `pkiDirectory` given
    /// by the caller (to restart a server with the same certificate) is left in place; otherwise the simulator's
    /// own is removed with it. `churnPeriod` (seconds), if given, sets every Extra.k to k + n at the n-th tick, with
    /// its source timestamp: a counter a test can check for missed changes. `services` named (`TransferSubscriptions`,
    /// `Republish`) are answered with BadServiceUnsupported. Waits up to 60 s for the server to listen.
    public init(
        extra: Int = 0, port: Int = 0, pkiDirectory: String? = nil, secure: Bool = true, password: String = "secret",
        churnPeriod: Double? = nil, refusing services: [String] = []
    ) throws {
        guard FileManager.default.isExecutableFile(atPath: Self.python) else {
            throw PeerError("no Python at \(Self.python); create the venv and pip install -r requirements.txt")
        }
        let own = try TemporaryDirectory("opcua-sim")
        let pki = pkiDirectory ?? own.path + "/pki"
        try FileManager.default.createDirectory(atPath: pki, withIntermediateDirectories: true)
        let script = repositoryRoot.appendingPathComponent("Simulators/opcua_server.py").path
        var arguments = [
            script, "--port", String(port), "--extra", String(extra), "--password", password, "--period", "0.05",
        ]
        if secure { arguments += ["--pki-dir", pki] }
        if let churnPeriod { arguments += ["--churn-period", String(churnPeriod)] }
        for service in services { arguments += ["--refuse-service", service] }
        if ProcessInfo.processInfo.environment["OPCUA_SIM_VERBOSE"] != nil { arguments.append("--verbose") }
        let log = own.path + "/output.log"
        let process = try SpawnedProcess(
            Self.python, arguments, output: log, append: false, environment: ["PYTHONUNBUFFERED": "1"])
        var ready: [String: Any]?
        let deadline = Date().addingTimeInterval(60)
        while ready == nil && Date() < deadline {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            // The first line on stdout is the JSON announcement; asyncua may log other lines (stderr) around it.
            for line in text.split(separator: "\n") where line.hasPrefix("{") {
                if let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                    object["event"] as? String == "listening"
                {
                    ready = object
                }
            }
            if ready == nil {
                if process.exitStatus() != nil { break }
                usleep(20_000)
            }
        }
        guard let ready, let endpoint = ready["endpoint"] as? String, let port = ready["port"] as? Int,
            let namespace = ready["namespace"] as? Int
        else {
            process.signal(SIGKILL)
            process.wait()
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            own.remove()
            throw PeerError("the OPC UA simulator did not start listening: \(text.suffix(2000))")
        }
        self.process = process
        privateDirectory = own
        self.pkiDirectory = pki
        self.endpoint = endpoint
        self.port = port
        self.namespace = UInt16(namespace)
        certificatePath = ready["certificate"] as? String
    }

    /// SIGKILL: the server gets no chance to close sessions, as in a crash or power loss.
    public func kill() {
        process.signal(SIGKILL)
        process.wait()
    }

    /// SIGTERM (SIGKILL after 10 s): the server shuts down in order.
    public func stop() {
        process.terminate(grace: 10)
    }

    deinit {
        kill()
        privateDirectory.remove()
    }
}
