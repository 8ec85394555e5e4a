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
}
