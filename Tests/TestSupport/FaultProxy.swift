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
/// latency delays them without holding back the other direction. Requests (client → peer) pass through a buffer
/// that is sent at once except under `.throttle`, which paces both directions; while a direction's buffer is full
/// its socket is not read, so the sender feels the slow link through TCP flow control as it would on a real one.
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
        /// The proxy shuts down its write direction toward `side` (`shutdown(SHUT_WR)`): that side reads end of file
        /// while the other side's connection stays open. What `side` sends is still forwarded; what the other side
        /// sends toward it is read and dropped. New connections are half-closed as soon as they are accepted. A
        /// half-closed connection stays so after the fault is switched off (a FIN cannot be taken back); only new
        /// connections are forwarded again. Toward `.client` is a gateway or NAT box that closed its half of the
        /// link; toward `.server` is a client stack that closed its half, which a PLC usually answers by closing.
        case halfClose(toward: Side)
        /// Forwards both directions paced to `bytesPerSecond` each (a token bucket holding 20 ms of traffic, at
        /// least one byte), as a saturated radio or serial-over-IP link would; nothing is lost.
        case throttle(bytesPerSecond: Int)
    }

    /// One end of a proxied connection.
    public enum Side: Sendable, Equatable {
        /// The agent (or other client) that connected to the proxy.
        case client
        /// The peer the proxy connects to (`targetPort`).
        case server
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
        /// Unix seconds of the last byte sent to a client (nil before the first).
        var lastSentToClient: Double?
        var bytesToClient = 0
        var bytesToServer = 0
    }

    /// Listens on a free port of 127.0.0.1 and forwards to 127.0.0.1:`targetPort`; `stop()` it at the end of the test
    /// (its threads hold it).
    public init(targetPort: Int) throws {
        self.targetPort = targetPort
        (listener, port) = try listenOnLoopback(backlog: 64, what: "fault proxy")
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

    /// Unix seconds (wall clock) at which the proxy last sent bytes to a client: the last moment the client can have
    /// heard from its peer, however the link failed after it.
    public var lastSentToClient: Double? { state.withLock { $0.lastSentToClient } }

    /// Bytes forwarded so far toward the clients and toward the server.
    public var forwardedBytes: (toClient: Int, toServer: Int) {
        state.withLock { ($0.bytesToClient, $0.bytesToServer) }
    }

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
        var link = Link(client: client, upstream: upstream)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !stopping.load(ordering: .acquiring) {
            let (fault, current) = state.withLock { ($0.fault, $0.resetGeneration) }
            if current != generation {
                Self.reset(client)
                Self.reset(upstream)
                return
            }
            let now = Self.seconds()
            if case .halfClose(let side) = fault { link.halfClose(side) }
            var rate: Double?
            if case .throttle(let r) = fault { rate = Double(max(1, r)) }
            link.refill(now: now, rate: rate)
            // What is due goes out first (unless frozen or black-holed).
            if fault != .freeze && fault != .blackHole {
                guard flush(&link, now: now, rate: rate) else {
                    close(client)
                    close(upstream)
                    return
                }
            } else if fault == .blackHole {
                link.replies.removeAll()
                link.requests.removeAll()
            }
            if fault == .freeze {
                usleep(10_000)
                continue
            }
            // A full buffer is not added to: the sender's kernel buffers fill, as behind a slow link.
            var fds = [
                pollfd(
                    fd: client, events: link.requests.count < Link.bufferLimit ? Int16(POLLIN) : 0, revents: 0),
                pollfd(
                    fd: upstream, events: link.replyBytes < Link.bufferLimit ? Int16(POLLIN) : 0, revents: 0),
            ]
            let wait = link.wait(now: now, rate: rate)
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
                    if link.halfClosed == .server { continue }
                    link.requests += buffer[0..<n]
                } else {
                    if link.halfClosed == .client { continue }
                    var delay = 0.0
                    if case .latency(let ms) = fault { delay = Double(ms) / 1000 }
                    link.replies.append((Self.seconds() + delay, Array(buffer[0..<n])))
                    link.replyBytes += n
                }
            }
            guard flush(&link, now: Self.seconds(), rate: rate) else {
                close(client)
                close(upstream)
                return
            }
        }
        close(client)
        close(upstream)
    }

    /// Sends what is due: every request byte and every reply whose time has come, or under `.throttle` as many as
    /// the tokens allow; false when a socket failed.
    private func flush(_ link: inout Link, now: Double, rate: Double?) -> Bool {
        var toServer = 0
        var toClient = 0
        defer {
            if toServer > 0 || toClient > 0 {
                let wall = Date().timeIntervalSince1970
                state.withLock {
                    $0.bytesToServer += toServer
                    $0.bytesToClient += toClient
                    if toClient > 0 { $0.lastSentToClient = wall }
                }
            }
        }
        if !link.requests.isEmpty {
            let n = rate == nil ? link.requests.count : min(link.requests.count, Int(link.upTokens))
            if n > 0 {
                guard Self.sendAll(link.upstream, Array(link.requests.prefix(n))) else { return false }
                link.requests.removeFirst(n)
                if rate != nil { link.upTokens -= Double(n) }
                toServer += n
            }
        }
        while let first = link.replies.first, first.due <= now {
            let n = rate == nil ? first.data.count : min(first.data.count, Int(link.downTokens))
            guard n > 0 else { break }
            guard Self.sendAll(link.client, Array(first.data.prefix(n))) else { return false }
            if rate != nil { link.downTokens -= Double(n) }
            toClient += n
            link.replyBytes -= n
            if n == first.data.count {
                link.replies.removeFirst()
            } else {
                link.replies[0].data.removeFirst(n)
            }
        }
        return true
    }

    /// One proxied connection's sockets and what waits to be forwarded on it.
    private struct Link {
        /// Bytes a direction may hold before its socket is no longer read.
        static let bufferLimit = 65536
        let client: Int32
        let upstream: Int32
        var requests: [UInt8] = []
        var replies: [(due: Double, data: [UInt8])] = []
        var replyBytes = 0
        var halfClosed: Side?
        /// Token buckets of `.throttle` (bytes), and when they were last filled.
        var upTokens = 0.0
        var downTokens = 0.0
        var filledAt = 0.0

        init(client: Int32, upstream: Int32) {
            self.client = client
            self.upstream = upstream
        }

        mutating func halfClose(_ side: Side) {
            guard halfClosed == nil else { return }
            halfClosed = side
            _ = shutdown(side == .client ? client : upstream, Int32(SHUT_WR))
            if side == .client {
                replies.removeAll()
                replyBytes = 0
            } else {
                requests.removeAll()
            }
        }

        mutating func refill(now: Double, rate: Double?) {
            defer { filledAt = now }
            guard let rate else { return }
            let burst = max(1, rate * 0.02)
            let added = filledAt == 0 ? burst : (now - filledAt) * rate
            upTokens = min(burst, upTokens + added)
            downTokens = min(burst, downTokens + added)
        }

        /// How long poll may wait (ms): until the next reply is due or, when throttled, a byte's worth of tokens.
        func wait(now: Double, rate: Double?) -> Int32 {
            var wait: Int32 = 10
            if let first = replies.first { wait = Int32(max(0, min(10, (first.due - now) * 1000))) }
            if let rate, !requests.isEmpty || !replies.isEmpty { wait = min(wait, Int32(max(1, 1000 / rate))) }
            return wait
        }
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
