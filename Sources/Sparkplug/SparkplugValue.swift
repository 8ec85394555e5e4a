import Foundation

/// A metric or property value; the case fixes the Sparkplug data type.
///
/// DataSet and PropertySet values are not modelled: EdgePilot publishes scalar tags, arrays and templates (a loop
/// or a repeated device type as an Ignition UDT), and a command that carries one of those types is reported as
/// unsupported rather than misread.
public enum SparkplugValue: Sendable, Hashable {
    case int8(Int8)
    case int16(Int16)
    case int32(Int32)
    case int64(Int64)
    case uint8(UInt8)
    case uint16(UInt16)
    case uint32(UInt32)
    case uint64(UInt64)
    case float(Float)
    case double(Double)
    case boolean(Bool)
    case string(String)
    /// Milliseconds since the Unix epoch, UTC.
    case dateTime(UInt64)
    case text(String)
    case uuid(String)
    case bytes([UInt8])
    case file([UInt8])
    case int8Array([Int8])
    case int16Array([Int16])
    case int32Array([Int32])
    case int64Array([Int64])
    case uint8Array([UInt8])
    case uint16Array([UInt16])
    case uint32Array([UInt32])
    case uint64Array([UInt64])
    case floatArray([Float])
    case doubleArray([Double])
    case booleanArray([Bool])
    case stringArray([String])
    case dateTimeArray([UInt64])
    /// A template definition or instance (docs/decisions/0037-sparkplug-templates.md). Boxed, so the other
    /// cases (every scalar on the data path) keep the size they had before templates.
    indirect case template(SparkplugTemplate)

    public var dataType: SparkplugDataType {
        switch self {
        case .int8: .int8
        case .int16: .int16
        case .int32: .int32
        case .int64: .int64
        case .uint8: .uint8
        case .uint16: .uint16
        case .uint32: .uint32
        case .uint64: .uint64
        case .float: .float
        case .double: .double
        case .boolean: .boolean
        case .string: .string
        case .dateTime: .dateTime
        case .text: .text
        case .uuid: .uuid
        case .bytes: .bytes
        case .file: .file
        case .int8Array: .int8Array
        case .int16Array: .int16Array
        case .int32Array: .int32Array
        case .int64Array: .int64Array
        case .uint8Array: .uint8Array
        case .uint16Array: .uint16Array
        case .uint32Array: .uint32Array
        case .uint64Array: .uint64Array
        case .floatArray: .floatArray
        case .doubleArray: .doubleArray
        case .booleanArray: .booleanArray
        case .stringArray: .stringArray
        case .dateTimeArray: .dateTimeArray
        case .template: .template
        }
    }
}

/// The protobuf value field a Sparkplug value travels in (the `oneof value` of Metric and PropertyValue share
/// these scalar shapes).
enum WireValue: Equatable {
    case int(UInt32)
    case long(UInt64)
    case float(Float)
    case double(Double)
    case boolean(Bool)
    case string(String)
    case bytes(Data)
    /// Metric values only: `template_value` (boxed, as in `SparkplugValue`).
    indirect case template(SparkplugTemplate)
}

extension SparkplugValue {
    /// Maps to the value field the payload chapter prescribes for the type. Signed 8/16/32-bit integers are sign
    /// extended to 32 bits and sent as their two's complement in the unsigned `int_value`; Int64 likewise in
    /// `long_value`. Arrays are packed little endian into `bytes_value`.
    var wire: WireValue {
        switch self {
        case .int8(let v): .int(UInt32(bitPattern: Int32(v)))
        case .int16(let v): .int(UInt32(bitPattern: Int32(v)))
        case .int32(let v): .int(UInt32(bitPattern: v))
        case .int64(let v): .long(UInt64(bitPattern: v))
        case .uint8(let v): .int(UInt32(v))
        case .uint16(let v): .int(UInt32(v))
        case .uint32(let v): .int(v)
        case .uint64(let v), .dateTime(let v): .long(v)
        case .float(let v): .float(v)
        case .double(let v): .double(v)
        case .boolean(let v): .boolean(v)
        case .string(let v), .text(let v), .uuid(let v): .string(v)
        case .bytes(let v), .file(let v), .uint8Array(let v): .bytes(Data(v))
        case .int8Array(let v): .bytes(ArrayPacking.pack(v))
        case .int16Array(let v): .bytes(ArrayPacking.pack(v))
        case .int32Array(let v): .bytes(ArrayPacking.pack(v))
        case .int64Array(let v): .bytes(ArrayPacking.pack(v))
        case .uint16Array(let v): .bytes(ArrayPacking.pack(v))
        case .uint32Array(let v): .bytes(ArrayPacking.pack(v))
        case .uint64Array(let v), .dateTimeArray(let v): .bytes(ArrayPacking.pack(v))
        case .floatArray(let v): .bytes(ArrayPacking.pack(v.map(\.bitPattern)))
        case .doubleArray(let v): .bytes(ArrayPacking.pack(v.map(\.bitPattern)))
        case .booleanArray(let v): .bytes(ArrayPacking.packBooleans(v))
        case .stringArray(let v): .bytes(ArrayPacking.packStrings(v))
        case .template(let t): .template(t)
        }
    }

    /// Reads a value of `type` from its wire field; `context` names the metric for error messages.
    init(type: SparkplugDataType, wire: WireValue, context: String) throws(SparkplugError) {
        func mismatch() -> SparkplugError {
            .invalidValue(context: context, reason: "\(type) cannot travel in \(wire.fieldName)")
        }
        func range(_ v: some BinaryInteger) -> SparkplugError {
            .invalidValue(context: context, reason: "\(v) is out of range for \(type)")
        }
        switch (type, wire) {
        case (.int8, .int(let v)):
            // Accept both the sign-extended form the spec prescribes and an 8-bit zero-extended form.
            if let s = Int8(exactly: Int32(bitPattern: v)) {
                self = .int8(s)
            } else if v <= 0xFF {
                self = .int8(Int8(bitPattern: UInt8(v)))
            } else {
                throw range(v)
            }
        case (.int16, .int(let v)):
            if let s = Int16(exactly: Int32(bitPattern: v)) {
                self = .int16(s)
            } else if v <= 0xFFFF {
                self = .int16(Int16(bitPattern: UInt16(v)))
            } else {
                throw range(v)
            }
        case (.int32, .int(let v)): self = .int32(Int32(bitPattern: v))
        case (.int64, .long(let v)): self = .int64(Int64(bitPattern: v))
        case (.uint8, .int(let v)):
            guard let u = UInt8(exactly: v) else { throw range(v) }
            self = .uint8(u)
        case (.uint16, .int(let v)):
            guard let u = UInt16(exactly: v) else { throw range(v) }
            self = .uint16(u)
        case (.uint32, .int(let v)): self = .uint32(v)
        case (.uint64, .long(let v)): self = .uint64(v)
        case (.dateTime, .long(let v)): self = .dateTime(v)
        case (.float, .float(let v)): self = .float(v)
        case (.double, .double(let v)): self = .double(v)
        case (.boolean, .boolean(let v)): self = .boolean(v)
        case (.string, .string(let v)): self = .string(v)
        case (.text, .string(let v)): self = .text(v)
        case (.uuid, .string(let v)): self = .uuid(v)
        case (.bytes, .bytes(let d)): self = .bytes([UInt8](d))
        case (.file, .bytes(let d)): self = .file([UInt8](d))
        case (.uint8Array, .bytes(let d)): self = .uint8Array([UInt8](d))
        case (.int8Array, .bytes(let d)): self = .int8Array(try ArrayPacking.unpack(d, as: Int8.self, context: context))
        case (.int16Array, .bytes(let d)):
            self = .int16Array(try ArrayPacking.unpack(d, as: Int16.self, context: context))
        case (.int32Array, .bytes(let d)):
            self = .int32Array(try ArrayPacking.unpack(d, as: Int32.self, context: context))
        case (.int64Array, .bytes(let d)):
            self = .int64Array(try ArrayPacking.unpack(d, as: Int64.self, context: context))
        case (.uint16Array, .bytes(let d)):
            self = .uint16Array(try ArrayPacking.unpack(d, as: UInt16.self, context: context))
        case (.uint32Array, .bytes(let d)):
            self = .uint32Array(try ArrayPacking.unpack(d, as: UInt32.self, context: context))
        case (.uint64Array, .bytes(let d)):
            self = .uint64Array(try ArrayPacking.unpack(d, as: UInt64.self, context: context))
        case (.dateTimeArray, .bytes(let d)):
            self = .dateTimeArray(try ArrayPacking.unpack(d, as: UInt64.self, context: context))
        case (.floatArray, .bytes(let d)):
            self = .floatArray(
                try ArrayPacking.unpack(d, as: UInt32.self, context: context).map(Float.init(bitPattern:)))
        case (.doubleArray, .bytes(let d)):
            self = .doubleArray(
                try ArrayPacking.unpack(d, as: UInt64.self, context: context).map(Double.init(bitPattern:)))
        case (.booleanArray, .bytes(let d)): self = .booleanArray(try ArrayPacking.unpackBooleans(d, context: context))
        case (.stringArray, .bytes(let d)): self = .stringArray(try ArrayPacking.unpackStrings(d, context: context))
        case (.template, .template(let t)): self = .template(t)
        case (.unknown, _), (.dataSet, _), (.propertySet, _), (.propertySetList, _):
            throw .unsupportedDataType(context: context, type.rawValue)
        default:
            throw mismatch()
        }
    }
}

extension WireValue {
    var fieldName: String {
        switch self {
        case .int: "int_value"
        case .long: "long_value"
        case .float: "float_value"
        case .double: "double_value"
        case .boolean: "boolean_value"
        case .string: "string_value"
        case .bytes: "bytes_value"
        case .template: "template_value"
        }
    }
}

/// The array encodings of the payload chapter ("Datatype Details", array types): fixed-width elements packed
/// little endian. The chapter does not spell out BooleanArray and StringArray further; we follow Eclipse Tahu,
/// the reference implementation: BooleanArray = element count as a 4-byte little-endian integer, then the bits
/// packed most significant bit first; StringArray = each string's UTF-8 bytes followed by a NUL.
enum ArrayPacking {
    static func pack<T: FixedWidthInteger>(_ values: [T]) -> Data {
        var data = Data(capacity: values.count * MemoryLayout<T>.size)
        for v in values {
            withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) }
        }
        return data
    }

    static func unpack<T: FixedWidthInteger>(_ data: Data, as: T.Type, context: String) throws(SparkplugError) -> [T] {
        let size = MemoryLayout<T>.size
        guard data.count % size == 0 else {
            throw .invalidValue(
                context: context, reason: "\(data.count) bytes is not a whole number of \(size)-byte elements")
        }
        var result: [T] = []
        result.reserveCapacity(data.count / size)
        data.withUnsafeBytes { raw in
            for offset in stride(from: 0, to: raw.count, by: size) {
                var v = T.zero
                withUnsafeMutableBytes(of: &v) {
                    $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[offset..<offset + size]))
                }
                result.append(T(littleEndian: v))
            }
        }
        return result
    }

    static func packBooleans(_ values: [Bool]) -> Data {
        var data = pack([UInt32(values.count)])
        var byte: UInt8 = 0
        for (i, v) in values.enumerated() {
            if v { byte |= 0x80 >> UInt8(i % 8) }
            if i % 8 == 7 {
                data.append(byte)
                byte = 0
            }
        }
        if values.count % 8 != 0 { data.append(byte) }
        return data
    }

    static func unpackBooleans(_ data: Data, context: String) throws(SparkplugError) -> [Bool] {
        let bytes = [UInt8](data)
        guard bytes.count >= 4 else {
            throw .invalidValue(context: context, reason: "BooleanArray needs a 4-byte count, got \(bytes.count) bytes")
        }
        let count = Int(UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24)
        let needed = (count + 7) / 8
        guard bytes.count - 4 == needed else {
            throw .invalidValue(
                context: context,
                reason: "BooleanArray of \(count) elements needs \(needed) bytes of bits, got \(bytes.count - 4)")
        }
        return (0..<count).map { i in bytes[4 + i / 8] & (0x80 >> UInt8(i % 8)) != 0 }
    }

    static func packStrings(_ values: [String]) -> Data {
        var data = Data()
        for s in values {
            data.append(contentsOf: s.utf8)
            data.append(0)
        }
        return data
    }

    static func unpackStrings(_ data: Data, context: String) throws(SparkplugError) -> [String] {
        let bytes = [UInt8](data)
        guard bytes.isEmpty || bytes.last == 0 else {
            throw .invalidValue(context: context, reason: "StringArray does not end with a NUL terminator")
        }
        var result: [String] = []
        var start = 0
        for (i, b) in bytes.enumerated() where b == 0 {
            guard let s = String(validating: bytes[start..<i], as: UTF8.self) else {
                throw .invalidValue(context: context, reason: "StringArray element \(result.count) is not valid UTF-8")
            }
            result.append(s)
            start = i + 1
        }
        return result
    }
}

/// The generated messages that hold one basic value in the same six fields: a metric's property value and a template
/// parameter. One setter serves both, so what either may hold is decided in one place.
protocol BasicValueMessage {
    var intValue: UInt32 { get set }
    var longValue: UInt64 { get set }
    var floatValue: Float { get set }
    var doubleValue: Double { get set }
    var booleanValue: Bool { get set }
    var stringValue: String { get set }
}

extension SpB_Payload.PropertyValue: BasicValueMessage {}
extension SpB_Payload.Template.Parameter: BasicValueMessage {}

extension BasicValueMessage {
    /// Sets the field of `wire`'s kind; false for bytes and templates, which these messages have no field for (the
    /// specification allows basic types only in properties and parameters).
    mutating func setBasic(_ wire: WireValue) -> Bool {
        switch wire {
        case .int(let v): intValue = v
        case .long(let v): longValue = v
        case .float(let v): floatValue = v
        case .double(let v): doubleValue = v
        case .boolean(let v): booleanValue = v
        case .string(let v): stringValue = v
        case .bytes, .template: return false
        }
        return true
    }
}
