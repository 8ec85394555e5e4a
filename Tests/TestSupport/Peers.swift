import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The repository root, found from this file even when the tests are built through a symlinked dev package.
public let repositoryRoot: URL = {
    if let root = ProcessInfo.processInfo.environment["EDGEPILOT_ROOT"] { return URL(fileURLWithPath: root) }
    return URL(fileURLWithPath: #filePath).resolvingSymlinksInPath().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
}()

/// The directory holding the built products (the `edgepilot` executable, helper executables), beside the test
/// bundle that is running.
public let productsDirectory: URL = {
    if let dir = ProcessInfo.processInfo.environment["EDGEPILOT_PRODUCTS"] { return URL(fileURLWithPath: dir) }
    var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    while url.path != "/" {
        url = url.deletingLastPathComponent()
        if url.pathExtension != "xctest"
            && FileManager.default.fileExists(atPath: url.appendingPathComponent("edgepilot").path)
        {
            return url
        }
    }
    return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
}()

/// The Python interpreter of the project's venv (simulators and independent peers run on it).
public var pythonPath: String {
    ProcessInfo.processInfo.environment["EDGEPILOT_PYTHON"]
        ?? repositoryRoot.appendingPathComponent(".venv/bin/python").path
}

/// A failure starting or talking to a test peer.
public struct PeerError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A Python peer started for one test: prints one JSON line when ready, stopped (SIGTERM, then SIGKILL) at the end.
public final class PythonPeer: @unchecked Sendable {
    public let process = Process()
    public let ready: [String: Any]
    private let output = Pipe()

    public init(script: String, arguments: [String]) throws {
        let python = pythonPath
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw PeerError("\(python) missing: run scripts/bootstrap.sh to create the venv")
        }
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [repositoryRoot.appendingPathComponent(script).path] + arguments
        process.standardOutput = output
        process.standardError = FileHandle.standardError
        try process.run()
        // Read the first line byte by byte: the peer keeps the pipe open, so readToEnd would block. Each byte is
        // awaited with poll(2), so a peer that never answers fails the test at the deadline instead of hanging it.
        var line = Data()
        let fd = output.fileHandleForReading.fileDescriptor
        let deadline = Date().addingTimeInterval(90)
        var complete = false
        while !complete {
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { break }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, Int32(min(left, 1) * 1000)) > 0 else { continue }
            var byte: UInt8 = 0
            guard Glibc.read(fd, &byte, 1) == 1 else { break }
            if byte == 0x0A { complete = true } else { line.append(byte) }
        }
        guard complete, let json = try? JSONSerialization.jsonObject(with: line) as? [String: Any],
            json["event"] as? String == "listening"
        else {
            // A peer that failed to start must not outlive the test: it holds the test runner's output pipe, and
            // an asyncua server still starting up ignores SIGTERM.
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            try? output.fileHandleForReading.close()
            throw PeerError("\(script) did not start: \(String(decoding: line, as: UTF8.self))")
        }
        ready = json
    }

    /// Freezes the peer (SIGSTOP): the kernel keeps its sockets and completes new connections, it answers nothing.
    public func pause() {
        if process.isRunning { kill(process.processIdentifier, SIGSTOP) }
    }

    /// Undoes `pause()` (SIGCONT).
    public func resume() {
        if process.isRunning { kill(process.processIdentifier, SIGCONT) }
    }

    public func stop() {
        guard process.isRunning else {
            try? output.fileHandleForReading.close()
            return
        }
        process.terminate()
        // A paused peer acts on SIGTERM only once continued.
        kill(process.processIdentifier, SIGCONT)
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        try? output.fileHandleForReading.close()
    }

    deinit { stop() }
}

/// A PLC running its own PI loop over Modbus TCP (Tests/TestSupport/Peers/plc_pid_loop.py), read-only: PV, SP, OP
/// and auto as float32 input registers 0, 2, 4, 6. `sticky` puts a stick-slip valve in the loop, which then cycles.
public final class PLCLoop: @unchecked Sendable {
    public let peer: PythonPeer
    public let port: Int

    public init(sticky: Bool) throws {
        peer = try PythonPeer(
            script: "Tests/TestSupport/Peers/plc_pid_loop.py", arguments: ["--valve", sticky ? "sticky" : "linear"])
        port = peer.ready["port"] as! Int
    }

    public func stop() { peer.stop() }
}

/// Simulators/quadtank_sim.py with its JSON-lines fault control channel.
public final class QuadTank: @unchecked Sendable {
    public let peer: PythonPeer
    public let port: Int
    public let controlPort: Int

    public init(extraArguments: [String] = []) throws {
        peer = try PythonPeer(
            script: "Simulators/quadtank_sim.py", arguments: ["--port", "0", "--control-port", "0"] + extraArguments)
        port = peer.ready["port"] as! Int
        controlPort = peer.ready["control_port"] as! Int
    }

    /// Sends one command and returns the reply object.
    @discardableResult
    public func control(_ command: [String: Any]) throws -> [String: Any] {
        let fd = try connectTCP(port: controlPort)
        defer { close(fd) }
        var data = try JSONSerialization.data(withJSONObject: command)
        data.append(0x0A)
        _ = data.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        var reply = Data()
        var byte: UInt8 = 0
        while recv(fd, &byte, 1, 0) == 1 && byte != 0x0A { reply.append(byte) }
        guard let json = try JSONSerialization.jsonObject(with: reply) as? [String: Any] else {
            throw PeerError("bad control reply \(String(decoding: reply, as: UTF8.self))")
        }
        return json
    }

    public func stop() { peer.stop() }
}

/// Connects a TCP socket to 127.0.0.1:`port`.
public func connectTCP(port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard rc == 0 else {
        close(fd)
        throw PeerError("connect to 127.0.0.1:\(port) failed: errno \(errno)")
    }
    return fd
}

/// A listening TCP socket on a free port of 127.0.0.1 (SO_REUSEADDR, so a test's restart can bind again at once):
/// the one place test peers open a listener.
public func listenOnLoopback(backlog: Int32, what: String) throws -> (fd: Int32, port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw PeerError("\(what) cannot open a socket: errno \(errno)") }
    var one: Int32 = 1
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, length) == 0 && listen(fd, backlog) == 0 && getsockname(fd, $0, &length) == 0
        }
    }
    guard ok else {
        let error = errno
        close(fd)
        throw PeerError("\(what) cannot listen: errno \(error)")
    }
    return (fd, Int(UInt16(bigEndian: address.sin_port)))
}

/// A TCP listener that accepts connections (through the kernel backlog) but never answers: a hung device.
public final class SilentListener {
    public let fd: Int32
    public let port: Int

    public init() throws {
        (fd, port) = try listenOnLoopback(backlog: 8, what: "silent listener")
    }

    deinit { close(fd) }
}

/// A port on 127.0.0.1 with nothing listening (bound briefly to find it, then released).
public func deadPort() throws -> Int {
    let listener = try SilentListener()
    return listener.port
}

/// A fresh directory under the system temporary directory, removed by `remove()`.
public struct TemporaryDirectory {
    public let url: URL
    public var path: String { url.path }

    public init(_ prefix: String = "edgepilot-test") throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    public func remove() { try? FileManager.default.removeItem(at: url) }
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes; returns whether it held.
public func eventually(timeout: TimeInterval = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        usleep(20_000)
    }
    return try condition()
}
