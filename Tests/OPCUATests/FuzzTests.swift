import CAllocCounter
import Foundation
import TestSupport
import Testing

@testable import OPCUA

/// Random and mutated inputs into every decoder the network reaches. Decoders must throw
/// `OPCUAError.decoding`, never crash, hang or allocate beyond the input's size.
@Suite(.serialized) struct FuzzTests {
    /// Deterministic generator so a failure reproduces (seed printed in the message).
    struct SplitMix64: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    private static func validMessages() throws -> [[UInt8]] {
        var out: [[UInt8]] = []
        for v in EncodingTests.scalars {
            var w = BinaryWriter()
            w.write(Variant.array(try VariantArray(v.builtinType!, [v, v])))
            out.append(w.bytes)
            var d = BinaryWriter()
            d.write(DataValue(v, status: .uncertain, sourceTimestamp: .now()))
            out.append(d.bytes)
        }
        return out
    }

    private typealias Decoder = @Sendable ([UInt8]) throws -> Void

    private static let limits = DecodingLimits(maxStringLength: 1 << 16, maxArrayLength: 1 << 12, maxNestingDepth: 8)

    private static let decoders: [(String, Decoder)] = [
        (
            "Variant",
            { b in
                var r = BinaryReader(b, limits: limits)
                _ = try Variant(from: &r)
            }
        ),
        (
            "DataValue",
            { b in
                var r = BinaryReader(b, limits: limits)
                _ = try DataValue(from: &r)
            }
        ),
        (
            "ExpandedNodeId",
            { b in
                var r = BinaryReader(b, limits: limits)
                _ = try ExpandedNodeId(from: &r)
            }
        ),
        (
            "DiagnosticInfo",
            { b in
                var r = BinaryReader(b, limits: limits)
                _ = try DiagnosticInfo(from: &r)
            }
        ),
        ("ReadResponse", { b in _ = try SecureChannel.decodeResponse(ReadRequest.self, b, limits: limits) }),
        ("BrowseResponse", { b in _ = try SecureChannel.decodeResponse(BrowseRequest.self, b, limits: limits) }),
        ("PublishResponse", { b in _ = try SecureChannel.decodeResponse(PublishRequest.self, b, limits: limits) }),
        (
            "CreateSessionResponse",
            { b in _ = try SecureChannel.decodeResponse(CreateSessionRequest.self, b, limits: limits) }
        ),
        (
            "GetEndpointsResponse",
            { b in _ = try SecureChannel.decodeResponse(GetEndpointsRequest.self, b, limits: limits) }
        ),
        (
            "DataChangeNotification",
            { b in
                var r = BinaryReader(b, limits: limits)
                _ = try DataChangeNotification(from: &r)
            }
        ),
        (
            "DataValueView",
            { b in
                var r = BinaryReader(b, limits: limits)
                _ = try DataValueView.decode(&r).value()
            }
        ),
        ("PublishResponse in place", { b in _ = try inPlacePublish(b) }),
        (
            "ReadResponse in place",
            { b in
                var r = BinaryReader(b, limits: limits)
                // The expected count is whatever the message says, so that the values themselves get walked.
                try InPlaceResponses.openResponse(&r, service: "Read", typeId: 634)
                let n = Int(try r.readInt32())
                for e in try InPlaceResponses.read(BinaryReader(b, limits: limits), expected: n) {
                    _ = try e.value.value()
                }
            }
        ),
    ]

    /// Walks a Publish response in place and returns every delivered value (handle, encoded DataValue).
    static func inPlacePublish(_ b: [UInt8]) throws -> [(UInt32, [UInt8])] {
        let collected = Collector<(UInt32, [UInt8])>()
        let target = PublishTarget(handleBase: 0, itemCount: Int(UInt32.max) + 1) { batch in
            var out: [(UInt32, [UInt8])] = []
            for e in batch {
                var w = BinaryWriter()
                // Built like the structure decoder builds it, so that the two can be compared byte for byte.
                if let dv = try? e.value.dataValue() { w.write(dv) } else { w.write(UInt8(0xEE)) }
                out.append((UInt32(e.index), w.bytes))
            }
            collected.append(contentsOf: out)
        }
        _ = try InPlaceResponses.publish(BinaryReader(b, limits: limits)) { _ in target }
        return collected.all
    }

    /// The old way: the whole response into structures, then each DataChangeNotification.
    static func structurePublish(_ b: [UInt8]) throws -> [(UInt32, [UInt8])] {
        let resp = try SecureChannel.decodeResponse(PublishRequest.self, b, limits: limits)
        var out: [(UInt32, [UInt8])] = []
        for ext in resp.notificationData {
            guard
                let dc = try? ext.decode(
                    DataChangeNotification.self, typeId: DataChangeNotification.typeId, limits: limits)
            else { continue }
            for (handle, dv) in dc.items {
                var w = BinaryWriter()
                w.write(dv)
                out.append((handle, w.bytes))
            }
        }
        return out
    }

    /// A valid Read response of three values of random types.
    static func readResponse(_ rng: inout SplitMix64) -> [UInt8] {
        var w = BinaryWriter()
        w.write(NodeId(634))
        w.write(DateTime(ticks: 1))
        w.write(UInt32(1))
        w.write(StatusCode.good)
        w.write(UInt8(0))
        w.write(Int32(-1))
        w.write(ExtensionObject.null)
        w.write(Int32(3))
        for k in 0..<3 {
            let v = EncodingTests.scalars[Int.random(in: 0..<EncodingTests.scalars.count, using: &rng)]
            w.write(DataValue(v, status: k == 1 ? .badNodeIdUnknown : .good, serverTimestamp: DateTime(ticks: 3)))
        }
        w.write(Int32(-1))
        return w.bytes
    }

    /// A valid Publish response with two DataChangeNotifications of mixed values and a StatusChangeNotification.
    static func publishResponse(_ rng: inout SplitMix64) -> [UInt8] {
        var w = BinaryWriter()
        w.write(NodeId(829))
        w.write(DateTime(ticks: 1))
        w.write(UInt32(1))
        w.write(StatusCode.good)
        w.write(UInt8(0))
        w.write(Int32(-1))
        w.write(ExtensionObject.null)
        w.write(UInt32(7))  // subscription
        w.write(Int32(2))
        w.write(UInt32(4))
        w.write(UInt32(5))
        w.write(false)
        w.write(UInt32(5))
        w.write(DateTime(ticks: 2))
        w.write(Int32(3))
        for _ in 0..<2 {
            var body = BinaryWriter()
            let n = Int.random(in: 0...4, using: &rng)
            body.write(Int32(n))
            for k in 0..<n {
                body.write(UInt32(k * 3))
                let v = EncodingTests.scalars[Int.random(in: 0..<EncodingTests.scalars.count, using: &rng)]
                body.write(DataValue(v, status: k % 2 == 0 ? .good : .uncertain, sourceTimestamp: DateTime(ticks: 9)))
            }
            body.write(Int32(-1))
            w.write(ExtensionObject(typeId: NodeId(811), body: .binary(body.bytes)))
        }
        var sc = BinaryWriter()
        sc.write(StatusCode.good)
        sc.write(UInt8(0))
        w.write(ExtensionObject(typeId: NodeId(820), body: .binary(sc.bytes)))
        w.write(Int32(0))
        w.write(Int32(-1))
        return w.bytes
    }

    /// Why `decode` failed, if it failed in a way other than a clean OPC UA error.
    private static func unclean(_ name: String, _ bytes: [UInt8], seed: UInt64, _ decode: Decoder) -> String? {
        do {
            try decode(bytes)
        } catch let e as OPCUAError {
            switch e {
            case .decoding, .serviceFault, .protocolViolation: break
            default: return "\(name) seed \(seed): unexpected error kind \(e)"
            }
        } catch {
            return "\(name) seed \(seed): non-OPC UA error \(error)"
        }
        return nil
    }

    /// How long one input may take through every decoder before it counts as a hang. Decoding one of these
    /// inputs takes microseconds; the margin is for a loaded machine.
    static let hangDeadline = 5.0

    /// Runs `work` on a thread of its own and waits at most `hangDeadline` for it. Returns its problems, or nil
    /// if it did not finish in time (the thread is then abandoned: a thread stuck in a loop cannot be stopped).
    private static func bounded(_ work: @escaping @Sendable () -> [String]) -> [String]? {
        let done = DispatchSemaphore(value: 0)
        let result = Collector<String>()
        let thread = Thread {
            result.append(contentsOf: work())
            done.signal()
        }
        thread.stackSize = 8 << 20
        thread.start()
        guard done.wait(timeout: .now() + hangDeadline) == .success else { return nil }
        return result.all
    }

    @Test("Truncated messages fail cleanly, each within the deadline")
    func truncatedMessagesFailCleanly() throws {
        for msg in try FuzzTests.validMessages() {
            let outcome = Self.bounded {
                var problems: [String] = []
                for cut in 0..<msg.count {
                    for (name, decode) in FuzzTests.decoders.prefix(2) {
                        if let p = Self.unclean(name, Array(msg.prefix(cut)), seed: UInt64(cut), decode) {
                            problems.append(p)
                        }
                    }
                }
                return problems
            }
            let problems = try #require(
                outcome, "decoding the prefixes of \(msg) did not finish in \(Self.hangDeadline) s")
            for p in problems { Issue.record("\(p)") }
        }
    }

    @Test("Mutated and random messages fail cleanly, each within the deadline")
    func mutatedAndRandomMessagesFailCleanly() throws {
        let valid = try FuzzTests.validMessages()
        for seed in UInt64(1)...3000 {
            var rng = SplitMix64(state: seed)
            var bytes: [UInt8]
            if seed % 3 == 0 {
                bytes = (0..<Int.random(in: 0...200, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            } else {
                bytes = valid[Int.random(in: 0..<valid.count, using: &rng)]
                for _ in 0..<Int.random(in: 1...6, using: &rng) where !bytes.isEmpty {
                    bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
            }
            let input = bytes
            let outcome = Self.bounded {
                var problems: [String] = []
                for (name, decode) in FuzzTests.decoders {
                    // Service decoders read a type NodeId first; give them the right one half of the time.
                    var input = input
                    if name.hasSuffix("Response"), seed % 2 == 0 { input = [0x01, 0x00, 0x7A, 0x02] + input }
                    if let p = Self.unclean(name, input, seed: seed, decode) { problems.append(p) }
                }
                return problems
            }
            let problems = try #require(
                outcome, "seed \(seed): decoding \(input) did not finish in \(Self.hangDeadline) s")
            for p in problems { Issue.record("\(p)") }
        }
    }

    /// The in-place decoders must accept exactly what the structure decoders accept, stop at the same byte and
    /// yield the same values, or a message could pass the check and then decode differently (or not at all).
    @Test("In-place decoders agree with structure decoders")
    func inPlaceDecodersAgreeWithStructureDecoders() throws {
        let valid = try FuzzTests.validMessages()
        var agreed = [0, 0, 0]
        for seed in UInt64(1)...3000 {
            var rng = SplitMix64(state: seed)
            var bytes = valid[Int.random(in: 0..<valid.count, using: &rng)]
            if seed % 4 != 0 {
                for _ in 0..<Int.random(in: 1...4, using: &rng) where !bytes.isEmpty {
                    bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
            }
            // Variant: skipping vs building.
            var r1 = BinaryReader(bytes, limits: FuzzTests.limits)
            var r2 = BinaryReader(bytes, limits: FuzzTests.limits)
            let built = try? Variant(from: &r1)
            let skipped = (try? r2.skipVariant()) != nil
            #expect((built != nil) == skipped, "Variant seed \(seed): \(bytes)")
            if built != nil && skipped { #expect(r1.position == r2.position, "Variant seed \(seed)") }
            // DataValue: the view vs the structure.
            var d1 = BinaryReader(bytes, limits: FuzzTests.limits)
            var d2 = BinaryReader(bytes, limits: FuzzTests.limits)
            let dv = try? DataValue(from: &d1)
            let view = try? DataValueView.decode(&d2)
            #expect((dv != nil) == (view != nil), "DataValue seed \(seed): \(bytes)")
            if let dv, let view {
                #expect(d1.position == d2.position, "DataValue seed \(seed)")
                var a = BinaryWriter()
                a.write(dv)
                var b = BinaryWriter()
                b.write(try view.dataValue())
                #expect(a.bytes == b.bytes, "DataValue seed \(seed)")
                agreed[0] += 1
            }
        }
        for seed in UInt64(1)...1500 {
            var rng = SplitMix64(state: seed)
            var bytes = FuzzTests.publishResponse(&rng)
            if seed % 5 != 0 {
                for _ in 0..<Int.random(in: 1...3, using: &rng) {
                    bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
            }
            let old = Result { try FuzzTests.structurePublish(bytes) }
            let new = Result { try FuzzTests.inPlacePublish(bytes) }
            switch (old, new) {
            case (.success(let a), .success(let b)):
                #expect(a.map(\.0) == b.map(\.0), "Publish seed \(seed): handles")
                #expect(a.map(\.1) == b.map(\.1), "Publish seed \(seed): values")
                agreed[1] += 1
            case (.failure, .failure): break
            default: Issue.record("Publish seed \(seed): structure decoder \(old), in place \(new)")
            }
        }
        for seed in UInt64(1)...1500 {
            var rng = SplitMix64(state: seed)
            var bytes = FuzzTests.readResponse(&rng)
            if seed % 5 != 0 {
                for _ in 0..<Int.random(in: 1...3, using: &rng) {
                    bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
            }
            let old = Result {
                try SecureChannel.decodeResponse(ReadRequest.self, bytes, limits: FuzzTests.limits).results.map {
                    var w = BinaryWriter()
                    w.write($0)
                    return w.bytes
                }
            }
            let new = Result {
                // Asked for as many results as the structure decoder found, so that only the walking can differ.
                let expected = (try? old.get().count) ?? 3
                return try InPlaceResponses.read(BinaryReader(bytes, limits: FuzzTests.limits), expected: expected).map
                {
                    var w = BinaryWriter()
                    w.write(try $0.value.dataValue())
                    return w.bytes
                }
            }
            switch (old, new) {
            case (.success(let a), .success(let b)):
                #expect(a == b, "Read seed \(seed)")
                agreed[2] += 1
            case (.failure, .failure): break
            default: Issue.record("Read seed \(seed): structure decoder \(old), in place \(new)")
            }
        }
        // Enough of the inputs were sound for the comparison to mean something.
        #expect(agreed[0] > 500, "\(agreed)")
        #expect(agreed[1] > 300, "\(agreed)")
        #expect(agreed[2] > 300, "\(agreed)")
    }

    /// Heap allocations the calling thread makes while `decode` runs, and its error (nil if it succeeded).
    private static func allocations(_ decode: () throws -> Void) -> (count: UInt64, error: (any Error)?) {
        let before = ep_alloc_count_thread()
        var failure: (any Error)?
        do { try decode() } catch { failure = error }
        return (ep_alloc_count_thread() - before, failure)
    }

    /// A forged length must be rejected before anything is allocated for it.
    ///
    /// Each forged input is decoded twice, counting the heap allocations of this thread: with limits under which only
    /// the check of the length against the bytes that remain can reject it (strings of any length, arrays up to the
    /// default cap), and with caps one below the forged length, where the cap check rejects it before anything is
    /// read or allocated. Both rejections build one error of the same form (8 allocations each with Swift 6.3), so
    /// the first may cost no more than the second; an element array or buffer reserved for the forged length before
    /// the check costs one more.
    @Test("Huge length fields are rejected without allocation")
    func hugeLengthFieldsAreRejectedWithoutAllocation() throws {
        let cases: [(String, [UInt8], allocationChecked: Bool)] = [
            ("String", [12, 0xFF, 0xFF, 0xFF, 0x7F, 0x41], true),
            ("ByteString array", [15 | 0x80, 0xFF, 0xFF, 0xFF, 0x7F, 0, 0, 0, 0], true),
            ("Double array", [11 | 0x80, 0x00, 0x00, 0x10, 0x00, 1, 2, 3], true),
            ("negative length", [12, 0xFE, 0xFF, 0xFF, 0xFF], false),
            ("dimensions mismatch", [6 | 0xC0, 1, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0], false),
        ]
        // Strings up to any length, arrays up to the default cap: only the bytes that remain can reject them.
        let uncapped = DecodingLimits(maxStringLength: Int(Int32.max), maxArrayLength: 1 << 20)
        for (name, bytes, allocationChecked) in cases {
            var r = BinaryReader(bytes)
            if let e = #expect(throws: (any Error).self, "\(name)", performing: { try Variant(from: &r) }) {
                if case .decoding(let m) = e as? OPCUAError {
                    #expect(!m.isEmpty)
                } else {
                    Issue.record("\(name): \(e)")
                }
            }
            // Once unmeasured, so that one-time runtime set-up (metadata, lazy globals) is not counted.
            var warm = BinaryReader(bytes, limits: uncapped)
            _ = try? Variant(from: &warm)
            let forged = Self.allocations {
                var r = BinaryReader(bytes, limits: uncapped)
                _ = try Variant(from: &r)
            }
            let failure = try #require(forged.error, "\(name): decoded")
            #expect(failure is OPCUAError, "\(name): \(failure)")
            guard allocationChecked else { continue }
            // Caps one below the forged length: rejected by the first check, with an error of the same size.
            let forgedLength = Int(bytes[1]) | Int(bytes[2]) << 8 | Int(bytes[3]) << 16 | Int(bytes[4]) << 24
            let capped = DecodingLimits(maxStringLength: forgedLength - 1, maxArrayLength: forgedLength - 1)
            var warmCapped = BinaryReader(bytes, limits: capped)
            _ = try? Variant(from: &warmCapped)
            let byCap = Self.allocations {
                var r = BinaryReader(bytes, limits: capped)
                _ = try Variant(from: &r)
            }
            #expect(byCap.error != nil, "\(name): the cap did not reject it")
            #expect(
                forged.count <= byCap.count,
                """
                \(name): \(forged.count) allocations to reject the forged length, \(byCap.count) when the cap \
                rejects it before reading on: \(failure)
                """
            )
        }
        // Within the bytes but above the configured cap.
        var w = BinaryWriter()
        w.write(Variant.string(String(repeating: "x", count: 100)))
        var r = BinaryReader(w.bytes, limits: DecodingLimits(maxStringLength: 10))
        #expect(throws: (any Error).self) { try Variant(from: &r) }
    }

    @Test("Deep nesting is bounded, and fails within the deadline")
    func deepNestingIsBounded() throws {
        // Variant(array of Variant) nested 10,000 times: must stop at the depth limit, not overflow the stack.
        let outcome = Self.bounded {
            var problems: [String] = []
            var bytes: [UInt8] = []
            for _ in 0..<10_000 { bytes += [24 | 0x80, 1, 0, 0, 0] }
            bytes += [0]
            var r = BinaryReader(bytes, limits: DecodingLimits(maxNestingDepth: 16))
            if (try? Variant(from: &r)) != nil { problems.append("nested Variant arrays decoded") }
            var dv: [UInt8] = []
            for _ in 0..<10_000 { dv += [0x01, 23] }
            var r2 = BinaryReader(dv)
            if (try? DataValue(from: &r2)) != nil { problems.append("nested DataValues decoded") }
            return problems
        }
        let problems = try #require(outcome, "deep nesting did not finish in \(Self.hangDeadline) s")
        #expect(problems.isEmpty, "\(problems)")
    }
}
