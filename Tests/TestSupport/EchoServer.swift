import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A TCP echo server on 127.0.0.1 that counts what it received and which connections it saw end (end of file from
/// the client): the far end for `FaultProxy`'s own tests, where a protocol peer would hide what the link did.
public final class EchoServer: @unchecked Sendable {
    public let port: Int
    private let listener: Int32
    private let stopping = Atomic<Bool>(false)
    private let counts = Mutex((received: 0, accepted: 0, endsOfFile: 0))
    private let finished = DispatchSemaphore(value: 0)
    private let started = Mutex(0)

    public init() throws {
        (listener, port) = try listenOnLoopback(backlog: 16, what: "echo server")
        spawn { [self] in acceptLoop() }
    }

    deinit { stop() }

    /// Bytes received so far, over all connections.
    public var received: Int { counts.withLock { $0.received } }
    /// Connections accepted so far.
    public var accepted: Int { counts.withLock { $0.accepted } }
    /// Connections whose client end sent end of file (or reset) so far.
    public var endsOfFile: Int { counts.withLock { $0.endsOfFile } }

    /// Stops accepting and serving; joins every thread.
    public func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let n = started.withLock { $0 }
        for _ in 0..<n { finished.wait() }
        close(listener)
    }

    private func spawn(_ body: @escaping @Sendable () -> Void) {
        started.withLock { $0 += 1 }
        let t = Thread { [finished] in
            body()
            finished.signal()
        }
        t.start()
    }

    private func acceptLoop() {
        while !stopping.load(ordering: .acquiring) {
            var pfd = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 10) > 0 else { continue }
            let c = accept(listener, nil, nil)
            guard c >= 0 else { continue }
            counts.withLock { $0.accepted += 1 }
            spawn { [self] in serve(c) }
        }
    }

    private func serve(_ fd: Int32) {
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 16384)
        while !stopping.load(ordering: .acquiring) {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 10) > 0 else { continue }
            let n = recv(fd, &buffer, buffer.count, 0)
            guard n > 0 else {
                counts.withLock { $0.endsOfFile += 1 }
                return
            }
            counts.withLock { $0.received += n }
            var offset = 0
            while offset < n {
                let sent = buffer[offset..<n].withUnsafeBytes {
                    send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
                }
                // The client end may be gone (the proxy half-closed it): the echo is lost, the count is kept.
                guard sent > 0 else { break }
                offset += sent
            }
        }
    }
}
