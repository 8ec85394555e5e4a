import Crypto
import Foundation
import SwiftASN1
import X509
import XCTest

@testable import OPCUA

/// Secured channels against asyncua: every policy × mode, certificate trust, and user identities.
final class SecurityTests: XCTestCase {
    nonisolated(unsafe) static var sim: SimulatorProcess?
    nonisolated(unsafe) static var identity: ApplicationIdentity?
    nonisolated(unsafe) static var startError: Error?

    override class func setUp() {
        super.setUp()
        do {
            sim = try SimulatorProcess()
            identity = try ApplicationIdentity.generate(
                applicationUri: "urn:edgepilot:opcua-client", applicationName: "EdgePilot test")
        } catch { startError = error }
    }

    override class func tearDown() {
        sim?.kill()
        sim = nil
        SimulatorProcess.removeTemporaryDirectories()
        super.tearDown()
    }

    private func fixture() throws -> (SimulatorProcess, ApplicationIdentity) {
        if let e = SecurityTests.startError { throw e }
        return (SecurityTests.sim!, SecurityTests.identity!)
    }

    /// A PKI directory whose trusted/ holds the simulator's certificate.
    private func trustingPKI() throws -> String {
        let (sim, _) = try fixture()
        let pki = SimulatorProcess.temporaryDirectory("client-pki")
        try FileManager.default.createDirectory(atPath: pki + "/trusted", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: sim.certificatePath!, toPath: pki + "/trusted/server.der")
        return pki
    }

    func testEveryPolicyAndModeReadsWritesAndSubscribes() throws {
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
                XCTAssertEqual(
                    try c.write([(NodeId("Scalar.String", namespace: ns), .string(big))]), [.good],
                    "\(policy) \(mode) \(String(describing: c.lastConnectionError))")
                let v = try c.read([NodeId("Scalar.String", namespace: ns), NodeId("Scalar.Double", namespace: ns)])
                XCTAssertEqual(v[0].value, .string(big), "\(policy) \(mode)")
                XCTAssertEqual(v[1].value, .double(3.141592653589793))
                let got = Collector<DataChange>()
                _ = try c.subscribe(
                    [MonitoredItem(NodeId("QuadTank.h1", namespace: ns), samplingInterval: 50)],
                    publishingInterval: 50
                ) { got.append(contentsOf: $0) }
                XCTAssertTrue(eventually(timeout: 5) { got.count >= 2 }, "\(policy) \(mode)")
                _ = try c.write([(NodeId("Scalar.String", namespace: ns), .string("Grüße, OPC UA"))])
            }
        }
    }

    func testDefaultIsBasic256Sha256SignAndEncrypt() throws {
        let (_, id) = try fixture()
        let s = SecurityConfiguration(identity: id, trust: .trustAnyForTesting)
        XCTAssertEqual(s.policy, .basic256Sha256)
        XCTAssertEqual(s.mode, .signAndEncrypt)
    }

    func testUntrustedServerCertificateLandsInRejected() throws {
        let (sim, id) = try fixture()
        let pki = SimulatorProcess.temporaryDirectory("client-pki-empty")
        let c = OPCUAClient()
        XCTAssertThrowsError(
            try c.connect(
                endpointURL: sim.endpoint,
                security: SecurityConfiguration(identity: id, trust: .trustList(pkiDirectory: pki)))
        ) { e in
            guard case .certificateUntrusted(let thumb, let path) = e as? OPCUAError else { return XCTFail("\(e)") }
            XCTAssertEqual(thumb.count, 40)
            XCTAssertEqual(path, pki + "/rejected/\(thumb).der")
        }
        let rejected = try FileManager.default.contentsOfDirectory(atPath: pki + "/rejected")
        XCTAssertEqual(rejected.count, 1)
        // An operator moving it to trusted/ is all it takes.
        try FileManager.default.moveItem(
            atPath: pki + "/rejected/" + rejected[0], toPath: pki + "/trusted/" + rejected[0])
        try c.connect(
            endpointURL: sim.endpoint,
            security: SecurityConfiguration(identity: id, trust: .trustList(pkiDirectory: pki)))
        XCTAssertTrue(try c.read([NodeId(2258)])[0].status.isGood)
        c.disconnect()
    }

    func testPinnedThumbprint() throws {
        let (sim, id) = try fixture()
        let der = try Data(contentsOf: URL(fileURLWithPath: sim.certificatePath!))
        let thumb = Insecure.SHA1.hash(data: der).map { String(format: "%02X", $0) }.joined(separator: ":")
        let c = OPCUAClient()
        try c.connect(
            endpointURL: sim.endpoint, security: SecurityConfiguration(identity: id, trust: .pinnedThumbprint(thumb)))
        XCTAssertTrue(try c.read([NodeId(2258)])[0].status.isGood)
        c.disconnect()
        XCTAssertThrowsError(
            try c.connect(
                endpointURL: sim.endpoint,
                security: SecurityConfiguration(
                    identity: id, trust: .pinnedThumbprint(String(repeating: "ab", count: 20))))
        ) { e in
            guard case .certificateUntrusted = e as? OPCUAError else { return XCTFail("\(e)") }
        }
    }

    func testUserNameOverSecuredChannelsAndWrongPassword() throws {
        let (sim, id) = try fixture()
        for mode in [MessageSecurityMode.sign, .signAndEncrypt] {
            let sec = SecurityConfiguration(identity: id, trust: .trustAnyForTesting, mode: mode)
            let c = OPCUAClient()
            try c.connect(endpointURL: sim.endpoint, security: sec, identity: .userName("operator", password: "secret"))
            XCTAssertTrue(try c.read([NodeId(2258)])[0].status.isGood)
            c.disconnect()
            XCTAssertThrowsError(
                try c.connect(
                    endpointURL: sim.endpoint, security: sec, identity: .userName("operator", password: "nope"))
            ) { e in
                XCTAssertEqual((e as? OPCUAError)?.statusCode, .badUserAccessDenied, "\(mode): \(e)")
            }
        }
    }

    func testNoneMustBeExplicitAndMismatchesAreRejected() throws {
        let (_, id) = try fixture()
        var s = SecurityConfiguration(identity: id, trust: .trustAnyForTesting)
        s.mode = .none
        XCTAssertThrowsError(try OPCUAClient().connect(endpointURL: "opc.tcp://127.0.0.1:1", security: s))
    }

    func testGeneratedCertificateHasOPCUAProperties() throws {
        let (_, id) = try fixture()
        let cert = try Certificate(derEncoded: id.certificateDER)
        let san = try XCTUnwrap(try cert.extensions.subjectAlternativeNames)
        XCTAssertTrue(san.contains(.uniformResourceIdentifier("urn:edgepilot:opcua-client")))
        let ku = try XCTUnwrap(try cert.extensions.keyUsage)
        XCTAssertTrue(ku.digitalSignature && ku.nonRepudiation && ku.keyEncipherment && ku.dataEncipherment)
        let eku = try XCTUnwrap(try cert.extensions.extendedKeyUsage)
        XCTAssertTrue(eku.contains(.clientAuth))
        XCTAssertEqual(cert.signatureAlgorithm, .sha256WithRSAEncryption)
        // Saved and loaded back unchanged.
        let pki = SimulatorProcess.temporaryDirectory("own")
        let a = try ApplicationIdentity.loadOrCreate(pkiDirectory: pki, applicationUri: "urn:a", applicationName: "A")
        let b = try ApplicationIdentity.loadOrCreate(pkiDirectory: pki, applicationUri: "urn:a", applicationName: "A")
        XCTAssertEqual(a.certificateDER, b.certificateDER)
        XCTAssertThrowsError(
            try ApplicationIdentity.loadOrCreate(pkiDirectory: pki, applicationUri: "urn:b", applicationName: "B"))
    }
}
