import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Runs Debian's mosquitto on a free 127.0.0.1 port with a configuration written into a private temp directory.
/// The port stays the same across `stop()`/`start()` so that reconnect tests can restart "the same" broker.
public final class MosquittoBroker: @unchecked Sendable {
    static let executable = "/usr/sbin/mosquitto"

    public let directory: URL
    public let port: Int
    /// Appended to the listener section; may be changed before `start()` (e.g. to name files written into
    /// `directory`).
    public var listenerConfig: String
    private var process: ChildProcess?

    /// `listenerConfig` is appended to the listener section (TLS files, password file…).
    public init(listenerConfig: String = "allow_anonymous true") throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("mosq-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        port = try freePort()
        self.listenerConfig = listenerConfig
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: directory)
    }

    public var logPath: String { directory.appendingPathComponent("mosquitto.log").path }

    public func start() throws {
        guard FileManager.default.isExecutableFile(atPath: Self.executable) else {
            throw TestFailure("mosquitto is not installed at \(Self.executable) (apt-get install mosquitto)")
        }
        let conf = directory.appendingPathComponent("mosquitto.conf")
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
        try text.write(to: conf, atomically: true, encoding: .utf8)
        let p = try ChildProcess(
            Self.executable, ["-c", conf.path], output: directory.appendingPathComponent("stdout.log").path)
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

public struct TestFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Asks the kernel for a free port by binding port 0, then releases it for the broker.
public func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("socket() failed") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = 0
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw TestFailure("bind() failed") }
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }
    return Int(UInt16(bigEndian: addr.sin_port))
}

public func canConnect(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = UInt16(port).bigEndian
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    } == 0
}

/// A child process run with posix_spawn and reaped with waitpid. Foundation's Process is avoided on purpose:
/// its waitUntilExit depends on a run loop and hung inside Swift Testing's concurrency threads.
public final class ChildProcess: @unchecked Sendable {
    public let pid: pid_t
    private var status: Int32?

    public init(_ executable: String, _ arguments: [String], output: String) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // The test runner's threads block SIGTERM and friends; a spawned child inherits that mask and would then
        // ignore terminate(). Reset mask and handlers for the child.
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
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable, &actions, &attr, argv, environ)
        guard rc == 0 else { throw TestFailure("posix_spawn \(executable): \(String(cString: strerror(rc)))") }
        pid = child
    }

    deinit { terminate() }

    public func signal(_ sig: Int32) {
        if status == nil { kill(pid, sig) }
    }

    /// Exit status if the process has ended, without blocking.
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

    public func terminate() {
        guard status == nil else { return }
        kill(pid, SIGCONT)
        kill(pid, SIGTERM)
        wait()
    }
}

/// Runs a command line tool to completion and fails with its output when it fails.
@discardableResult
public func run(_ executable: String, _ arguments: [String]) throws -> String {
    let out = FileManager.default.temporaryDirectory.appendingPathComponent("run-\(UUID().uuidString).log").path
    defer { unlink(out) }
    let p = try ChildProcess(executable, arguments, output: out)
    let st = p.wait()
    let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
    guard st == 0 else {
        throw TestFailure("\(executable) \(arguments.joined(separator: " ")) failed (status \(st)):\n\(text)")
    }
    return text
}
