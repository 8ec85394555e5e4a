import Foundation
import Sparkplug
import Testing

private let group = "Plant1"
private let nodeID = "edgepilot-1"

private func session(primaryHost: String? = nil, lastBdSeq: UInt8? = nil, aliases: Bool = true) throws
    -> EdgeNodeSession
{
    try EdgeNodeSession(
        configuration: EdgeNodeConfiguration(
            groupID: group, edgeNodeID: nodeID, primaryHostID: primaryHost, useAliases: aliases),
        nodeMetrics: [
            SparkplugMetric(name: "Uptime", timestamp: 1, value: .int64(0)),
            SparkplugMetric(name: "Mode", timestamp: 1, value: .string("auto"), properties: [.quality(.good)]),
        ],
        lastBdSeq: lastBdSeq)
}

private let pumpMetrics = [
    SparkplugMetric(
        name: "Flow", timestamp: 1, value: .float(0), properties: [.engUnit("m3/h"), .engLow(0), .engHigh(50)]),
    SparkplugMetric(name: "Running", timestamp: 1, value: .boolean(false)),
]

extension Array where Element == EdgeNodeAction {
    fileprivate var publications: [SparkplugPublication] {
        compactMap { if case .publish(let p) = $0 { p } else { nil } }
    }
    fileprivate var subscriptions: [String] { compactMap { if case .subscribe(let t, _) = $0 { t } else { nil } } }
    fileprivate func decoded() throws -> [(String, SparkplugPayload)] {
        try publications.map { ($0.topic, try SparkplugPayload(decoding: $0.payload)) }
    }
}

private func ncmd(_ metrics: [SparkplugMetric]) throws -> [UInt8] {
    try SparkplugPayload(timestamp: 5, metrics: metrics).serialized()
}

@Suite struct EdgeNodeSessionTests {
    @Test func willIsNDeathWithIncrementingBdSeqThatWraps() throws {
        var s = try session(lastBdSeq: 254)
        let will = s.prepareConnect(now: 100)
        #expect(will.topic == "spBv1.0/Plant1/NDEATH/edgepilot-1")
        #expect(will.qos == 1)
        #expect(will.retain == false)
        let p = try SparkplugPayload(decoding: will.payload)
        #expect(p.seq == nil)  // tck-id-payloads-ndeath-seq
        #expect(p.metrics.count == 1)
        #expect(p.metrics[0].name == "bdSeq")
        #expect(p.metrics[0].value == .int64(255))
        #expect(s.bdSeq == 255)
        _ = s.prepareConnect(now: 101)
        #expect(s.bdSeq == 0)
        _ = s.prepareConnect(now: 102)
        #expect(s.bdSeq == 1)

        var fresh = try session(lastBdSeq: nil)
        _ = fresh.prepareConnect(now: 1)
        #expect(fresh.bdSeq == 0)
    }

    @Test func connectSubscribesThenBirthsWithoutPrimaryHost() throws {
        var s = try session(lastBdSeq: 6)
        _ = try s.addDevice("Pump1", metrics: pumpMetrics, now: 50)
        _ = s.prepareConnect(now: 100)
        let actions = s.connected(now: 200)
        #expect(actions.subscriptions == ["spBv1.0/Plant1/NCMD/edgepilot-1", "spBv1.0/Plant1/DCMD/edgepilot-1/+"])
        // Subscriptions come before any publish.
        let firstPublish = actions.firstIndex { if case .publish = $0 { true } else { false } }
        #expect(firstPublish == 2)
        let msgs = try actions.decoded()
        try #require(msgs.count == 2)
        let (nbirthTopic, nbirth) = msgs[0]
        #expect(nbirthTopic == "spBv1.0/Plant1/NBIRTH/edgepilot-1")
        #expect(nbirth.seq == 0)
        #expect(nbirth.timestamp == 200)
        let names = nbirth.metrics.map(\.name)
        #expect(names == ["bdSeq", "Node Control/Rebirth", "Node Control/Next Server", "Uptime", "Mode"])
        #expect(nbirth.metrics[0].value == .int64(7))  // same bdSeq as the Will
        let rebirth = nbirth.metrics[1]
        #expect(rebirth.value == .boolean(false))
        #expect(rebirth.alias == nil)
        #expect(nbirth.metrics[3].alias != nil)
        #expect(nbirth.metrics.allSatisfy { $0.timestamp != nil })
        #expect(nbirth.metrics[4].quality == .good)
        let (dbirthTopic, dbirth) = msgs[1]
        #expect(dbirthTopic == "spBv1.0/Plant1/DBIRTH/edgepilot-1/Pump1")
        #expect(dbirth.seq == 1)
        #expect(dbirth.metrics.map(\.name) == ["Flow", "Running"])
        #expect(dbirth.metrics[0].properties.contains(.engUnit("m3/h")))
        // Aliases unique across node and devices (tck-id-payloads-alias-uniqueness).
        let aliases = (nbirth.metrics + dbirth.metrics).compactMap(\.alias)
        #expect(Set(aliases).count == aliases.count && aliases.count == 4)
        #expect(actions.publications.allSatisfy { $0.qos == 0 && !$0.retain })
    }

    @Test func seqIncrementsAcrossMessagesAndWrapsAt255() throws {
        var s = try session()
        _ = try s.addDevice("Pump1", metrics: pumpMetrics, now: 0)
        _ = s.prepareConnect(now: 0)
        var seqs: [UInt64] = try s.connected(now: 1).decoded().map { $0.1.seq! }
        for i in 0..<300 {
            let actions =
                i % 2 == 0
                // i + 1: an update equal to the value the host has (Uptime is born 0) is not sent again.
                ? try s.updateNode([SparkplugMetric(name: "Uptime", timestamp: 2, value: .int64(Int64(i + 1)))], now: 2)
                : try s.updateDevice(
                    "Pump1", [SparkplugMetric(name: "Flow", timestamp: 2, value: .float(Float(i)))], now: 2)
            seqs += try actions.decoded().map { $0.1.seq! }
        }
        #expect(seqs.count == 302)
        for (i, seq) in seqs.enumerated() {
            #expect(seq == UInt64(i % 256))
        }
    }

    @Test func dataCarriesOnlyAliasesAndChecksDeclarations() throws {
        var s = try session()
        _ = s.prepareConnect(now: 0)
        let birth = try s.connected(now: 1).decoded()[0].1
        let uptimeAlias = try #require(birth.metrics.first { $0.name == "Uptime" }?.alias)
        let data = try s.updateNode(
            [SparkplugMetric(name: "Uptime", timestamp: 9, value: .int64(-4), properties: [.quality(.stale)])], now: 10)
        let (topic, p) = try #require(try data.decoded().first)
        #expect(topic == "spBv1.0/Plant1/NDATA/edgepilot-1")
        #expect(p.metrics.count == 1)
        #expect(p.metrics[0].name == nil)  // tck-id-payloads-alias-data-cmd-requirement
        #expect(p.metrics[0].alias == uptimeAlias)
        #expect(p.metrics[0].value == .int64(-4))
        #expect(p.metrics[0].timestamp == 9)
        #expect(p.metrics[0].quality == .stale)

        #expect(throws: SparkplugError.self) {
            try s.updateNode([SparkplugMetric(name: "Uptime", timestamp: 9, value: .int32(1))], now: 10)
        }
        #expect(throws: SparkplugError.self) {
            try s.updateNode([SparkplugMetric(name: "NotDeclared", timestamp: 9, value: .int64(1))], now: 10)
        }
        // Without aliases, data carries names.
        var named = try session(aliases: false)
        _ = named.prepareConnect(now: 0)
        _ = named.connected(now: 1)
        let m = try named.updateNode([SparkplugMetric(name: "Mode", timestamp: 3, value: .string("manual"))], now: 3)
            .decoded()[0].1.metrics[0]
        #expect(m.name == "Mode" && m.alias == nil)
    }

    @Test func primaryHostStateGatesBirthAndOfflineMovesOn() throws {
        var s = try session(primaryHost: "Ignition")
        _ = s.prepareConnect(now: 0)
        let connect = s.connected(now: 1)
        #expect(connect.subscriptions.last == "spBv1.0/STATE/Ignition")
        #expect(connect.publications.isEmpty)  // tck-id-operational-behavior-edge-node-birth-sequence-wait
        #expect(s.phase == .waitingForPrimaryHost)
        // Data before the birth is kept, not sent.
        #expect(try s.updateNode([SparkplugMetric(name: "Uptime", timestamp: 2, value: .int64(77))], now: 2).isEmpty)

        let state = "spBv1.0/STATE/Ignition"
        #expect(
            try s.handleMessage(topic: state, payload: Array(#"{"online":false,"timestamp":500}"#.utf8), now: 3) != [])
        // Offline while waiting: NDEATH, disconnect, next server.
        _ = s.prepareConnect(now: 4)
        _ = s.connected(now: 5)
        // STATE timestamps count per connection (docs/decisions/0017): this connection's STATE is taken although
        // the previous connection saw a newer one (it may have been forged or from a wrong clock).
        let online = try s.handleMessage(topic: state, payload: Array(#"{"online":true,"timestamp":400}"#.utf8), now: 6)
        let births = try online.decoded()
        #expect(births.first?.0 == "spBv1.0/Plant1/NBIRTH/edgepilot-1")
        #expect(births.first?.1.metrics.first { $0.name == "Uptime" }?.value == .int64(77))
        #expect(s.phase == .online)
        #expect(s.primaryHostOnline == true && s.lastStateTimestamp == 400)
        #expect(
            try s.handleMessage(topic: state, payload: Array(#"{"online":true,"timestamp":600}"#.utf8), now: 7).isEmpty)
        // A repeated online STATE does not birth again.
        #expect(
            try s.handleMessage(topic: state, payload: Array(#"{"online":true,"timestamp":600}"#.utf8), now: 8).isEmpty)
        // An offline STATE older than the last online one is stale.
        #expect(
            try s.handleMessage(topic: state, payload: Array(#"{"online":false,"timestamp":550}"#.utf8), now: 9).isEmpty
        )
        let offline = try s.handleMessage(
            topic: state, payload: Array(#"{"online":false,"timestamp":700}"#.utf8), now: 10)
        try #require(offline.count == 3)
        let death = try #require(offline.publications.first)
        #expect(death.topic == "spBv1.0/Plant1/NDEATH/edgepilot-1")
        #expect(try SparkplugPayload(decoding: death.payload).metrics[0].value == .int64(Int64(s.bdSeq!)))
        #expect(offline[1] == .disconnect)
        #expect(offline[2] == .nextServer)
        #expect(s.phase == .disconnected)
        // Malformed STATE is an error and changes nothing.
        #expect(throws: SparkplugError.self) {
            try s.handleMessage(topic: state, payload: Array("ONLINE".utf8), now: 11)
        }
    }

    /// The forged STATE of issue 15 (online false, timestamp 2^64-1): refused, nothing changes; a STATE within the
    /// allowed skew still counts.
    @Test func stateFromTheFutureIsRefused() throws {
        var s = try session(primaryHost: "Ignition")
        let now: UInt64 = 1_700_000_000_000
        _ = s.prepareConnect(now: now)
        _ = s.connected(now: now)
        let state = "spBv1.0/STATE/Ignition"
        let online = try s.handleMessage(
            topic: state, payload: Array(#"{"online":true,"timestamp":1699999999000}"#.utf8), now: now)
        #expect(!online.isEmpty && s.phase == .online)
        #expect(throws: SparkplugError.self) {
            try s.handleMessage(
                topic: state, payload: Array(#"{"online":false,"timestamp":18446744073709551615}"#.utf8), now: now + 1)
        }
        #expect(s.phase == .online && s.primaryHostOnline == true && s.lastStateTimestamp == 1_699_999_999_000)
        let ahead = now + EdgeNodeSession.maxStateSkew
        let offline = try s.handleMessage(
            topic: state, payload: Array(#"{"online":false,"timestamp":\#(ahead)}"#.utf8), now: now + 2)
        #expect(offline.last == .nextServer && s.primaryHostOnline == false)
    }

    /// With Next Server not allowed (commands: off), the command reaches the caller as a refused node write.
    @Test func nextServerCanBeRefusedByPolicy() throws {
        var s = try EdgeNodeSession(
            configuration: EdgeNodeConfiguration(groupID: group, edgeNodeID: nodeID, allowNextServer: false),
            nodeMetrics: [], lastBdSeq: nil)
        _ = s.prepareConnect(now: 0)
        _ = s.connected(now: 1)
        let cmd = try ncmd([SparkplugMetric(name: "Node Control/Next Server", timestamp: 5, value: .boolean(true))])
        let actions = try s.handleMessage(topic: "spBv1.0/Plant1/NCMD/edgepilot-1", payload: cmd, now: 6)
        guard case .nodeCommand(let metrics)? = actions.first, actions.count == 1 else {
            Issue.record("\(actions)")
            return
        }
        #expect(metrics.map(\.name) == ["Node Control/Next Server"])
        #expect(s.phase == .online)
    }

    @Test func rebirthCommandRepeatsBirthsWithSameBdSeq() throws {
        var s = try session(lastBdSeq: 10)
        _ = try s.addDevice("Pump1", metrics: pumpMetrics, now: 0)
        _ = s.prepareConnect(now: 0)
        _ = s.connected(now: 1)
        _ = try s.updateNode([SparkplugMetric(name: "Uptime", timestamp: 2, value: .int64(5))], now: 2)
        #expect(s.seq == 2)
        let cmd = try ncmd([SparkplugMetric(name: "Node Control/Rebirth", timestamp: 5, value: .boolean(true))])
        let requested = try s.handleMessage(topic: "spBv1.0/Plant1/NCMD/edgepilot-1", payload: cmd, now: 6)
        #expect(requested.isEmpty, "coalesced: served when due")
        let due = try #require(s.rebirthDueAt)
        let actions = s.serveDueRebirth(now: due)
        let msgs = try actions.decoded()
        #expect(msgs.map(\.0) == ["spBv1.0/Plant1/NBIRTH/edgepilot-1", "spBv1.0/Plant1/DBIRTH/edgepilot-1/Pump1"])
        #expect(msgs.map { $0.1.seq } == [0, 1])
        #expect(msgs[0].1.metrics[0].value == .int64(11))
        #expect(msgs[0].1.metrics.first { $0.name == "Uptime" }?.value == .int64(5))  // current value
        // Rebirth=false does nothing.
        let no = try ncmd([SparkplugMetric(name: "Node Control/Rebirth", timestamp: 5, value: .boolean(false))])
        #expect(try s.handleMessage(topic: "spBv1.0/Plant1/NCMD/edgepilot-1", payload: no, now: 7).isEmpty)
    }

    @Test func nextServerCommandAndWritesReachTheCaller() throws {
        var s = try session()
        _ = try s.addDevice("Pump1", metrics: pumpMetrics, now: 0)
        _ = s.prepareConnect(now: 0)
        let birth = try s.connected(now: 1).decoded()
        let runningAlias = try #require(birth[1].1.metrics.first { $0.name == "Running" }?.alias)
        // DCMD by alias without datatype: resolved from the DBIRTH declaration.
        var write = SparkplugMetric(name: nil, alias: runningAlias, timestamp: 3, value: .boolean(true))
        write.dataType = .boolean
        var bytes = try ncmd([write])
        // Strip the datatype field the encoder always writes, as a host may.
        var raw = try SparkplugPayload(decoding: bytes)
        raw.metrics[0].dataType = .boolean
        bytes = try raw.serialized()
        let dcmd = try s.handleMessage(topic: "spBv1.0/Plant1/DCMD/edgepilot-1/Pump1", payload: bytes, now: 4)
        guard case .deviceCommand(let id, let metrics)? = dcmd.first else {
            Issue.record("expected a device command, got \(dcmd)")
            return
        }
        #expect(id == "Pump1")
        #expect(metrics.map(\.name) == ["Running"])
        #expect(metrics[0].value == .boolean(true))

        let mode = try ncmd([SparkplugMetric(name: "Mode", timestamp: 3, value: .string("manual"))])
        #expect(
            try s.handleMessage(topic: "spBv1.0/Plant1/NCMD/edgepilot-1", payload: mode, now: 5)
                == [.nodeCommand([SparkplugMetric(name: "Mode", timestamp: 3, value: .string("manual"))])])

        let next = try ncmd([SparkplugMetric(name: "Node Control/Next Server", timestamp: 3, value: .boolean(true))])
        let actions = try s.handleMessage(topic: "spBv1.0/Plant1/NCMD/edgepilot-1", payload: next, now: 6)
        #expect(actions.count == 3)
        #expect(actions.publications.first?.topic == "spBv1.0/Plant1/NDEATH/edgepilot-1")
        #expect(Array(actions.suffix(2)) == [.disconnect, .nextServer])
        #expect(s.phase == .disconnected)
    }

    @Test func deviceDeathAndRebirth() throws {
        var s = try session()
        _ = try s.addDevice("Pump1", metrics: pumpMetrics, now: 0)
        _ = s.prepareConnect(now: 0)
        _ = s.connected(now: 1)  // NBIRTH 0, DBIRTH 1
        let death = try s.deviceOffline("Pump1", now: 2).decoded()
        #expect(death.map(\.0) == ["spBv1.0/Plant1/DDEATH/edgepilot-1/Pump1"])
        #expect(death[0].1.seq == 2)
        #expect(death[0].1.timestamp == 2)
        #expect(try s.deviceOffline("Pump1", now: 3).isEmpty)  // already dead
        // Values change while the device is dead: no DDATA, but the next DBIRTH carries them.
        #expect(
            try s.updateDevice("Pump1", [SparkplugMetric(name: "Flow", timestamp: 4, value: .float(12.5))], now: 4)
                .isEmpty)
        let back = try s.deviceOnline("Pump1", now: 5).decoded()
        #expect(back.map(\.0) == ["spBv1.0/Plant1/DBIRTH/edgepilot-1/Pump1"])
        #expect(back[0].1.seq == 3)
        #expect(back[0].1.metrics.first { $0.name == "Flow" }?.value == .float(12.5))
        // A device declared later births at once when the node is online.
        let late = try s.addDevice("Pump2", metrics: pumpMetrics, now: 6).decoded()
        #expect(late.map(\.0) == ["spBv1.0/Plant1/DBIRTH/edgepilot-1/Pump2"])
        #expect(late[0].1.seq == 4)
    }

    @Test func shutdownPublishesNDeathBeforeDisconnect() throws {
        var s = try session(lastBdSeq: 3)
        _ = s.prepareConnect(now: 0)
        _ = s.connected(now: 1)
        let actions = s.shutdown(now: 9)
        #expect(actions.count == 2)
        let death = try #require(actions.publications.first)
        #expect(death.topic == "spBv1.0/Plant1/NDEATH/edgepilot-1")
        #expect(death.qos == 1 && !death.retain)
        #expect(try SparkplugPayload(decoding: death.payload).metrics[0].value == .int64(4))
        #expect(actions[1] == .disconnect)
        #expect(s.shutdown(now: 10).isEmpty)
        // Nothing is published after the connection is gone.
        #expect(try s.updateNode([SparkplugMetric(name: "Uptime", timestamp: 11, value: .int64(1))], now: 11).isEmpty)
    }

    @Test func malformedCommandsAreErrorsAndChangeNothing() throws {
        var s = try session()
        _ = s.prepareConnect(now: 0)
        _ = s.connected(now: 1)
        let seq = s.seq
        var rng = SplitMix64(seed: 7)
        for _ in 0..<500 {
            let garbage = (0..<Int(rng.next() % 40)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            _ = try? s.handleMessage(topic: "spBv1.0/Plant1/NCMD/edgepilot-1", payload: garbage, now: 2)
        }
        #expect(s.seq == seq)
        #expect(s.phase == .online)
        #expect(throws: SparkplugError.self) {
            try s.handleMessage(topic: "spBv1.0/Plant1/NCMD/other-node", payload: [], now: 3)
        }
        #expect(throws: SparkplugError.self) {
            try s.handleMessage(topic: "spBv1.0/Plant1/DCMD/edgepilot-1/Ghost", payload: [], now: 3)
        }
        // A command for an alias the node never declared.
        var ghost = SparkplugMetric(name: nil, alias: 999, timestamp: 1, value: .int64(1))
        ghost.dataType = .int64
        #expect(throws: SparkplugError.self) {
            try s.handleMessage(topic: "spBv1.0/Plant1/NCMD/edgepilot-1", payload: try ncmd([ghost]), now: 3)
        }
    }

    @Test func invalidConfigurationIsRejected() {
        #expect(throws: SparkplugError.self) {
            try EdgeNodeSession(
                configuration: EdgeNodeConfiguration(groupID: "a/b", edgeNodeID: "n"), nodeMetrics: [], lastBdSeq: nil)
        }
        #expect(throws: SparkplugError.self) {
            try EdgeNodeSession(
                configuration: EdgeNodeConfiguration(groupID: "g", edgeNodeID: "n+"), nodeMetrics: [], lastBdSeq: nil)
        }
        #expect(throws: SparkplugError.self) {
            try EdgeNodeSession(
                configuration: EdgeNodeConfiguration(groupID: "g", edgeNodeID: "n"),
                nodeMetrics: [
                    SparkplugMetric(name: "x", timestamp: 1, value: .int8(1)),
                    SparkplugMetric(name: "x", timestamp: 1, value: .int8(2)),
                ], lastBdSeq: nil)
        }
    }

    @Test func fileBdSeqStorePersistsAtomically() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("bdseq-\(UUID().uuidString)").path
        defer { unlink(path) }
        let store = FileBdSeqStore(path: path)
        #expect(store.load() == nil)
        try store.save(255)
        #expect(store.load() == 255)
        try store.save(0)
        #expect(FileBdSeqStore(path: path).load() == 0)
        try "garbage".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(store.load() == nil)
    }

    @Test func topicsParseAndFormat() throws {
        let t = try SparkplugTopic(parsing: "spBv1.0/G/DDATA/N/D")
        #expect(t == SparkplugTopic(groupID: "G", messageType: .ddata, edgeNodeID: "N", deviceID: "D"))
        #expect(t.description == "spBv1.0/G/DDATA/N/D")
        for bad in [
            "spBv1.0/G/DDATA/N", "spBv1.0/G/NDATA/N/D", "spAv1.0/G/NDATA/N", "spBv1.0//NDATA/N", "spBv1.0/G/FOO/N",
        ] {
            #expect(throws: SparkplugError.self) { try SparkplugTopic(parsing: bad) }
        }
    }
}
