import Foundation

/// The 25 OPC UA built-in types, numbered as in the Variant encoding mask.
public enum BuiltinType: UInt8, Sendable, Hashable, CaseIterable {
    case boolean = 1
    case sbyte, byte, int16, uint16, int32, uint32, int64, uint64, float, double, string, dateTime, guid
    case byteString, xmlElement, nodeId, expandedNodeId, statusCode, qualifiedName, localizedText, extensionObject
    case dataValue, variant, diagnosticInfo
}

/// An OPC UA Variant: a scalar of one built-in type, an array (optionally multi-dimensional), or null.
public enum Variant: Hashable, Sendable {
    case null
    case boolean(Bool)
    case sbyte(Int8)
    case byte(UInt8)
    case int16(Int16)
    case uint16(UInt16)
    case int32(Int32)
    case uint32(UInt32)
    case int64(Int64)
    case uint64(UInt64)
    case float(Float)
    case double(Double)
    case string(String)
    case dateTime(DateTime)
    case guid(UUID)
    case byteString([UInt8])
    case xmlElement(String)
    case nodeId(NodeId)
    case expandedNodeId(ExpandedNodeId)
    case statusCode(StatusCode)
    case qualifiedName(QualifiedName)
    case localizedText(LocalizedText)
    case extensionObject(ExtensionObject)
    indirect case dataValue(DataValue)
    case diagnosticInfo(DiagnosticInfo)
    case array(VariantArray)

    /// The built-in type of a scalar, or of the elements of an array; nil for null.
    public var builtinType: BuiltinType? {
        switch self {
        case .null: return nil
        case .boolean: return .boolean
        case .sbyte: return .sbyte
        case .byte: return .byte
        case .int16: return .int16
        case .uint16: return .uint16
        case .int32: return .int32
        case .uint32: return .uint32
        case .int64: return .int64
        case .uint64: return .uint64
        case .float: return .float
        case .double: return .double
        case .string: return .string
        case .dateTime: return .dateTime
        case .guid: return .guid
        case .byteString: return .byteString
        case .xmlElement: return .xmlElement
        case .nodeId: return .nodeId
        case .expandedNodeId: return .expandedNodeId
        case .statusCode: return .statusCode
        case .qualifiedName: return .qualifiedName
        case .localizedText: return .localizedText
        case .extensionObject: return .extensionObject
        case .dataValue: return .dataValue
        case .diagnosticInfo: return .diagnosticInfo
        case .array(let a): return a.elementType
        }
    }

    /// Numeric scalars and Boolean as Double (what a tag table stores); nil for anything else.
    public var doubleValue: Double? {
        switch self {
        case .boolean(let v): return v ? 1 : 0
        case .sbyte(let v): return Double(v)
        case .byte(let v): return Double(v)
        case .int16(let v): return Double(v)
        case .uint16(let v): return Double(v)
        case .int32(let v): return Double(v)
        case .uint32(let v): return Double(v)
        case .int64(let v): return Double(v)
        case .uint64(let v): return Double(v)
        case .float(let v): return Double(v)
        case .double(let v): return v
        default: return nil
        }
    }

    public var isArray: Bool {
        if case .array = self { return true }
        return false
    }
}

/// The elements of an array Variant. Every element is a scalar of `elementType`, except that arrays of
/// `.variant` may hold any scalar Variant.
public struct VariantArray: Hashable, Sendable {
    public let elementType: BuiltinType
    public let elements: [Variant]
    /// Lengths of each dimension for a matrix (product = element count); nil for a one-dimensional array.
    public let dimensions: [Int32]?

    /// Checks that the elements agree with the type and the dimensions, so that every array can be encoded.
    public init(_ elementType: BuiltinType, _ elements: [Variant], dimensions: [Int32]? = nil) throws {
        for (i, e) in elements.enumerated() {
            if e.isArray { throw OPCUAError.invalidArgument("array element \(i) is itself an array") }
            if elementType != .variant && e.builtinType != elementType {
                throw OPCUAError.invalidArgument(
                    "array element \(i) is \(e.builtinType.map { "\($0)" } ?? "null"), expected \(elementType)")
            }
        }
        if let dimensions {
            let product = dimensions.reduce(1) { $0 * Int($1) }
            if dimensions.contains(where: { $0 < 0 }) || product != elements.count {
                throw OPCUAError.invalidArgument("dimensions \(dimensions) do not match \(elements.count) elements")
            }
        }
        self.elementType = elementType
        self.elements = elements
        self.dimensions = dimensions
    }

    /// Trusted initialiser for the decoder, which built the elements from the type byte itself.
    init(unchecked elementType: BuiltinType, _ elements: [Variant], dimensions: [Int32]?) {
        self.elementType = elementType
        self.elements = elements
        self.dimensions = dimensions
    }
}

extension Variant {
    /// Builds an array Variant from Swift doubles (convenience for tag writes).
    public static func doubles(_ values: [Double]) -> Variant {
        .array(VariantArray(unchecked: .double, values.map { .double($0) }, dimensions: nil))
    }
}

extension Variant: BinaryCodable {
    func encode(to w: inout BinaryWriter) {
        switch self {
        case .null: w.write(UInt8(0))
        case .array(let a):
            var mask = a.elementType.rawValue | 0x80
            if a.dimensions != nil { mask |= 0x40 }
            w.write(mask)
            w.write(Int32(a.elements.count))
            for e in a.elements {
                if a.elementType == .variant { e.encode(to: &w) } else { e.encodeScalarBody(to: &w) }
            }
            if let d = a.dimensions { w.write(array: d) { w, v in w.write(v) } }
        default:
            w.write(builtinType!.rawValue)
            encodeScalarBody(to: &w)
        }
    }

    /// The value without the mask byte, as it appears inside an array.
    private func encodeScalarBody(to w: inout BinaryWriter) {
        switch self {
        case .null, .array: break  // VariantArray.init rejects these as elements
        case .boolean(let v): w.write(v)
        case .sbyte(let v): w.write(v)
        case .byte(let v): w.write(v)
        case .int16(let v): w.write(v)
        case .uint16(let v): w.write(v)
        case .int32(let v): w.write(v)
        case .uint32(let v): w.write(v)
        case .int64(let v): w.write(v)
        case .uint64(let v): w.write(v)
        case .float(let v): w.write(v)
        case .double(let v): w.write(v)
        case .string(let v): w.write(string: v)
        case .dateTime(let v): w.write(v)
        case .guid(let v): w.write(v)
        case .byteString(let v): w.write(byteString: v)
        case .xmlElement(let v): w.write(string: v)
        case .nodeId(let v): w.write(v)
        case .expandedNodeId(let v): w.write(v)
        case .statusCode(let v): w.write(v)
        case .qualifiedName(let v): w.write(v)
        case .localizedText(let v): w.write(v)
        case .extensionObject(let v): w.write(v)
        case .dataValue(let v): w.write(v)
        case .diagnosticInfo(let v): w.write(v)
        }
    }

    init(from r: inout BinaryReader) throws {
        self = try r.nested { r in try Variant.decodeVariant(&r) }
    }

    private static func decodeVariant(_ r: inout BinaryReader) throws -> Variant {
        let mask = try r.readUInt8()
        let typeByte = mask & 0x3F
        if typeByte == 0 {
            if mask & 0x80 != 0 { _ = try r.readInt32() }  // tolerate a typed null array
            return .null
        }
        guard let type = BuiltinType(rawValue: typeByte) else {
            throw r.error("Variant type \(typeByte) is not a built-in type")
        }
        if mask & 0x80 == 0 {
            if mask & 0x40 != 0 { throw r.error("Variant has dimensions but no array flag") }
            if type == .variant { throw r.error("scalar Variant inside a Variant") }
            return try decodeScalar(type, &r)
        }
        let elements =
            try r.readArray("Variant array", minElementSize: minimumEncodedSize(type)) { r in
                type == .variant ? try Variant(from: &r) : try decodeScalar(type, &r)
            } ?? []
        var dimensions: [Int32]?
        if mask & 0x40 != 0 {
            let dims = try r.readArray("ArrayDimensions", minElementSize: 4) { r in try r.readInt32() } ?? []
            var product = 1
            for d in dims {
                if d < 0 { throw r.error("negative array dimension \(d)") }
                product = product.multipliedReportingOverflow(by: Int(d)).partialValue
            }
            if product != elements.count {
                throw r.error("ArrayDimensions \(dims) do not match \(elements.count) elements")
            }
            dimensions = dims
        }
        return .array(VariantArray(unchecked: type, elements, dimensions: dimensions))
    }

    /// Smallest wire size of one element, used to reject counts the remaining bytes cannot hold.
    static func minimumEncodedSize(_ t: BuiltinType) -> Int {
        switch t {
        case .boolean, .sbyte, .byte, .variant, .dataValue, .diagnosticInfo, .localizedText: return 1
        case .int16, .uint16, .nodeId, .expandedNodeId: return 2
        case .int32, .uint32, .float, .statusCode, .string, .byteString, .xmlElement: return 4
        case .int64, .uint64, .double, .dateTime: return 8
        case .guid: return 16
        case .qualifiedName: return 6
        case .extensionObject: return 3
        }
    }

    private static func decodeScalar(_ t: BuiltinType, _ r: inout BinaryReader) throws -> Variant {
        switch t {
        case .boolean: return .boolean(try r.readBool())
        case .sbyte: return .sbyte(try r.readInt8())
        case .byte: return .byte(try r.readUInt8())
        case .int16: return .int16(try r.readInt16())
        case .uint16: return .uint16(try r.readUInt16())
        case .int32: return .int32(try r.readInt32())
        case .uint32: return .uint32(try r.readUInt32())
        case .int64: return .int64(try r.readInt64())
        case .uint64: return .uint64(try r.readUInt64())
        case .float: return .float(try r.readFloat())
        case .double: return .double(try r.readDouble())
        case .string: return .string(try r.readString() ?? "")
        case .dateTime: return .dateTime(try r.read(DateTime.self))
        case .guid: return .guid(try r.read(UUID.self))
        case .byteString: return .byteString(try r.readByteString() ?? [])
        case .xmlElement: return .xmlElement(try r.readString() ?? "")
        case .nodeId: return .nodeId(try r.read(NodeId.self))
        case .expandedNodeId: return .expandedNodeId(try r.read(ExpandedNodeId.self))
        case .statusCode: return .statusCode(try r.read(StatusCode.self))
        case .qualifiedName: return .qualifiedName(try r.read(QualifiedName.self))
        case .localizedText: return .localizedText(try r.read(LocalizedText.self))
        case .extensionObject: return .extensionObject(try r.read(ExtensionObject.self))
        case .dataValue: return .dataValue(try r.nested { r in try DataValue(from: &r) })
        case .diagnosticInfo: return .diagnosticInfo(try r.read(DiagnosticInfo.self))
        case .variant: return try Variant(from: &r)
        }
    }
}

/// A value with its quality and timestamps, as returned by Read and delivered by subscriptions.
public struct DataValue: Hashable, Sendable {
    /// The value; `.null` when the server sent none (typically together with a bad status).
    public var value: Variant
    /// Quality of the value; Good when the server omitted it.
    public var status: StatusCode
    public var sourceTimestamp: DateTime?
    public var sourcePicoseconds: UInt16?
    public var serverTimestamp: DateTime?
    public var serverPicoseconds: UInt16?

    public init(
        _ value: Variant = .null, status: StatusCode = .good, sourceTimestamp: DateTime? = nil,
        serverTimestamp: DateTime? = nil, sourcePicoseconds: UInt16? = nil, serverPicoseconds: UInt16? = nil
    ) {
        self.value = value
        self.status = status
        self.sourceTimestamp = sourceTimestamp
        self.serverTimestamp = serverTimestamp
        self.sourcePicoseconds = sourcePicoseconds
        self.serverPicoseconds = serverPicoseconds
    }
}

extension DataValue: BinaryCodable {
    func encode(to w: inout BinaryWriter) {
        var mask: UInt8 = 0
        if value != .null { mask |= 0x01 }
        if status != .good { mask |= 0x02 }
        if sourceTimestamp != nil { mask |= 0x04 }
        if serverTimestamp != nil { mask |= 0x08 }
        if sourcePicoseconds != nil { mask |= 0x10 }
        if serverPicoseconds != nil { mask |= 0x20 }
        w.write(mask)
        if value != .null { value.encode(to: &w) }
        if status != .good { w.write(status) }
        if let sourceTimestamp { w.write(sourceTimestamp) }
        if let sourcePicoseconds { w.write(sourcePicoseconds) }
        if let serverTimestamp { w.write(serverTimestamp) }
        if let serverPicoseconds { w.write(serverPicoseconds) }
    }

    init(from r: inout BinaryReader) throws {
        let mask = try r.readUInt8()
        value = mask & 0x01 != 0 ? try Variant(from: &r) : .null
        status = mask & 0x02 != 0 ? try r.read(StatusCode.self) : .good
        sourceTimestamp = mask & 0x04 != 0 ? try r.read(DateTime.self) : nil
        sourcePicoseconds = mask & 0x10 != 0 ? try r.readUInt16() : nil
        serverTimestamp = mask & 0x08 != 0 ? try r.read(DateTime.self) : nil
        serverPicoseconds = mask & 0x20 != 0 ? try r.readUInt16() : nil
    }
}
