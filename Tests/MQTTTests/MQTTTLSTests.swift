import Foundation
import MQTT
import TestSupport
import Testing

/// A throw-away PKI made with the openssl command line: a CA, a server certificate for 127.0.0.1 signed by it,
/// a client certificate signed by it, and an unrelated CA that must not be trusted.
private struct TestPKI {
    let dir: URL
    var path: (String) -> String { { dir.appendingPathComponent($0).path } }

    init(in dir: URL) throws {
        self.dir = dir
        let openssl = "/usr/bin/openssl"
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        func p(_ name: String) -> String { dir.appendingPathComponent(name).path }
        for ca in ["ca", "rogue-ca"] {
            try run(
                openssl,
                ["req", "-x509"] + ec + [
                    "-keyout", p("\(ca).key"), "-out", p("\(ca).crt"), "-days", "2", "-subj",
                    "/CN=EdgePilot test \(ca)",
                ])
        }
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
            .write(toFile: p("server.ext"), atomically: true, encoding: .utf8)
        try "extendedKeyUsage=clientAuth\n".write(toFile: p("client.ext"), atomically: true, encoding: .utf8)
        for leaf in ["server", "client"] {
            try run(
                openssl,
                ["req"] + ec + [
                    "-keyout", p("\(leaf).key"), "-out", p("\(leaf).csr"), "-subj", "/CN=edgepilot-\(leaf)",
                ])
            try run(
                openssl,
                [
                    "x509", "-req", "-in", p("\(leaf).csr"), "-CA", p("ca.crt"), "-CAkey", p("ca.key"),
                    "-CAcreateserial",
                    "-out", p("\(leaf).crt"), "-days", "2", "-extfile", p("\(leaf).ext"),
                ])
        }
    }
}

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
