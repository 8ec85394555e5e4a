import Foundation

/// Speaks systemd's notify protocol (READY=1, STATUS=…, WATCHDOG=1, STOPPING=1) over `$NOTIFY_SOCKET`, written
/// directly on the datagram socket so the agent needs no libsystemd.
///
/// Without `$NOTIFY_SOCKET` (not started by systemd) every call does nothing.
public final class SystemdNotifier: @unchecked Sendable {
    private let path: String?
    private let lock = NSLock()
    /// Half the interval systemd expects pings at, as the sd_watchdog_enabled(3) guidance recommends.
    public let watchdogInterval: Duration?

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        path = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        if let usec = environment["WATCHDOG_USEC"].flatMap(UInt64.init), usec > 0,
            environment["WATCHDOG_PID"].flatMap(Int32.init).map({ $0 == getpid() }) ?? true
        {
            watchdogInterval = .microseconds(Int64(usec / 2))
        } else {
            watchdogInterval = nil
        }
    }

    public var isEnabled: Bool { path != nil }

    public func ready(status: String) { send("READY=1\nSTATUS=\(status)") }
    public func status(_ text: String) { send("STATUS=\(text)") }
    public func watchdog() { send("WATCHDOG=1") }
    public func reloading(status: String) {
        send("RELOADING=1\nSTATUS=\(status)\nMONOTONIC_USEC=\(Self.monotonicMicroseconds())")
    }
    public func stopping() { send("STOPPING=1\nSTATUS=stopping") }

    /// Sends one datagram; failures are ignored because the agent must run the same with or without systemd.
    public func send(_ message: String) {
        guard let path else { return }
        lock.lock()
        defer { lock.unlock() }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        // A leading '@' names a socket in the abstract namespace, which starts with a NUL byte.
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { return }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count)
        let payload = Array(message.utf8)
        _ = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                payload.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, length) }
            }
        }
    }

    static func monotonicMicroseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1000
    }
}
