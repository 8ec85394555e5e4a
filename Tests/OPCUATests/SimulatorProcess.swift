import Foundation
import XCTest

/// Runs Simulators/opcua_server.py (asyncua) as a child process on 127.0.0.1 and reads its
/// `{"event":"listening",...}` line. Tests fail, never skip, if Python or asyncua is missing.
final class SimulatorProcess: @unchecked Sendable {
    let process = Process()
    let endpoint: String
    let port: Int
    let namespace: UInt16
    let pkiDirectory: String
    let certificatePath: String?
    private let stderrPath: String

    static var repoRoot: URL {
        URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    static var python: String {
        if let p = ProcessInfo.processInfo.environment["OPCUA_SIM_PYTHON"] { return p }
        return repoRoot.appendingPathComponent(".venv/bin/python3").path
    }

    private static let createdLock = NSLock()
    nonisolated(unsafe) private static var created: [String] = []

    static func temporaryDirectory(_ tag: String) -> String {
        let dir = NSTemporaryDirectory() + "opcua-\(tag)-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        createdLock.lock()
        created += [dir, dir + "-stderr.log"]
        createdLock.unlock()
        return dir
    }

    /// Removes every directory made by `temporaryDirectory`; called from class tear-downs once the
    /// class's simulators are stopped.
    static func removeTemporaryDirectories() {
        createdLock.lock()
        let dirs = created
        created = []
        createdLock.unlock()
        for d in dirs { try? FileManager.default.removeItem(atPath: d) }
    }

    init(
        extra: Int = 0, port: Int = 0, pkiDirectory pkiOption: String? = nil, secure: Bool = true,
        password: String = "secret"
    )
        throws
    {
        let script = SimulatorProcess.repoRoot.appendingPathComponent("Simulators/opcua_server.py").path
        guard FileManager.default.isExecutableFile(atPath: SimulatorProcess.python) else {
            throw OPCUATestError(
                "no Python at \(SimulatorProcess.python); create /work/main/.venv and pip install -r requirements.txt")
        }
        let pki = pkiOption ?? SimulatorProcess.temporaryDirectory("sim-pki")
        self.pkiDirectory = pki
        var args = [
            script, "--port", String(port), "--extra", String(extra), "--password", password, "--period", "0.05",
        ]
        if secure { args += ["--pki-dir", pki] }
        if ProcessInfo.processInfo.environment["OPCUA_SIM_VERBOSE"] != nil { args.append("--verbose") }
        process.executableURL = URL(fileURLWithPath: SimulatorProcess.python)
        process.arguments = args
        let out = Pipe()
        process.standardOutput = out
        stderrPath = pki + "-stderr.log"
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: stderrPath)
        try process.run()
        var line = Data()
        let handle = out.fileHandleForReading
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = handle.availableData
            if chunk.isEmpty {
                let err = (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? ""
                throw OPCUATestError("simulator exited before listening: \(err.suffix(2000))")
            }
            line.append(chunk)
        }
        let json = try JSONSerialization.jsonObject(with: line.prefix(while: { $0 != UInt8(ascii: "\n") }))
        guard let obj = json as? [String: Any], obj["event"] as? String == "listening",
            let ep = obj["endpoint"] as? String, let p = obj["port"] as? Int, let ns = obj["namespace"] as? Int
        else { throw OPCUATestError("unexpected first line from simulator: \(String(decoding: line, as: UTF8.self))") }
        endpoint = ep
        self.port = p
        namespace = UInt16(ns)
        certificatePath = obj["certificate"] as? String
    }

    /// SIGKILL: the server gets no chance to close sessions, as in a crash or power loss.
    func kill() {
        if process.isRunning {
            Foundation.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    deinit { kill() }
}

struct OPCUATestError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
func eventually(timeout: Double, _ condition: () -> Bool) -> Bool {
    let deadline = Date(timeIntervalSinceNow: timeout)
    while Date() < deadline {
        if condition() { return true }
        usleep(20_000)
    }
    return condition()
}

/// Thread-safe collector for subscription callbacks.
final class Collector<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [T] = []
    func append(contentsOf xs: [T]) {
        lock.lock()
        items += xs
        lock.unlock()
    }
    var all: [T] {
        lock.lock()
        defer { lock.unlock() }
        return items
    }
    var count: Int { all.count }
    func reset() {
        lock.lock()
        items = []
        lock.unlock()
    }
}
