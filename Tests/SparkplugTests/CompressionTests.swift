import Foundation
import Sparkplug
import Testing

/// Payload compression as MQTT Engine, Transmission and Tahu's PayloadUtil read it: a wrapper payload with uuid
/// SPBV1.0_COMPRESSED, the original's seq and timestamp, the compressed encoding as body and an `algorithm` metric.
@Suite struct CompressionTests {
    static func payload() throws -> [UInt8] {
        var metrics: [SparkplugMetric] = []
        for i in 0..<200 {
            let timestamp: UInt64 = 1_700_000_000_000 + UInt64(i)
            let value = SparkplugValue.double(Double(i) * 0.5)
            metrics.append(
                SparkplugMetric(
                    name: "tank\(i % 4)/level", alias: UInt64(i), timestamp: timestamp, value: value,
                    properties: [.quality(.good)], isHistorical: i % 2 == 0))
        }
        return try SparkplugPayload(timestamp: 1_700_000_000_999, seq: 42, metrics: metrics).serialized()
    }

    @Test(arguments: SparkplugCompression.allCases)
    func roundTripKeepsTheEncodingAndTheWrapperSaysHow(_ algorithm: SparkplugCompression) throws {
        let original = try Self.payload()
        let compressor = SparkplugCompressor(algorithm: algorithm)
        // Twice through the same compressor: its stream and buffer are reused.
        for _ in 0..<2 {
            let wire = try compressor.compress(original)
            #expect(wire.count < original.count / 2, "\(wire.count) bytes for \(original.count)")
            let wrapper = try SparkplugPayload(decoding: wire)
            #expect(wrapper.uuid == "SPBV1.0_COMPRESSED")
            #expect(wrapper.seq == 42 && wrapper.timestamp == 1_700_000_000_999)
            #expect(wrapper.metrics.count == 1)
            #expect(wrapper.metrics.first?.name == "algorithm")
            #expect(wrapper.metrics.first?.value == .string(algorithm.rawValue))
            let body = try #require(wrapper.body)
            // The formats Java's Deflater (zlib, RFC 1950) and GZIPOutputStream (RFC 1952) write.
            switch algorithm {
            case .deflate: #expect(body.first == 0x78 && (UInt16(body[0]) << 8 | UInt16(body[1])) % 31 == 0)
            case .gzip: #expect(Array(body.prefix(3)) == [0x1F, 0x8B, 0x08])
            }
            let (inner, found) = try SparkplugCompression.decompressIfNeeded(wire)
            #expect(found == algorithm)
            #expect(inner == original)
        }
    }

    @Test func aPlainPayloadPassesThroughUnchanged() throws {
        let original = try Self.payload()
        let (inner, found) = try SparkplugCompression.decompressIfNeeded(original)
        #expect(found == nil && inner == original)
    }

    @Test func aWrapperWithoutAlgorithmIsDeflateAndAnUnknownOneIsRefused() throws {
        let original = try Self.payload()
        let wire = try SparkplugCompressor(algorithm: .deflate).compress(original)
        var wrapper = try SparkplugPayload(decoding: wire)
        wrapper.metrics = []
        let plain = try SparkplugCompression.decompressIfNeeded(wrapper.serialized())
        #expect(plain.payload == original && plain.algorithm == .deflate)
        wrapper.metrics = [SparkplugMetric(name: "algorithm", timestamp: nil, value: .string("LZ4"))]
        #expect(throws: SparkplugError.self) { try SparkplugCompression.decompressIfNeeded(wrapper.serialized()) }
        wrapper.metrics = []
        wrapper.body = [1, 2, 3, 4]
        #expect(throws: SparkplugError.self) { try SparkplugCompression.decompressIfNeeded(wrapper.serialized()) }
    }
}
