import Foundation
import Logging
import Synchronization
import Tags
import TestSupport
import Testing

@testable import Modbus
@testable import ModbusDriver

/// The poller on a bad link, through the fault proxy to the quadruple-tank simulator.
@Suite(.serialized) struct LinkFaultTests {
    /// Log records kept in memory, to check what reaches the journal and how often.
    final class Records: @unchecked Sendable {
        let lines = Mutex<[(Logger.Level, String)]>([])
        func count(_ level: Logger.Level, containing text: String) -> Int {
            lines.withLock { $0.filter { $0.0 == level && $0.1.contains(text) }.count }
        }
    }

    struct Capture: LogHandler {
        let records: Records
        var logLevel: Logger.Level = .info
        var metadata: Logger.Metadata = [:]
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) { records.lines.withLock { $0.append((event.level, "\(event.message)")) } }
    }

    /// The most connects an equal-jitter exponential backoff allows in `seconds`: every wait is at least half its
    /// step, the steps doubling from `min` to `max` milliseconds.
    func mostConnects(in seconds: Double, min: Int, max: Int) -> Int {
        var elapsed = 0.0
        var step = Double(min)
        var connects = 1
        while true {
            elapsed += step / 2 / 1000
            if elapsed > seconds { return connects }
            connects += 1
            step = Swift.min(Double(max), step * 2)
        }
    }

    @Test func acceptThenResetIsBackedOffAndNotConnected() throws {
        let sim = try QuadTank()
        defer { sim.stop() }
        let proxy = try FaultProxy(targetPort: sim.port)
        defer { proxy.stop() }
        let records = Records()
        let t = TagTable(
            definitions: [modbusTag("h1", .inputRegister, 0, .float32, device: "gateway")],
            changes: ChangeFeed(consumers: 1, capacity: 1000))
        let device = DeviceDefinition(
            name: "gateway", transport: .modbusTCP(host: "127.0.0.1", port: proxy.port), unitID: 1,
            timeoutMilliseconds: 300, reconnectMinMilliseconds: 100, reconnectMaxMilliseconds: 400)
        let poller = try ModbusPoller(
            device: device, pollGroups: [PollGroup(name: "fast", periodMilliseconds: 50)], table: t,
            logger: Logger(label: "test") { _ in Capture(records: records) })
        poller.start()
        defer { poller.stop() }
        #expect(eventually { t.read(0).quality.isGood && poller.stats.state == .connected })
        #expect(records.count(.warning, containing: "unreachable") == 0)

        // The gateway accepts every connection and resets it at once, for three seconds.
        proxy.set(.reset)
        let before = proxy.acceptedConnections
        #expect(eventually { t.read(0).quality == Quality(.disconnected) })
        let started = Date()
        var states: Set<String> = []
        while Date().timeIntervalSince(started) < 3 {
            states.insert(poller.stats.state.rawValue)
            usleep(10_000)
        }
        let attempts = proxy.acceptedConnections - before
        let elapsed = Date().timeIntervalSince(started)
        // One immediate reconnect after a healthy connection broke, then the backoff.
        let bound = 1 + mostConnects(in: elapsed, min: 100, max: 400)
        print("accept-then-reset for \(elapsed) s: \(attempts) connections (backoff allows \(bound))")
        #expect(attempts >= 2, "the poller kept trying")
        #expect(attempts <= bound, "\(attempts) connections in \(elapsed) s; the backoff allows \(bound)")
        #expect(!states.contains("connected"), "status showed \(states.sorted())")
        #expect(poller.stats.state != .connected)
        #expect(t.read(0).quality == Quality(.disconnected))
        #expect(poller.stats.connectFailures >= UInt64(attempts - 1))
        // The journal heard of it once, not once per attempt.
        #expect(records.count(.warning, containing: "Modbus device gateway unreachable") == 1)

        proxy.set(.none)
        #expect(eventually(timeout: 5) { t.read(0).quality.isGood && poller.stats.state == .connected })
        #expect(records.count(.notice, containing: "Modbus device gateway answers again") == 1)
    }

    /// A link half-closed by a gateway (the poller reads end of file while the PLC's side stays open, or the PLC
    /// reads it and hangs up): the tags go bad within one poll, the poller reconnects with backoff instead of
    /// spinning on connections that end before any reply, never shows `connected` meanwhile, and is back once the
    /// link is.
    @Test(arguments: [FaultProxy.Side.client, .server])
    func aHalfClosedLinkGoesBadIsBackedOffAndRecovers(toward side: FaultProxy.Side) throws {
        let sim = try QuadTank()
        defer { sim.stop() }
        let proxy = try FaultProxy(targetPort: sim.port)
        defer { proxy.stop() }
        let records = Records()
        let t = TagTable(
            definitions: [modbusTag("h1", .inputRegister, 0, .float32, device: "gateway")],
            changes: ChangeFeed(consumers: 1, capacity: 1000))
        let device = DeviceDefinition(
            name: "gateway", transport: .modbusTCP(host: "127.0.0.1", port: proxy.port), unitID: 1,
            timeoutMilliseconds: 300, reconnectMinMilliseconds: 100, reconnectMaxMilliseconds: 400)
        let poller = try ModbusPoller(
            device: device, pollGroups: [PollGroup(name: "fast", periodMilliseconds: 50)], table: t,
            logger: Logger(label: "test") { _ in Capture(records: records) })
        poller.start()
        defer { poller.stop() }
        #expect(eventually { t.read(0).quality.isGood && poller.stats.state == .connected })

        let before = proxy.acceptedConnections
        let cut = Date()
        proxy.set(.halfClose(toward: side))
        #expect(eventually(timeout: 5) { !t.read(0).quality.isGood }, "\(t.read(0).quality)")
        // End of file is an error at once, not a timeout: bad within one poll period plus the proxy's 10 ms.
        let badAfter = Date().timeIntervalSince(cut)
        #expect(badAfter < 0.3, "bad after \(badAfter) s")
        let started = Date()
        var states: Set<String> = []
        while Date().timeIntervalSince(started) < 3 {
            states.insert(poller.stats.state.rawValue)
            usleep(10_000)
        }
        let attempts = proxy.acceptedConnections - before
        let elapsed = Date().timeIntervalSince(started)
        let bound = 1 + mostConnects(in: elapsed + badAfter, min: 100, max: 400)
        print("half-close toward the \(side) for \(elapsed) s: \(attempts) connections (backoff allows \(bound))")
        #expect(attempts >= 2, "the poller kept trying")
        #expect(attempts <= bound, "\(attempts) connections in \(elapsed) s; the backoff allows \(bound)")
        #expect(!states.contains("connected"), "status showed \(states.sorted())")
        #expect(t.read(0).quality == Quality(.disconnected))
        #expect(records.count(.warning, containing: "Modbus device gateway unreachable") == 1)

        proxy.set(.none)
        #expect(eventually(timeout: 5) { t.read(0).quality.isGood && poller.stats.state == .connected })
        #expect(records.count(.notice, containing: "Modbus device gateway answers again") == 1)
    }

    /// A device frozen behind a live connection (`.freeze`: nothing is read, no FIN, no RST) is `notAnswering`, not
    /// `connected`, from its first timed-out requests, and `connected` again with its next answer; the journal says
    /// each transition once, not once per timeout, over two freezes.
    @Test func aFrozenDeviceIsNotAnsweringUntilItAnswersAgain() throws {
        let sim = try QuadTank()
        defer { sim.stop() }
        let proxy = try FaultProxy(targetPort: sim.port)
        defer { proxy.stop() }
        let records = Records()
        let t = TagTable(
            definitions: [
                modbusTag("h1", .inputRegister, 0, .float32, device: "plc"),
                modbusTag("v1", .holdingRegister, 0, .float32, device: "plc"),
            ],
            changes: ChangeFeed(consumers: 1, capacity: 1000))
        let device = DeviceDefinition(
            name: "plc", transport: .modbusTCP(host: "127.0.0.1", port: proxy.port), unitID: 1,
            timeoutMilliseconds: 200, retries: 0, reconnectMinMilliseconds: 100, reconnectMaxMilliseconds: 400)
        let poller = try ModbusPoller(
            device: device, pollGroups: [PollGroup(name: "fast", periodMilliseconds: 50)], table: t,
            logger: Logger(label: "test") { _ in Capture(records: records) })
        poller.start()
        defer { poller.stop() }
        #expect(eventually { t.read(0).quality.isGood && poller.stats.state == .connected })
        #expect(poller.stats.notAnsweringSince == nil)

        for round in 1...2 {
            let frozenAt = Int64(Date().timeIntervalSince1970 * 1_000_000)
            proxy.set(.freeze)
            #expect(eventually(timeout: 5) { poller.stats.state == .notAnswering }, "\(poller.stats.state)")
            let since = poller.stats.notAnsweringSince ?? 0
            #expect(since >= frozenAt, "since \(since), frozen at \(frozenAt)")
            #expect(t.read(0).quality == Quality(.timeout))
            // Timeouts go on; the state and the journal do not change with them.
            let timeouts = poller.stats.timeouts
            #expect(eventually(timeout: 5) { poller.stats.timeouts >= timeouts + 4 })
            #expect(poller.stats.state == .notAnswering && poller.stats.notAnsweringSince == since)
            // Each timeout replaces the socket (`resynchronize`: no late reply may pair with the next request), but
            // the device is not taken for lost: no "unreachable", no backoff.
            #expect(records.count(.warning, containing: "unreachable") == 0)
            #expect(records.count(.warning, containing: "Modbus device plc not answering") == round)
            proxy.set(.none)
            #expect(eventually(timeout: 5) { t.read(0).quality.isGood && poller.stats.state == .connected })
            #expect(poller.stats.notAnsweringSince == nil)
            #expect(records.count(.notice, containing: "Modbus device plc answers again") == round)
        }
        #expect(records.count(.warning, containing: "unreachable") == 0)
        #expect(poller.stats.connects == 1)
    }
}
