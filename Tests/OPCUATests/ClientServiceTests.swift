import Foundation
import TestSupport
import Testing

@testable import OPCUA

/// Every service against asyncua's server (Simulators/opcua_server.py), over SecurityPolicy None.
@Suite(.serialized, .simulator { try OPCUASimulator(extra: 10_000) })
final class ClientServiceTests {
    /// Clients a test connected through `connected`, disconnected when the test ends.
    private var clients: [OPCUAClient] = []

    deinit { for c in clients { c.disconnect() } }

    private var sim: OPCUASimulator { get throws { try SharedSimulator.get() } }

    private func connected(
        _ identity: UserIdentity = .anonymous, configuration: ClientConfiguration = ClientConfiguration()
    ) throws -> OPCUAClient {
        let c = OPCUAClient(configuration: configuration)
        try c.connect(endpointURL: try sim.endpoint, security: .none, identity: identity)
        clients.append(c)
        return c
    }

    private func ns() throws -> UInt16 { try sim.namespace }

    @Test("Get endpoints lists policies and tokens")
    func getEndpointsListsPoliciesAndTokens() throws {
        let eps = try OPCUAClient.getEndpoints(endpointURL: try sim.endpoint)
        let pairs = Set(eps.map { "\($0.securityPolicyUri.split(separator: "#").last!)/\($0.securityMode)" })
        #expect(
            pairs.isSuperset(of: [
                "None/None", "Basic256Sha256/SignAndEncrypt", "Basic256Sha256/Sign",
                "Aes128_Sha256_RsaOaep/SignAndEncrypt",
            ]), "\(pairs)")
        let none = try #require(eps.first { $0.securityMode == .none })
        #expect(Set(none.userIdentityTokens.map(\.tokenType)) == [.anonymous, .userName])
        #expect(!none.serverCertificate.isEmpty)
        #expect(none.server.applicationUri == "urn:edgepilot:opcua-sim")
    }

    @Test("Read every built-in type from the server")
    func readEveryBuiltinTypeFromServer() throws {
        let c = try connected()
        let ns = try ns()
        let names = [
            "Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Float", "Double",
            "String", "DateTime", "Guid", "ByteString", "XmlElement", "NodeId", "ExpandedNodeId", "StatusCode",
            "QualifiedName", "LocalizedText",
        ]
        let values = try c.read(names.map { NodeId("Scalar.\($0)", namespace: ns) })
        for (n, v) in zip(names, values) { #expect(v.status.isGood, "\(n): \(v.status)") }
        let expected: [Variant] = [
            .boolean(true), .sbyte(-12), .byte(200), .int16(-30000), .uint16(60000), .int32(-2_000_000_000),
            .uint32(4_000_000_000), .int64(-9_000_000_000_000_000_000), .uint64(18_000_000_000_000_000_000),
            .float(1.5), .double(3.141592653589793), .string("Grüße, OPC UA"),
            .dateTime(DateTime(Date(timeIntervalSince1970: 1_715_949_045.123456))),
            .guid(UUID(uuidString: "72962b91-fa75-4ae6-8d28-b404dc7daf63")!), .byteString([0, 1, 2, 255]),
            .xmlElement("<a>1</a>"), .nodeId(NodeId("Some.Node", namespace: 2)),
            .expandedNodeId(ExpandedNodeId(NodeId(1234), namespaceUri: "urn:x", serverIndex: 3)),
            .statusCode(.badTypeMismatch), .qualifiedName(QualifiedName(namespace: 2, "Name")),
            .localizedText(LocalizedText("Hallo", locale: "de-DE")),
        ]
        for (i, e) in expected.enumerated() { #expect(values[i].value == e, "\(names[i])") }
        #expect(values[0].sourceTimestamp != nil)
        #expect(values[0].serverTimestamp != nil)
    }

    @Test("Read arrays, a matrix and every NodeId form")
    func readArraysMatrixAndEveryNodeIdForm() throws {
        let c = try connected()
        let ns = try ns()
        let v = try c.read([
            NodeId("Array.Int32", namespace: ns), NodeId("Matrix.Double", namespace: ns), NodeId(4242, namespace: ns),
            NodeId(namespace: ns, .guid(UUID(uuidString: "72962b91-fa75-4ae6-8d28-b404dc7daf63")!)),
            NodeId(namespace: ns, .opaque([0xDE, 0xAD, 0xBE, 0xEF, 0x01, 0x02])), NodeId("Array.String", namespace: ns),
            NodeId("No.Such.Node", namespace: ns),
        ])
        #expect(v[0].value == .array(try VariantArray(.int32, [.int32(1), .int32(-2), .int32(3), .int32(-4)])))
        guard case .array(let m) = v[1].value else {
            Issue.record("matrix: \(v[1])")
            return
        }
        #expect(m.dimensions == [2, 3])
        #expect(m.elements.count == 6)
        #expect(v[2].value == .int32(42))
        #expect(v[3].value == .string("guid"))
        #expect(v[4].value == .string("opaque"))
        #expect(v[5].value == .array(try VariantArray(.string, [.string("a"), .string(""), .string("ç")])))
        #expect(v[6].status == .badNodeIdUnknown)
        #expect(v[6].status.name == "BadNodeIdUnknown")
    }

    @Test("Write then read back and type mismatch")
    func writeThenReadBackAndTypeMismatch() throws {
        let c = try connected()
        let ns = try ns()
        let v1 = NodeId("QuadTank.v1", namespace: ns)
        let arr = NodeId("Array.Double", namespace: ns)
        let results = try c.write([
            (v1, .double(4.25)), (arr, .doubles([9, 8, 7, 6])), (NodeId("Scalar.Int32", namespace: ns), .double(1)),
        ])
        #expect(results[0] == .good)
        #expect(results[1] == .good)
        #expect(results[2].name == "BadTypeMismatch")
        let back = try c.read([v1, arr])
        #expect(back[0].value == .double(4.25))
        #expect(back[1].value == .doubles([9, 8, 7, 6]))
        _ = try c.write([(v1, .double(3))])
    }

    @Test("Browse with continuation points and translate")
    func browseWithContinuationPointsAndTranslate() throws {
        let c = try connected()
        let ns = try ns()
        let all = try c.browse(NodeId("Scalar", namespace: ns))
        #expect(all.count == 21)
        // Two references per call forces ten BrowseNext round trips.
        let paged = try c.browse(NodeId("Scalar", namespace: ns), maxReferencesPerCall: 2)
        #expect(Set(paged.map(\.nodeId)) == Set(all.map(\.nodeId)))
        let objects = try c.browse(NodeId(85))
        #expect(objects.contains { $0.browseName == QualifiedName(namespace: ns, "QuadTank") })
        let h1 = try c.translateBrowsePath(
            path: [
                RelativePathElement(QualifiedName(namespace: ns, "QuadTank")),
                RelativePathElement(QualifiedName(namespace: ns, "h1")),
            ])
        #expect(h1 == NodeId("QuadTank.h1", namespace: ns))
        #expect(throws: (any Error).self) {
            try c.translateBrowsePath(path: [RelativePathElement(QualifiedName(namespace: ns, "Nope"))])
        }
        if let e = #expect(throws: (any Error).self, performing: { try c.browse(NodeId("No.Such", namespace: ns)) }) {
            // asyncua says BadNodeIdInvalid where the spec suggests BadNodeIdUnknown; either names the node.
            let s = (e as? OPCUAError)?.statusCode
            #expect(s == .badNodeIdUnknown || s == StatusCode(0x8033_0000), "\(e)")
        }
    }

    @Test("Read 10,000 nodes in one request")
    func read10000NodesInOneRequest() throws {
        let c = try connected()
        let ns = try ns()
        let ids = (0..<10_000).map { NodeId(UInt32(100_000 + $0), namespace: ns) }
        var best = Double.infinity
        var values: [DataValue] = []
        for _ in 0..<3 {
            let start = Date()
            values = try c.read(ids, timestamps: .neither)
            best = min(best, Date().timeIntervalSince(start))
        }
        #expect(values.count == 10_000)
        for (k, v) in values.enumerated() where v.value != .double(Double(k)) {
            Issue.record("node \(k): \(v)")
            return
        }
        // A figure for the report, not an assertion: the asyncua server dominates this time.
        print("read of 10,000 nodes, best of 3: \(String(format: "%.3f", best)) s")
    }

    @Test("User name identity with encrypted password and wrong password")
    func userNameIdentityWithEncryptedPasswordAndWrongPassword() throws {
        // On the None endpoint asyncua's UserName token policy is Basic256Sha256, so the password travels
        // RSA-OAEP encrypted; the server decrypting and accepting it proves the encryption.
        let c = try connected(.userName("operator", password: "secret"))
        #expect(try c.read([NodeId(2259)])[0].status.isGood)
        let bad = OPCUAClient()
        if let e = #expect(
            throws: (any Error).self,
            performing: {
                try bad.connect(
                    endpointURL: try sim.endpoint, security: .none, identity: .userName("operator", password: "wrong"))
            })
        {
            #expect((e as? OPCUAError)?.statusCode == .badUserAccessDenied, "\(e)")
        }
        #expect(bad.state == .disconnected)
    }

    @Test("Subscription delivers changes and deadband filters")
    func subscriptionDeliversChangesAndDeadbandFilters() throws {
        let c = try connected()
        let ns = try ns()
        let all = Collector<DataChange>()
        let filtered = Collector<DataChange>()
        // The tank settles during a long run and then its levels stop changing: a step on pump 1 makes h1 move.
        let v1 = NodeId("QuadTank.v1", namespace: ns)
        _ = try c.write([(v1, .double(3.6))])
        defer { _ = try? c.write([(v1, .double(3.0))]) }
        let (_, results) = try c.subscribe(
            [
                MonitoredItem(NodeId("QuadTank.h1", namespace: ns), samplingInterval: 50),
                MonitoredItem(NodeId("QuadTank.h3", namespace: ns), samplingInterval: 50),
                MonitoredItem(NodeId("Nope", namespace: ns)),
            ],
            publishingInterval: 100
        ) { all.append(contentsOf: $0) }
        #expect(results[0] == .good)
        #expect(results[2] == .badNodeIdUnknown)
        let v2 = NodeId("QuadTank.v2", namespace: ns)
        _ = try c.subscribe([MonitoredItem(v2, samplingInterval: 20, deadband: .absolute(1.0))], publishingInterval: 50)
        {
            filtered.append(contentsOf: $0)
        }
        #expect(eventually(timeout: 10) { Set(all.all.map(\.itemIndex)).isSuperset(of: [0, 1]) && all.count >= 6 })
        #expect(all.all.allSatisfy { $0.value.value.doubleValue != nil && $0.value.status.isGood })
        #expect(all.all.first { $0.itemIndex == 0 }?.nodeId == NodeId("QuadTank.h1", namespace: ns))
        #expect(eventually(timeout: 5) { filtered.count >= 1 })  // initial value
        // Changes of 0.3 stay inside the deadband of 1.0; a change of 2 passes.
        for v in [3.3, 3.6, 3.9] {
            _ = try c.write([(v2, .double(v))])
            usleep(150_000)
        }
        _ = try c.write([(v2, .double(5.0))])
        #expect(eventually(timeout: 5) { filtered.all.contains { $0.value.value == .double(5.0) } })
        let seen = filtered.all.compactMap { $0.value.value.doubleValue }
        #expect(!(seen.contains(3.3) || seen.contains(3.6) || seen.contains(3.9)), "\(seen)")
        _ = try c.write([(v2, .double(3.0))])
    }

    @Test("Percent deadband is a share of the EU range")
    func percentDeadbandIsAShareOfTheEURange() throws {
        let c = try connected()
        let ns = try ns()
        let level = NodeId("Analog.Level", namespace: ns)
        let got = Collector<DataChange>()
        let (_, results) = try c.subscribe(
            [
                MonitoredItem(level, samplingInterval: 20, deadband: .percent(2)),
                // No EURange: the server refuses a percent deadband on it.
                MonitoredItem(NodeId("Scalar.Double", namespace: ns), deadband: .percent(2)),
            ],
            publishingInterval: 50
        ) { got.append(contentsOf: $0) }
        #expect(results[0] == .good)
        #expect(results[1].name == "BadFilterNotAllowed")
        #expect(eventually(timeout: 5) { got.count >= 1 })  // the initial value
        #expect(got.all.map(\.value.value) == [.double(50)])
        // 2 % of EURange 0…100 is 2.0, measured from the last reported value: 51.5 is inside, 52.5 is not.
        for v in [50.5, 51.0, 51.5] {
            #expect(try c.write([(level, .double(v))]) == [.good])
            usleep(150_000)
        }
        #expect(try c.read([level])[0].value == .double(51.5))
        #expect(got.all.map(\.value.value) == [.double(50)])
        _ = try c.write([(level, .double(52.5))])
        #expect(eventually(timeout: 5) { got.count >= 2 })
        #expect(got.all.map(\.value.value) == [.double(50), .double(52.5)])
        #expect(got.all.allSatisfy { $0.itemIndex == 0 })
        _ = try c.write([(level, .double(50))])
    }

    /// Nothing the client pools or caches for Publish and Read may keep a closed channel (and its socket) alive.
    @Test("Disconnect releases the channel")
    func disconnectReleasesTheChannel() throws {
        weak var channel: SecureChannel?
        do {
            let c = OPCUAClient()
            try c.connect(endpointURL: try sim.endpoint, security: .none)
            let got = Collector<Int>()
            _ = try c.subscribe(
                [MonitoredItem(NodeId("QuadTank.h1", namespace: try ns()), samplingInterval: 20)],
                publishingInterval: 20
            ) { batch in got.append(contentsOf: batch.map(\.index)) }
            let read = PreparedRead([NodeId("QuadTank.h2", namespace: try ns())])
            try c.read(read) { values in #expect(values.map(\.index) == [0]) }
            #expect(eventually(timeout: 5) { got.count >= 5 })
            channel = c.currentChannel
            #expect(channel != nil)
            c.disconnect()
        }
        #expect(eventually(timeout: 5) { channel == nil })
    }

    @Test("Unsubscribe stops callbacks")
    func unsubscribeStopsCallbacks() throws {
        let c = try connected()
        let got = Collector<DataChange>()
        let (id, _) = try c.subscribe(
            [MonitoredItem(NodeId("QuadTank.h2", namespace: try ns()), samplingInterval: 50)],
            publishingInterval: 50
        ) { got.append(contentsOf: $0) }
        #expect(eventually(timeout: 5) { got.count >= 2 })
        try c.unsubscribe(id)
        usleep(300_000)
        let n = got.count
        usleep(500_000)
        #expect(got.count == n)
    }

    @Test("Sequence number wraps around")
    func sequenceNumberWrapsAround() throws {
        let c = OPCUAClient()
        c.initialSequenceNumber = UInt32.max - 1030
        try c.connect(endpointURL: try sim.endpoint, security: .none)
        defer { c.disconnect() }
        // With policy None the session runs on the discovery channel, so the wrap happens within the first
        // dozen messages; asyncua checks that each number follows the last (wrapping only below 1024).
        for _ in 0..<20 { #expect(try c.read([NodeId(2258)])[0].status.isGood) }
        #expect(c.reconnectCount == 0)
        #expect(c.state == .connected)
    }

    @Test("Session closed behind the client's back is recreated")
    func sessionClosedBehindTheClientsBackIsRecreated() throws {
        let states = Collector<ConnectionState>()
        let c = try connected(
            configuration: ClientConfiguration(reconnectMinDelay: 0.05) { states.append(contentsOf: [$0]) })
        let got = Collector<DataChange>()
        _ = try c.subscribe(
            [MonitoredItem(NodeId("QuadTank.h1", namespace: try ns()), samplingInterval: 50)],
            publishingInterval: 50
        ) { got.append(contentsOf: $0) }
        try c.closeSessionBehindClientsBack()
        if let e = #expect(throws: (any Error).self, performing: { try c.read([NodeId(2258)]) }) {
            let s = (e as? OPCUAError)?.statusCode
            // asyncua answers BadSessionNotActivated for a closed session; others say BadSessionIdInvalid/Closed. The
            // server may also drop the connection right after the close, so the read can meet a broken pipe first.
            let expected: [StatusCode?] = [.badSessionIdInvalid, .badSessionClosed, .badSessionNotActivated]
            var transport = false
            if case .transport = e as? OPCUAError { transport = true }
            #expect(expected.contains(s) || e as? OPCUAError == .notConnected || transport, "\(e)")
        }
        #expect(eventually(timeout: 10) { c.reconnectCount >= 1 && c.state == .connected })
        #expect(try c.read([NodeId(2258)])[0].status.isGood)
        got.reset()
        #expect(eventually(timeout: 5) { got.count >= 2 }, "subscription not recreated")
        #expect(states.all.contains(.reconnecting(attempt: 0)))
    }

    @Test("Session timeout is prevented by keep-alive and recovered without")
    func sessionTimeoutIsPreventedByKeepAliveAndRecoveredWithout() throws {
        // asyncua's shortest session timeout is 5 s. One client keeps its session alive with a Read every
        // second; the other sends nothing, loses its session, and recovers after the first failed call.
        let alive = try connected(configuration: ClientConfiguration(sessionTimeout: 5, keepAliveInterval: 1))
        let idle = try connected(
            configuration: ClientConfiguration(sessionTimeout: 5, keepAliveInterval: 1000, reconnectMinDelay: 0.05))
        usleep(6_500_000)
        #expect(try alive.read([NodeId(2258)])[0].status.isGood)
        #expect(alive.reconnectCount == 0)
        #expect(throws: (any Error).self) { try idle.read([NodeId(2258)]) }
        #expect(eventually(timeout: 10) { idle.reconnectCount == 1 && idle.state == .connected })
        #expect(try idle.read([NodeId(2258)])[0].status.isGood)
    }

    @Test("Network loss reconnects and resubscribes")
    func networkLossReconnectsAndResubscribes() throws {
        let c = try connected(configuration: ClientConfiguration(reconnectMinDelay: 0.05))
        let got = Collector<DataChange>()
        // A variable no other test changes: the tank's levels settle during a long run and then stop changing,
        // so they cannot show that changes flow again.
        let node = NodeId(UInt32(100_000 + 9_999), namespace: try ns())
        defer { _ = try? c.write([(node, .double(9_999))]) }  // the 10,000-node read expects Extra.k == k
        _ = try c.subscribe([MonitoredItem(node, samplingInterval: 50)], publishingInterval: 50) {
            got.append(contentsOf: $0)
        }
        #expect(eventually(timeout: 5) { got.count >= 1 })
        try c.dropConnection()
        #expect(eventually(timeout: 10) { c.reconnectCount >= 1 && c.state == .connected })
        // The recreated item's first report may already be in (and is the old value): what shows that the
        // subscription lives again is a change made after the reconnect arriving.
        _ = try c.write([(node, .double(-1))])
        #expect(eventually(timeout: 5) { got.all.contains { $0.value.value == .double(-1) } })
    }

    @Test("Channel token is renewed")
    func channelTokenIsRenewed() throws {
        let c = try connected(configuration: ClientConfiguration(channelLifetime: 2))
        let first = try #require(c.channelTokenInfo)
        #expect(eventually(timeout: 8) { (c.channelTokenInfo?.id ?? first.id) != first.id }, "token not renewed")
        // Requests keep working on the new token, and the old channel was not torn down.
        #expect(try c.read([NodeId(2258)])[0].status.isGood)
        #expect(c.reconnectCount == 0)
    }

    @Test("Token renewal failure reconnects")
    func tokenRenewalFailureReconnects() throws {
        let got = Collector<DataChange>()
        let c = try connected(configuration: ClientConfiguration(reconnectMinDelay: 0.05, channelLifetime: 2))
        let node = NodeId(UInt32(100_000 + 9_998), namespace: try ns())
        defer { _ = try? c.write([(node, .double(9_998))]) }  // the 10,000-node read expects Extra.k == k
        _ = try c.subscribe([MonitoredItem(node, samplingInterval: 50)], publishingInterval: 50) {
            got.append(contentsOf: $0)
        }
        try c.injectRenewalFault()
        #expect(eventually(timeout: 10) { c.reconnectCount == 1 && c.state == .connected })
        #expect(c.lastConnectionError?.statusCode == .badSecurityChecksFailed)
        #expect(try c.read([NodeId(2258)])[0].status.isGood)
        got.reset()
        _ = try c.write([(node, .double(-2))])
        #expect(eventually(timeout: 5) { got.all.contains { $0.value.value == .double(-2) } })
    }

    @Test("Service calls when not connected throw")
    func serviceCallsWhenNotConnectedThrow() {
        let c = OPCUAClient()
        if let error = #expect(throws: (any Error).self, performing: { try c.read([NodeId(2258)]) }) {
            #expect(error as? OPCUAError == .notConnected)
        }
        if let e = #expect(
            throws: (any Error).self,
            performing: { try c.connect(endpointURL: "opc.tcp://127.0.0.1:1/", security: .none) })
        {
            guard case .transport = e as? OPCUAError else {
                Issue.record("\(e)")
                return
            }
        }
    }
}
