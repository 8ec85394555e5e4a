import Foundation
import Tags
import TestSupport
import Testing

@testable import Modbus
@testable import ModbusDriver

/// Simulators/quadtank_sim.py serving Modbus RTU (pymodbus's serial server and RTU framer) on one end of a
/// virtual serial line; EdgePilot opens the other end through libmodbus' RTU backend.
final class RTUPlant {
    let line: VirtualSerialLine
    private(set) var peer: PythonPeer
    private(set) var controlPort: Int

    init() throws {
        line = try VirtualSerialLine()
        (peer, controlPort) = try Self.start(on: line.endB)
    }

    private static func start(on path: String) throws -> (PythonPeer, Int) {
        let peer = try PythonPeer(
            script: "Simulators/quadtank_sim.py",
            arguments: [
                "--serial", path, "--baud", "19200", "--parity", "E", "--stopbits", "1", "--control-port", "0",
            ])
        guard peer.ready["serial"] as? String == path, let control = peer.ready["control_port"] as? Int else {
            peer.stop()
            throw PeerError("unexpected listening line \(peer.ready)")
        }
        return (peer, control)
    }

    /// Stops the simulator; the line stays, so the poller's port stays open and just hears nothing.
    func stopPeer() { peer.stop() }

    /// Starts a fresh simulator on the same end of the line, as a device that was power-cycled.
    func restartPeer() throws {
        peer.stop()
        (peer, controlPort) = try Self.start(on: line.endB)
    }

    func stop() {
        peer.stop()
        line.stop()
    }

    func device(
        unitID: Int = 1, timeoutMilliseconds: Int = 300, retries: Int = 1, reconnectMin: Int = 100,
        reconnectMax: Int = 1000
    ) -> DeviceDefinition {
        DeviceDefinition(
            name: "tank",
            transport: .modbusRTU(serialDevice: line.endA, baud: 19200, parity: .even, dataBits: 8, stopBits: 1),
            // maxGap 0: the simulator's map has holes that answer exception 2 when read across.
            unitID: unitID, timeoutMilliseconds: timeoutMilliseconds, retries: retries, maxGap: 0,
            reconnectMinMilliseconds: reconnectMin, reconnectMaxMilliseconds: reconnectMax)
    }

    /// Sends one command on the simulator's JSON-lines control channel and returns the reply.
    @discardableResult
    func control(_ command: [String: Any]) throws -> [String: Any] {
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

    func stats() throws -> [String: Any] { try control(["cmd": "get"])["stats"] as? [String: Any] ?? [:] }
}

/// Modbus RTU against an independent implementation (pymodbus) over a real tty line discipline.
@Suite(.serialized) struct RTUTests {
    func table(_ tags: [TagDefinition]) -> TagTable {
        TagTable(definitions: tags, changes: ChangeFeed(consumers: 1, capacity: 100_000))
    }

    func value(_ table: TagTable, _ name: String) -> TagValue? {
        let i = table.index(of: name)!
        return table.value(of: i, table.read(i))
    }

    func quality(_ table: TagTable, _ name: String) -> Quality { table.read(table.index(of: name)!).quality }

    func allGood(_ table: TagTable) -> Bool { (0..<table.count).allSatisfy { table.read($0).quality.isGood } }

    func fast() -> [PollGroup] { [PollGroup(name: "fast", periodMilliseconds: 100)] }

    @Test func pollsEveryTypeOverRTU() throws {
        let plant = try RTUPlant()
        defer { plant.stop() }
        let t = table(quadTankTags())
        let poller = try ModbusPoller(device: plant.device(), pollGroups: fast(), table: t)
        poller.start()
        defer { poller.stop() }
        #expect(eventually { allGood(t) })
        // h3 is word-swapped (CDAB) and h1 plain (ABCD); each must agree with its int16 ×100 twin.
        for (f, i) in [("h1", "h1_i16"), ("h3", "h3_i16")] {
            let a = value(t, f)?.doubleValue ?? .nan
            let b = value(t, i)?.doubleValue ?? .nan
            #expect(a > 0.5 && a < 20, "\(f) = \(a)")
            #expect(abs(a - b) < 0.1, "\(f) = \(a), \(i) = \(b)")
        }
        #expect(value(t, "v1") == .double(3.0))
        #expect(value(t, "v1_i16") == .double(3.0))
        // The typed block's raw bytes include 0x00, 0x0D, 0x11 and 0xFF, which a tty not in raw mode would mangle.
        #expect(value(t, "int32") == .int(-123_456))
        #expect(value(t, "uint32") == .uint(3_000_000_000))
        #expect(value(t, "int64") == .int(-1_234_567_890_123))
        #expect(value(t, "float64") == .double(3.14159265358979))
        #expect(value(t, "f32_badc") == .double(12.5))
        #expect(value(t, "f32_dcba") == .double(-7.25))
        #expect(value(t, "name") == .string("EP-DEMO1"))
        #expect(value(t, "int16") == .int(-42))
        #expect(value(t, "uint16") == .uint(65000))
        #expect(value(t, "pump1") == .bool(true))
        #expect(value(t, "pump2") == .bool(true))
        let s = poller.stats
        #expect(s.state == .connected)
        #expect(s.connects == 1)
        #expect(s.errors == 0)
        #expect(s.lastRequestsPerCycle == 9)
        let peer = try plant.stats()
        #expect((peer["requests"] as? Int ?? 0) >= 9)
        #expect(peer["exceptions_sent"] as? Int == 0)
        #expect(peer["ignored_other_unit"] as? Int == 0)
    }

    @Test func writesRoundTripOverRTU() throws {
        let plant = try RTUPlant()
        defer { plant.stop() }
        let t = table(quadTankTags())
        let poller = try ModbusPoller(
            device: plant.device(), pollGroups: [PollGroup(name: "fast", periodMilliseconds: 1000)], table: t)
        poller.start()
        defer { poller.stop() }
        #expect(eventually { quality(t, "v1").isGood })

        let v1 = try poller.write(tag: t.index(of: "v1")!, .double(4.5))
        #expect(v1.functionCode == 16)
        #expect(v1.readBack == .double(4.5))
        let v2 = try poller.write(tag: t.index(of: "v2_i16")!, .double(6.25))
        #expect(v2.functionCode == 6)
        #expect(v2.readBack == .double(6.25))
        let pump = try poller.write(tag: t.index(of: "pump1")!, .bool(false))
        #expect(pump.functionCode == 5)
        #expect(pump.readBack == .bool(false))

        // The plant itself took the values, not just the register block.
        let state = try plant.control(["cmd": "get"])
        #expect(state["v"] as? [Double] == [4.5, 6.25])
        #expect(state["pumps"] as? [Bool] == [false, true])
        let byFunction = (state["stats"] as? [String: Any])?["by_function"] as? [String: Int] ?? [:]
        #expect(byFunction["16"] == 1 && byFunction["6"] == 1 && byFunction["5"] == 1)
        #expect(poller.stats.writes == 3)
        #expect(poller.stats.writeErrors == 0)
    }

    @Test func wrongUnitIDTimesOut() throws {
        let plant = try RTUPlant()
        defer { plant.stop() }
        let t = table(quadTankTags())
        // The simulator is unit 1; on a serial line a device ignores other addresses, so unit 7 hears only silence.
        let poller = try ModbusPoller(
            device: plant.device(unitID: 7, timeoutMilliseconds: 100, retries: 0), pollGroups: fast(), table: t)
        poller.start()
        defer { poller.stop() }
        #expect(eventually { (0..<t.count).allSatisfy { t.read($0).quality == Quality(.timeout) } })
        let s = poller.stats
        #expect(s.timeouts >= 2)
        // Silence on a serial line is most often a wrong unit id or line setting: the error says what to check.
        #expect(s.lastError?.contains("no answer from unit 7") == true, "\(s.lastError ?? "")")
        #expect(s.lastError?.contains("check the unit id, baud rate, parity") == true, "\(s.lastError ?? "")")
        // A silent device does not close the port: the poller stays on it and keeps asking. Nothing has ever
        // answered, so the device is not shown as connected.
        #expect(s.state == .connecting)
        #expect(s.connects == 0 && s.connectFailures == 0)
        let peer = try plant.stats()
        #expect((peer["ignored_other_unit"] as? Int ?? 0) >= 2)
        #expect(peer["responses"] as? Int == 0)
    }

    @Test func exceptionRepliesMarkOnlyTheirRequest() throws {
        let plant = try RTUPlant()
        defer { plant.stop() }
        let t = table(quadTankTags())
        let poller = try ModbusPoller(device: plant.device(), pollGroups: fast(), table: t)
        poller.start()
        defer { poller.stop() }
        #expect(eventually { allGood(t) })
        try plant.control(["cmd": "exception", "code": 4, "addresses": [42], "functions": [3]])
        #expect(eventually { quality(t, "f32_badc") == Quality(.exception, detail: 4) })
        #expect(quality(t, "int32") == Quality(.exception, detail: 4))
        #expect(quality(t, "h1").isGood)
        try plant.control(["cmd": "exception", "code": 0])
        #expect(eventually { allGood(t) })
        #expect(poller.stats.state == .connected)
    }

    @Test func peerStoppingGoesTimeoutThenRecovers() throws {
        let plant = try RTUPlant()
        defer { plant.stop() }
        let t = table(quadTankTags())
        let poller = try ModbusPoller(
            device: plant.device(timeoutMilliseconds: 150, retries: 0), pollGroups: fast(), table: t)
        poller.start()
        defer { poller.stop() }
        #expect(eventually { allGood(t) })
        var drained = [TagChange](repeating: TagChange(tag: 0, sample: .initial), count: 100_000)
        _ = drained.withUnsafeMutableBufferPointer { t.changes.drain(consumer: 0, into: $0) }

        plant.stopPeer()
        #expect(eventually { quality(t, "h1") == Quality(.timeout) && quality(t, "name") == Quality(.timeout) })
        // The port stays open; the device is not answering on it, which status says.
        #expect(eventually { poller.stats.state == .notAnswering })
        try plant.restartPeer()
        #expect(eventually { allGood(t) })
        #expect(poller.stats.state == .connected)
        #expect(value(t, "name") == .string("EP-DEMO1"))
        #expect(value(t, "int32") == .int(-123_456))
        #expect(value(t, "v1") == .double(3.0))

        let n = drained.withUnsafeMutableBufferPointer { t.changes.drain(consumer: 0, into: $0) }
        let h1 = Int32(t.index(of: "h1")!)
        let qualities = drained.prefix(n).filter { $0.tag == h1 }.map(\.sample.quality)
        #expect(qualities.contains(Quality(.timeout)))
        #expect(qualities.last?.isGood == true)
        // The same open port carried both sessions.
        #expect(poller.stats.connects == 1)
    }

    /// Replies 150 ms and 350 ms after the poller gave up: the second is what a loaded machine made of the first in
    /// a fresh-clone run (the wrong tag got a good value), and it lands beyond a quiet period of one timeout.
    @Test(arguments: [450, 650]) func lateRepliesDoNotLandInTheWrongTag(replyDelayMilliseconds: Int) throws {
        let plant = try RTUPlant()
        defer { plant.stop() }
        let t = table(quadTankTags())
        // No retries, so after a timeout the next request on the line is a different one. IR 100 and IR 102 are both
        // "function 4, one register": nothing in an RTU reply tells them apart.
        let poller = try ModbusPoller(
            device: plant.device(timeoutMilliseconds: 300, retries: 0), pollGroups: fast(), table: t)
        poller.start()
        defer { poller.stop() }
        #expect(eventually { allGood(t) })
        // Every reply late: after the poller gave up on it at 300 ms.
        try plant.control(["cmd": "delay", "ms": replyDelayMilliseconds])
        #expect(eventually { quality(t, "h1_i16") == Quality(.timeout) })
        Thread.sleep(forTimeInterval: 2)
        try plant.control(["cmd": "delay", "ms": 0])
        #expect(eventually { allGood(t) })
        #expect(poller.stats.timeouts >= 2)

        var changes = [TagChange](repeating: TagChange(tag: 0, sample: .initial), count: 100_000)
        let n = changes.withUnsafeMutableBufferPointer { t.changes.drain(consumer: 0, into: $0) }
        // h1 is about 12.4 cm and h3 about 1.8 cm: a good h3 above 5 is h1's reply taken for h3's, or vice versa.
        let h1 = Int32(t.index(of: "h1_i16")!)
        let h3 = Int32(t.index(of: "h3_i16")!)
        for c in changes.prefix(n) where c.sample.quality.isGood && (c.tag == h1 || c.tag == h3) {
            let v = t.value(of: Int(c.tag), c.sample)?.doubleValue ?? .nan
            #expect(c.tag == h1 ? v > 5 : v < 5, "\(c.tag == h1 ? "h1_i16" : "h3_i16") = \(v)")
        }
    }

    @Test func missingSerialPortIsDisconnected() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.url.appendingPathComponent("ttyMissing").path
        let device = DeviceDefinition(
            name: "tank",
            transport: .modbusRTU(serialDevice: path, baud: 19200, parity: .even, dataBits: 8, stopBits: 1),
            reconnectMinMilliseconds: 50, reconnectMaxMilliseconds: 100)
        let connection = try ModbusConnection(device: device)
        #expect(throws: ModbusError.io(errno: ENOENT, message: String(cString: strerror(ENOENT)))) {
            try connection.connect()
        }
        #expect(!connection.isConnected)
        let t = table([modbusTag("h1", .inputRegister, 0, .float32)])
        let poller = try ModbusPoller(device: device, pollGroups: fast(), table: t)
        poller.start()
        defer { poller.stop() }
        #expect(eventually { poller.stats.connectFailures >= 2 })
        #expect(t.read(0).quality == Quality(.disconnected))
    }
}
