import Foundation
import TestSupport

@testable import OPCUA

#if canImport(Glibc)
    import Glibc
#endif

/// A minimal OPC UA server on 127.0.0.1 (security None) that answers the services a client needs to read and
/// subscribe, and sends Publish responses only when the test asks, each with exactly the data changes the test
/// chooses. asyncua cannot be told to put exactly N changes into one Publish response; this server can, which
/// makes allocation counts per message comparable between message sizes.
///
/// Reads return `readValue(node, readCount)` for each node; Publish requests are held until `publish` is called.
final class ScriptedOPCUAServer: @unchecked Sendable {
    let port: UInt16
    var endpoint: String { "opc.tcp://127.0.0.1:\(port)/" }

    /// The value a Read returns for a node; the second argument counts Read requests so far.
    let readValue: @Sendable (NodeId, Int) -> DataValue

    private let socketListener: SilentListener
    private let listener: Int32
    private let lock = NSCondition()
    private var connection: Int32 = -1
    private var sequence: UInt32 = 1
    private var heldPublishes: [UInt32] = []
    private var handles: [UInt32] = []
    private var publishSequence: UInt32 = 0
    private var reads = 0
    private var requestCounts: [UInt32: Int] = [:]
    private var stopped = false
    private var threads: [Thread] = []

    init(readValue: @escaping @Sendable (NodeId, Int) -> DataValue) throws {
        self.readValue = readValue
        socketListener = try SilentListener()
        listener = socketListener.fd
        port = UInt16(socketListener.port)
        let t = Thread { [self] in acceptLoop() }
        t.name = "scripted-opcua-accept"
        threads.append(t)
        t.start()
    }

    func stop() {
        lock.lock()
        stopped = true
        let c = connection
        lock.unlock()
        Glibc.shutdown(listener, Int32(SHUT_RDWR))
        if c >= 0 { Glibc.shutdown(c, Int32(SHUT_RDWR)) }
        for t in threads { while !t.isFinished { usleep(1000) } }
        // `socketListener` closes the listening socket when the server goes away.
    }

    deinit { stop() }

    /// Client handles of the monitored items created so far, in creation order.
    var monitoredHandles: [UInt32] {
        lock.lock()
        defer { lock.unlock() }
        return handles
    }

    /// Publish requests the server holds, waiting for `publish`.
    var heldPublishCount: Int {
        lock.lock()
        defer { lock.unlock() }
        return heldPublishes.count
    }

    /// Requests received so far of the service with this request encoding id (631 Read, 826 Publish, …).
    func requests(_ typeId: UInt32) -> Int {
        lock.lock()
        defer { lock.unlock() }
        return requestCounts[typeId] ?? 0
    }

    /// Answers one held Publish request with one DataChangeNotification carrying `changes`; waits up to
    /// `timeout` for the client to have a Publish request outstanding. Returns false if none came.
    @discardableResult
    func publish(_ changes: [(handle: UInt32, value: DataValue)], timeout: Double = 5) -> Bool {
        lock.lock()
        let deadline = Date(timeIntervalSinceNow: timeout)
        while heldPublishes.isEmpty && !stopped {
            if !lock.wait(until: deadline) { break }
        }
        guard !heldPublishes.isEmpty, connection >= 0 else {
            lock.unlock()
            return false
        }
        let requestId = heldPublishes.removeFirst()
        publishSequence += 1
        let seq = publishSequence
        let fd = connection
        lock.unlock()
        var notification = BinaryWriter()
        notification.write(Int32(changes.count))
        for c in changes {
            notification.write(c.handle)
            notification.write(c.value)
        }
        notification.write(Int32(-1))  // diagnostic infos
        var w = BinaryWriter(capacity: notification.count + 128)
        w.write(NodeId(829))
        Self.responseHeader(&w)
        w.write(UInt32(1))  // subscription id
        w.write(Int32(1))
        w.write(seq)  // available sequence numbers
        w.write(false)  // more notifications
        w.write(seq)
        w.write(DateTime.now())
        w.write(Int32(1))
        w.write(NodeId(811))
        w.write(UInt8(1))
        w.write(byteString: notification.bytes)
        w.write(Int32(0))  // results
        w.write(Int32(-1))  // diagnostic infos
        send(fd, requestId: requestId, body: w.bytes)
        return true
    }

    // MARK: - Connection

    private func acceptLoop() {
        while true {
            let c = accept(listener, nil, nil)
            if c < 0 { return }
            var one: Int32 = 1
            setsockopt(c, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            lock.lock()
            if stopped {
                lock.unlock()
                close(c)
                return
            }
            connection = c
            sequence = 1
            heldPublishes = []
            lock.unlock()
            serve(c)
            lock.lock()
            connection = -1
            heldPublishes = []
            lock.broadcast()
            lock.unlock()
            close(c)
        }
    }

    private static func readMessage(_ fd: Int32) -> [UInt8]? {
        var header = [UInt8](repeating: 0, count: 8)
        guard recv(fd, &header, 8, Int32(MSG_WAITALL)) == 8 else { return nil }
        let size = Int(header[4]) | Int(header[5]) << 8 | Int(header[6]) << 16 | Int(header[7]) << 24
        guard size >= 8, size < 1 << 24 else { return nil }
        var rest = [UInt8](repeating: 0, count: size - 8)
        if size > 8 { guard recv(fd, &rest, size - 8, Int32(MSG_WAITALL)) == size - 8 else { return nil } }
        return header + rest
    }

    private func serve(_ fd: Int32) {
        var partial: [UInt8] = []
        while let msg = Self.readMessage(fd) {
            let type = String(decoding: msg[0..<3], as: UTF8.self)
            do {
                switch type {
                case "HEL":
                    var w = BinaryWriter()
                    for v: UInt32 in [0, 65535, 65535, 0, 0] { w.write(v) }
                    Self.sendRaw(fd, Self.frame("ACKF", w.bytes))
                case "OPN": try open(fd, msg)
                case "MSG":
                    // Chunks of one request arrive in a row: gather their bodies (after the 24-byte headers).
                    partial += msg[24...]
                    guard msg[3] == UInt8(ascii: "F") else { continue }
                    var r = BinaryReader(msg, from: 20, to: 24)
                    let requestId = try r.readUInt32()
                    let body = partial
                    partial = []
                    try message(fd, requestId: requestId, body)
                default: return  // CLO or anything else ends the connection
                }
            } catch {
                return
            }
        }
    }

    private func open(_ fd: Int32, _ msg: [UInt8]) throws {
        var r = BinaryReader(msg, from: 12, to: msg.count)
        _ = try r.readString()
        _ = try r.readByteString()
        _ = try r.readByteString()
        _ = try r.readUInt32()
        let requestId = try r.readUInt32()
        var w = BinaryWriter()
        w.write(UInt32(7))  // channel id
        w.write(string: SecurityPolicy.none.uri)
        w.write(byteString: nil)
        w.write(byteString: nil)
        lock.lock()
        let seq = sequence
        sequence += 1
        lock.unlock()
        w.write(seq)
        w.write(requestId)
        w.write(NodeId(449))
        Self.responseHeader(&w)
        w.write(UInt32(0))
        w.write(UInt32(7))  // token: channel, id, created, lifetime
        w.write(UInt32(1))
        w.write(DateTime.now())
        w.write(UInt32(600_000))
        w.write(byteString: [])
        Self.sendRaw(fd, Self.frame("OPNF", w.bytes))
    }

    private func message(_ fd: Int32, requestId: UInt32, _ body: [UInt8]) throws {
        var r = BinaryReader(body)
        let typeId = try r.read(NodeId.self)
        _ = try r.read(NodeId.self)  // authentication token
        _ = try r.readInt64()
        _ = try r.readUInt32()
        _ = try r.readUInt32()
        _ = try r.readString()
        _ = try r.readUInt32()
        _ = try r.read(ExtensionObject.self)
        guard case .numeric(let id) = typeId.identifier else { return }
        lock.lock()
        requestCounts[id, default: 0] += 1
        lock.unlock()
        var w = BinaryWriter(capacity: 1024)
        switch id {
        case 428:  // GetEndpoints
            w.write(NodeId(431))
            Self.responseHeader(&w)
            w.write(Int32(1))
            w.write(string: endpoint)
            w.write(
                ApplicationDescription(applicationUri: "urn:scripted", productUri: "urn:scripted", name: "s", type: 0))
            w.write(byteString: nil)
            w.write(MessageSecurityMode.none.rawValue)
            w.write(string: SecurityPolicy.none.uri)
            w.write(Int32(1))
            w.write(string: "anonymous")
            w.write(UInt32(0))
            w.write(string: nil)
            w.write(string: nil)
            w.write(string: nil)
            w.write(string: nil)
            w.write(UInt8(0))
        case 461:  // CreateSession
            w.write(NodeId(464))
            Self.responseHeader(&w)
            w.write(NodeId(1, namespace: 1))
            w.write(NodeId(2, namespace: 1))
            w.write(60_000.0)
            w.write(byteString: [UInt8](repeating: 7, count: 32))
            w.write(byteString: nil)
            w.write(Int32(0))
            w.write(Int32(0))
            w.write(string: nil)
            w.write(byteString: nil)
            w.write(UInt32(0))
        case 467:  // ActivateSession
            w.write(NodeId(470))
            Self.responseHeader(&w)
            w.write(byteString: [UInt8](repeating: 8, count: 32))
            w.write(Int32(0))
            w.write(Int32(0))
        case 631:  // Read
            _ = try r.readDouble()
            _ = try r.readUInt32()
            let count = Int(try r.readInt32())
            lock.lock()
            reads += 1
            let n = reads
            lock.unlock()
            w = BinaryWriter(capacity: 64 + count * 40)
            w.write(NodeId(634))
            Self.responseHeader(&w)
            w.write(Int32(count))
            for _ in 0..<max(0, count) {
                let node = try r.read(NodeId.self)
                _ = try r.readUInt32()
                _ = try r.readString()
                _ = try r.read(QualifiedName.self)
                w.write(readValue(node, n))
            }
            w.write(Int32(-1))
        case 787:  // CreateSubscription
            let interval = try r.readDouble()
            _ = try r.readUInt32()
            let keepAlive = try r.readUInt32()
            w.write(NodeId(790))
            Self.responseHeader(&w)
            w.write(UInt32(1))
            w.write(interval)
            w.write(keepAlive * 4)
            w.write(keepAlive)
        case 751:  // CreateMonitoredItems
            _ = try r.readUInt32()
            _ = try r.readUInt32()
            let count = Int(try r.readInt32())
            var created: [UInt32] = []
            for _ in 0..<max(0, count) {
                _ = try r.read(NodeId.self)
                _ = try r.readUInt32()
                _ = try r.readString()
                _ = try r.read(QualifiedName.self)
                _ = try r.readUInt32()  // monitoring mode
                created.append(try r.readUInt32())
                _ = try r.readDouble()
                _ = try r.read(ExtensionObject.self)
                _ = try r.readUInt32()
                _ = try r.readBool()
            }
            lock.lock()
            handles += created
            lock.unlock()
            w = BinaryWriter(capacity: 64 + count * 32)
            w.write(NodeId(754))
            Self.responseHeader(&w)
            w.write(Int32(count))
            for (k, _) in created.enumerated() {
                w.write(StatusCode.good)
                w.write(UInt32(k + 1))
                w.write(50.0)
                w.write(UInt32(1))
                w.write(ExtensionObject.null)
            }
            w.write(Int32(-1))
        case 826:  // Publish: held until the test publishes
            lock.lock()
            heldPublishes.append(requestId)
            lock.broadcast()
            lock.unlock()
            return
        case 847:  // DeleteSubscriptions
            let count = Int(try r.readInt32())
            w.write(NodeId(850))
            Self.responseHeader(&w)
            w.write(Int32(max(0, count)))
            for _ in 0..<max(0, count) { w.write(StatusCode.good) }
            w.write(Int32(-1))
        case 473:  // CloseSession
            w.write(NodeId(476))
            Self.responseHeader(&w)
        default:
            w.write(NodeId(397))
            Self.responseHeader(&w, status: .badServiceUnsupported)
        }
        send(fd, requestId: requestId, body: w.bytes)
    }

    /// Sends a response in chunks of at most 65,535 bytes, the client's receive buffer size.
    private func send(_ fd: Int32, requestId: UInt32, body: [UInt8]) {
        lock.lock()
        defer { lock.unlock() }
        let maxBody = 65_535 - 24
        var start = 0
        repeat {
            let end = min(body.count, start + maxBody)
            var w = BinaryWriter(capacity: end - start + 24)
            w.write(raw: Array((end == body.count ? "MSGF" : "MSGC").utf8))
            w.write(UInt32(0))
            w.write(UInt32(7))  // channel
            w.write(UInt32(1))  // token
            w.write(sequence)
            sequence += 1
            w.write(requestId)
            w.write(raw: body[start..<end])
            w.patch(UInt32(w.count), at: 4)
            Self.sendRaw(fd, w.bytes)
            start = end
        } while start < body.count
    }

    private static func sendRaw(_ fd: Int32, _ bytes: [UInt8]) {
        var sent = 0
        bytes.withUnsafeBytes { buf in
            while sent < buf.count {
                let n = Glibc.send(fd, buf.baseAddress! + sent, buf.count - sent, Int32(MSG_NOSIGNAL))
                if n <= 0 { return }
                sent += n
            }
        }
    }

    private static func frame(_ type: String, _ body: [UInt8]) -> [UInt8] {
        var w = BinaryWriter()
        w.write(raw: Array(type.utf8))
        w.write(UInt32(8 + body.count))
        w.write(raw: body)
        return w.bytes
    }

    private static func responseHeader(_ w: inout BinaryWriter, status: StatusCode = .good) {
        w.write(DateTime.now())
        w.write(UInt32(0))
        w.write(status)
        w.write(UInt8(0))
        w.write(Int32(-1))
        w.write(ExtensionObject.null)
    }
}

struct ScriptedServerError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
