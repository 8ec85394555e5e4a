import Foundation

/// Errors talking over the control socket, worded for the technician at the terminal.
public enum ControlSocketError: Error, CustomStringConvertible {
    case notRunning(path: String)
    case permissionDenied(path: String)
    case staleSocket(path: String)
    case alreadyRunning(path: String)
    case io(String)
    /// The agent answered and refused the request (unknown tag, bad value, unreadable file…): not a connection
    /// problem, so the CLI exits with its refusal code, not "unreachable".
    case refused(String)
    /// The agent answered that what the request named (a tag, a loop, a file) does not exist.
    case notFound(String)

    public var description: String {
        switch self {
        case .notRunning(let path):
            return "the agent is not running: there is no control socket at \(path).\n"
                + "Start it with 'sudo systemctl start edgepilot' (or 'edgepilot run --config FILE'), "
                + "or point at its socket with --socket PATH."
        case .permissionDenied(let path):
            return "permission denied on the control socket \(path).\n"
                + "Run the command with sudo, or add your user to the edgepilot group: "
                + "'sudo usermod -aG edgepilot $USER', then log in again."
        case .staleSocket(let path):
            return "the control socket \(path) exists but no agent answers on it (the agent stopped uncleanly).\n"
                + "Restart it with 'sudo systemctl restart edgepilot'."
        case .alreadyRunning(let path):
            return "another agent is already listening on \(path); stop it first or configure another control_socket"
        case .io(let message), .refused(let message), .notFound(let message):
            return message
        }
    }
}

/// Socket plumbing shared by the server and the client: one JSON document per line, in each direction.
enum UnixSocket {
    static let maxLineBytes = 1 << 20

    static func address(_ path: String) throws -> (sockaddr_un, socklen_t) {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else {
            throw ControlSocketError.io(
                "control socket path is too long (\(bytes.count) bytes, at most \(capacity - 1))")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        return (address, socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1))
    }

    static func connect(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            throw ControlSocketError.io("cannot create a socket: \(String(cString: strerror(errno)))")
        }
        var (address, length) = try self.address(path)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, length) }
        }
        if result != 0 {
            let code = errno
            close(fd)
            switch code {
            case ENOENT, ENOTDIR: throw ControlSocketError.notRunning(path: path)
            case EACCES, EPERM: throw ControlSocketError.permissionDenied(path: path)
            case ECONNREFUSED: throw ControlSocketError.staleSocket(path: path)
            default: throw ControlSocketError.io("cannot connect to \(path): \(String(cString: strerror(code)))")
            }
        }
        return fd
    }

    static func writeAll(_ fd: Int32, _ data: [UInt8]) -> Bool {
        var offset = 0
        while offset < data.count {
            let n = data.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    /// Reads up to the next newline; nil on EOF, error or an oversized line.
    static func readLine(_ fd: Int32, buffer: inout [UInt8]) -> [UInt8]? {
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                return line
            }
            if buffer.count > maxLineBytes { return nil }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return nil }
            buffer.append(contentsOf: chunk[..<n])
        }
    }
}

/// Serves the control socket: accepts CLI connections and answers each request line with one response line.
///
/// A thread accepts; each connection gets a short-lived thread of its own, at most `maxConnections` at once, so a
/// slow or stuck client can neither block the others nor grow without bound. Requests are handled by the closure
/// given at start, which must not block on the poll or control path (it only reads shared state).
public final class ControlServer: @unchecked Sendable {
    public let path: String
    private let handler: @Sendable (ControlRequest) -> ControlResponse
    private var listener: Int32 = -1
    private let lock = NSLock()
    private var active = 0
    private var stopped = false
    private var acceptThread: Thread?
    private let maxConnections = 16

    public init(path: String, handler: @escaping @Sendable (ControlRequest) -> ControlResponse) {
        self.path = path
        self.handler = handler
    }

    /// Binds the socket (mode 0660, directory created if missing) and starts accepting.
    public func start() throws {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        if FileManager.default.fileExists(atPath: path) {
            // A socket file with a live listener is another agent; a dead one is left from a crash.
            if let fd = try? UnixSocket.connect(path) {
                close(fd)
                throw ControlSocketError.alreadyRunning(path: path)
            }
            unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ControlSocketError.io("cannot create the control socket: \(errnoText())") }
        var (address, length) = try UnixSocket.address(path)
        // Create the socket with no access for others, then open it to the group: no window where it is wider.
        let oldMask = umask(0o117)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        umask(oldMask)
        guard bound == 0 else {
            let message = errnoText()
            close(fd)
            throw ControlSocketError.io("cannot bind the control socket \(path): \(message)")
        }
        chmod(path, 0o660)
        guard listen(fd, 16) == 0 else {
            close(fd)
            throw ControlSocketError.io("cannot listen on \(path): \(errnoText())")
        }
        listener = fd
        let thread = Thread { [self] in acceptLoop(fd) }
        thread.name = "control-socket"
        acceptThread = thread
        thread.start()
    }

    /// Stops accepting and removes the socket file; connections in progress finish on their own.
    public func stop() {
        lock.lock()
        stopped = true
        let fd = listener
        listener = -1
        lock.unlock()
        if fd >= 0 {
            shutdown(fd, Int32(SHUT_RDWR))
            close(fd)
            unlink(path)
        }
    }

    private func acceptLoop(_ fd: Int32) {
        while true {
            let client = accept(fd, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                lock.lock()
                let done = stopped
                lock.unlock()
                if done { return }
                usleep(10_000)
                continue
            }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            var timeout = timeval(tv_sec: 30, tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            lock.lock()
            let admitted = active < maxConnections
            if admitted { active += 1 }
            lock.unlock()
            guard admitted else {
                respond(client, .failure("the agent is busy serving other CLI connections; try again"))
                close(client)
                continue
            }
            let thread = Thread { [self] in
                serve(client)
                close(client)
                lock.lock()
                active -= 1
                lock.unlock()
            }
            thread.name = "control-client"
            thread.start()
        }
    }

    private func serve(_ fd: Int32) {
        var buffer: [UInt8] = []
        let decoder = JSONDecoder()
        while let line = UnixSocket.readLine(fd, buffer: &buffer) {
            let response: ControlResponse
            do {
                response = handler(try decoder.decode(ControlRequest.self, from: Data(line)))
            } catch {
                response = .failure("malformed request: \(error)")
            }
            guard respond(fd, response) else { return }
        }
    }

    @discardableResult
    private func respond(_ fd: Int32, _ response: ControlResponse) -> Bool {
        guard var data = try? JSONEncoder().encode(response) else { return false }
        data.append(UInt8(ascii: "\n"))
        return UnixSocket.writeAll(fd, Array(data))
    }
}

/// The CLI's side of the control socket.
public final class ControlClient {
    private let fd: Int32
    private var buffer: [UInt8] = []

    public init(path: String) throws {
        fd = try UnixSocket.connect(path)
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// Sends one request and waits for its response; a response with `ok == false` is thrown as its message.
    public func send(_ request: ControlRequest) throws -> ControlResponse {
        var data = try JSONEncoder().encode(request)
        data.append(UInt8(ascii: "\n"))
        guard UnixSocket.writeAll(fd, Array(data)) else {
            throw ControlSocketError.io("the agent closed the control connection")
        }
        guard let line = UnixSocket.readLine(fd, buffer: &buffer) else {
            throw ControlSocketError.io("the agent did not answer (it may be stopping)")
        }
        let response = try JSONDecoder().decode(ControlResponse.self, from: Data(line))
        if !response.ok {
            let message = response.error ?? "the agent refused the request"
            throw response.notFound == true ? ControlSocketError.notFound(message) : .refused(message)
        }
        return response
    }
}

func errnoText() -> String { String(cString: strerror(errno)) }
