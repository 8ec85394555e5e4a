import Foundation
import Tags
import TestSupport
import Testing

@testable import Modbus

#if canImport(Glibc)
    import Glibc
#endif

/// The fault proxy itself, with libmodbus as the client and the quadruple-tank simulator as the peer: each fault
/// does to a real client what it says, and switching it back restores the link.
@Suite(.serialized) struct FaultProxyTests {
    func connection(_ proxy: FaultProxy, timeoutMilliseconds: Int = 300) throws -> ModbusConnection {
        let device = DeviceDefinition(
            name: "proxied", transport: .modbusTCP(host: "127.0.0.1", port: proxy.port), unitID: 1,
            timeoutMilliseconds: timeoutMilliseconds)
        return try ModbusConnection(device: device)
    }

    func readHeartbeat(_ c: ModbusConnection) -> Result<UInt16, ModbusError> {
        var registers = [UInt16](repeating: 0, count: 1)
        do {
            try registers.withUnsafeMutableBufferPointer { (b) throws(ModbusError) in
                try c.readRegisters(.holdingRegister, start: 20, count: 1, into: b.baseAddress!)
            }
            return .success(registers[0])
        } catch {
            return .failure(error)
        }
    }

    func isIOError(_ r: Result<UInt16, ModbusError>) -> Bool {
        if case .failure(.io) = r { return true }
        if case .failure(.disconnected) = r { return true }
        return false
    }

    @Test func forwardsAndDelaysReplies() throws {
        let sim = try QuadTank()
        defer { sim.stop() }
        let proxy = try FaultProxy(targetPort: sim.port)
        defer { proxy.stop() }
        let c = try connection(proxy, timeoutMilliseconds: 300)
        try c.connect()
        #expect((try? readHeartbeat(c).get()) == 0)
        // A reply later than the response timeout is a timeout; the same link with less latency answers.
        proxy.set(.latency(milliseconds: 600))
        #expect(readHeartbeat(c) == .failure(.timeout))
        proxy.set(.latency(milliseconds: 50))
        try c.resynchronize()
        #expect((try? readHeartbeat(c).get()) == 0)
        proxy.set(.none)
        #expect((try? readHeartbeat(c).get()) == 0)
        #expect(proxy.acceptedConnections == 2)
    }

    @Test func blackHoleAndFreezeSwallowRequestsWithoutClosing() throws {
        let sim = try QuadTank()
        defer { sim.stop() }
        let proxy = try FaultProxy(targetPort: sim.port)
        defer { proxy.stop() }
        let c = try connection(proxy)
        try c.connect()
        #expect((try? readHeartbeat(c).get()) == 0)
        for fault in [FaultProxy.Fault.blackHole, .freeze] {
            proxy.set(fault)
            // No FIN, no RST: every request times out and the connection stays open.
            #expect(readHeartbeat(c) == .failure(.timeout), "\(fault)")
            #expect(readHeartbeat(c) == .failure(.timeout), "\(fault)")
            #expect(c.isConnected)
            #expect(proxy.activeConnections == 1)
            proxy.set(.none)
            try c.resynchronize()
            #expect((try? readHeartbeat(c).get()) == 0, "after \(fault)")
        }
    }

    @Test func resetClosesOpenConnectionsAndResetsNewOnes() throws {
        let sim = try QuadTank()
        defer { sim.stop() }
        let proxy = try FaultProxy(targetPort: sim.port)
        defer { proxy.stop() }
        let c = try connection(proxy)
        try c.connect()
        #expect((try? readHeartbeat(c).get()) == 0)
        proxy.set(.reset)
        #expect(eventually { proxy.activeConnections == 0 })
        #expect(isIOError(readHeartbeat(c)))
        // Accept-then-reset: the TCP connect succeeds, the first request fails.
        let before = proxy.acceptedConnections
        let d = try connection(proxy)
        // The reset may already have arrived when libmodbus checks the connect.
        if (try? d.connect()) != nil { #expect(isIOError(readHeartbeat(d))) }
        #expect(eventually { proxy.acceptedConnections == before + 1 })
        proxy.set(.none)
        d.close()
        try d.connect()
        #expect((try? readHeartbeat(d).get()) == 0)
        // A one-off reset leaves the proxy serving.
        proxy.resetConnections()
        #expect(eventually { proxy.activeConnections == 0 })
        #expect(isIOError(readHeartbeat(d)))
        d.close()
        try d.connect()
        #expect((try? readHeartbeat(d).get()) == 0)
    }

    /// Reads what arrives on `fd` within `seconds`: the bytes, and whether the peer's end of file came.
    func receive(_ fd: Int32, upTo count: Int, within seconds: Double) -> (bytes: [UInt8], endOfFile: Bool) {
        var got: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        let deadline = Date().addingTimeInterval(seconds)
        while got.count < count && Date() < deadline {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 20) > 0 else { continue }
            let n = recv(fd, &buffer, min(buffer.count, count - got.count), 0)
            if n <= 0 { return (got, true) }
            got += buffer[0..<n]
        }
        return (got, false)
    }

    func send(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    @Test func halfCloseTowardTheClientSendsItAFinAndKeepsTheServerSideOpen() throws {
        let server = try EchoServer()
        defer { server.stop() }
        let proxy = try FaultProxy(targetPort: server.port)
        defer { proxy.stop() }
        let fd = try connectTCP(port: proxy.port)
        #expect(send(fd, Array("hello".utf8)))
        #expect(receive(fd, upTo: 5, within: 5).bytes == Array("hello".utf8))

        proxy.set(.halfClose(toward: .client))
        let after = receive(fd, upTo: 1, within: 5)
        #expect(after.endOfFile && after.bytes.isEmpty, "the client reads end of file: \(after)")
        // The other direction still works and the server has seen no end: a half-open link.
        #expect(send(fd, Array("more".utf8)))
        #expect(eventually(timeout: 5) { server.received == 9 }, "\(server.received)")
        #expect(server.endsOfFile == 0)
        #expect(proxy.activeConnections == 1)
        // New connections are half-closed at once; switched off, the next one is forwarded.
        let second = try connectTCP(port: proxy.port)
        #expect(receive(second, upTo: 1, within: 5).endOfFile)
        // The client closing its end is passed on to the server.
        close(second)
        #expect(eventually(timeout: 5) { server.endsOfFile == 1 })
        proxy.set(.none)
        let third = try connectTCP(port: proxy.port)
        defer { close(third) }
        #expect(send(third, Array("back".utf8)))
        #expect(receive(third, upTo: 4, within: 5).bytes == Array("back".utf8))
        close(fd)
        #expect(eventually(timeout: 5) { server.endsOfFile == 2 })
    }

    @Test func halfCloseTowardTheServerSendsItAFin() throws {
        let server = try EchoServer()
        defer { server.stop() }
        let proxy = try FaultProxy(targetPort: server.port)
        defer { proxy.stop() }
        let fd = try connectTCP(port: proxy.port)
        defer { close(fd) }
        #expect(send(fd, Array("hello".utf8)))
        #expect(receive(fd, upTo: 5, within: 5).bytes == Array("hello".utf8))
        proxy.set(.halfClose(toward: .server))
        #expect(eventually(timeout: 5) { server.endsOfFile == 1 }, "the server reads end of file")
        // The echo server closes on end of file, and the proxy passes that on to the client.
        #expect(receive(fd, upTo: 1, within: 5).endOfFile)
    }

    /// The throttle paces both directions and loses nothing: 6,000 bytes echoed through 3,000 bytes/s each way take
    /// at least about two seconds (a lower bound only: a slow machine can make it slower, never faster).
    @Test func throttlePacesBothDirectionsAndLosesNothing() throws {
        let server = try EchoServer()
        defer { server.stop() }
        let proxy = try FaultProxy(targetPort: server.port)
        defer { proxy.stop() }
        proxy.set(.throttle(bytesPerSecond: 3000))
        let fd = try connectTCP(port: proxy.port)
        defer { close(fd) }
        let payload = (0..<6000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 / 256) }
        let started = Date()
        #expect(send(fd, payload))
        let echoed = receive(fd, upTo: payload.count, within: 20)
        let elapsed = Date().timeIntervalSince(started)
        #expect(echoed.bytes == payload, "\(echoed.bytes.count) of \(payload.count) bytes came back intact")
        #expect(elapsed >= 1.6, "6,000 bytes at 3,000 bytes/s took only \(elapsed) s")
        // The proxy counts a chunk after its send returns, so the client can read the last chunk a moment before it
        // is counted.
        #expect(
            eventually(timeout: 5) { proxy.forwardedBytes.toServer == 6000 && proxy.forwardedBytes.toClient == 6000 },
            "forwarded \(proxy.forwardedBytes)")
        print("throttle 3000 B/s: 6000 bytes echoed in \(String(format: "%.2f", elapsed)) s")
    }
}
