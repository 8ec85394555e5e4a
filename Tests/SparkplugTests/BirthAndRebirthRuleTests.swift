import Foundation
import Sparkplug
import Testing

/// The session rules of docs/decisions/0016: births carry each metric's current quality, bdSeq advances per CONNECT
/// a broker may have accepted, and rebirth requests are coalesced; and of 0030: no data while a rebirth is pending,
/// no unchanged value sent again.
@Suite struct BirthAndRebirthRuleTests {
    private let ncmdTopic = "spBv1.0/Plant1/NCMD/edge1"

    private func session(lastBdSeq: UInt8? = nil) throws -> EdgeNodeSession {
        var s = try EdgeNodeSession(
            configuration: EdgeNodeConfiguration(groupID: "Plant1", edgeNodeID: "edge1"),
            nodeMetrics: [SparkplugMetric(name: "Uptime", timestamp: 1, value: .int64(0))], lastBdSeq: lastBdSeq)
        // Declared before the first poll: no value yet, quality bad.
        _ = try s.addDevice(
            "plant",
            metrics: [
                SparkplugMetric(
                    name: "pump1/voltage", timestamp: 1, nullOf: .float, properties: [.quality(.bad), .engUnit("V")])
            ], now: 1)
        return s
    }

    private func births(_ actions: [EdgeNodeAction]) throws -> [(String, SparkplugPayload)] {
        try actions.compactMap { a -> (String, SparkplugPayload)? in
            guard case .publish(let p) = a, p.topic.contains("BIRTH") else { return nil }
            return (p.topic, try SparkplugPayload(decoding: p.payload))
        }
    }

    private func rebirthRequest(_ at: UInt64) throws -> [UInt8] {
        try SparkplugPayload(
            timestamp: at,
            metrics: [SparkplugMetric(name: "Node Control/Rebirth", timestamp: at, value: .boolean(true))]
        ).serialized()
    }

    @Test func birthCarriesTheQualityOfTheValueItCarries() throws {
        var s = try session()
        _ = s.prepareConnect(now: 2)
        let first = try births(s.connected(now: 3))
        #expect(first.last?.1.metrics.first?.quality == .bad, "nothing read yet")
        // The first poll: a good value, published as data.
        _ = try s.updateDevice(
            "plant",
            [SparkplugMetric(name: "pump1/voltage", timestamp: 4, value: .float(2), properties: [.quality(.good)])],
            now: 4)
        // A new connection births again: the value and its quality, and the declared properties are kept.
        s.connectionLost()
        _ = s.prepareConnect(now: 5)
        let again = try births(s.connected(now: 6))
        let voltage = try #require(again.last?.1.metrics.first)
        #expect(voltage.value == .float(2))
        #expect(voltage.quality == .good)
        #expect(voltage.properties.contains { $0.key == "engUnit" })
    }

    @Test func bdSeqIsReusedUntilACONNECTMayHaveBeenAccepted() throws {
        var s = try session(lastBdSeq: 4)
        _ = s.prepareConnect(now: 1)
        #expect(s.bdSeq == 5)
        // Refused (or TCP/TLS failed) three times: no broker holds the Will, bdSeq 5 is used again.
        for t in 2...4 {
            s.connectNotAccepted()
            _ = s.prepareConnect(now: UInt64(t))
            #expect(s.bdSeq == 5)
        }
        let nbirth = try #require(try births(s.connected(now: 5)).first)
        #expect(nbirth.1.metrics.first { $0.name == "bdSeq" }?.value == .int64(5))
        // Accepted, then lost: the next CONNECT takes the next bdSeq.
        s.connectionLost()
        _ = s.prepareConnect(now: 6)
        #expect(s.bdSeq == 6)
        // An attempt whose outcome is unknown counts as a CONNECT.
        _ = s.prepareConnect(now: 7)
        #expect(s.bdSeq == 7)
        // A refusal reported while online changes nothing (it cannot concern this connection).
        _ = s.connected(now: 8)
        s.connectNotAccepted()
        s.connectionLost()
        _ = s.prepareConnect(now: 9)
        #expect(s.bdSeq == 8)
    }

    @Test func aBurstOfRebirthRequestsGivesOneSetOfBirths() throws {
        var s = try session()
        _ = s.prepareConnect(now: 1000)
        _ = s.connected(now: 1000)
        var published: [(String, SparkplugPayload)] = []
        // Five requests within 50 ms.
        for t: UInt64 in [5000, 5010, 5020, 5030, 5050] {
            published += try births(s.handleMessage(topic: ncmdTopic, payload: rebirthRequest(t), now: t))
            published += try births(s.serveDueRebirth(now: t))
        }
        #expect(published.isEmpty, "served after the settle time, not per request")
        for t in stride(from: UInt64(5060), through: 8000, by: 10) {
            published += try births(s.serveDueRebirth(now: t))
        }
        #expect(published.map(\.0) == ["spBv1.0/Plant1/NBIRTH/edge1", "spBv1.0/Plant1/DBIRTH/edge1/plant"])
        #expect(published.first?.1.seq == 0)

        // A request right after a birth waits for the interval, then is served once.
        published = try births(s.handleMessage(topic: ncmdTopic, payload: rebirthRequest(8000), now: 8000))
        published += try births(s.handleMessage(topic: ncmdTopic, payload: rebirthRequest(8001), now: 8001))
        published += try births(s.serveDueRebirth(now: 8000 + EdgeNodeSession.rebirthSettle))
        #expect(published.count == 2, "due after the settle time, the last birth being old enough")
        published = try births(s.handleMessage(topic: ncmdTopic, payload: rebirthRequest(8300), now: 8300))
        published += try births(s.serveDueRebirth(now: 8300 + EdgeNodeSession.rebirthSettle))
        #expect(published.isEmpty, "less than rebirthInterval after the last birth")
        let servedAt = 8000 + EdgeNodeSession.rebirthSettle + EdgeNodeSession.rebirthInterval
        published += try births(s.serveDueRebirth(now: servedAt))
        #expect(published.count == 2)
        // A lost connection drops the pending request: the next connection's births answer it.
        _ = try s.handleMessage(topic: ncmdTopic, payload: rebirthRequest(servedAt + 10), now: servedAt + 10)
        s.connectionLost()
        #expect(s.rebirthDueAt == nil)
    }

    /// tck-id-operational-behavior-data-commands-rebirth-action-1: from the request to the births no data goes
    /// out; the births carry what changed meanwhile.
    @Test func noDataWhileARebirthIsPending() throws {
        var s = try session()
        _ = s.prepareConnect(now: 1000)
        _ = s.connected(now: 1000)
        let voltage = { (v: Float, t: UInt64) in
            SparkplugMetric(name: "pump1/voltage", timestamp: t, value: .float(v), properties: [.quality(.good)])
        }
        #expect(try s.updateDevice("plant", [voltage(1, 2000)], now: 2000).count == 1)
        _ = try s.handleMessage(topic: ncmdTopic, payload: rebirthRequest(3000), now: 3000)
        #expect(!s.isOnline)
        #expect(try s.updateDevice("plant", [voltage(2, 3100)], now: 3100).isEmpty)
        #expect(
            try s.updateNode([SparkplugMetric(name: "Uptime", timestamp: 3100, value: .int64(9))], now: 3100).isEmpty)
        let born = try births(s.serveDueRebirth(now: 3000 + EdgeNodeSession.rebirthSettle))
        #expect(born.count == 2)
        #expect(born.last?.1.metrics.first?.value == .float(2), "the DBIRTH carries the change made meanwhile")
        #expect(s.isOnline)
    }

    /// A refresh of birth values while the node is online and the device born (a STATE message, another device
    /// coming back) must not absorb a change that is still on its way to DDATA: the host has not seen it, so the
    /// change must still go out. Before, the refresh updated the table and the change was then dropped as
    /// "unchanged": the sample was neither published nor stored (found by the store-and-forward test under load).
    @Test func aRefreshWhileOnlineDoesNotSwallowAChangeOnItsWay() throws {
        var s = try session()
        _ = s.prepareConnect(now: 1000)
        let born = SparkplugMetric(
            name: "pump1/voltage", timestamp: 1500, value: .float(4), properties: [.quality(.good)])
        try s.refreshDevice("plant", [born])
        _ = s.connected(now: 2000)
        #expect(s.isOnline)
        let next = SparkplugMetric(
            name: "pump1/voltage", timestamp: 2100, value: .float(5), properties: [.quality(.good)])
        try s.refreshDevice("plant", [next])
        #expect(try s.updateDevice("plant", [next], now: 2100).count == 1, "the host never saw 5.0")
    }

    /// tck-id-operational-behavior-data-publish-dbirth-change / -nbirth-change: a live value and quality the host
    /// already has is not sent again; a new quality with the same value is.
    @Test func unchangedValuesAreNotSentAgain() throws {
        var s = try session()
        _ = s.prepareConnect(now: 1000)
        let good = SparkplugMetric(
            name: "pump1/voltage", timestamp: 1500, value: .float(4), properties: [.quality(.good)])
        try s.refreshDevice("plant", [good])
        _ = s.connected(now: 2000)
        var again = good
        again.timestamp = 2100
        #expect(try s.updateDevice("plant", [again], now: 2100).isEmpty, "the DBIRTH carried 4.0, good")
        again.properties = [.quality(.stale)]
        #expect(try s.updateDevice("plant", [again], now: 2200).count == 1, "same value, new quality")
        var historical = again
        historical.isHistorical = true
        #expect(try s.updateDevice("plant", [historical], now: 2300).count == 1, "replay is never dropped")
        // Node metrics are refreshed silently only while no data can go out.
        #expect(try s.refreshNode([SparkplugMetric(name: "Uptime", timestamp: 2400, value: .int64(5))]) == false)
        #expect(
            try s.updateNode([SparkplugMetric(name: "Uptime", timestamp: 2500, value: .int64(0))], now: 2500).isEmpty)
    }
}
