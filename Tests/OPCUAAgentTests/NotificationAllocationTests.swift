import CAllocCounter
import Foundation
import Synchronization
import Tags
import TestSupport
import Testing

@testable import OPCUA
@testable import OPCUADriver

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
        let settled = eventually(timeout: 5) {
            let now = snapshot
            return now.clientPasses > s.clientPasses + 1 && (!readerToo || now.readerPasses > s.readerPasses)
        }
        // Counts taken before the threads passed their probes would be partial, and could read as zero.
        #expect(settled, "the client\(readerToo ? " and reader threads" : " thread") did not pass the probe in 5 s")
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

    @Test func publishResponsesAllocateNothingWhateverTheirSize() throws {
        let server = try ScriptedOPCUAServer { node, n in
            node == NodeId(11705) ? DataValue(status: .badNodeIdUnknown) : Self.value(Double(n))
        }
        defer { server.stop() }
        let dir = try TemporaryDirectory("opcua-alloc")
        defer { dir.remove() }
        // 3000 changes (about 90 kB) do not fit one 64 kB chunk, so the gathering of chunks is measured too.
        let sizes = [10, 1000, 3000]
        let n = sizes.max()!
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
        try #require(eventually(timeout: 20) { server.monitoredHandles.count == n && server.heldPublishCount == 2 })
        let handles = server.monitoredHandles
        var round = 0
        var lost = 0
        /// Sends one message with `count` changes and returns the allocations both client threads made for it.
        func message(_ count: Int) -> UInt64 {
            round += 1
            let v = Double(round * 10_000)
            let changes = (0..<count).map { (handle: handles[$0], value: Self.value(v + Double($0))) }
            if !eventually(timeout: 5, { server.heldPublishCount == 2 }) { lost += 1 }
            let before = probes.settle(after: probes.snapshot, readerToo: false)
            server.publish(changes)
            let last = count - 1
            if !eventually(timeout: 5, { table.read(last).value == .double(v + Double(last)) }) { lost += 1 }
            if !eventually(timeout: 5, { server.heldPublishCount == 2 }) { lost += 1 }
            let after = probes.settle(after: before, readerToo: true)
            return (after.reader - before.reader) + (after.client - before.client)
        }
        // Warm-up: buffers grow to the largest message, lazily created runtime state appears.
        for _ in 0..<3 {
            for size in sizes { _ = message(size) }
        }
        var counts: [Int: [UInt64]] = [:]
        for _ in 0..<4 {
            for size in sizes { counts[size, default: []].append(message(size)) }
        }
        let idleBefore = probes.settle(after: probes.snapshot, readerToo: false)
        Thread.sleep(forTimeInterval: 0.5)
        let idleAfter = probes.settle(after: idleBefore, readerToo: false)
        let idle = (idleAfter.reader - idleBefore.reader) + (idleAfter.client - idleBefore.client)
        print(
            "Publish response, security None: heap allocations per message on the reader + client threads: "
                + sizes.map { "N=\($0) \(counts[$0]!)" }.joined(separator: ", ") + "; idle 0.5 s: \(idle)")
        #expect(lost == 0, "\(lost) messages did not arrive or were not followed by a new Publish request")
        // Per value: nothing, so the size of the message does not matter.
        #expect(counts[10] == counts[1000] && counts[1000] == counts[3000], "\(counts)")
        // Per message: nothing either (no buffer, request entry, closure or array is made per Publish).
        #expect(counts.values.allSatisfy { $0.allSatisfy { $0 == 0 } }, "\(counts)")
        #expect(idle == 0)
        // The counted messages did real work: every tag has its last value, and the changes were reported.
        #expect(table.read(n - 1).value == .double(Double(round * 10_000 + n - 1)))
        #expect(table.changes.pending(consumer: 0) > 0)
        #expect(driver.driverStatus.notifications ?? 0 >= UInt64(7 * sizes.reduce(0, +)))
        // And the counters count: the handshake allocated on the reader thread.
        #expect(probes.snapshot.reader > 0)
    }

    @Test func polledReadsAllocateNothingWhateverTheirSize() throws {
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
        // The driver's own thread reads each group once at start, then not for an hour; the test runs the cycles.
        try #require(eventually(timeout: 10) { server.requests(631) >= 3 && table.read(1009).quality.isGood })
        let g10 = try #require(driver.groups.firstIndex { $0.name == "p10" })
        let g1000 = try #require(driver.groups.firstIndex { $0.name == "p1000" })
        func cycle(_ g: Int) -> UInt64 {
            let before = probes.settle(after: probes.snapshot, readerToo: false)
            let b = ep_alloc_count_thread()
            driver.poll(group: g)
            let caller = ep_alloc_count_thread() - b
            let after = probes.settle(after: before, readerToo: true)
            return (after.reader - before.reader) + caller
        }
        for _ in 0..<3 {
            _ = cycle(g10)
            _ = cycle(g1000)
        }
        let readsBefore = server.requests(631)
        var small: [UInt64] = []
        var large: [UInt64] = []
        for _ in 0..<5 {
            small.append(cycle(g10))
            large.append(cycle(g1000))
        }
        print(
            "Read cycle, security None: heap allocations per cycle on the polling + reader threads: "
                + "N=10 \(small), N=1000 \(large)")
        #expect(server.requests(631) == readsBefore + 10)
        #expect(small == large)
        #expect(small.allSatisfy { $0 == 0 } && large.allSatisfy { $0 == 0 })
        // The cycles read fresh values: the server answers with its Read count.
        #expect(table.read(1009).value == .double(Double(server.requests(631))))
        #expect(driver.driverStatus.errors == 0)
    }

    /// The last step alone: values of a received message into the table, text tags included.
    @Test func storingIntoTheTagTableAllocatesNothing() throws {
        let dir = try TemporaryDirectory("opcua-alloc")
        defer { dir.remove() }
        let text = (0..<10).map {
            TagDefinition(
                name: "s\($0)", device: "plc", source: .opcua(node: "ns=2;s=S\($0)"), type: .string(registers: 8),
                pollGroup: "p")
        }
        let ints = (0..<10).map {
            TagDefinition(
                name: "i\($0)", device: "plc", source: .opcua(node: "ns=2;s=I\($0)"), type: .int32, pollGroup: "p")
        }
        let table = TagTable(
            definitions: Self.tags(1000, group: "p") + text + ints, changes: ChangeFeed(consumers: 1, capacity: 4096))
        let driver = try OPCUADeviceDriver(
            device: Self.device("opc.tcp://127.0.0.1:1/", pki: dir.path),
            pollGroups: [PollGroup(name: "p", periodMilliseconds: 100)], table: table)
        // A Read response as a server would send it: 1000 Doubles, 10 Strings (one longer than its tag holds,
        // cut at a character boundary), 10 Int16s.
        func response(_ round: Int) throws -> DataValueBatch {
            var w = BinaryWriter()
            w.write(NodeId(634))
            w.write(DateTime.now())
            w.write(UInt32(1))
            w.write(StatusCode.good)
            w.write(UInt8(0))
            w.write(Int32(-1))
            w.write(ExtensionObject.null)
            w.write(Int32(1020))
            for k in 0..<1000 { w.write(Self.value(Double(round * 10_000 + k))) }
            for k in 0..<10 { w.write(DataValue(.string("Füllstand \(round) \(k) ähnlich"), sourceTimestamp: .now())) }
            for k in 0..<10 { w.write(DataValue(.int16(Int16(round * 100 + k)))) }
            w.write(Int32(-1))
            return try InPlaceResponses.read(BinaryReader(w.bytes), expected: 1020)
        }
        let batches = try (0..<6).map(response)
        func store(_ batch: DataValueBatch) -> UInt64 {
            let before = ep_alloc_count_thread()
            for e in batch { driver.store(e.value, tag: e.index, now: 0) }
            return ep_alloc_count_thread() - before
        }
        _ = store(batches[0])
        let counts = batches.dropFirst().map(store)
        print("Storing 1020 values into the tag table: heap allocations per message \(counts)")
        #expect(counts.allSatisfy { $0 == 0 }, "\(counts)")
        #expect(table.read(999).value == .double(5 * 10_000 + 999))
        // 16 bytes fit: 15 are taken, the 2-byte "ä" would cross the limit, so the text ends before it.
        #expect(table.text(of: 1000 + 9) == "Füllstand 5 9 ")
        #expect(table.read(1010 + 9).value == .int(509))
        #expect(table.read(1010).quality.isGood)
    }

    /// Figures, not assertions: allocations per Publish response from asyncua's server (which decides how many
    /// changes go into each), with security None and with Basic256Sha256 SignAndEncrypt, where swift-crypto
    /// allocates for every chunk it verifies and decrypts.
    @Test func allocationsPerMessageFromAsyncuaWithAndWithoutSecurity() throws {
        let dir = try TemporaryDirectory("opcua-alloc-sim")
        defer { dir.remove() }
        let peer = try PythonPeer(
            script: "Simulators/opcua_server.py",
            arguments: [
                "--port", "0", "--pki-dir", dir.path + "/server-pki", "--period", "0.05", "--extra", "1000",
                "--churn-period", "0.5",
            ])
        defer { peer.stop() }
        let endpoint = try #require(peer.ready["endpoint"] as? String)
        let ns = try #require(peer.ready["namespace"] as? Int)
        let pki = dir.path + "/pki"
        try FileManager.default.createDirectory(atPath: pki + "/trusted", withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            atPath: dir.path + "/server-pki/server_cert.der", toPath: pki + "/trusted/sim.der")
        var lines: [String] = []
        let securities: [(String, OPCUAEndpointSettings.Policy, OPCUAEndpointSettings.Mode)] = [
            ("None", .none, .none), ("Basic256Sha256 SignAndEncrypt", .basic256Sha256, .signAndEncrypt),
        ]
        for (name, policy, mode) in securities {
            for n in [10, 1000] {
                var group = PollGroup(name: "sub", periodMilliseconds: 100)
                group.subscription = OPCUASubscriptionSettings()
                let tags = (0..<n).map {
                    TagDefinition(
                        name: "x\($0)", device: "plc", source: .opcua(node: "ns=\(ns);i=\(100_000 + $0)"),
                        type: .float64, pollGroup: "sub")
                }
                let table = TagTable(definitions: tags, changes: ChangeFeed(consumers: 1, capacity: 1 << 16))
                let device = DeviceDefinition(
                    name: "plc",
                    transport: .opcua(
                        OPCUAEndpointSettings(
                            endpointURL: endpoint, policy: policy, mode: mode, pkiDirectory: pki,
                            applicationUri: "urn:edgepilot:alloc-test")),
                    timeoutMilliseconds: 10_000)
                let driver = try OPCUADeviceDriver(device: device, pollGroups: [group], table: table)
                let probes = ThreadAllocations()
                driver.configureClient = { c in
                    c.keepAliveInterval = 3600
                    c.loopProbe = { probes.probe($0) }
                }
                driver.start()
                defer { driver.stop() }
                try #require(
                    eventually(timeout: 30) { (0..<n).allSatisfy { table.read($0).quality.isGood } },
                    "\(name) N=\(n): \(driver.driverStatus)")
                Thread.sleep(forTimeInterval: 1)
                let before = probes.settle(after: probes.snapshot, readerToo: false)
                let valuesBefore = driver.driverStatus.notifications ?? 0
                Thread.sleep(forTimeInterval: 3)
                let after = probes.settle(after: before, readerToo: true)
                let values = (driver.driverStatus.notifications ?? 0) - valuesBefore
                // Every message in the window is a Publish response of one chunk (keep-alive Reads are off).
                let messages = Double(after.readerPasses - before.readerPasses)
                let reader = Double(after.reader - before.reader) / messages
                let client = Double(after.client - before.client) / messages
                #expect(messages >= 5 && values > 0, "\(name) N=\(n)")
                lines.append(
                    "\(name), \(n) items: \(Int(messages)) messages, \(String(format: "%.0f", Double(values) / messages)) "
                        + "values/message; allocations per message: reader \(String(format: "%.1f", reader)), "
                        + "client \(String(format: "%.1f", client))")
            }
        }
        print("Publish responses from asyncua:\n  " + lines.joined(separator: "\n  "))
    }
}
