import Foundation
import TestSupport
import Testing

@testable import OPCUA

#if canImport(Glibc)
    import Glibc
#endif

/// The server process is killed (SIGKILL) and restarted on the same port while the client subscribes.
@Suite(.serialized) struct ResilienceTests {
    /// While the server is away: `.sleep` leaves the port closed for that long; `.measureBackoff` puts a listener on
    /// the port that accepts and closes every connection, and keeps it until it has seen `attempts` reconnects.
    enum Downtime {
        case sleep(Double)
        case measureBackoff(attempts: Int)
    }

    /// The reconnect delays of the backoff measurement: from 0.2 s, doubling, capped at 4 s.
    static let backoffMin = 0.2
    static let backoffMax = 4.0

    private func restartScenario(
        security: (OPCUASimulator) throws -> SecurityConfiguration, downtime: Downtime
    ) throws {
        // Owned here, so that the restarted server finds the certificate it had.
        let pki = try TemporaryDirectory("opcua-sim-pki")
        defer { pki.remove() }
        var sim = try OPCUASimulator(pkiDirectory: pki.path)
        let port = sim.port
        let states = Collector<ConnectionState>()
        var config = ClientConfiguration(
            requestTimeout: 3, keepAliveInterval: 0.5, reconnectMinDelay: 0.1, reconnectMaxDelay: 1
        ) { states.append(contentsOf: [$0]) }
        if case .measureBackoff = downtime {
            config.reconnectMinDelay = Self.backoffMin
            config.reconnectMaxDelay = Self.backoffMax
        }
        let c = OPCUAClient(configuration: config)
        try c.connect(endpointURL: sim.endpoint, security: try security(sim))
        defer { c.disconnect() }
        let got = Collector<DataChange>()
        _ = try c.subscribe(
            [MonitoredItem(NodeId("QuadTank.h1", namespace: sim.namespace), samplingInterval: 50)],
            publishingInterval: 50
        ) { got.append(contentsOf: $0) }
        #expect(eventually(timeout: 5) { got.count >= 3 })

        sim.kill()
        var listener: AttemptListener?
        if case .measureBackoff = downtime { listener = try AttemptListener(port: port) }
        #expect(eventually(timeout: 5) { c.state != .connected }, "loss not detected")
        // While the server is away calls fail fast instead of hanging.
        if let error = #expect(throws: (any Error).self, performing: { try c.read([NodeId(2258)]) }) {
            #expect(error as? OPCUAError == .notConnected)
        }
        switch downtime {
        case .sleep(let seconds):
            usleep(UInt32(seconds * 1_000_000))
        case .measureBackoff(let wanted):
            let times = listener!.waitForAttempts(wanted, timeout: 30)
            listener!.stop()
            listener = nil
            checkBackoff(times, wanted: wanted)
        }
        sim = try OPCUASimulator(port: port, pkiDirectory: pki.path)
        defer { sim.kill() }
        #expect(eventually(timeout: 15) { c.state == .connected }, "no reconnect: \(states.all)")
        got.reset()
        #expect(eventually(timeout: 10) { got.count >= 3 }, "data did not resume")
        #expect(got.all.allSatisfy { $0.nodeId == NodeId("QuadTank.h1", namespace: sim.namespace) })
        #expect(try c.read([NodeId(2258)])[0].status.isGood)
        #expect(c.reconnectCount >= 1)
        if case .measureBackoff = downtime {
            // Several failed attempts while the server was away, spaced by the backoff.
            let attempts = states.all.compactMap { s -> Int? in
                if case .reconnecting(let a) = s { return a }
                return nil
            }
            #expect(attempts.max() ?? 0 >= 2, "\(states.all)")
            #expect(attempts.max() ?? 99 < 40, "backoff not applied: \(states.all)")
        }
    }

    /// The gaps between reconnect attempts must grow. Each delay is drawn from [d/2, d], with d doubling from
    /// `backoffMin` (0.2 s) up to `backoffMax`, and the client acts on it at its next 0.1 s tick. Whichever attempt is
    /// the first one seen (the listener may miss the earliest), with the backoff the fifth gap is at least 4 times
    /// the first one's d and the five gaps take at least 3.1 s; a constant retry at the minimum delay gives gaps of
    /// at most about 0.3 s, 1.5 s for five.
    private func checkBackoff(_ times: [Double], wanted: Int, sourceLocation: SourceLocation = #_sourceLocation) {
        let described = times.map { String(format: "%.3f", $0 - (times.first ?? 0)) }.joined(separator: ", ")
        guard times.count >= wanted else {
            Issue.record(
                "only \(times.count) reconnect attempts reached the port within 30 s: \(described)",
                sourceLocation: sourceLocation)
            return
        }
        let gaps = (1..<wanted).map { times[$0] - times[$0 - 1] }
        let text = "attempts at \(described) s"
        // Later gaps are larger than earlier ones (the first is at most d + 0.1 s plus scheduling noise).
        #expect(gaps[4] >= 2 * gaps[0], "\(text)", sourceLocation: sourceLocation)
        #expect(gaps[3] + gaps[4] >= 2 * (gaps[0] + gaps[1]), "\(text)", sourceLocation: sourceLocation)
        // Fewer attempts than a constant minimum retry: five gaps take well over its 1.5 s.
        #expect(gaps.prefix(5).reduce(0, +) >= 2.5, "\(text)", sourceLocation: sourceLocation)
    }

    @Test("Server restart mid-subscription resumes data, with reconnects backed off")
    func serverRestartMidSubscriptionResumesData() throws {
        try restartScenario(security: { _ in .none }, downtime: .measureBackoff(attempts: 6))
    }

    @Test("Server restart resumes over Basic256Sha256")
    func serverRestartResumesOverBasic256Sha256() throws {
        let id = try ApplicationIdentity.generate(applicationUri: "urn:edgepilot:opcua-client", applicationName: "t")
        let clientPKI = try TemporaryDirectory("opcua-client-pki")
        defer { clientPKI.remove() }
        try restartScenario(
            security: { sim in
                let pki = clientPKI.path
                try FileManager.default.createDirectory(atPath: pki + "/trusted", withIntermediateDirectories: true)
                try FileManager.default.copyItem(atPath: sim.certificatePath!, toPath: pki + "/trusted/server.der")
                return SecurityConfiguration(identity: id, trust: .trustList(pkiDirectory: pki))
            }, downtime: .sleep(0.2))
    }
}

/// Listens on a given 127.0.0.1 port (the one the killed server had) and accepts and at once closes every
/// connection, recording when each arrived: to the client, a server that is there but fails every attempt.
final class AttemptListener: @unchecked Sendable {
    private let fd: Int32
    private let lock = NSLock()
    private var times: [Double] = []
    private var stopped = false
    private let finished = DispatchSemaphore(value: 0)

    init(port: Int) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var yes: Int32 = 1
        // The killed server's connections may linger in TIME_WAIT on this port.
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let deadline = Date().addingTimeInterval(5)
        var bound = false
        while !bound && Date() < deadline {
            bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
                }
            }
            if !bound { usleep(5_000) }
        }
        guard bound, listen(fd, 16) == 0 else {
            let e = errno
            close(fd)
            throw TestFailure("cannot listen on 127.0.0.1:\(port): errno \(e)")
        }
        self.fd = fd
        let thread = Thread { [self] in
            run()
            finished.signal()
        }
        thread.name = "AttemptListener"
        thread.start()
    }

    private func run() {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while true {
            lock.lock()
            let stop = stopped
            lock.unlock()
            if stop { return }
            guard poll(&p, 1, 20) > 0 else { continue }
            let c = accept(fd, nil, nil)
            guard c >= 0 else { continue }
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            close(c)
            lock.lock()
            times.append(Double(now.tv_sec) + Double(now.tv_nsec) / 1e9)
            lock.unlock()
        }
    }

    /// Monotonic times (seconds) of the connections accepted so far.
    var attempts: [Double] {
        lock.lock()
        defer { lock.unlock() }
        return times
    }

    /// Waits until `count` connections arrived or `timeout` passed; returns their times.
    func waitForAttempts(_ count: Int, timeout: Double) -> [Double] {
        _ = eventually(timeout: timeout) { attempts.count >= count }
        return attempts
    }

    /// Stops accepting and closes the port.
    func stop() {
        lock.lock()
        let already = stopped
        stopped = true
        lock.unlock()
        if already { return }
        finished.wait()
        close(fd)
    }

    deinit { stop() }
}
