import Configuration
import Devices
import Foundation
import LocalControl
import Logging
import LoopRuntime
import ModbusDriver
import OPCUADriver
import SparkplugPublisher
import Systemd
import Tags

/// `edgepilot run`: loads the configuration, starts the runtime and the control socket, and then waits for
/// signals on the main thread — SIGTERM/SIGINT stop gracefully, SIGHUP reloads — while feeding systemd's watchdog.
///
/// Signals are blocked in every thread and taken synchronously with `sigtimedwait` on the main thread, so a signal
/// can never interrupt a poller mid-request or run handler code at an unsafe point.
public final class AgentDaemon {
    let configPath: String
    let notifier = SystemdNotifier()

    public init(configPath: String) {
        self.configPath = configPath
    }

    public func run() throws {
        // Block before any thread exists, so every thread inherits the mask and only sigtimedwait sees them.
        var signals = sigset_t()
        sigemptyset(&signals)
        for s in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&signals, s) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)
        signal(SIGPIPE, SIG_IGN)
        // Whatever umask started it (systemd's UMask=0027, a shell's 0022 or 0000), the agent's files (history, PKI,
        // bdSeq) are never group-writable nor open to others; the private key is 0600 on its own (decision 0024).
        let inherited = umask(0o027)
        umask(inherited | 0o027)

        let loaded = try ConfigurationLoader.load(contentsOf: configPath)
        JournalLogHandler.bootstrap(level: loaded.configuration.logLevel)
        let logger = Logger(label: "edgepilot")
        for warning in loaded.warnings { logger.warning("\(warning)") }

        let runtime = try AgentRuntime(configuration: loaded.configuration, configPath: configPath)
        let server = ControlServer(
            path: loaded.configuration.controlSocketPath,
            access: ControlAccess(readOnlyGroup: readOnlyGroup(loaded.configuration, logger: logger)),
            handler: { [runtime] in runtime.handle($0, from: $1) },
            refused: { [runtime] in runtime.auditRefusal($0, from: $1) })
        do {
            try server.start()
        } catch {
            throw AgentStartError("\(error)")
        }
        runtime.start()
        // Parsing a large configuration builds a big YAML tree that is garbage once the tables exist; give those
        // pages back so the agent's resident size reflects what it keeps, not what it once parsed.
        releaseFreedMemory()
        logger.notice(
            "EdgePilot \(AgentVersion.current) running",
            metadata: [
                "config": "\(configPath)", "socket": "\(server.path)",
                "read_only_socket": "\(server.readOnlyPath ?? "none")",
            ])
        notifier.ready(status: runtime.statusLine())

        let watchdogEvery = notifier.watchdogInterval
        var lastWatchdog = ContinuousClock.now
        var lastStatus = ContinuousClock.now
        loop: while true {
            var timeout = timespec(tv_sec: 1, tv_nsec: 0)
            if let w = watchdogEvery, w < .seconds(1) {
                let ns = w.components.attoseconds / 1_000_000_000
                timeout = timespec(tv_sec: Int(w.components.seconds), tv_nsec: Int(max(1_000_000, ns)))
            }
            let received = sigtimedwait(&signals, nil, &timeout)
            switch received {
            case SIGTERM, SIGINT:
                logger.notice("stopping on signal \(received == SIGTERM ? "SIGTERM" : "SIGINT")")
                break loop
            case SIGHUP:
                reload(runtime, logger: logger)
            default:
                break
            }
            let now = ContinuousClock.now
            if let w = watchdogEvery, now - lastWatchdog >= w {
                notifier.watchdog()
                lastWatchdog = now
            }
            if now - lastStatus >= .seconds(5) {
                notifier.status(runtime.statusLine())
                lastStatus = now
            }
        }
        notifier.stopping()
        server.stop()
        runtime.stop()
        logger.notice("stopped")
    }

    /// The read-only group's id; nil (no read-only socket) when it is `none` or the system has no such group.
    func readOnlyGroup(_ configuration: AgentConfiguration, logger: Logger) -> gid_t? {
        guard let name = configuration.readOnlyGroup else { return nil }
        guard let gid = ControlAccess.groupID(name) else {
            logger.notice(
                "no read-only control socket: group '\(name)' does not exist",
                metadata: ["hint": "create it ('groupadd --system \(name)') or set agent.read_only_group"])
            return nil
        }
        return gid
    }

    /// Validates the new file completely before touching anything; a bad file leaves the running config in place.
    func reload(_ runtime: AgentRuntime, logger: Logger) {
        notifier.reloading(status: "reloading \(configPath)")
        defer { notifier.send("READY=1\nSTATUS=\(runtime.statusLine())") }
        let loaded: LoadedConfiguration
        do {
            loaded = try ConfigurationLoader.load(contentsOf: configPath)
        } catch {
            for d in error.diagnostics { logger.error("reload rejected: \(d)") }
            logger.error("reload rejected: \(error.errors.count) error(s); the previous configuration keeps running")
            return
        }
        do {
            let summary = try runtime.reload(loaded.configuration)
            releaseFreedMemory()
            logger.notice("reloaded: \(summary)")
        } catch {
            logger.error("reload failed, the previous configuration keeps running: \(error)")
        }
    }
}

/// Returns freed heap pages to the kernel (glibc's `malloc_trim`, which Swift's Glibc module does not import).
func releaseFreedMemory() {
    typealias Trim = @convention(c) (Int) -> Int32
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return }
    _ = unsafeBitCast(symbol, to: Trim.self)(0)
}
