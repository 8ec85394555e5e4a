import CZlib
import Foundation

/// Payload compression as Cirrus Link's MQTT Engine and Transmission and Eclipse Tahu's `PayloadUtil` implement it
/// (docs/decisions/0038-replay-delivery-and-payload-compression.md): the encoded payload is compressed whole and
/// carried in the `body` of a new payload whose `uuid` is `SPBV1.0_COMPRESSED`, with the original's `seq` and
/// `timestamp` and one String metric `algorithm` naming the algorithm. DEFLATE is zlib's format (RFC 1950, what
/// `java.util.zip.Deflater` writes by default), GZIP is RFC 1952.
public enum SparkplugCompression: String, Sendable, Hashable, CaseIterable {
    case deflate = "DEFLATE"
    case gzip = "GZIP"

    /// The `uuid` that marks a compressed payload.
    public static let uuid = "SPBV1.0_COMPRESSED"
    /// The name of the metric that says which algorithm compressed the body (DEFLATE when absent).
    public static let algorithmMetric = "algorithm"

    /// zlib's window bits for the algorithm's wrapper: 15 is the zlib header, +16 the gzip one.
    var windowBits: Int32 { self == .deflate ? 15 : 31 }

    /// The original encoded payload and the algorithm when `bytes` is a compressed one; `bytes` itself and nil
    /// otherwise (also when it does not decode: the caller's own decoding reports that).
    public static func decompressIfNeeded(
        _ bytes: [UInt8]
    ) throws(SparkplugError) -> (payload: [UInt8], algorithm: SparkplugCompression?) {
        guard let wrapper = try? SpB_Payload(serializedBytes: bytes), wrapper.hasUuid, wrapper.uuid == uuid else {
            return (bytes, nil)
        }
        let named = wrapper.metrics.first { $0.name == algorithmMetric }?.stringValue.uppercased() ?? "DEFLATE"
        guard let algorithm = SparkplugCompression(rawValue: named) else {
            throw .malformedPayload("compressed payload with unknown algorithm '\(named)'")
        }
        return (try inflate([UInt8](wrapper.body)), algorithm)
    }

    /// Inflates a zlib or gzip stream (zlib detects which from the header); a raw DEFLATE stream too, as some
    /// libraries write DEFLATE without the zlib header.
    static func inflate(_ input: [UInt8]) throws(SparkplugError) -> [UInt8] {
        if let out = inflate(input, windowBits: 15 + 32) { return out }
        if let out = inflate(input, windowBits: -15) { return out }
        throw .malformedPayload("compressed body of \(input.count) bytes does not inflate")
    }

    private static func inflate(_ input: [UInt8], windowBits: Int32) -> [UInt8]? {
        // zlib keeps a pointer back to the stream and checks it on every call: the stream must not move.
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        defer {
            stream.deinitialize(count: 1)
            stream.deallocate()
        }
        guard ep_inflate_init2(stream, windowBits) == Z_OK else { return nil }
        defer { inflateEnd(stream) }
        var out = [UInt8](repeating: 0, count: max(256, input.count * 4))
        var produced = 0
        var input = input
        return input.withUnsafeMutableBufferPointer { inBuf -> [UInt8]? in
            stream.pointee.next_in = inBuf.baseAddress
            stream.pointee.avail_in = UInt32(inBuf.count)
            while true {
                if produced == out.count { out += [UInt8](repeating: 0, count: out.count) }
                let status = out.withUnsafeMutableBufferPointer { o -> Int32 in
                    stream.pointee.next_out = o.baseAddress! + produced
                    stream.pointee.avail_out = UInt32(o.count - produced)
                    let s = CZlib.inflate(stream, Z_NO_FLUSH)
                    produced = o.count - Int(stream.pointee.avail_out)
                    return s
                }
                if status == Z_STREAM_END { return Array(out[..<produced]) }
                // Out of room is not an error: grow and go on; anything else, or input used up, is.
                guard status == Z_OK || (status == Z_BUF_ERROR && stream.pointee.avail_out == 0) else { return nil }
                if stream.pointee.avail_in == 0 && stream.pointee.avail_out > 0 { return nil }
            }
        }
    }
}

/// Compresses encoded payloads for publishing, reusing one zlib stream and one output buffer (publisher thread
/// only: not thread-safe).
public final class SparkplugCompressor {
    public let algorithm: SparkplugCompression
    private let stream: UnsafeMutablePointer<z_stream>
    private var output: [UInt8] = []
    private var ready = false

    public init(algorithm: SparkplugCompression) {
        self.algorithm = algorithm
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        // Level 6, zlib's default: Java's Deflater (Engine, Transmission, Tahu) uses the same.
        ready = ep_deflate_init2(stream, Z_DEFAULT_COMPRESSION, algorithm.windowBits) == Z_OK
    }

    deinit {
        if ready { deflateEnd(stream) }
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    /// The compressed form of `payload` (an encoded Sparkplug payload): a payload with uuid `SPBV1.0_COMPRESSED`,
    /// the original's seq and timestamp, the compressed bytes as body and the `algorithm` metric.
    public func compress(_ payload: [UInt8]) throws(SparkplugError) -> [UInt8] {
        guard ready, deflateReset(stream) == Z_OK else { throw .malformedPayload("zlib deflate unavailable") }
        let bound = Int(deflateBound(stream, UInt(payload.count)))
        if output.count < bound { output = [UInt8](repeating: 0, count: bound) }
        var input = payload
        let written = input.withUnsafeMutableBufferPointer { inBuf -> Int? in
            output.withUnsafeMutableBufferPointer { o -> Int? in
                stream.pointee.next_in = inBuf.baseAddress
                stream.pointee.avail_in = UInt32(inBuf.count)
                stream.pointee.next_out = o.baseAddress
                stream.pointee.avail_out = UInt32(o.count)
                // deflateBound is enough for one Z_FINISH call.
                guard deflate(stream, Z_FINISH) == Z_STREAM_END else { return nil }
                return o.count - Int(stream.pointee.avail_out)
            }
        }
        guard let written else { throw .malformedPayload("zlib deflate failed") }
        var wrapper = SpB_Payload()
        let (timestamp, seq) = Self.header(payload)
        if let timestamp { wrapper.timestamp = timestamp }
        if let seq { wrapper.seq = seq }
        wrapper.uuid = SparkplugCompression.uuid
        wrapper.body = Data(output[..<written])
        var metric = SpB_Payload.Metric()
        metric.name = SparkplugCompression.algorithmMetric
        metric.datatype = SparkplugDataType.string.rawValue
        metric.stringValue = algorithm.rawValue
        wrapper.metrics = [metric]
        do {
            return try wrapper.serializedBytes()
        } catch {
            throw .malformedPayload("encoding the compressed payload failed: \(error)")
        }
    }

    /// The top-level `timestamp` (field 1) and `seq` (field 3) of an encoded payload, read without decoding its
    /// metrics.
    static func header(_ bytes: [UInt8]) -> (timestamp: UInt64?, seq: UInt64?) {
        var timestamp: UInt64?
        var seq: UInt64?
        var i = 0
        func varint() -> UInt64? {
            var v: UInt64 = 0
            var shift: UInt64 = 0
            while i < bytes.count && shift < 64 {
                let b = bytes[i]
                i += 1
                v |= UInt64(b & 0x7F) << shift
                if b & 0x80 == 0 { return v }
                shift += 7
            }
            return nil
        }
        while i < bytes.count {
            guard let key = varint() else { break }
            switch (key >> 3, key & 7) {
            case (1, 0): timestamp = varint()
            case (3, 0): seq = varint()
            case (_, 0): _ = varint()
            case (_, 1): i += 8
            case (_, 5): i += 4
            case (_, 2):
                guard let n = varint() else { return (timestamp, seq) }
                i += Int(n)
            default: return (timestamp, seq)
            }
        }
        return (timestamp, seq)
    }
}
