import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A TCP forwarder on 127.0.0.1 between the agent and a real peer (pymodbus, asyncua, mosquitto) that injects the
/// faults of a bad plant network, switchable while connections are open.
///
/// Threads: one acceptor thread polls the listening socket; every accepted connection gets one thread of its own,
/// which opens the upstream socket and forwards both directions with poll(2). Every poll waits at most 10 ms, so a
/// fault switched by `set(_:)` (from the test's thread, through a mutex) reaches every connection within 10 ms, and
/// `stop()` ends and joins every thread. Replies (peer → client) pass through a queue of timed chunks, so added
/// latency delays them without holding back the other direction.
public final class FaultProxy: @unchecked Sendable {
    /// What the link does to the traffic.
    public enum Fault: Sendable, Equatable {
        /// Forwards everything as it comes.
        case none
        /// Delivers every chunk from the peer this much later (a slow link or gateway).
        case latency(milliseconds: Int)
        /// A pulled cable: connections are accepted and their bytes read and dropped in both directions; nothing is
        /// forwarded and no FIN or RST is ever sent.
        case blackHole
        /// Closes open connections with RST; new connections are accepted, then reset at once (a crashing gateway).
        case reset
        /// Stops reading both sockets (the sockets stay open; the kernel buffers fill), as a stopped peer would.
        case freeze
    }

    public let port: Int
    public let targetPort: Int
    private let listener: Int32
    private let state = Mutex(State())
    private let stopping = Atomic<Bool>(false)
    private var acceptor: pthread_t?

    private struct State {
        var fault = Fault.none
        var resetGeneration = 0
        var accepted = 0
        var active = 0
        var threads: [pthread_t] = []
    }

    /// Listens on a free port of 127.0.0.1 and forwards to 127.0.0.1:`targetPort`; `stop()` it at the end of the test
    /// (its threads hold it).
    public init(targetPort: Int) throws {
        self.targetPort = targetPort
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && listen(fd, 64) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard ok else {
            close(fd)
            throw PeerError("fault proxy cannot listen: errno \(errno)")
        }
        listener = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        acceptor = Self.thread { [self] in acceptLoop() }
    }

    deinit { stop() }

    /// Switches the fault; open connections follow within 10 ms. Switching to `.reset` resets every open one.
    public func set(_ fault: Fault) {
        state.withLock {
            $0.fault = fault
            if fault == .reset { $0.resetGeneration += 1 }
        }
    }

    /// Resets every open connection with RST once; new connections are served as the current fault says.
    public func resetConnections() {
        state.withLock { $0.resetGeneration += 1 }
    }

    /// Connections accepted since the start (including the ones reset at once).
    public var acceptedConnections: Int { state.withLock { $0.accepted } }

    /// Connections being forwarded now.
    public var activeConnections: Int { state.withLock { $0.active } }

    /// Stops accepting, closes every connection and joins every thread.
    public func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        if let a = acceptor { pthread_join(a, nil) }
        close(listener)
        let threads = state.withLock { s in
            defer { s.threads.removeAll() }
            return s.threads
        }
        for t in threads { pthread_join(t, nil) }
    }

    // MARK: - Threads

    private func acceptLoop() {
        while !stopping.load(ordering: .acquiring) {
            var pfd = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 10) > 0 else { continue }
            let client = accept(listener, nil, nil)
            guard client >= 0 else { continue }
            let (fault, generation) = state.withLock { s -> (Fault, Int) in
                s.accepted += 1
                return (s.fault, s.resetGeneration)
            }
            if fault == .reset {
                Self.reset(client)
                continue
            }
            let t = Self.thread { [self] in serve(client, generation: generation) }
            state.withLock { $0.threads.append(t) }
        }
    }

    private func serve(_ client: Int32, generation: Int) {
        state.withLock { $0.active += 1 }
        defer { state.withLock { $0.active -= 1 } }
        guard let upstream = try? connectTCP(port: targetPort) else {
            Self.reset(client)
            return
        }
        var replies: [(due: Double, data: [UInt8])] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !stopping.load(ordering: .acquiring) {
            let (fault, current) = state.withLock { ($0.fault, $0.resetGeneration) }
            if current != generation {
                Self.reset(client)
                Self.reset(upstream)
                return
            }
            let now = Self.seconds()
            // Replies whose time has come go out first (unless frozen or black-holed).
            if fault != .freeze && fault != .blackHole {
                while let first = replies.first, first.due <= now {
                    guard Self.sendAll(client, first.data) else {
                        close(client)
                        close(upstream)
                        return
                    }
                    replies.removeFirst()
                }
            } else if fault == .blackHole {
                replies.removeAll()
            }
            if fault == .freeze {
                usleep(10_000)
                continue
            }
            var fds = [
                pollfd(fd: client, events: Int16(POLLIN), revents: 0),
                pollfd(fd: upstream, events: Int16(POLLIN), revents: 0),
            ]
            var wait: Int32 = 10
            if let first = replies.first { wait = Int32(max(0, min(10, (first.due - now) * 1000))) }
            guard poll(&fds, 2, wait) > 0 else { continue }
            for (k, pfd) in fds.enumerated() where pfd.revents != 0 {
                let from = k == 0 ? client : upstream
                let n = recv(from, &buffer, buffer.count, 0)
                guard n > 0 else {
                    // One side closed or reset: close the other side the same way a real link would pass it on.
                    if n < 0 && errno == ECONNRESET {
                        Self.reset(k == 0 ? upstream : client)
                    } else {
                        close(k == 0 ? upstream : client)
                    }
                    close(from)
                    return
                }
                if fault == .blackHole { continue }
                if k == 0 {
                    guard Self.sendAll(upstream, Array(buffer[0..<n])) else {
                        close(client)
                        close(upstream)
                        return
                    }
                } else {
                    var delay = 0.0
                    if case .latency(let ms) = fault { delay = Double(ms) / 1000 }
                    replies.append((Self.seconds() + delay, Array(buffer[0..<n])))
                }
            }
        }
        close(client)
        close(upstream)
    }

    // MARK: - Helpers

    private static func reset(_ fd: Int32) {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(fd)
    }

    private static func sendAll(_ fd: Int32, _ data: [UInt8]) -> Bool {
        var offset = 0
        while offset < data.count {
            let n = data[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { return false }
            offset += n
        }
        return true
    }

    private static func seconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    private static func thread(_ body: @escaping () -> Void) -> pthread_t {
        final class Box {
            let body: () -> Void
            init(_ body: @escaping () -> Void) { self.body = body }
        }
        let box = Unmanaged.passRetained(Box(body))
        var t = pthread_t()
        let rc = pthread_create(
            &t, nil,
            { raw in
                Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
                return nil
            }, box.toOpaque())
        precondition(rc == 0, "cannot create a fault proxy thread: \(rc)")
        return t
    }
}
