import Foundation
import XCTest

@testable import OPCUA

/// Random and mutated inputs into every decoder the network reaches. Decoders must throw
/// `OPCUAError.decoding`, never crash, hang or allocate beyond the input's size.
final class FuzzTests: XCTestCase {
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
    ]

    private func expectCleanFailureOrSuccess(_ name: String, _ bytes: [UInt8], seed: UInt64, _ decode: Decoder) {
        do {
            try decode(bytes)
        } catch let e as OPCUAError {
            switch e {
            case .decoding, .serviceFault, .protocolViolation: break
            default: XCTFail("\(name) seed \(seed): unexpected error kind \(e)")
            }
        } catch {
            XCTFail("\(name) seed \(seed): non-OPC UA error \(error)")
        }
    }

    func testTruncatedMessagesFailCleanly() throws {
        for msg in try FuzzTests.validMessages() {
            for cut in 0..<msg.count {
                for (name, decode) in FuzzTests.decoders.prefix(2) {
                    expectCleanFailureOrSuccess(name, Array(msg.prefix(cut)), seed: UInt64(cut), decode)
                }
            }
        }
    }

    func testMutatedAndRandomMessagesFailCleanly() throws {
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
            for (name, decode) in FuzzTests.decoders {
                // Service decoders read a type NodeId first; give them the right one half of the time.
                var input = bytes
                if name.hasSuffix("Response"), seed % 2 == 0 { input = [0x01, 0x00, 0x7A, 0x02] + bytes }
                expectCleanFailureOrSuccess(name, input, seed: seed, decode)
            }
        }
    }

    /// A forged length must be rejected before anything is allocated for it.
    func testHugeLengthFieldsAreRejectedWithoutAllocation() {
        let cases: [(String, [UInt8])] = [
            ("String", [12, 0xFF, 0xFF, 0xFF, 0x7F, 0x41]),
            ("ByteString array", [15 | 0x80, 0xFF, 0xFF, 0xFF, 0x7F, 0, 0, 0, 0]),
            ("Double array", [11 | 0x80, 0x00, 0x00, 0x10, 0x00, 1, 2, 3]),
            ("negative length", [12, 0xFE, 0xFF, 0xFF, 0xFF]),
            ("dimensions mismatch", [6 | 0xC0, 1, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0]),
        ]
        for (name, bytes) in cases {
            var r = BinaryReader(bytes)
            XCTAssertThrowsError(try Variant(from: &r), name) { e in
                guard case .decoding(let m) = e as? OPCUAError else { return XCTFail("\(name): \(e)") }
                XCTAssertFalse(m.isEmpty)
            }
        }
        // Within the bytes but above the configured cap.
        var w = BinaryWriter()
        w.write(Variant.string(String(repeating: "x", count: 100)))
        var r = BinaryReader(w.bytes, limits: DecodingLimits(maxStringLength: 10))
        XCTAssertThrowsError(try Variant(from: &r))
    }

    func testDeepNestingIsBounded() {
        // Variant(array of Variant) nested 10,000 times: must stop at the depth limit, not overflow the stack.
        var bytes: [UInt8] = []
        for _ in 0..<10_000 { bytes += [24 | 0x80, 1, 0, 0, 0] }
        bytes += [0]
        var r = BinaryReader(bytes, limits: DecodingLimits(maxNestingDepth: 16))
        XCTAssertThrowsError(try Variant(from: &r))
        var dv: [UInt8] = []
        for _ in 0..<10_000 { dv += [0x01, 23] }
        var r2 = BinaryReader(dv)
        XCTAssertThrowsError(try DataValue(from: &r2))
    }
}
