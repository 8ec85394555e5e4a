/// A DataValue read in place from a received message: status, timestamps and type are decoded, the value itself
/// stays in the message bytes until asked for.
///
/// Numbers, Booleans, StatusCodes and DateTimes come out of `inlineScalar` without touching the heap, and the
/// bytes of a String, XmlElement or ByteString can be borrowed with `withContentBytes`; only `value()` for strings,
/// arrays and structures builds a `Variant` (and allocates). The view keeps the message buffer alive while it
/// exists, so it is safe to keep, but keeping it makes the client allocate a new receive buffer; consumers on the
/// hot path copy what they need and let it go.
public struct DataValueView: Sendable {
    /// Quality of the value; Good when the server omitted it.
    public let status: StatusCode
    public let sourceTimestamp: DateTime?
    public let sourcePicoseconds: UInt16?
    public let serverTimestamp: DateTime?
    public let serverPicoseconds: UInt16?
    /// Built-in type of a scalar, or of the elements of an array; nil when there is no value or a null one.
    public let builtinType: BuiltinType?
    public let isArray: Bool

    /// The scalar's bits for the fixed-size types `inlineScalar` covers.
    private let bits: UInt64
    /// The whole encoded Variant, mask byte included; empty when the DataValue has no value.
    private let valueRange: Range<Int>
    /// Content of a String, XmlElement or ByteString scalar; nil for any other value and for the null string.
    private let contentRange: Range<Int>?
    private let storage: [UInt8]
    private let limits: DecodingLimits

    /// Decodes the DataValue at the reader's position, moving past it. Accepts exactly what `DataValue(from:)`
    /// accepts and stops at the same byte, without allocating.
    static func decode(_ r: inout BinaryReader) throws -> DataValueView {
        let mask = try r.readUInt8()
        var type: BuiltinType?
        var isArray = false
        var bits: UInt64 = 0
        var valueRange = r.position..<r.position
        var contentRange: Range<Int>?
        if mask & 0x01 != 0 {
            let start = r.position
            try r.nested { r in
                let vmask = try r.readUInt8()
                let typeByte = vmask & 0x3F
                guard vmask & 0xC0 == 0, let t = BuiltinType(rawValue: typeByte), t != .variant else {
                    try r.skipVariantBody(mask: vmask)
                    type = typeByte == 0 ? nil : BuiltinType(rawValue: typeByte)
                    isArray = vmask & 0x80 != 0
                    return
                }
                type = t
                switch t {
                case .boolean, .sbyte, .byte: bits = UInt64(try r.readUInt8())
                case .int16, .uint16: bits = UInt64(try r.readUInt16())
                case .int32, .uint32, .float, .statusCode: bits = UInt64(try r.readUInt32())
                case .int64, .uint64, .double, .dateTime: bits = try r.readUInt64()
                case .string, .xmlElement: contentRange = try r.skipString()
                case .byteString: contentRange = try r.skipByteString()
                default: try r.skipScalar(t)
                }
            }
            valueRange = start..<r.position
        }
        let status = mask & 0x02 != 0 ? StatusCode(try r.readUInt32()) : .good
        let sourceTimestamp = mask & 0x04 != 0 ? DateTime(ticks: try r.readInt64()) : nil
        let sourcePicoseconds = mask & 0x10 != 0 ? try r.readUInt16() : nil
        let serverTimestamp = mask & 0x08 != 0 ? DateTime(ticks: try r.readInt64()) : nil
        let serverPicoseconds = mask & 0x20 != 0 ? try r.readUInt16() : nil
        return DataValueView(
            status: status, sourceTimestamp: sourceTimestamp, sourcePicoseconds: sourcePicoseconds,
            serverTimestamp: serverTimestamp, serverPicoseconds: serverPicoseconds, builtinType: type,
            isArray: isArray, bits: bits, valueRange: valueRange, contentRange: contentRange, storage: r.bytes,
            limits: r.limits)
    }

    private init(
        status: StatusCode, sourceTimestamp: DateTime?, sourcePicoseconds: UInt16?, serverTimestamp: DateTime?,
        serverPicoseconds: UInt16?, builtinType: BuiltinType?, isArray: Bool, bits: UInt64, valueRange: Range<Int>,
        contentRange: Range<Int>?, storage: [UInt8], limits: DecodingLimits
    ) {
        self.status = status
        self.sourceTimestamp = sourceTimestamp
        self.sourcePicoseconds = sourcePicoseconds
        self.serverTimestamp = serverTimestamp
        self.serverPicoseconds = serverPicoseconds
        self.builtinType = builtinType
        self.isArray = isArray
        self.bits = bits
        self.valueRange = valueRange
        self.contentRange = contentRange
        self.storage = storage
        self.limits = limits
    }

    /// A view of a DataValue the caller already has (e.g. from `read(_:)`), so that one code path can consume both.
    /// Encodes it once, so it allocates.
    public init(_ value: DataValue) {
        var w = BinaryWriter(capacity: 64)
        value.encode(to: &w)
        var r = BinaryReader(w.bytes)
        if let view = try? DataValueView.decode(&r) {
            self = view
        } else {
            // Only a Variant the decoder itself would refuse gets here (e.g. deeper than the nesting limit).
            self.init(DataValue(status: .badDecodingError))
        }
    }

    /// True when the DataValue carries no value or a null Variant.
    public var isNull: Bool { builtinType == nil }

    /// The value, when it is a scalar of a fixed-size type (Boolean, integers, Float, Double, StatusCode,
    /// DateTime); nil for anything else. Never allocates.
    public var inlineScalar: Variant? {
        guard !isArray, let t = builtinType else { return nil }
        switch t {
        case .boolean: return .boolean(bits != 0)
        case .sbyte: return .sbyte(Int8(truncatingIfNeeded: bits))
        case .byte: return .byte(UInt8(truncatingIfNeeded: bits))
        case .int16: return .int16(Int16(truncatingIfNeeded: bits))
        case .uint16: return .uint16(UInt16(truncatingIfNeeded: bits))
        case .int32: return .int32(Int32(truncatingIfNeeded: bits))
        case .uint32: return .uint32(UInt32(truncatingIfNeeded: bits))
        case .int64: return .int64(Int64(bitPattern: bits))
        case .uint64: return .uint64(bits)
        case .float: return .float(Float(bitPattern: UInt32(truncatingIfNeeded: bits)))
        case .double: return .double(Double(bitPattern: bits))
        case .statusCode: return .statusCode(StatusCode(UInt32(truncatingIfNeeded: bits)))
        case .dateTime: return .dateTime(DateTime(ticks: Int64(bitPattern: bits)))
        default: return nil
        }
    }

    /// Lends the bytes of a String or XmlElement (UTF-8, as the server sent them) or of a ByteString scalar;
    /// a null string lends an empty buffer. Returns nil for any other value. Never allocates.
    public func withContentBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R? {
        guard !isArray, let t = builtinType, t == .string || t == .xmlElement || t == .byteString else { return nil }
        let range = contentRange ?? 0..<0
        return try storage.withUnsafeBytes { raw in try body(UnsafeRawBufferPointer(rebasing: raw[range])) }
    }

    /// The value as a `Variant`; allocates for strings, arrays and structures.
    public func value() throws -> Variant {
        if let v = inlineScalar { return v }
        if builtinType == nil { return .null }
        var r = BinaryReader(storage, from: valueRange.lowerBound, to: valueRange.upperBound, limits: limits)
        return try Variant(from: &r)
    }

    /// The whole DataValue, built; allocates like `value()`.
    public func dataValue() throws -> DataValue {
        DataValue(
            try value(), status: status, sourceTimestamp: sourceTimestamp, serverTimestamp: serverTimestamp,
            sourcePicoseconds: sourcePicoseconds, serverPicoseconds: serverPicoseconds)
    }
}

/// The values of one received message, decoded one at a time as they are iterated: the results of a Read in
/// request order, or the changes of one DataChangeNotification with the index of their monitored item.
///
/// The message was checked in full before the batch is handed out, so iterating cannot fail. Iterating allocates
/// nothing.
public struct DataValueBatch: Sequence, Sendable {
    /// One value and where it belongs: the position of the node in the Read, or the index of the monitored item
    /// in the array passed to `subscribe`.
    public struct Element: Sendable {
        public let index: Int
        public let value: DataValueView
    }

    private let storage: [UInt8]
    private let start: Int
    private let end: Int
    private let limits: DecodingLimits
    /// Values in the message; a notification may carry changes of items that are not in this subscription any
    /// more, which iteration skips.
    public let encodedCount: Int
    /// Subscriptions: every entry starts with its client handle, and `handle − handleBase` is the item index.
    private let handleBase: UInt32?
    private let itemCount: Int

    init(
        storage: [UInt8], start: Int, end: Int, limits: DecodingLimits, count: Int, handleBase: UInt32?,
        itemCount: Int
    ) {
        self.storage = storage
        self.start = start
        self.end = end
        self.limits = limits
        self.encodedCount = count
        self.handleBase = handleBase
        self.itemCount = itemCount
    }

    public var underestimatedCount: Int { handleBase == nil ? encodedCount : 0 }

    public func makeIterator() -> Iterator {
        Iterator(
            reader: BinaryReader(storage, from: start, to: end, limits: limits), remaining: encodedCount,
            handleBase: handleBase, itemCount: itemCount)
    }

    /// Decodes the next value on each call.
    public struct Iterator: IteratorProtocol {
        private var reader: BinaryReader
        private var remaining: Int
        private var index = 0
        private let handleBase: UInt32?
        private let itemCount: Int

        init(reader: BinaryReader, remaining: Int, handleBase: UInt32?, itemCount: Int) {
            self.reader = reader
            self.remaining = remaining
            self.handleBase = handleBase
            self.itemCount = itemCount
        }

        public mutating func next() -> Element? {
            while remaining > 0 {
                remaining -= 1
                do {
                    if let base = handleBase {
                        let handle = try reader.readUInt32()
                        let value = try DataValueView.decode(&reader)
                        let i = Int(handle &- base)
                        if i < itemCount { return Element(index: i, value: value) }
                    } else {
                        let value = try DataValueView.decode(&reader)
                        index += 1
                        return Element(index: index - 1, value: value)
                    }
                } catch {
                    // Unreachable for a batch made from a validated message; stop rather than guess.
                    remaining = 0
                }
            }
            return nil
        }
    }
}
