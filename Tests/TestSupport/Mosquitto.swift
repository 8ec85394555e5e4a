import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Debian's mosquitto on a free 127.0.0.1 port, configured in a private temp directory; the port stays the same
/// across `stop()`/`start()` so a test can take "the" broker away and bring it back.
///
/// The same fixture as Tests/SparkplugTests/Support/MosquittoBroker.swift, shared here for targets that use
/// TestSupport (that one stays where it is: its target does not depend on TestSupport).
public final class MosquittoProcess: @unchecked Sendable {
    public static let executable = "/usr/sbin/mosquitto"

    public let directory: TemporaryDirectory
    public let port: Int
    private var process: SpawnedProcess?

    public init() throws {
        directory = try TemporaryDirectory("mosquitto")
        port = try deadPort()
    }

    deinit {
        stop()
        directory.remove()
    }

    public var logPath: String { directory.path + "/mosquitto.log" }
    public var isRunning: Bool { process?.exitStatus() == nil && process != nil }

    public func start() throws {
        guard FileManager.default.isExecutableFile(atPath: Self.executable) else {
            throw PeerError("mosquitto is not installed at \(Self.executable) (apt-get install mosquitto)")
        }
        let conf = directory.path + "/mosquitto.conf"
        // "user root": when tests run as root mosquitto would otherwise switch users and could not write its log.
        let text = """
            per_listener_settings true
            user root
            persistence false
            log_dest file \(logPath)
            log_type error
            log_type warning
            log_type notice
            listener \(port) 127.0.0.1
            allow_anonymous true

            """
        try text.write(toFile: conf, atomically: true, encoding: .utf8)
        let p = try SpawnedProcess(Self.executable, ["-c", conf], output: directory.path + "/stdout.log")
        process = p
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if let fd = try? connectTCP(port: port) {
                close(fd)
                return
            }
            if let status = p.exitStatus() {
                process = nil
                throw PeerError("mosquitto exited with \(status); log:\n\(log())")
            }
            usleep(20_000)
        }
        throw PeerError("mosquitto did not listen on 127.0.0.1:\(port) within 10 s")
    }

    public func stop() {
        process?.terminate()
        process = nil
    }

    /// Freezes the broker (SIGSTOP): its connections stay open but nothing is read or answered, as on a silent
    /// network loss.
    public func pause() { process?.signal(SIGSTOP) }

    public func resume() { process?.signal(SIGCONT) }

    /// kill -9 (also when frozen): whatever the broker had not processed is gone.
    public func kill() {
        process?.signal(SIGKILL)
        process?.wait()
        process = nil
    }

    public func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
}

/// A child process started with posix_spawn (reset signal mask, so SIGTERM works although the test runner blocks
/// it) and reaped with waitpid; Foundation's Process is avoided for processes a test stops and restarts.
public final class SpawnedProcess: @unchecked Sendable {
    public let pid: pid_t
    private var status: Int32?

    public init(_ executable: String, _ arguments: [String], output: String, environment: [String: String] = [:])
        throws
    {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigfillset(&defaults)
        sigdelset(&defaults, SIGKILL)
        sigdelset(&defaults, SIGSTOP)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in envp { free(p) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable, &actions, &attr, argv, envp)
        guard rc == 0 else { throw PeerError("posix_spawn \(executable): \(String(cString: strerror(rc)))") }
        pid = child
    }

    deinit { terminate() }

    public func signal(_ sig: Int32) {
        if exitStatus() == nil { kill(pid, sig) }
    }

    /// The wait status if the process has ended, without blocking.
    public func exitStatus() -> Int32? {
        if status == nil {
            var st: Int32 = 0
            if waitpid(pid, &st, WNOHANG) == pid { status = st }
        }
        return status
    }

    @discardableResult
    public func wait() -> Int32 {
        if let status { return status }
        var st: Int32 = 0
        while waitpid(pid, &st, 0) == -1 && errno == EINTR {}
        status = st
        return st
    }

    /// SIGTERM, then SIGKILL after `grace` seconds; returns the wait status.
    @discardableResult
    public func terminate(grace: TimeInterval = 20) -> Int32 {
        if let status { return status }
        kill(pid, SIGCONT)
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(grace)
        while exitStatus() == nil && Date() < deadline { usleep(10_000) }
        if exitStatus() == nil { kill(pid, SIGKILL) }
        return wait()
    }
}
