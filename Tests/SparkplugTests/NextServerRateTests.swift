import Sparkplug
import Testing

/// Issue 15, Low: NCMD Next Server ends the session each time it is obeyed, so it is obeyed at most once per
/// `nextServerMinimumInterval`; the rest are ignored and counted, on whichever broker they arrive.
@Suite struct NextServerRateTests {
    @Test func nextServerIsObeyedAtMostOncePerInterval() throws {
        var s = try EdgeNodeSession(
            configuration: EdgeNodeConfiguration(groupID: "Plant1", edgeNodeID: "edge1"), nodeMetrics: [],
            lastBdSeq: nil)
        let topic = "spBv1.0/Plant1/NCMD/edge1"
        let next = try SparkplugPayload(
            timestamp: 5,
            metrics: [SparkplugMetric(name: "Node Control/Next Server", timestamp: 5, value: .boolean(true))]
        ).serialized()
        let start: UInt64 = 1_000_000
        _ = s.prepareConnect(now: start)
        _ = s.connected(now: start)
        #expect(try s.handleMessage(topic: topic, payload: next, now: start + 10).last == .nextServer)

        // Connected to the next broker: a repeat within the interval is ignored and the session stays online.
        _ = s.prepareConnect(now: start + 100)
        _ = s.connected(now: start + 100)
        #expect(try s.handleMessage(topic: topic, payload: next, now: start + 1000).isEmpty)
        #expect(s.phase == .online)
        #expect(s.nextServerIgnored == 1)

        let later = start + 10 + EdgeNodeSession.nextServerMinimumInterval
        #expect(try s.handleMessage(topic: topic, payload: next, now: later).last == .nextServer)
        #expect(s.nextServerIgnored == 1)
    }
}
