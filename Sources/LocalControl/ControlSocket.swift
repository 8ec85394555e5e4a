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
    /// The agent refused the request because the user's role does not allow it (decision 0024).
    case forbidden(String)

    public var description: String {
        switch self {
        case .notRunning(let path):
            return "the agent is not running: there is no control socket at \(path).\n"
                + "Start it with 'sudo systemctl start edgepilot' (or 'edgepilot run --config FILE'), "
                + "or point at its socket with --socket PATH."
        case .permissionDenied(let path):
            return "permission denied on the control socket \(path).\n"
                + "Run the command with sudo, or add your user to the edgepilot group (operators: "
                + "'sudo usermod -aG edgepilot $USER') or to the edgepilot-ro group (status, tags, history only), "
                + "then log in again."
        case .staleSocket(let path):
            return "the control socket \(path) exists but no agent answers on it (the agent stopped uncleanly).\n"
                + "Restart it with 'sudo systemctl restart edgepilot'."
        case .alreadyRunning(let path):
            return "another agent is already listening on \(path); stop it first or configure another control_socket"
        case .io(let message), .refused(let message), .notFound(let message), .forbidden(let message):
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

    /// Reads up to the next newline; nil on EOF, error or an oversized line, or when the whole line has not arrived
    /// `within` seconds (a client sending a byte at a time cannot hold the connection either).
    static func readLine(_ fd: Int32, buffer: inout [UInt8], within seconds: Double? = nil) -> [UInt8]? {
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let deadline = seconds.map { Date().addingTimeInterval($0) }
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                return line
            }
            if buffer.count > maxLineBytes { return nil }
            if let deadline {
                let left = Int32(max(0, deadline.timeIntervalSinceNow * 1000).rounded(.up))
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let ready = poll(&p, 1, left)
                if ready < 0 && errno == EINTR { continue }
                if ready <= 0 { return nil }
            }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return nil }
            buffer.append(contentsOf: chunk[..<n])
        }
    }
}

/// Serves the control socket: accepts CLI connections and answers each request line with one response line.
///
/// Two sockets (decision 0024): `path` (mode 0660, the agent's group: operators) and, when a read-only group is
/// configured, `readOnlyPath` beside it (mode 0666, capped at the read-only role). On both, the peer's identity and
/// role come from the kernel (`SO_PEERCRED`, `SO_PEERGROUPS`), never from the request; a peer with no role is
/// turned away at the connection, a request above the peer's role is refused and reported to `refused`.
///
/// At most `maxClients` connections are served at once, each on a short-lived thread; a client beyond them waits in
/// the listen backlog until a slot frees rather than being turned away. A slot cannot be held idle: each request
/// line must arrive within `requestTimeout` of the connection or of the previous answer. Requests are handled by
/// the closure given at start, which must not block on the poll or control path (it only reads shared state).
public final class ControlServer: @unchecked Sendable {
    public let path: String
    /// The read-only socket, nil when the access has no read-only group.
    public let readOnlyPath: String?
    public let access: ControlAccess
    private let handler: @Sendable (ControlRequest, ControlPeer) -> ControlResponse
    private let refused: @Sendable (ControlRequest, ControlPeer) -> Void
    private var listeners: [Int32] = []
    private let slots = NSCondition()
    private var active = 0
    private var stopped = false
    public static let maxClients = 16
    /// Seconds a client has to send a whole request line.
    public static let requestTimeout = 2.0

    public init(
        path: String, access: ControlAccess,
        handler: @escaping @Sendable (ControlRequest, ControlPeer) -> ControlResponse,
        refused: @escaping @Sendable (ControlRequest, ControlPeer) -> Void = { _, _ in }
    ) {
        self.path = path
        self.access = access
        readOnlyPath = access.readOnlyGroup == nil ? nil : Self.readOnlyPath(for: path)
        self.handler = handler
        self.refused = refused
    }

    /// `control.sock` → `control-ro.sock`: where the CLI looks when the operator socket denies it.
    public static func readOnlyPath(for path: String) -> String {
        path.hasSuffix(".sock") ? String(path.dropLast(5)) + "-ro.sock" : path + "-ro"
    }

    /// Binds the socket(s) (directory created if missing) and starts accepting.
    public func start() throws {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let operatorSocket = try listen(path, mode: 0o660)
        var bound = [(operatorSocket, ControlRole.operator)]
        if let readOnlyPath {
            do {
                // Open to every local user: the kernel cannot check a group the agent is not a member of, so the
                // agent checks each peer's groups before reading anything, and nothing on it goes beyond reading.
                bound.append((try listen(readOnlyPath, mode: 0o666), .readOnly))
            } catch {
                close(operatorSocket)
                unlink(path)
                throw error
            }
        }
        listeners = bound.map(\.0)
        let sockets = bound
        let thread = Thread { [self] in acceptLoop(sockets) }
        thread.name = "control-socket"
        thread.start()
    }

    private func listen(_ path: String, mode: mode_t) throws -> Int32 {
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
        // Create the socket with no access for others, then open it as far as `mode`: no window where it is wider.
        let oldMask = umask(0o177)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        umask(oldMask)
        guard bound == 0 else {
            let message = errnoText()
            close(fd)
            throw ControlSocketError.io("cannot bind the control socket \(path): \(message)")
        }
        chmod(path, mode)
        guard Glibc.listen(fd, 16) == 0 else {
            close(fd)
            throw ControlSocketError.io("cannot listen on \(path): \(errnoText())")
        }
        return fd
    }

    /// Stops accepting and removes the socket files; connections in progress finish on their own.
    public func stop() {
        slots.lock()
        stopped = true
        let fds = listeners
        listeners = []
        slots.broadcast()
        slots.unlock()
        for fd in fds {
            shutdown(fd, Int32(SHUT_RDWR))
            close(fd)
        }
        if !fds.isEmpty {
            unlink(path)
            if let readOnlyPath { unlink(readOnlyPath) }
        }
    }

    /// One thread accepts on both sockets, so the slots are shared exactly.
    private func acceptLoop(_ sockets: [(Int32, ControlRole)]) {
        var fds = sockets.map { pollfd(fd: $0.0, events: Int16(POLLIN), revents: 0) }
        var first = 0
        while true {
            // Take a slot before accepting: a client beyond the slots stays in the listen backlog, in order.
            slots.lock()
            while active >= Self.maxClients && !stopped { slots.wait() }
            let done = stopped
            slots.unlock()
            if done { return }
            let ready = poll(&fds, nfds_t(fds.count), 1000)
            if ready <= 0 { continue }
            // One connection per slot taken, from each socket in turn, so neither can crowd out the other.
            guard let i = (0..<fds.count).map({ (first + $0) % fds.count }).first(where: { fds[$0].revents != 0 })
            else { continue }
            first = (i + 1) % fds.count
            let client = accept(fds[i].fd, nil, nil)
            if client < 0 {
                if errno != EINTR && errno != EAGAIN && !slots.withLock({ stopped }) { usleep(10_000) }
                continue
            }
            admit(client, cap: sockets[i].1)
        }
    }

    private func admit(_ client: Int32, cap: ControlRole) {
        _ = fcntl(client, F_SETFD, FD_CLOEXEC)
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard let peer = peer(client, cap: cap) else {
            close(client)
            return
        }
        slots.withLock { active += 1 }
        let thread = Thread { [self] in
            serve(client, peer)
            close(client)
            release()
        }
        thread.name = "control-client"
        thread.start()
    }

    private func release() {
        slots.lock()
        active -= 1
        slots.broadcast()
        slots.unlock()
    }

    /// The connected peer with its role on this socket; nil (after telling it why) when it has none.
    private func peer(_ fd: Int32, cap: ControlRole) -> ControlPeer? {
        guard let c = ControlPeer.credentials(of: fd) else {
            respond(fd, .failure("the agent cannot tell who is connecting (no peer credentials)"))
            return nil
        }
        let name = ControlPeer.userName(c.uid)
        guard let role = access.role(uid: c.uid, groups: c.groups) else {
            let who = "uid=\(c.uid)" + (name.map { " (\($0))" } ?? "")
            respond(fd, .forbidden("\(who) may not use the agent's control socket. \(access.roles)"))
            return nil
        }
        return ControlPeer(uid: c.uid, gid: c.gid, pid: c.pid, groups: c.groups, userName: name, role: min(role, cap))
    }

    private func serve(_ fd: Int32, _ peer: ControlPeer) {
        var buffer: [UInt8] = []
        let decoder = JSONDecoder()
        while let line = UnixSocket.readLine(fd, buffer: &buffer, within: Self.requestTimeout) {
            let response: ControlResponse
            do {
                let request = try decoder.decode(ControlRequest.self, from: Data(line))
                if request.command.requiredRole > peer.role {
                    refused(request, peer)
                    response = .forbidden(
                        "refused: '\(request.command.displayName)' needs the \(request.command.requiredRole) role; "
                            + "\(peer.who) has the \(peer.role) role. \(access.roles)")
                } else {
                    response = handler(request, peer)
                }
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

extension ControlAccess {
    /// Who has which role, in words.
    var roles: String {
        var text = "operators are root, the agent's user and members of group '\(groupName(operatorGroup))'"
        if let readOnlyGroup { text += "; members of group '\(groupName(readOnlyGroup))' may read" }
        return text.prefix(1).uppercased() + text.dropFirst() + "."
    }

    private func groupName(_ gid: gid_t) -> String {
        var entry = Glibc.group()
        var result: UnsafeMutablePointer<Glibc.group>?
        var buffer = [CChar](repeating: 0, count: 16_384)
        guard getgrgid_r(gid, &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.gr_name
        else { return String(gid) }
        return String(cString: name)
    }
}

extension ControlRequest.Command {
    /// The command as the CLI spells it.
    var displayName: String {
        switch self {
        case .loopMode: return "loop mode"
        case .loopSetpoint: return "loop setpoint"
        case .loopManual: return "loop manual"
        case .loopTune: return "loop tune"
        case .mqttStatus: return "mqtt status"
        case .mqttRebirth: return "mqtt rebirth"
        case .configDiff: return "config diff"
        case .loopModelList: return "loop model list"
        case .loopModelShow: return "loop model show"
        case .loopModelActivate: return "loop model activate"
        case .loopModelRollback: return "loop model rollback"
        case .loopModelAdd: return "loop model add"
        case .loopModelShadow: return "loop model shadow"
        case .loopTestStart: return "loop test start"
        case .loopTestStop: return "loop test stop"
        case .loopTestList: return "loop test list"
        case .loopTestShow: return "loop test show"
        default: return rawValue
        }
    }
}

/// The CLI's side of the control socket.
public final class ControlClient {
    private let fd: Int32
    private var buffer: [UInt8] = []

    /// Connects to `path`; when its permissions deny this user, to the read-only socket beside it, if there is one.
    public init(path: String) throws {
        do {
            fd = try UnixSocket.connect(path)
        } catch ControlSocketError.permissionDenied(let denied) {
            let readOnly = ControlServer.readOnlyPath(for: path)
            guard FileManager.default.fileExists(atPath: readOnly), let fallback = try? UnixSocket.connect(readOnly)
            else { throw ControlSocketError.permissionDenied(path: denied) }
            fd = fallback
        }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// Sends one request and waits for its response; a response with `ok == false` is thrown as its message.
    public func send(_ request: ControlRequest) throws -> ControlResponse {
        var data = try JSONEncoder().encode(request)
        data.append(UInt8(ascii: "\n"))
        // A peer the agent turns away is told why before it is closed: read that even when the send failed.
        let sent = UnixSocket.writeAll(fd, Array(data))
        guard let line = UnixSocket.readLine(fd, buffer: &buffer) else {
            if !sent { throw ControlSocketError.io("the agent closed the control connection") }
            throw ControlSocketError.io("the agent did not answer (it may be stopping)")
        }
        let response = try JSONDecoder().decode(ControlResponse.self, from: Data(line))
        if !response.ok {
            let message = response.error ?? "the agent refused the request"
            if response.forbidden == true { throw ControlSocketError.forbidden(message) }
            throw response.notFound == true ? ControlSocketError.notFound(message) : .refused(message)
        }
        return response
    }
}

func errnoText() -> String { String(cString: strerror(errno)) }
