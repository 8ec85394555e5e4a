import Foundation
import Tags
import TestSupport
import Testing

@testable import Modbus

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
}
