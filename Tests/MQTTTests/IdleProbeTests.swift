import Foundation
import MQTT
import Synchronization
import TestSupport
import Testing

/// The idle probe of decision 0027 against a real mosquitto, one client through `FaultProxy` and one straight to
/// the broker: an idle client with a probe filter asks the broker for an answer every half keepalive and gives up a
/// frozen broker within 1.5 × keepalive of its last packet; a client without one sends nothing of the kind.
@Suite(.serialized) struct IdleProbeTests {
    @Test func anIdleClientGivesUpAFrozenBrokerWithinOneAndAHalfKeepalivesOfItsLastPacket() throws {
        let keepalive = 5
        let broker = try MosquittoBroker()
        try broker.start()
        defer { broker.stop() }
        let proxy = try FaultProxy(targetPort: broker.port)
        defer { proxy.stop() }

        // When the disconnect event came, taken on the client's own thread as it reports it.
        let lostAt = Mutex<Double?>(nil)
        let log = EventLog()
        let handler = log.handler
        var probing = testConfiguration(port: proxy.port, clientID: "idle-probing")
        probing.keepAlive = keepalive
        probing.idleProbeFilter = "edgepilot/probe/idle-probing"
        let client = try MQTTClient(configuration: probing) { event in
            if case .disconnected = event { lostAt.withLock { $0 = $0 ?? Date().timeIntervalSince1970 } }
            handler(event)
        }
        client.start()
        defer { client.stop() }
        var plain = testConfiguration(port: broker.port, clientID: "idle-plain")
        plain.keepAlive = keepalive
        let plainLog = EventLog()
        let other = try MQTTClient(configuration: plain, onEvent: plainLog.handler)
        other.start()
        defer { other.stop() }
        #expect(log.waitConnected() && plainLog.waitConnected())

        // Idle for longer than the keepalive: the probes keep the live broker connected.
        Thread.sleep(forTimeInterval: Double(keepalive) + 2)
        #expect(log.disconnects.isEmpty && plainLog.disconnects.isEmpty)
        let brokerLog = broker.log()
        #expect(brokerLog.contains("Received UNSUBSCRIBE from idle-probing"), "the idle client probes")
        #expect(!brokerLog.contains("Received UNSUBSCRIBE from idle-plain"), "no probe filter, no UNSUBSCRIBE")

        proxy.set(.freeze)
        #expect(log.wait(timeout: Double(3 * keepalive)) { !$0.disconnects.isEmpty }, "never noticed")
        let lastHeard = try #require(proxy.lastSentToClient)
        let lost = try #require(lostAt.withLock { $0 })
        let silence = lost - lastHeard
        // The supervisor checks every 50 ms; libmosquitto alone gives up 2 × keepalive after the last packet.
        #expect(
            silence <= 1.5 * Double(keepalive) + 1,
            "gave up \(String(format: "%.2f", silence)) s after the broker's last packet, keepalive \(keepalive) s")
        let reason = log.disconnects.first.flatMap { $0 }.map { "\($0)" } ?? ""
        #expect(reason.contains("1.5 × keepalive"), "\(reason)")
        #expect(plainLog.disconnects.isEmpty, "the client straight to the broker is untouched")

        proxy.set(.none)
        #expect(log.waitConnected(count: 2, timeout: 20), "reconnects through the restored link")
        print("idle MQTT client, frozen broker: gave up \(String(format: "%.2f", silence)) s after its last packet")
    }
}
