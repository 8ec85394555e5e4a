import Foundation
import MQTT
import TestSupport
import Testing

@Suite(.serialized) struct MQTTTLSTests {
    private func tlsBroker() throws -> (MosquittoBroker, TestPKI) {
        let broker = try MosquittoBroker()
        let pki = try TestPKI(in: broker.directory)
        broker.listenerConfig = """
            allow_anonymous true
            cafile \(pki.path("ca.crt"))
            certfile \(pki.path("server.crt"))
            keyfile \(pki.path("server.key"))
            require_certificate true
            """
        try broker.start()
        return (broker, pki)
    }

    @Test func mutualTLSWithServerVerification() throws {
        let (broker, pki) = try tlsBroker()
        defer { broker.stop() }
        var config = testConfiguration(port: broker.port, clientID: "tls-ok")
        config.tls = MQTTTLSConfiguration(
            caFile: pki.path("ca.crt"), certificateFile: pki.path("client.crt"), keyFile: pki.path("client.key"))
        #expect(config.tls?.verifyServer == true)  // the default
        let log = EventLog()
        let client = try MQTTClient(configuration: config, onEvent: log.handler)
        try client.subscribe("secure/#", qos: .atLeastOnce)
        client.start()
        defer { client.stop() }
        #expect(log.waitConnected())
        try client.publish(MQTTMessage(topic: "secure/x", payload: [42], qos: .atLeastOnce), tag: 1)
        #expect(log.wait { ev in ev.messages.contains { $0.topic == "secure/x" } && ev.publishedTags == [1] })
    }

    /// One client, two brokers with different settings: a TLS broker (anonymous) and a plain one that wants a
    /// password. Each attempt uses its broker's own TLS and credentials, back and forth.
    @Test func eachBrokerUsesItsOwnTLSAndCredentials() throws {
        let tlsBroker = try MosquittoBroker()
        let pki = try TestPKI(in: tlsBroker.directory)
        tlsBroker.listenerConfig = """
            allow_anonymous true
            cafile \(pki.path("ca.crt"))
            certfile \(pki.path("server.crt"))
            keyfile \(pki.path("server.key"))
            """
        try tlsBroker.start()
        defer { tlsBroker.stop() }
        let plainBroker = try MosquittoBroker()
        let passwords = plainBroker.directory.appendingPathComponent("passwd").path
        try run("/usr/bin/mosquitto_passwd", ["-b", "-c", passwords, "edge", "s3cret"])
        plainBroker.listenerConfig = "allow_anonymous false\npassword_file \(passwords)"
        try plainBroker.start()
        defer { plainBroker.stop() }

        let secure = MQTTBroker(
            host: "127.0.0.1", port: tlsBroker.port,
            security: MQTTSecurity(tls: MQTTTLSConfiguration(caFile: pki.path("ca.crt"))))
        let plain = MQTTBroker(
            host: "127.0.0.1", port: plainBroker.port, security: MQTTSecurity(username: "edge", password: "s3cret"))
        // Configuration-wide settings that would fail on both: the brokers' own must win.
        var config = testConfiguration(port: 0, clientID: "two-faced", brokers: [secure, plain])
        config.username = "nobody"
        config.password = "wrong"
        config.tls = MQTTTLSConfiguration(caFile: pki.path("rogue-ca.crt"))
        let log = EventLog()
        let client = try MQTTClient(configuration: config, onEvent: log.handler)
        try client.subscribe("echo", qos: .atLeastOnce)
        client.start()
        defer { client.stop() }
        func echo(_ tag: UInt64) throws -> Bool {
            try client.publish(MQTTMessage(topic: "echo", payload: [UInt8(tag)], qos: .atLeastOnce), tag: tag)
            return log.wait { ev in
                ev.messages.contains { $0.payload == [UInt8(tag)] } && ev.publishedTags.contains(tag)
            }
        }
        #expect(log.waitConnected())
        #expect(client.currentBroker?.port == tlsBroker.port)
        #expect(try echo(1))

        tlsBroker.stop()
        #expect(log.waitConnected(count: 2, timeout: 20), "\(log.failures.map(\.0))")
        #expect(client.currentBroker?.port == plainBroker.port)
        #expect(try echo(2))
        // The refused TLS attempt is reported as refused (libmosquitto alone would spin until keepalive and report
        // a keepalive timeout).
        let refused = try #require(log.failures.first).0
        #expect(refused.kind == .network && refused.message.contains("refused"), "\(refused)")

        try tlsBroker.start()
        plainBroker.stop()
        #expect(log.waitConnected(count: 3, timeout: 20), "\(log.failures.map(\.0))")
        #expect(client.currentBroker?.port == tlsBroker.port)
        #expect(try echo(3))
        // Neither broker ever refused us: no attempt used the other broker's (or the configuration's) settings.
        #expect(!log.failures.contains { $0.0.kind == .connectionRefused || $0.0.kind == .tls }, "\(log.failures)")
    }

    @Test func untrustedServerCertificateIsRejected() throws {
        let (broker, pki) = try tlsBroker()
        defer { broker.stop() }
        var config = testConfiguration(port: broker.port, clientID: "tls-rogue")
        config.tls = MQTTTLSConfiguration(
            caFile: pki.path("rogue-ca.crt"), certificateFile: pki.path("client.crt"), keyFile: pki.path("client.key"))
        let log = EventLog()
        let client = try MQTTClient(configuration: config, onEvent: log.handler)
        client.start()
        #expect(log.wait { ev in ev.failures.count >= 2 }, "\(log.all)")
        client.stop()
        #expect(log.connectedCount == 0)
        let error = try #require(log.failures.first).0
        #expect(error.kind == .tls, "\(error)")
        // OpenSSL's reason reaches the caller, not just "TLS error".
        #expect(error.message.contains("certificate verify failed"), "\(error)")
        #expect(error.broker?.port == broker.port)
        // Backing off, not retrying at once.
        #expect(try #require(log.failures.first).1 > .zero)
    }

    @Test func missingClientCertificateIsRefusedByTheBroker() throws {
        let (broker, pki) = try tlsBroker()
        defer { broker.stop() }
        var config = testConfiguration(port: broker.port, clientID: "tls-anon")
        config.tls = MQTTTLSConfiguration(caFile: pki.path("ca.crt"))
        let log = EventLog()
        let client = try MQTTClient(configuration: config, onEvent: log.handler)
        client.start()
        #expect(log.wait { ev in !ev.failures.isEmpty })
        client.stop()
        #expect(log.connectedCount == 0)
    }
}
