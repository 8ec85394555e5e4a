import Crypto
import Foundation
import SwiftASN1
import TestSupport
import Testing
import X509

@testable import OPCUA

/// Secured channels against asyncua: every policy × mode, certificate trust, and user identities.
@Suite(.serialized, .simulator())
final class SecurityTests {
    static let identity = Result {
        try ApplicationIdentity.generate(
            applicationUri: "urn:edgepilot:opcua-client", applicationName: "EdgePilot test")
    }
    /// Directories a test made, removed when it ends.
    private var directories: [TemporaryDirectory] = []

    deinit { for d in directories { d.remove() } }

    private func fixture() throws -> (OPCUASimulator, ApplicationIdentity) {
        (try SharedSimulator.get(), try Self.identity.get())
    }

    private func temporaryDirectory(_ tag: String) throws -> String {
        let dir = try TemporaryDirectory("opcua-\(tag)")
        directories.append(dir)
        return dir.path
    }

    /// A PKI directory whose trusted/ holds the simulator's certificate.
    private func trustingPKI() throws -> String {
        let (sim, _) = try fixture()
        let pki = try temporaryDirectory("client-pki")
        try FileManager.default.createDirectory(atPath: pki + "/trusted", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: sim.certificatePath!, toPath: pki + "/trusted/server.der")
        return pki
    }

    @Test("Every policy and mode reads, writes and subscribes")
    func everyPolicyAndModeReadsWritesAndSubscribes() throws {
        let (sim, id) = try fixture()
        let pki = try trustingPKI()
        for policy in [SecurityPolicy.basic256Sha256, .aes128Sha256RsaOaep] {
            for mode in [MessageSecurityMode.sign, .signAndEncrypt] {
                let c = OPCUAClient()
                try c.connect(
                    endpointURL: sim.endpoint,
                    security: SecurityConfiguration(
                        identity: id, trust: .trustList(pkiDirectory: pki), policy: policy, mode: mode))
                defer { c.disconnect() }
                let ns = sim.namespace
                // Large enough to need several chunks, so padding and signatures are checked per chunk.
                let big = String(repeating: "é", count: 100_000)
                #expect(
                    try c.write([(NodeId("Scalar.String", namespace: ns), .string(big))]) == [.good],
                    "\(policy) \(mode) \(String(describing: c.lastConnectionError))")
                let v = try c.read([NodeId("Scalar.String", namespace: ns), NodeId("Scalar.Double", namespace: ns)])
                #expect(v[0].value == .string(big), "\(policy) \(mode)")
                #expect(v[1].value == .double(3.141592653589793))
                let got = Collector<DataChange>()
                _ = try c.subscribe(
                    [MonitoredItem(NodeId("QuadTank.h1", namespace: ns), samplingInterval: 50)],
                    publishingInterval: 50
                ) { got.append(contentsOf: $0) }
                #expect(eventually(timeout: 5) { got.count >= 2 }, "\(policy) \(mode)")
                _ = try c.write([(NodeId("Scalar.String", namespace: ns), .string("Grüße, OPC UA"))])
            }
        }
    }

    @Test("Default is Basic256Sha256 with SignAndEncrypt")
    func defaultIsBasic256Sha256SignAndEncrypt() throws {
        let (_, id) = try fixture()
        let s = SecurityConfiguration(identity: id, trust: .trustAnyForTesting)
        #expect(s.policy == .basic256Sha256)
        #expect(s.mode == .signAndEncrypt)
    }

    @Test("Untrusted server certificate lands in rejected")
    func untrustedServerCertificateLandsInRejected() throws {
        let (sim, id) = try fixture()
        let pki = try temporaryDirectory("client-pki-empty")
        let c = OPCUAClient()
        if let e = #expect(
            throws: (any Error).self,
            performing: {
                try c.connect(
                    endpointURL: sim.endpoint,
                    security: SecurityConfiguration(identity: id, trust: .trustList(pkiDirectory: pki)))
            })
        {
            if case .certificateUntrusted(let thumb, let path) = e as? OPCUAError {
                #expect(thumb.count == 40)
                #expect(path == pki + "/rejected/\(thumb).der")
            } else {
                Issue.record("\(e)")
            }
        }
        let rejected = try FileManager.default.contentsOfDirectory(atPath: pki + "/rejected")
        #expect(rejected.count == 1)
        // An operator moving it to trusted/ is all it takes.
        try FileManager.default.moveItem(
            atPath: pki + "/rejected/" + rejected[0], toPath: pki + "/trusted/" + rejected[0])
        try c.connect(
            endpointURL: sim.endpoint,
            security: SecurityConfiguration(identity: id, trust: .trustList(pkiDirectory: pki)))
        #expect(try c.read([NodeId(2258)])[0].status.isGood)
        c.disconnect()
    }

    @Test("Pinned thumbprint")
    func pinnedThumbprint() throws {
        let (sim, id) = try fixture()
        let der = try Data(contentsOf: URL(fileURLWithPath: sim.certificatePath!))
        let thumb = Insecure.SHA1.hash(data: der).map { String(format: "%02X", $0) }.joined(separator: ":")
        let c = OPCUAClient()
        try c.connect(
            endpointURL: sim.endpoint, security: SecurityConfiguration(identity: id, trust: .pinnedThumbprint(thumb)))
        #expect(try c.read([NodeId(2258)])[0].status.isGood)
        c.disconnect()
        if let e = #expect(
            throws: (any Error).self,
            performing: {
                try c.connect(
                    endpointURL: sim.endpoint,
                    security: SecurityConfiguration(
                        identity: id, trust: .pinnedThumbprint(String(repeating: "ab", count: 20))))
            })
        {
            guard case .certificateUntrusted = e as? OPCUAError else {
                Issue.record("\(e)")
                return
            }
        }
    }

    @Test("User name over secured channels and wrong password")
    func userNameOverSecuredChannelsAndWrongPassword() throws {
        let (sim, id) = try fixture()
        for mode in [MessageSecurityMode.sign, .signAndEncrypt] {
            let sec = SecurityConfiguration(identity: id, trust: .trustAnyForTesting, mode: mode)
            let c = OPCUAClient()
            try c.connect(endpointURL: sim.endpoint, security: sec, identity: .userName("operator", password: "secret"))
            #expect(try c.read([NodeId(2258)])[0].status.isGood)
            c.disconnect()
            if let e = #expect(
                throws: (any Error).self,
                performing: {
                    try c.connect(
                        endpointURL: sim.endpoint, security: sec, identity: .userName("operator", password: "nope"))
                })
            {
                #expect((e as? OPCUAError)?.statusCode == .badUserAccessDenied, "\(mode): \(e)")
            }
        }
    }

    /// A policy and a mode that disagree about None must be refused by the client itself, with an error that names
    /// them, before it opens any connection: a server that offers both None and secured endpoints (as the simulator
    /// does) would otherwise get to decide what an unsecured or half-secured channel means.
    @Test("None must be explicit, and a policy/mode mismatch is rejected before connecting")
    func noneMustBeExplicitAndMismatchesAreRejected() throws {
        let (sim, id) = try fixture()
        // None is never the default: it has to be asked for with `.none`.
        let secured = SecurityConfiguration(identity: id, trust: .trustAnyForTesting)
        #expect(secured.policy != .none && secured.mode != .none)
        var unsignedPolicy = secured
        unsignedPolicy.mode = .none
        var signedNone = SecurityConfiguration.none
        signedNone.mode = .sign
        var encryptedNone = SecurityConfiguration.none
        encryptedNone.mode = .signAndEncrypt
        let mismatches = [unsignedPolicy, signedNone, encryptedNone]

        /// Connects with `security` and checks that the client's own policy/mode check refused it.
        func expectRefused(_ security: SecurityConfiguration, at endpoint: String) {
            let c = OPCUAClient(configuration: ClientConfiguration(requestTimeout: 2))
            defer { c.disconnect() }
            let label = "\(security.policy)/\(security.mode) at \(endpoint)"
            let error = #expect(throws: OPCUAError.self, "\(label)") {
                try c.connect(endpointURL: endpoint, security: security)
            }
            guard let error else { return }
            guard case .invalidArgument(let message) = error else {
                Issue.record("\(label): expected the policy/mode check to refuse it, got \(error)")
                return
            }
            #expect(
                message == "security policy \(security.policy) cannot be used with mode \(security.mode)", "\(label)")
            #expect(c.state == .disconnected, "\(label)")
        }

        // Against the simulator: without the check, the mismatch would be taken to the server to sort out.
        for security in mismatches { expectRefused(security, at: sim.endpoint) }

        // Against a listener that never answers: the refusal comes before any connection is opened, so its
        // backlog stays empty.
        let listener = try SilentListener()
        for security in mismatches { expectRefused(security, at: "opc.tcp://127.0.0.1:\(listener.port)") }
        _ = fcntl(listener.fd, F_SETFL, fcntl(listener.fd, F_GETFL) | O_NONBLOCK)
        let pending = accept(listener.fd, nil, nil)
        let acceptError = errno
        if pending >= 0 { close(pending) }
        #expect(pending < 0 && acceptError == EAGAIN, "the client connected before checking (errno \(acceptError))")
    }

    @Test("Generated certificate has the OPC UA properties")
    func generatedCertificateHasOPCUAProperties() throws {
        let (_, id) = try fixture()
        let cert = try Certificate(derEncoded: id.certificateDER)
        let san = try #require(try cert.extensions.subjectAlternativeNames)
        #expect(san.contains(.uniformResourceIdentifier("urn:edgepilot:opcua-client")))
        let ku = try #require(try cert.extensions.keyUsage)
        #expect(ku.digitalSignature && ku.nonRepudiation && ku.keyEncipherment && ku.dataEncipherment)
        let eku = try #require(try cert.extensions.extendedKeyUsage)
        #expect(eku.contains(.clientAuth))
        #expect(cert.signatureAlgorithm == .sha256WithRSAEncryption)
        // Saved and loaded back unchanged.
        let pki = try temporaryDirectory("own")
        let a = try ApplicationIdentity.loadOrCreate(pkiDirectory: pki, applicationUri: "urn:a", applicationName: "A")
        let b = try ApplicationIdentity.loadOrCreate(pkiDirectory: pki, applicationUri: "urn:a", applicationName: "A")
        #expect(a.certificateDER == b.certificateDER)
        #expect(throws: (any Error).self) {
            try ApplicationIdentity.loadOrCreate(pkiDirectory: pki, applicationUri: "urn:b", applicationName: "B")
        }
    }
}
