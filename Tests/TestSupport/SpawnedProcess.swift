import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A child process started with posix_spawn (reset signal mask, so SIGTERM works although the test runner blocks
/// it) and reaped with waitpid. Foundation's Process is avoided for processes a test stops, kills and restarts: its
/// waitUntilExit depends on a run loop and hung inside Swift Testing's concurrency threads.
public final class SpawnedProcess: @unchecked Sendable {
    public let pid: pid_t
    private var status: Int32?

    /// Output (stdout and stderr) goes to `output`, appended to (a restarted process keeps one log) or, with
    /// `append: false`, replacing what was there.
    public init(
        _ executable: String, _ arguments: [String], output: String, append: Bool = true,
        environment: [String: String] = [:]
    ) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // Nothing else crosses over: Foundation's pipes are not close-on-exec, and a long-lived peer holding another
        // test's pipe would keep that test waiting for an EOF until the peer exits.
        closeInheritedDescriptors(&actions)
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

/// glibc ≥ 2.34 has `posix_spawn_file_actions_addclosefrom_np`, which closes every descriptor from 3 up in the child
/// atomically; Swift's Glibc module does not import it, so it is looked up at run time.
private func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
    typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else {
        // Older libc: close what is open now (a descriptor opened by another thread before the spawn may slip by).
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        for fd in open.compactMap(Int32.init) where fd > 2 { posix_spawn_file_actions_addclose(&actions, fd) }
        return
    }
    _ = unsafeBitCast(symbol, to: CloseFrom.self)(&actions, 3)
}
