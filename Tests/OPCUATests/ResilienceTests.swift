import Foundation
import XCTest

@testable import OPCUA

/// The server process is killed (SIGKILL) and restarted on the same port while the client subscribes.
final class ResilienceTests: XCTestCase {
    override class func tearDown() {
        SimulatorProcess.removeTemporaryDirectories()
        super.tearDown()
    }

    private func restartScenario(security: (SimulatorProcess) throws -> SecurityConfiguration, downtime: Double) throws
    {
        var sim = try SimulatorProcess()
        let port = sim.port
        let pki = sim.pkiDirectory
        let states = Collector<ConnectionState>()
        let config = ClientConfiguration(
            requestTimeout: 3, keepAliveInterval: 0.5, reconnectMinDelay: 0.1, reconnectMaxDelay: 1
        ) { states.append(contentsOf: [$0]) }
        let c = OPCUAClient(configuration: config)
        try c.connect(endpointURL: sim.endpoint, security: try security(sim))
        defer { c.disconnect() }
        let got = Collector<DataChange>()
        _ = try c.subscribe(
            [MonitoredItem(NodeId("QuadTank.h1", namespace: sim.namespace), samplingInterval: 50)],
            publishingInterval: 50
        ) { got.append(contentsOf: $0) }
        XCTAssertTrue(eventually(timeout: 5) { got.count >= 3 })

        sim.kill()
        XCTAssertTrue(eventually(timeout: 5) { c.state != .connected }, "loss not detected")
        // While the server is away calls fail fast instead of hanging.
        XCTAssertThrowsError(try c.read([NodeId(2258)])) { XCTAssertEqual($0 as? OPCUAError, .notConnected) }
        usleep(UInt32(downtime * 1_000_000))
        sim = try SimulatorProcess(port: port, pkiDirectory: pki)
        defer { sim.kill() }
        XCTAssertTrue(eventually(timeout: 15) { c.state == .connected }, "no reconnect: \(states.all)")
        got.reset()
        XCTAssertTrue(eventually(timeout: 10) { got.count >= 3 }, "data did not resume")
        XCTAssertTrue(got.all.allSatisfy { $0.nodeId == NodeId("QuadTank.h1", namespace: sim.namespace) })
        XCTAssertTrue(try c.read([NodeId(2258)])[0].status.isGood)
        XCTAssertGreaterThanOrEqual(c.reconnectCount, 1)
        if downtime > 1.5 {
            // Several failed attempts while the port was closed, spaced by the backoff.
            let attempts = states.all.compactMap { s -> Int? in
                if case .reconnecting(let a) = s { return a }
                return nil
            }
            XCTAssertGreaterThanOrEqual(attempts.max() ?? 0, 2, "\(states.all)")
            XCTAssertLessThan(attempts.max() ?? 99, 40, "backoff not applied: \(states.all)")
        }
    }

    func testServerRestartMidSubscriptionResumesData() throws {
        try restartScenario(security: { _ in .none }, downtime: 2)
    }

    func testServerRestartResumesOverBasic256Sha256() throws {
        let id = try ApplicationIdentity.generate(applicationUri: "urn:edgepilot:opcua-client", applicationName: "t")
        try restartScenario(
            security: { sim in
                let pki = SimulatorProcess.temporaryDirectory("client-pki")
                try FileManager.default.createDirectory(atPath: pki + "/trusted", withIntermediateDirectories: true)
                try FileManager.default.copyItem(atPath: sim.certificatePath!, toPath: pki + "/trusted/server.der")
                return SecurityConfiguration(identity: id, trust: .trustList(pkiDirectory: pki))
            }, downtime: 0.2)
    }
}
