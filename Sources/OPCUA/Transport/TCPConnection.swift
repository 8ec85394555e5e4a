import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Host and port of an `opc.tcp://host:port/path` URL.
struct EndpointAddress: Sendable, Hashable {
    var host: String
    var port: UInt16

    init(url: String) throws {
        guard url.lowercased().hasPrefix("opc.tcp://") else {
            throw OPCUAError.invalidArgument("endpoint URL '\(url)' must start with opc.tcp://")
        }
        var rest = url.dropFirst("opc.tcp://".count)
        if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        var host = Substring(rest)
        var port: UInt16 = 4840
        if rest.hasPrefix("[") {  // IPv6 literal
            guard let close = rest.firstIndex(of: "]") else {
                throw OPCUAError.invalidArgument("endpoint URL '\(url)': unterminated IPv6 literal")
            }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = UInt16(after.dropFirst()) else {
                    throw OPCUAError.invalidArgument("endpoint URL '\(url)': bad port")
                }
                port = p
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            guard let p = UInt16(rest[rest.index(after: colon)...]) else {
                throw OPCUAError.invalidArgument("endpoint URL '\(url)': bad port")
            }
            port = p
        }
        if host.isEmpty { throw OPCUAError.invalidArgument("endpoint URL '\(url)' has no host") }
        self.host = String(host)
        self.port = port
    }
}

/// A blocking TCP socket. One thread reads (the secure channel's reader), any thread may write under
/// the channel's send lock; `shutdown()` from another thread wakes a blocked reader.
final class TCPConnection: @unchecked Sendable {
    private let fd: Int32
    private var readBuffer: [UInt8]
    private var readStart = 0
    private var readEnd = 0
    private let closeLock = NSLock()
    private var closed = false

    init(address: EndpointAddress, timeout: Double) throws {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
            hints.ai_socktype = SOCK_STREAM
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(address.host, String(address.port), &hints, &list)
        guard rc == 0, let first = list else {
            throw OPCUAError.transport("cannot resolve \(address.host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(list) }
        var lastError = "no address"
        var ai: UnsafeMutablePointer<addrinfo>? = first
        while let a = ai {
            ai = a.pointee.ai_next
            let s = socket(a.pointee.ai_family, a.pointee.ai_socktype, a.pointee.ai_protocol)
            if s < 0 { continue }
            if let err = TCPConnection.connect(s, a.pointee.ai_addr, a.pointee.ai_addrlen, timeout: timeout) {
                lastError = err
                _ = Glibc.close(s)
                continue
            }
            var one: Int32 = 1
            setsockopt(s, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            fd = s
            readBuffer = [UInt8](repeating: 0, count: 1 << 16)
            return
        }
        throw OPCUAError.transport("connect to \(address.host):\(address.port) failed: \(lastError)")
    }

    /// Non-blocking connect bounded by `timeout`, then back to blocking mode for the reader thread.
    private static func connect(_ s: Int32, _ addr: UnsafePointer<sockaddr>, _ len: socklen_t, timeout: Double)
        -> String?
    {
        let flags = fcntl(s, F_GETFL, 0)
        _ = fcntl(s, F_SETFL, flags | O_NONBLOCK)
        defer { _ = fcntl(s, F_SETFL, flags) }
        if Glibc.connect(s, addr, len) == 0 { return nil }
        if errno != EINPROGRESS { return String(cString: strerror(errno)) }
        var pfd = pollfd(fd: s, events: Int16(POLLOUT), revents: 0)
        let n = poll(&pfd, 1, Int32(max(1, timeout * 1000)))
        if n == 0 { return "timed out after \(timeout) s" }
        if n < 0 { return String(cString: strerror(errno)) }
        var err: Int32 = 0
        var errLen = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &errLen)
        return err == 0 ? nil : String(cString: strerror(err))
    }

    deinit {
        shutdown()
        _ = Glibc.close(fd)
    }

    /// Wakes the reader and fails further I/O; the descriptor itself is closed in deinit so that no
    /// other thread can be handed the same number while the reader still uses it.
    func shutdown() {
        closeLock.lock()
        defer { closeLock.unlock() }
        if closed { return }
        closed = true
        _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
    }

    /// Bounds each blocking receive (0 = wait forever). Used during HEL/ACK, before the reader thread
    /// takes over, so that a server that never answers cannot block `connect` indefinitely.
    func setReceiveTimeout(_ seconds: Double) {
        var tv = timeval()
        tv.tv_sec = Int(seconds)
        tv.tv_usec = .init((seconds - Double(Int(seconds))) * 1_000_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    func send(_ bytes: [UInt8]) throws {
        var sent = 0
        try bytes.withUnsafeBytes { buf in
            while sent < buf.count {
                let n = Glibc.send(fd, buf.baseAddress! + sent, buf.count - sent, Int32(MSG_NOSIGNAL))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw OPCUAError.transport("send failed: \(String(cString: strerror(errno)))")
                }
                sent += n
            }
        }
    }

    /// Reads exactly `count` bytes into `out` (appending). Blocks; throws on EOF or error.
    func read(_ count: Int, into out: inout [UInt8]) throws {
        var needed = count
        while needed > 0 {
            if readStart == readEnd {
                let n = readBuffer.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress!, $0.count, 0) }
                if n == 0 { throw OPCUAError.connectionClosed("server closed the connection") }
                if n < 0 {
                    if errno == EINTR { continue }
                    if errno == EAGAIN || errno == EWOULDBLOCK { throw OPCUAError.timeout("no data from the server") }
                    throw OPCUAError.connectionClosed("receive failed: \(String(cString: strerror(errno)))")
                }
                readStart = 0
                readEnd = n
            }
            let take = min(needed, readEnd - readStart)
            out.append(contentsOf: readBuffer[readStart..<readStart + take])
            readStart += take
            needed -= take
        }
    }
}
