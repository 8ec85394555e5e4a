import CAllocCounter
import Foundation
import Synchronization
import Tags
import TestSupport
import Testing

@testable import Agent
@testable import OPCUA

/// Heap allocations of the client's own threads, read by each thread itself at the top of its loop.
final class ThreadAllocations: Sendable {
    private let reader = Atomic<UInt64>(0)
    private let client = Atomic<UInt64>(0)
    private let readerPasses = Atomic<Int>(0)
    private let clientPasses = Atomic<Int>(0)

    struct Snapshot {
        var reader: UInt64
        var client: UInt64
        var readerPasses: Int
        var clientPasses: Int
    }

    func probe(_ site: LoopSite) {
        let n = ep_alloc_count_thread()
        switch site {
        case .reader:
            reader.store(n, ordering: .relaxed)
            readerPasses.add(1, ordering: .releasing)
        case .client:
            client.store(n, ordering: .relaxed)
            clientPasses.add(1, ordering: .releasing)
        }
    }

    var snapshot: Snapshot {
        Snapshot(
            reader: reader.load(ordering: .relaxed), client: client.load(ordering: .relaxed),
            readerPasses: readerPasses.load(ordering: .acquiring), clientPasses: clientPasses.load(ordering: .acquiring)
        )
    }

    /// Waits until both threads passed their loop tops after `passes` (so their counters include all work so far).
    func settle(after s: Snapshot, readerToo: Bool) -> Snapshot {
        _ = eventually(timeout: 5) {
            let now = snapshot
            return now.clientPasses > s.clientPasses + 1 && (!readerToo || now.readerPasses > s.readerPasses)
        }
        return snapshot
    }
}

/// Allocation counts of the OPC UA notification and Read paths, from the received bytes to the tag table.
///
/// A scripted server (security None) sends Publish responses with exactly N data changes, or answers Reads of N
/// nodes; the client's reader thread, its worker thread and (for Reads) the polling thread count their heap
/// allocations. The per-message cost must not depend on N.
@Suite(.serialized) struct NotificationAllocationTests {
    static func device(_ endpoint: String, pki: String) -> DeviceDefinition {
        DeviceDefinition(
            name: "plc",
            transport: .opcua(
                OPCUAEndpointSettings(
                    endpointURL: endpoint, policy: .none, mode: .none, pkiDirectory: pki, applicationUri: "urn:test")),
            timeoutMilliseconds: 30_000)
    }

    static func tags(_ count: Int, group: String, first: Int = 0) -> [TagDefinition] {
        (first..<first + count).map {
            TagDefinition(
                name: "t\($0)", device: "plc", source: .opcua(node: "ns=2;i=\(100_000 + $0)"), type: .float64,
                pollGroup: group)
        }
    }

    static func value(_ v: Double) -> DataValue {
        let t = DateTime.now()
        return DataValue(.double(v), sourceTimestamp: t, serverTimestamp: t)
    }

    @Test func publishResponsesCostTheSameForTenAndAThousandValues() throws {
        let server = try ScriptedOPCUAServer { node, n in
            node == NodeId(11705) ? DataValue(status: .badNodeIdUnknown) : Self.value(Double(n))
        }
        defer { server.stop() }
        let dir = try TemporaryDirectory("opcua-alloc")
        defer { dir.remove() }
        let n = 1000
        var group = PollGroup(name: "sub", periodMilliseconds: 100)
        group.subscription = OPCUASubscriptionSettings()
        let table = TagTable(
            definitions: Self.tags(n, group: "sub"), changes: ChangeFeed(consumers: 2, capacity: 1 << 16))
        let driver = try OPCUADeviceDriver(
            device: Self.device(server.endpoint, pki: dir.path), pollGroups: [group], table: table)
        let probes = ThreadAllocations()
        driver.configureClient = { c in
            c.keepAliveInterval = 3600
            c.loopProbe = { probes.probe($0) }
        }
        driver.start()
        defer { driver.stop() }
        #expect(eventually(timeout: 10) { server.monitoredHandles.count == n && server.heldPublishCount == 2 })
        let handles = server.monitoredHandles
        var round = 0
        /// Sends one message with `count` changes and returns the allocations both client threads made for it.
        func message(_ count: Int) -> (reader: UInt64, client: UInt64) {
            round += 1
            let v = Double(round)
            let changes = (0..<count).map { (handle: handles[$0], value: Self.value(v + Double($0))) }
            _ = eventually(timeout: 5) { server.heldPublishCount == 2 }
            let before = probes.settle(after: probes.snapshot, readerToo: false)
            server.publish(changes)
            let last = count - 1
            _ = eventually(timeout: 5) { table.read(last).value == .double(v + Double(last)) }
            _ = eventually(timeout: 5) { server.heldPublishCount == 2 }
            let after = probes.settle(after: before, readerToo: true)
            return (after.reader - before.reader, after.client - before.client)
        }
        for _ in 0..<4 {
            _ = message(n)
            _ = message(10)
        }
        var small: [(reader: UInt64, client: UInt64)] = []
        var large: [(reader: UInt64, client: UInt64)] = []
        for _ in 0..<5 {
            small.append(message(10))
            large.append(message(n))
        }
        let idleBefore = probes.settle(after: probes.snapshot, readerToo: false)
        Thread.sleep(forTimeInterval: 0.5)
        let idleAfter = probes.settle(after: idleBefore, readerToo: false)
        let idle = (idleAfter.reader - idleBefore.reader) + (idleAfter.client - idleBefore.client)
        print(
            "Publish response, security None: allocations per message (reader + client thread): "
                + "N=10 \(small.map { "\($0.reader)+\($0.client)" }), N=\(n) \(large.map { "\($0.reader)+\($0.client)" }); "
                + "idle 0.5 s: \(idle)")
        #expect((0..<n).allSatisfy { table.read($0).quality.isGood })
    }

    @Test func polledReadsCostTheSameForTenAndAThousandNodes() throws {
        let server = try ScriptedOPCUAServer { node, n in
            node == NodeId(11705) ? DataValue(status: .badNodeIdUnknown) : Self.value(Double(n))
        }
        defer { server.stop() }
        let dir = try TemporaryDirectory("opcua-alloc")
        defer { dir.remove() }
        let hour = 3_600_000
        let table = TagTable(
            definitions: Self.tags(10, group: "p10") + Self.tags(1000, group: "p1000", first: 10),
            changes: ChangeFeed(consumers: 2, capacity: 1 << 16))
        let driver = try OPCUADeviceDriver(
            device: Self.device(server.endpoint, pki: dir.path),
            pollGroups: [
                PollGroup(name: "p10", periodMilliseconds: hour), PollGroup(name: "p1000", periodMilliseconds: hour),
            ],
            table: table)
        let probes = ThreadAllocations()
        driver.configureClient = { c in
            c.keepAliveInterval = 3600
            c.loopProbe = { probes.probe($0) }
        }
        driver.start()
        defer { driver.stop() }
        // The driver's own thread reads each group once at start, then not for an hour.
        #expect(eventually(timeout: 10) { server.requests(631) >= 3 && table.read(1009).quality.isGood })
        let g10 = try #require(driver.groups.firstIndex { $0.name == "p10" })
        let g1000 = try #require(driver.groups.firstIndex { $0.name == "p1000" })
        func cycle(_ g: Int) -> (reader: UInt64, caller: UInt64) {
            let before = probes.settle(after: probes.snapshot, readerToo: false)
            let b = ep_alloc_count_thread()
            driver.poll(group: g)
            let caller = ep_alloc_count_thread() - b
            let after = probes.settle(after: before, readerToo: true)
            return (after.reader - before.reader, caller)
        }
        for _ in 0..<4 {
            _ = cycle(g10)
            _ = cycle(g1000)
        }
        var small: [(reader: UInt64, caller: UInt64)] = []
        var large: [(reader: UInt64, caller: UInt64)] = []
        for _ in 0..<5 {
            small.append(cycle(g10))
            large.append(cycle(g1000))
        }
        print(
            "Read cycle, security None: allocations per cycle (reader + polling thread): "
                + "N=10 \(small.map { "\($0.reader)+\($0.caller)" }), N=1000 \(large.map { "\($0.reader)+\($0.caller)" })"
        )
        #expect((0..<table.count).allSatisfy { table.read($0).quality.isGood })
    }
}
