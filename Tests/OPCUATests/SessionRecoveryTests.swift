import Foundation
import TestSupport
import Testing

@testable import OPCUA

#if canImport(Glibc)
    import Glibc
#endif

/// Recovery after a lost channel against asyncua through the fault proxy (OPC 10000-4 §6.7): a loss shorter than the
/// session timeout reactivates the session and republishes what was sent into the outage; a server restart or a loss
/// longer than the session timeout makes the session again. The server's Extra.0 counts up every 100 ms (k + tick,
/// with source timestamps), so a missed change is a missing number.
@Suite(.serialized) struct SessionRecoveryTests {
    /// A client through `proxy` that notices a silent loss within about a second, subscribed to Extra.0 with a queue
    /// deep enough for every change of the outage; the values go to `got` in the order they are delivered.
    private func subscribedClient(
        proxy: FaultProxy, security: SecurityConfiguration = .none, sessionTimeout: Double = 60,
        got: Collector<Double>, namespace: UInt16
    ) throws -> OPCUAClient {
        var config = ClientConfiguration(
            requestTimeout: 1, sessionTimeout: sessionTimeout, keepAliveInterval: 0.3, reconnectMinDelay: 0.2,
            reconnectMaxDelay: 0.5)
        config.maxRepublishPerRecovery = 64
        let c = OPCUAClient(configuration: config)
        try c.connect(endpointURL: "opc.tcp://127.0.0.1:\(proxy.port)/", security: security)
        _ = try c.subscribe(
            [MonitoredItem(NodeId(100_000, namespace: namespace), samplingInterval: 50, queueSize: 200)],
            publishingInterval: 200, keepAliveCount: 5
        ) { changes in got.append(contentsOf: changes.compactMap { $0.value.value.doubleValue }) }
        return c
    }

    /// Every value from the first to the last received, each once and in order.
    private static func contiguous(_ values: [Double]) -> Bool {
        zip(values, values.dropFirst()).allSatisfy { $1 == $0 + 1 }
    }

    /// A 2 s black hole with the counter running; returns the recovery and whether every value arrived in order.
    @discardableResult
    private func reactivationScenario(
        refusing services: [String] = [], security: (OPCUASimulator) throws -> SecurityConfiguration = { _ in .none }
    ) throws -> (recovery: RecoveryReport?, contiguous: Bool) {
        let sim = try OPCUASimulator(extra: 1, churnPeriod: 0.1, refusing: services)
        defer { sim.kill() }
        let proxy = try FaultProxy(targetPort: sim.port)
        defer { proxy.stop() }
        let got = Collector<Double>()
        let c = try subscribedClient(proxy: proxy, security: try security(sim), got: got, namespace: sim.namespace)
        defer { c.disconnect() }
        #expect(eventually(timeout: 5) { got.count >= 5 })
        let session = c.sessionId

        // A pulled cable for 2 s: about 20 changes happen while the client hears nothing.
        proxy.set(.blackHole)
        #expect(eventually(timeout: 5) { c.state != .connected }, "loss not detected")
        let before = got.all.last ?? 0
        usleep(2_000_000)
        proxy.set(.none)
        #expect(eventually(timeout: 15) { c.state == .connected }, "no reconnect")
        #expect(eventually(timeout: 5) { (got.all.last ?? 0) > before + 25 }, "data did not resume")

        #expect(c.sessionId == session, "the session was made again instead of reactivated")
        #expect(c.lastRecovery?.path == .reactivated, "\(String(describing: c.lastRecovery))")
        #expect(c.recoveries.reactivated == 1 && c.recoveries.recreated == 0)
        let values = got.all
        // Whatever was lost, nothing arrives twice or out of order.
        #expect(zip(values, values.dropFirst()).allSatisfy { $1 > $0 }, "\(values)")
        return (c.lastRecovery, Self.contiguous(values))
    }

    /// A throttled link (800 bytes/s each way, less than the subscription and the reads ask for) under a subscription changing every 100 ms: every read either
    /// answers with a good value or fails with an error within its request timeout (never hangs), and once the link
    /// is back the client is connected, reads work and the subscription's values arrive in order, none twice.
    @Test func readsThroughAThrottledLinkWorkOrFailCleanly() throws {
        let sim = try OPCUASimulator(extra: 1, churnPeriod: 0.1)
        defer { sim.kill() }
        let proxy = try FaultProxy(targetPort: sim.port)
        defer { proxy.stop() }
        let got = Collector<Double>()
        let c = try subscribedClient(proxy: proxy, got: got, namespace: sim.namespace)
        defer { c.disconnect() }
        #expect(eventually(timeout: 5) { got.count >= 5 })

        proxy.set(.throttle(bytesPerSecond: 800))
        var answered = 0
        var failed: [String] = []
        var longest = 0.0
        let started = Date()
        while Date().timeIntervalSince(started) < 6 {
            let t0 = Date()
            do {
                let values = try c.read([NodeId(2258)])
                #expect(values.first?.status.isGood == true, "\(values)")
                answered += 1
            } catch {
                failed.append("\(error)")
            }
            longest = max(longest, Date().timeIntervalSince(t0))
        }
        // requestTimeout is 1 s; a reconnect in between may add one more.
        #expect(longest < 3, "a read took \(longest) s")
        proxy.set(.none)
        #expect(eventually(timeout: 15) { c.state == .connected }, "\(c.state)")
        #expect(try c.read([NodeId(2258)])[0].status.isGood)
        let before = got.all.last ?? 0
        #expect(eventually(timeout: 5) { (got.all.last ?? 0) > before + 10 }, "data did not resume")
        let values = got.all
        #expect(zip(values, values.dropFirst()).allSatisfy { $1 > $0 }, "out of order or twice: \(values)")
        print(
            "OPC UA at 800 B/s: \(answered) reads answered, \(failed.count) failed "
                + "(\(Set(failed).sorted().prefix(3))), longest \(String(format: "%.2f", longest)) s")
    }

    @Test func aShortLossReactivatesTheSessionAndLosesNoChange() throws {
        let (recovery, contiguous) = try reactivationScenario()
        #expect(recovery?.transferRefused == nil)
        #expect((recovery?.republished ?? 0) >= 1, "nothing was republished: \(String(describing: recovery))")
        #expect(recovery?.unavailable == 0)
        #expect(contiguous, "changes lost")
    }

    @Test func aShortLossReactivatesASecuredSessionAndLosesNoChange() throws {
        let id = try ApplicationIdentity.generate(applicationUri: "urn:edgepilot:opcua-client", applicationName: "t")
        let clientPKI = try TemporaryDirectory("opcua-client-pki")
        defer { clientPKI.remove() }
        let (recovery, contiguous) = try reactivationScenario(security: { sim in
            let pki = clientPKI.path
            try FileManager.default.createDirectory(atPath: pki + "/trusted", withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: sim.certificatePath!, toPath: pki + "/trusted/server.der")
            return SecurityConfiguration(identity: id, trust: .trustList(pkiDirectory: pki))
        })
        #expect((recovery?.republished ?? 0) >= 1, "nothing was republished: \(String(describing: recovery))")
        #expect(contiguous, "changes lost")
    }

    /// Without TransferSubscriptions the client asks Republish for each next message until the server has no more.
    @Test func withoutTransferSubscriptionsTheMissedMessagesAreStillRepublished() throws {
        let (recovery, contiguous) = try reactivationScenario(refusing: ["TransferSubscriptions"])
        #expect(recovery?.transferRefused == .badServiceUnsupported, "\(String(describing: recovery))")
        #expect((recovery?.republished ?? 0) >= 1, "nothing was republished: \(String(describing: recovery))")
        #expect(contiguous, "changes lost")
    }

    /// Without Republish the session and its subscription continue; the messages sent into the outage are counted
    /// as lost.
    @Test func withoutRepublishTheSessionContinuesAndCountsTheLostMessages() throws {
        let (recovery, _) = try reactivationScenario(refusing: ["Republish"])
        #expect(recovery?.republished == 0)
        #expect((recovery?.unavailable ?? 0) >= 1, "\(String(describing: recovery))")
        #expect(recovery?.recreatedSubscriptions == 0)
    }

    @Test func aRestartedServerGetsANewSessionWithCurrentValues() throws {
        let pki = try TemporaryDirectory("opcua-sim-pki")
        defer { pki.remove() }
        var sim = try OPCUASimulator(extra: 1, pkiDirectory: pki.path, churnPeriod: 0.1)
        defer { sim.kill() }
        let proxy = try FaultProxy(targetPort: sim.port)
        defer { proxy.stop() }
        let got = Collector<Double>()
        let c = try subscribedClient(proxy: proxy, got: got, namespace: sim.namespace)
        defer { c.disconnect() }
        #expect(eventually(timeout: 5) { got.count >= 5 })

        sim.kill()
        #expect(eventually(timeout: 5) { c.state != .connected }, "loss not detected")
        // The restarted server counts from 1 again: its first values tell they are current, not replayed.
        sim = try OPCUASimulator(extra: 1, port: sim.port, pkiDirectory: pki.path, churnPeriod: 0.1)
        got.reset()
        #expect(eventually(timeout: 15) { c.state == .connected }, "no reconnect")
        #expect(eventually(timeout: 5) { got.count >= 3 }, "data did not resume")
        // asyncua numbers sessions from the same start in every process, so the id alone cannot tell a new session.
        let recovery = c.lastRecovery
        #expect(recovery?.path == .recreated, "\(String(describing: recovery))")
        #expect(recovery?.reason?.contains("BadSessionIdInvalid") == true, "\(String(describing: recovery))")
        #expect(recovery?.recreatedSubscriptions == 1)
        #expect(c.recoveries.recreated == 1 && c.recoveries.reactivated == 0)
        #expect((got.all.first ?? .infinity) < 100, "the first value after the restart is not current: \(got.all)")
    }

    @Test func aLossLongerThanTheSessionTimeoutGetsANewSession() throws {
        let sim = try OPCUASimulator(extra: 1, churnPeriod: 0.1)
        defer { sim.kill() }
        let proxy = try FaultProxy(targetPort: sim.port)
        defer { proxy.stop() }
        let got = Collector<Double>()
        // asyncua's shortest session timeout is 5 s.
        let c = try subscribedClient(proxy: proxy, sessionTimeout: 5, got: got, namespace: sim.namespace)
        defer { c.disconnect() }
        #expect(eventually(timeout: 5) { got.count >= 5 })
        let session = c.sessionId

        proxy.set(.blackHole)
        #expect(eventually(timeout: 5) { c.state != .connected }, "loss not detected")
        usleep(8_000_000)
        let resumeFrom = (got.all.last ?? 0) + 70
        proxy.set(.none)
        #expect(eventually(timeout: 15) { c.state == .connected }, "no reconnect")
        #expect(eventually(timeout: 5) { (got.all.last ?? 0) > resumeFrom }, "data did not resume")
        #expect(c.sessionId != session)
        #expect(c.lastRecovery?.path == .recreated, "\(String(describing: c.lastRecovery))")
        #expect(c.recoveries.reactivated == 0)
    }
}
