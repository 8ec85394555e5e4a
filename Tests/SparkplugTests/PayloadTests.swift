import Foundation
import Sparkplug
import Testing

/// Every value type with a value that exercises its edge (negative numbers, extremes, odd array lengths).
private let samples: [SparkplugValue] = [
    .int8(-1), .int8(-128), .int8(127), .int16(-32768), .int16(1234), .int32(-2), .int32(Int32.max),
    .int64(-5_000_000_000), .int64(Int64.min), .uint8(255), .uint16(65535), .uint32(UInt32.max),
    .uint64(UInt64.max), .float(-1.5), .double(3.141592653589793), .boolean(true), .boolean(false),
    .string("Füllstand °C"), .dateTime(1_700_000_000_123), .text("long text"), .uuid("6f1c2a34-0000-4000-8000-1234"),
    .bytes([0, 1, 2, 255]), .file([9, 8, 7]), .int8Array([-1, 0, 1, -128]), .int16Array([-2, 300]),
    .int32Array([-100_000, 7]), .int64Array([-1, Int64.max]), .uint8Array([1, 2, 3]), .uint16Array([1, 65535]),
    .uint32Array([UInt32.max, 0]), .uint64Array([UInt64.max]), .floatArray([1.25, -0.5]),
    .doubleArray([1e300, -2.5]), .booleanArray([true, false, true, true, false, false, false, true, true]),
    .stringArray(["a", "", "ß"]), .dateTimeArray([1, 1_700_000_000_000]),
]

@Suite struct PayloadTests {
    @Test func everyValueTypeRoundTripsThroughOurDecoder() throws {
        let metrics = samples.enumerated().map { i, v in
            SparkplugMetric(name: "m\(i)", alias: UInt64(i + 1), timestamp: 1000 + UInt64(i), value: v)
        }
        let payload = SparkplugPayload(timestamp: 42, seq: 7, metrics: metrics)
        let decoded = try SparkplugPayload(decoding: payload.serialized())
        #expect(decoded == payload)
    }

    @Test func independentTahuDecoderReadsEveryValueType() throws {
        let metrics = samples.enumerated().map { i, v in
            SparkplugMetric(name: "m\(i)", timestamp: 1000, value: v)
        }
        let bytes = try SparkplugPayload(timestamp: 99, seq: 3, metrics: metrics).serialized()
        let decoded = try #require(try decodeWithTahu([bytes]).first)
        #expect(decoded.uint("timestamp") == 99)
        #expect(decoded.uint("seq") == 3)
        let got = decoded.metrics
        try #require(got.count == samples.count)
        for (i, value) in samples.enumerated() {
            let m = got[i]
            #expect(m.string("name") == "m\(i)")
            #expect(m.uint("datatype") == UInt64(value.dataType.rawValue), "\(value)")
            #expect(m.string("datatype_name") == value.dataType.description)
            #expect(
                matches(m["value"], value),
                "metric m\(i) \(value): Tahu decoded \(m["value"] ?? "nil") from \(m["field"] ?? "nil")")
        }
        // The wire form of negative small integers: two's complement in the unsigned 32-bit field.
        #expect(got[0].string("field") == "int_value")
        #expect(got[0].uint("raw") == 0xFFFF_FFFF)
        #expect(got[7].string("field") == "long_value")
        #expect(got[7].uint("raw") == UInt64(bitPattern: -5_000_000_000))
        #expect(got[18].string("field") == "long_value")  // DateTime
        #expect(got[21].string("field") == "bytes_value")  // Bytes
    }

    @Test func propertiesFlagsAndNullsAsTahuSeesThem() throws {
        let metrics = [
            SparkplugMetric(
                name: "Tank/Level", alias: 5, timestamp: 10, value: .float(42.5),
                properties: [.engUnit("%"), .engLow(0), .engHigh(100), .quality(.stale)]),
            SparkplugMetric(name: "Tank/Valve", timestamp: 11, nullOf: .boolean, properties: [.quality(.bad)]),
            SparkplugMetric(name: "Tank/Old", timestamp: 5, value: .int32(-3), isHistorical: true, isTransient: true),
        ]
        let bytes = try SparkplugPayload(timestamp: 12, seq: 0, metrics: metrics).serialized()
        let p = try #require(try decodeWithTahu([bytes]).first)
        let level = try #require(p.metric("Tank/Level"))
        #expect(level.uint("alias") == 5)
        let props = try #require(level.dict("properties"))
        #expect(props.dict("engUnit")?.string("value") == "%")
        #expect(props.dict("engUnit")?.uint("type") == 12)
        #expect((props.dict("engHigh")?["value"] as? Double) == 100)
        #expect(props.dict("engHigh")?.uint("type") == 10)
        // tck-id-payloads-propertyset-quality-value-type / -value-value: Int32 (3) in int_value.
        #expect(props.dict("Quality")?.uint("type") == 3)
        #expect(props.dict("Quality")?.string("field") == "int_value")
        #expect(props.dict("Quality")?.uint("value") == 500)
        let valve = try #require(p.metric("Tank/Valve"))
        #expect(valve.bool("is_null") == true)
        #expect(valve["field"] is NSNull)
        #expect(valve.uint("datatype") == 11)
        let old = try #require(p.metric("Tank/Old"))
        #expect(old.bool("is_historical") == true)
        #expect(old.bool("is_transient") == true)
        #expect(old.int("value") == -3)
        // And our own decoder agrees.
        let ours = try SparkplugPayload(decoding: bytes)
        #expect(ours.metrics[0].quality == .stale)
        #expect(ours.metrics[1].isNull)
        #expect(ours.metrics == metrics)
    }

    @Test func mismatchedValueAndTypeIsRejectedOnEncode() {
        var m = SparkplugMetric(name: "x", timestamp: 1, value: .int16(3))
        m.dataType = .float
        #expect(throws: SparkplugError.self) { try SparkplugPayload(timestamp: 1, metrics: [m]).serialized() }
    }

    @Test func malformedInputIsAnErrorNeverACrash() throws {
        let valid = try SparkplugPayload(
            timestamp: 1, seq: 2,
            metrics: samples.enumerated().map { SparkplugMetric(name: "m\($0)", timestamp: 1, value: $1) }
        ).serialized()
        // Every truncation of a valid payload, plus deterministic pseudo-random garbage and bit flips.
        var rng = SplitMix64(seed: 0x5EED)
        var inputs: [[UInt8]] = (0..<valid.count).map { Array(valid.prefix($0)) }
        for _ in 0..<3000 {
            let n = Int(rng.next() % 64)
            inputs.append((0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
            var flipped = valid
            let i = Int(rng.next() % UInt64(valid.count))
            flipped[i] ^= UInt8(truncatingIfNeeded: 1 << (rng.next() % 8))
            inputs.append(flipped)
        }
        var errors = 0
        for input in inputs {
            do {
                _ = try SparkplugPayload(decoding: input)
            } catch {
                errors += 1
                #expect(!error.description.isEmpty)
            }
        }
        // Most garbage must be rejected (some truncations and flips happen to stay valid protobuf).
        #expect(errors > inputs.count / 4)
    }

    @Test func specificMalformedValuesNameTheMetric() throws {
        func metricBytes(_ fields: [UInt8]) -> [UInt8] { [0x12, UInt8(fields.count)] + fields }
        // Metric "a" (field 1), datatype UInt8 (field 4 = 5), int_value (field 10) = 300.
        let tooBig = metricBytes([0x0A, 0x01, 0x61, 0x20, 0x05, 0x50, 0xAC, 0x02])
        #expect(throws: SparkplugError.invalidValue(context: "metric 'a'", reason: "300 is out of range for UInt8")) {
            try SparkplugPayload(decoding: tooBig)
        }
        // Datatype Int16Array with 3 bytes.
        let oddArray = metricBytes([0x0A, 0x01, 0x61, 0x20, 0x17, 0x82, 0x01, 0x03, 1, 2, 3])
        #expect(throws: SparkplugError.self) { try SparkplugPayload(decoding: oddArray) }
        // String datatype but a boolean value field.
        let wrongField = metricBytes([0x0A, 0x01, 0x61, 0x20, 0x0C, 0x70, 0x01])
        do {
            _ = try SparkplugPayload(decoding: wrongField)
            Issue.record("accepted a boolean_value for a String metric")
        } catch {
            #expect(error.description.contains("metric 'a'"))
            #expect(error.description.contains("boolean_value"))
        }
        // No datatype and no way to know it.
        let untyped = metricBytes([0x0A, 0x01, 0x61, 0x50, 0x01])
        #expect(throws: SparkplugError.self) { try SparkplugPayload(decoding: untyped) }
        // Unknown datatype number.
        let unknownType = metricBytes([0x0A, 0x01, 0x61, 0x20, 0x63, 0x50, 0x01])
        #expect(throws: SparkplugError.unsupportedDataType(context: "metric 'a'", 99)) {
            try SparkplugPayload(decoding: unknownType)
        }
    }
}

/// Compares the Python decoder's JSON value with the expected Sparkplug value.
private func matches(_ json: Any?, _ value: SparkplugValue) -> Bool {
    func ints(_ a: [some BinaryInteger]) -> Bool {
        guard let arr = json as? [NSNumber], arr.count == a.count else { return false }
        return zip(arr, a).allSatisfy { n, v in
            v < 0 ? n.int64Value == Int64(v) : n.uint64Value == UInt64(v)
        }
    }
    func int(_ v: some BinaryInteger) -> Bool {
        guard let n = json as? NSNumber else { return false }
        return v < 0 ? n.int64Value == Int64(v) : n.uint64Value == UInt64(v)
    }
    func hex(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }
    switch value {
    case .int8(let v): return int(v)
    case .int16(let v): return int(v)
    case .int32(let v): return int(v)
    case .int64(let v): return int(v)
    case .uint8(let v): return int(v)
    case .uint16(let v): return int(v)
    case .uint32(let v): return int(v)
    case .uint64(let v), .dateTime(let v): return int(v)
    case .float(let v): return (json as? NSNumber)?.floatValue == v
    case .double(let v): return (json as? NSNumber)?.doubleValue == v
    case .boolean(let v): return (json as? NSNumber)?.boolValue == v
    case .string(let v), .text(let v), .uuid(let v): return json as? String == v
    case .bytes(let v), .file(let v): return json as? String == hex(v)
    case .int8Array(let v): return ints(v)
    case .int16Array(let v): return ints(v)
    case .int32Array(let v): return ints(v)
    case .int64Array(let v): return ints(v)
    case .uint8Array(let v): return ints(v)
    case .uint16Array(let v): return ints(v)
    case .uint32Array(let v): return ints(v)
    case .uint64Array(let v), .dateTimeArray(let v): return ints(v)
    case .floatArray(let v): return (json as? [NSNumber])?.map(\.floatValue) == v
    case .doubleArray(let v): return (json as? [NSNumber])?.map(\.doubleValue) == v
    case .booleanArray(let v): return (json as? [NSNumber])?.map(\.boolValue) == v
    case .stringArray(let v): return json as? [String] == v
    case .template: return false  // compared member by member in TemplatePayloadTests
    }
}

/// A small deterministic generator so the fuzz inputs are the same on every run.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
