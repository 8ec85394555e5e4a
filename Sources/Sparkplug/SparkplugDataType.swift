/// The Sparkplug B 3.0 data types ("Data Types" in the payload chapter), carried as uint32 on the wire.
public enum SparkplugDataType: UInt32, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case unknown = 0
    case int8 = 1
    case int16 = 2
    case int32 = 3
    case int64 = 4
    case uint8 = 5
    case uint16 = 6
    case uint32 = 7
    case uint64 = 8
    case float = 9
    case double = 10
    case boolean = 11
    case string = 12
    /// Milliseconds since the Unix epoch, UTC.
    case dateTime = 13
    case text = 14
    case uuid = 15
    case dataSet = 16
    case bytes = 17
    case file = 18
    case template = 19
    case propertySet = 20
    case propertySetList = 21
    case int8Array = 22
    case int16Array = 23
    case int32Array = 24
    case int64Array = 25
    case uint8Array = 26
    case uint16Array = 27
    case uint32Array = 28
    case uint64Array = 29
    case floatArray = 30
    case doubleArray = 31
    case booleanArray = 32
    case stringArray = 33
    case dateTimeArray = 34

    /// The name the specification uses ("Int8", "DateTimeArray"…).
    public var description: String {
        switch self {
        case .unknown: "Unknown"
        case .int8: "Int8"
        case .int16: "Int16"
        case .int32: "Int32"
        case .int64: "Int64"
        case .uint8: "UInt8"
        case .uint16: "UInt16"
        case .uint32: "UInt32"
        case .uint64: "UInt64"
        case .float: "Float"
        case .double: "Double"
        case .boolean: "Boolean"
        case .string: "String"
        case .dateTime: "DateTime"
        case .text: "Text"
        case .uuid: "UUID"
        case .dataSet: "DataSet"
        case .bytes: "Bytes"
        case .file: "File"
        case .template: "Template"
        case .propertySet: "PropertySet"
        case .propertySetList: "PropertySetList"
        case .int8Array: "Int8Array"
        case .int16Array: "Int16Array"
        case .int32Array: "Int32Array"
        case .int64Array: "Int64Array"
        case .uint8Array: "UInt8Array"
        case .uint16Array: "UInt16Array"
        case .uint32Array: "UInt32Array"
        case .uint64Array: "UInt64Array"
        case .floatArray: "FloatArray"
        case .doubleArray: "DoubleArray"
        case .booleanArray: "BooleanArray"
        case .stringArray: "StringArray"
        case .dateTimeArray: "DateTimeArray"
        }
    }
}

/// Quality codes of the metric property "Quality" (an Int32 property, tck-id-payloads-propertyset-quality-value-type).
/// Hosts such as Ignition treat a metric without the property as good.
public enum SparkplugQuality: Int32, Sendable, Hashable, CaseIterable {
    case bad = 0
    case good = 192
    case stale = 500
}
