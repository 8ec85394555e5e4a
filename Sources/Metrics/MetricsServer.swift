import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Why the metrics endpoint could not listen.
package struct MetricsServerError: Error, CustomStringConvertible {
    package var description: String
}

/// A deliberately small HTTP/1.1 server for `GET /metrics`, on one thread of its own.
///
/// One connection at a time, closed after one answer; the request must arrive whole (headers included, at most
/// `Limits.requestBytes`) within `Limits.readSeconds` of the connection, however slowly its bytes trickle in, and the
/// answer must leave within `Limits.writeSeconds`; otherwise the connection is dropped. So a stuck or hostile client
/// delays the next scrape by a few seconds at most and can never reach the rest of the agent, which never waits
/// on this thread. Between scrapes the thread calls `idle` every `Limits.idleSeconds` (the agent drains the loops'
/// sample rings there, so its histograms miss nothing when scrapes are rare).
package final class MetricsServer: @unchecked Sendable {
    package struct Limits: Sendable {
        package var requestBytes = 8192
        package var readSeconds = 2.0
        package var writeSeconds = 5.0
        package var idleSeconds = 5.0
        package init() {}
    }

    package let host: String
    /// The port actually bound (the configured one, or the one the system chose for port 0).
    package let port: Int
    package var address: String { "\(host):\(port)" }
    private let limits: Limits
    private let fd: Int32
    private let respond: @Sendable () -> String
    private let idle: @Sendable () -> Void
    private let stopping = Atomic<Bool>(false)
    private let running = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    /// Requests answered with metrics, and connections dropped (too slow, too large, malformed).
    private let answered = Atomic<UInt64>(0)
    private let dropped = Atomic<UInt64>(0)

    /// Binds and listens now (so a port in use fails the start); serves from `start()` on.
    package init(
        host: String, port: Int, limits: Limits = Limits(), respond: @escaping @Sendable () -> String,
        idle: @escaping @Sendable () -> Void = {}
    ) throws(MetricsServerError) {
        self.host = host
        self.limits = limits
        self.respond = respond
        self.idle = idle
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw MetricsServerError(description: "socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(truncatingIfNeeded: port).bigEndian
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            close(s)
            throw MetricsServerError(description: "'\(host)' is not an IPv4 address")
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(s, 8) == 0 else {
            let text = String(cString: strerror(errno))
            close(s)
            throw MetricsServerError(description: "cannot listen on \(host):\(port): \(text)")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &length) }
        }
        fd = s
        self.port = Int(UInt16(bigEndian: actual.sin_port))
    }

    deinit {
        stop()
        close(fd)
    }

    /// Scrapes answered and connections dropped since the start.
    package var answeredCount: UInt64 { answered.load(ordering: .relaxed) }
    package var droppedCount: UInt64 { dropped.load(ordering: .relaxed) }

    package func start() {
        guard !running.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let thread = Thread { [self] in
            serve()
            finished.signal()
        }
        thread.name = "metrics"
        thread.start()
    }

    /// Stops serving; returns once the thread has finished its current connection (a few seconds at most).
    package func stop() {
        guard running.load(ordering: .acquiring), !stopping.exchange(true, ordering: .acquiringAndReleasing) else {
            return
        }
        finished.wait()
    }

    private func serve() {
        var lastIdle = Self.monotonicSeconds()
        while !stopping.load(ordering: .acquiring) {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&p, 1, 250)
            if Self.monotonicSeconds() - lastIdle >= limits.idleSeconds {
                idle()
                lastIdle = Self.monotonicSeconds()
            }
            guard ready > 0 else { continue }
            let client = accept(fd, nil, nil)
            guard client >= 0 else { continue }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            _ = fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK)
            handle(client)
            close(client)
        }
    }

    private func handle(_ client: Int32) {
        guard let request = readRequest(client) else {
            dropped.add(1, ordering: .relaxed)
            return
        }
        let line = request.split(separator: "\r\n", maxSplits: 1).first.map(String.init) ?? ""
        let parts = line.split(separator: " ")
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else {
            send(client, status: "400 Bad Request", body: "bad request\n")
            return
        }
        let path = parts[1].split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        guard parts[0] == "GET" || parts[0] == "HEAD" else {
            send(client, status: "405 Method Not Allowed", body: "only GET\n", extra: "Allow: GET, HEAD\r\n")
            return
        }
        guard path == "/metrics" else {
            send(client, status: "404 Not Found", body: "not found: the metrics are at /metrics\n")
            return
        }
        let body = respond()
        answered.add(1, ordering: .relaxed)
        send(client, status: "200 OK", body: body, contentType: MetricsText.contentType, head: parts[0] == "HEAD")
    }

    /// The request head, or nil when it did not arrive whole in time or within the size limit.
    private func readRequest(_ client: Int32) -> String? {
        let deadline = Self.monotonicSeconds() + limits.readSeconds
        var bytes = [UInt8](repeating: 0, count: limits.requestBytes)
        var used = 0
        while used < bytes.count {
            let left = deadline - Self.monotonicSeconds()
            guard left > 0 else { return nil }
            var p = pollfd(fd: client, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, Int32(max(1, left * 1000))) > 0 else { continue }
            let n = bytes.withUnsafeMutableBytes { recv(client, $0.baseAddress! + used, $0.count - used, 0) }
            if n == 0 { return nil }
            if n < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                return nil
            }
            used += n
            // The head ends with an empty line; a GET has no body to wait for.
            if used >= 4, bytes[0..<used].firstRange(of: [13, 10, 13, 10]) != nil {
                return String(decoding: bytes[0..<used], as: UTF8.self)
            }
        }
        return nil
    }

    private func send(
        _ client: Int32, status: String, body: String, contentType: String = "text/plain; charset=utf-8",
        extra: String = "", head: Bool = false
    ) {
        let payload = Array(body.utf8)
        let header =
            "HTTP/1.1 \(status)\r\nContent-Type: \(contentType)\r\nContent-Length: \(payload.count)\r\n"
            + "\(extra)Connection: close\r\n\r\n"
        var out = Array(header.utf8)
        if !head { out += payload }
        let deadline = Self.monotonicSeconds() + limits.writeSeconds
        var sent = 0
        while sent < out.count {
            let left = deadline - Self.monotonicSeconds()
            guard left > 0 else {
                dropped.add(1, ordering: .relaxed)
                return
            }
            var p = pollfd(fd: client, events: Int16(POLLOUT), revents: 0)
            guard poll(&p, 1, Int32(max(1, left * 1000))) > 0 else { continue }
            let n = out.withUnsafeBytes {
                Glibc.send(client, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL))
            }
            if n < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                return
            }
            sent += n
        }
    }

    private static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
