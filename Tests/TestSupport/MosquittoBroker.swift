import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Runs Debian's mosquitto on a free 127.0.0.1 port with a configuration written into a private temp directory.
/// The port stays the same across `stop()`/`start()` so that reconnect tests can restart "the same" broker, and
/// `pause()`/`resume()`/`kill()` give the failures a real network and a real broker have.
public final class MosquittoBroker: @unchecked Sendable {
    static let executable = "/usr/sbin/mosquitto"

    public let directory: URL
    public let port: Int
    /// Appended to the listener section; may be changed before `start()` (e.g. to name files written into
    /// `directory`).
    public var listenerConfig: String
    private var process: SpawnedProcess?

    /// `listenerConfig` is appended to the listener section (TLS files, password file…).
    public init(listenerConfig: String = "allow_anonymous true") throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("mosq-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        port = try deadPort()
        self.listenerConfig = listenerConfig
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: directory)
    }

    public var logPath: String { directory.appendingPathComponent("mosquitto.log").path }
    public var isRunning: Bool { process != nil && process?.exitStatus() == nil }

    private var configPath: URL { directory.appendingPathComponent("mosquitto.conf") }

    /// Rewrites the configuration (with the current `listenerConfig`) and makes the running broker read it again
    /// (SIGHUP): password files and ACLs change without dropping its clients, as an administrator's change would.
    /// Listener settings such as the port do not change on a reload.
    public func reload() throws {
        try writeConfiguration()
        process?.signal(SIGHUP)
    }

    private func writeConfiguration() throws {
        // "user root": when the tests run as root, mosquitto would otherwise switch to the mosquitto user and could
        // not write its log or read the key files in this private directory.
        let text = """
            per_listener_settings true
            user root
            persistence false
            log_dest file \(logPath)
            log_type all
            listener \(port) 127.0.0.1
            \(listenerConfig)

            """
        try text.write(to: configPath, atomically: true, encoding: .utf8)
    }

    public func start() throws {
        guard FileManager.default.isExecutableFile(atPath: Self.executable) else {
            throw TestFailure("mosquitto is not installed at \(Self.executable) (apt-get install mosquitto)")
        }
        try writeConfiguration()
        let p = try SpawnedProcess(
            Self.executable, ["-c", configPath.path], output: directory.appendingPathComponent("stdout.log").path)
        process = p
        // Ready when the port accepts TCP connections.
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if canConnect(port: port) { return }
            if let status = p.exitStatus() {
                process = nil
                throw TestFailure("mosquitto exited with \(status); log:\n\(log())")
            }
            usleep(20_000)
        }
        throw TestFailure("mosquitto did not listen on 127.0.0.1:\(port) within 10 s")
    }

    public func stop() {
        process?.terminate()
        process = nil
    }

    /// Freezes the broker process (SIGSTOP): it keeps its sockets but answers nothing.
    public func pause() {
        process?.signal(SIGSTOP)
    }

    public func resume() {
        process?.signal(SIGCONT)
    }

    /// kill -9 (also when frozen): the broker dies without closing anything gracefully.
    public func kill() {
        process?.signal(SIGKILL)
        process?.wait()
        process = nil
    }

    public func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
}

/// A failure of the test environment (a fixture that could not start), worded for the test log.
public typealias TestFailure = PeerError

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
public func canConnect(port: Int) -> Bool {
    guard let fd = try? connectTCP(port: port) else { return false }
    close(fd)
    return true
}

/// Runs a command line tool to completion and fails with its output when it fails.
@discardableResult
public func run(_ executable: String, _ arguments: [String]) throws -> String {
    let out = FileManager.default.temporaryDirectory.appendingPathComponent("run-\(UUID().uuidString).log").path
    defer { unlink(out) }
    let p = try SpawnedProcess(executable, arguments, output: out, append: false)
    let st = p.wait()
    let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
    guard st == 0 else {
        throw TestFailure("\(executable) \(arguments.joined(separator: " ")) failed (status \(st)):\n\(text)")
    }
    return text
}
