import Tags

/// Converts between Modbus registers/bits and tag values, by data type, word order and scaling.
///
/// Byte and word order. A value of `n` registers (1, 2 or 4) has big-endian bytes A, B, C, D, … (A most
/// significant). The four orders say where they land:
/// - `ABCD`: registers in address order, most significant word first; each register high byte first. The Modbus
///   default (big-endian throughout).
/// - `BADC`: words in address order, but the two bytes of every register swapped.
/// - `CDAB`: the words in reverse order (least significant word at the lowest address), bytes in each word
///   big-endian. For 64-bit types this reverses all four words (the register at the lowest address holds bytes G H),
///   which is what PLCs that store 32-bit values word-swapped do for 64-bit ones.
/// - `DCBA`: words reversed and bytes swapped: fully little-endian.
/// For 16-bit types only the byte swap matters (`BADC`/`DCBA` swap the two bytes).
///
/// Strings are two ASCII characters per register in address order, high byte first; `BADC` and `DCBA` put the
/// low byte first. Word order never reorders text registers. Trailing NUL and space padding is removed on decode;
/// encode pads with NUL.
///
/// Scaling maps the raw number to engineering units (a scaled tag always reads as a double). Writes apply the
/// inverse; integer types then round to nearest with ties away from zero (PLC `ROUND` semantics) and are refused —
/// never clamped — when the result does not fit the type. Unscaled integer tags accept only integral values.
///
/// Decoding never allocates: it reads caller-provided buffers and returns a `SampleValue`.
public enum RegisterCodec {
    /// The raw bits of a 1-, 2- or 4-register value, most significant byte first, after undoing `order`.
    @inline(__always)
    public static func rawBits(_ registers: UnsafePointer<UInt16>, count: Int, order: WordOrder) -> UInt64 {
        var bits: UInt64 = 0
        let swapWords = order.swapsWords
        let swapBytes = order.swapsBytes
        for i in 0..<count {
            var word = registers[swapWords ? count - 1 - i : i]
            if swapBytes { word = word.byteSwapped }
            bits = bits << 16 | UInt64(word)
        }
        return bits
    }

    /// Lays out the raw bits of a 1-, 2- or 4-register value (most significant byte first) in `order`.
    @inline(__always)
    public static func storeBits(
        _ bits: UInt64, count: Int, order: WordOrder, into registers: UnsafeMutablePointer<UInt16>
    ) {
        let swapWords = order.swapsWords
        let swapBytes = order.swapsBytes
        for i in 0..<count {
            var word = UInt16(truncatingIfNeeded: bits >> (16 * UInt64(count - 1 - i)))
            if swapBytes { word = word.byteSwapped }
            registers[swapWords ? count - 1 - i : i] = word
        }
    }

    /// Decodes one value from `registers` (at least `type.registerCount` of them).
    ///
    /// For strings the characters go to `text` (at least `2 * registers` bytes) and the result is `.text(length:)`.
    /// Returns nil when the data cannot be a value of the type (non-ASCII text, a non-finite scaled result).
    @inline(__always)
    public static func decode(
        registers: UnsafePointer<UInt16>, type: TagDataType, order: WordOrder, scaling: Scaling?,
        text: UnsafeMutableRawBufferPointer
    ) -> SampleValue? {
        let bits = type.isNumeric || type == .bool ? rawBits(registers, count: type.registerCount, order: order) : 0
        switch type {
        case .bool:
            return .bool(bits != 0)
        case .int16:
            return scaled(.int(Int64(Int16(truncatingIfNeeded: bits))), scaling)
        case .uint16:
            return scaled(.uint(bits & 0xFFFF), scaling)
        case .int32:
            return scaled(.int(Int64(Int32(truncatingIfNeeded: bits))), scaling)
        case .uint32:
            return scaled(.uint(bits & 0xFFFF_FFFF), scaling)
        case .int64:
            return scaled(.int(Int64(bitPattern: bits)), scaling)
        case .uint64:
            return scaled(.uint(bits), scaling)
        case .float32:
            return scaled(.double(Double(Float(bitPattern: UInt32(truncatingIfNeeded: bits)))), scaling)
        case .float64:
            return scaled(.double(Double(bitPattern: bits)), scaling)
        case .string(let count):
            return decodeText(registers, count: count, order: order, into: text)
        }
    }

    /// Decodes a bit (coil or discrete input) as libmodbus stores it: one byte per bit.
    @inline(__always)
    public static func decodeBit(_ byte: UInt8) -> SampleValue { .bool(byte != 0) }

    @inline(__always)
    static func scaled(_ raw: SampleValue, _ scaling: Scaling?) -> SampleValue? {
        guard let scaling else { return raw }
        guard let number = raw.doubleValue else { return raw }
        let engineering = scaling.toEngineering(number)
        // A NaN read from the device is reported as such; only scaling that manufactures infinity is an error.
        if engineering.isInfinite && number.isFinite { return nil }
        return .double(engineering)
    }

    static func decodeText(
        _ registers: UnsafePointer<UInt16>, count: Int, order: WordOrder, into text: UnsafeMutableRawBufferPointer
    ) -> SampleValue? {
        let lowFirst = order.swapsBytes
        var length = 0
        // Bytes in reading order, without building an array (this runs on the poll path).
        for k in 0..<(2 * min(count, text.count / 2)) {
            let word = registers[k >> 1]
            let highHalf = (k & 1 == 0) != lowFirst
            let byte = UInt8(truncatingIfNeeded: highHalf ? word >> 8 : word)
            if byte == 0 { break }
            if byte >= 0x80 { return nil }
            text[length] = byte
            length += 1
        }
        while length > 0 && text[length - 1] == 0x20 { length -= 1 }
        return .text(length: length)
    }

    // MARK: - Encoding (writes; not on the poll path)

    /// Encodes `value` for a register-area tag into `registers` (at least `type.registerCount` of them).
    ///
    /// Scaling is inverted first; the value is refused when it has the wrong kind, is not finite, or does not fit.
    public static func encode(
        _ value: TagValue, type: TagDataType, order: WordOrder, scaling: Scaling?,
        into registers: UnsafeMutableBufferPointer<UInt16>
    ) throws(WriteRefusal) {
        precondition(registers.count >= type.registerCount, "register buffer too small")
        let base = registers.baseAddress!
        let count = type.registerCount
        switch type {
        case .bool:
            storeBits(try encodeBool(value) ? 1 : 0, count: 1, order: order, into: base)
        case .string(let n):
            try encodeText(value, registers: n, order: order, into: base)
        case .float32:
            let raw = try rawDouble(value, type: type, scaling: scaling)
            guard abs(raw) <= Double(Float.greatestFiniteMagnitude) else {
                throw .outOfRange(value: value.description, type: type)
            }
            storeBits(UInt64(Float(raw).bitPattern), count: count, order: order, into: base)
        case .float64:
            let raw = try rawDouble(value, type: type, scaling: scaling)
            storeBits(raw.bitPattern, count: count, order: order, into: base)
        case .int16, .int32, .int64:
            let raw = try rawSigned(value, type: type, scaling: scaling)
            storeBits(UInt64(bitPattern: raw), count: count, order: order, into: base)
        case .uint16, .uint32, .uint64:
            let raw = try rawUnsigned(value, type: type, scaling: scaling)
            storeBits(raw, count: count, order: order, into: base)
        }
    }

    /// Encodes `value` for a coil.
    public static func encodeBool(_ value: TagValue) throws(WriteRefusal) -> Bool {
        switch value {
        case .bool(let b): return b
        case .int(let i) where i == 0 || i == 1: return i == 1
        case .uint(let u) where u == 0 || u == 1: return u == 1
        case .double(let d) where d == 0 || d == 1: return d == 1
        default: throw .typeMismatch(expected: "a boolean (true/false or 0/1)", got: value.description)
        }
    }

    private static func rawDouble(_ value: TagValue, type: TagDataType, scaling: Scaling?) throws(WriteRefusal)
        -> Double
    {
        guard case .string = value else {
            guard let number = value.doubleValue, number.isFinite else {
                throw .typeMismatch(expected: "a finite number for \(type)", got: value.description)
            }
            if case .bool = value { throw .typeMismatch(expected: "a number for \(type)", got: value.description) }
            let raw = scaling.map { $0.toRaw(number) } ?? number
            guard raw.isFinite else { throw .outOfRange(value: value.description, type: type) }
            return raw
        }
        throw .typeMismatch(expected: "a number for \(type)", got: value.description)
    }

    private static func typeBounds(_ type: TagDataType) -> (min: Int64, max: UInt64) {
        switch type {
        case .int16: return (Int64(Int16.min), UInt64(Int16.max))
        case .int32: return (Int64(Int32.min), UInt64(Int32.max))
        case .int64: return (Int64.min, UInt64(Int64.max))
        case .uint16: return (0, UInt64(UInt16.max))
        case .uint32: return (0, UInt64(UInt32.max))
        default: return (0, UInt64.max)
        }
    }

    private static func rawSigned(_ value: TagValue, type: TagDataType, scaling: Scaling?) throws(WriteRefusal)
        -> Int64
    {
        let bounds = typeBounds(type)
        if scaling == nil {
            switch value {
            case .int(let i):
                guard i >= bounds.min && (i < 0 || UInt64(i) <= bounds.max) else {
                    throw .outOfRange(value: value.description, type: type)
                }
                return i
            case .uint(let u):
                guard u <= bounds.max else { throw .outOfRange(value: value.description, type: type) }
                return Int64(u)
            default: break
            }
        }
        let raw = try rawDouble(value, type: type, scaling: scaling)
        let rounded = scaling == nil ? raw : raw.rounded(.toNearestOrAwayFromZero)
        guard rounded == rounded.rounded(.towardZero) else {
            throw .typeMismatch(expected: "a whole number for \(type)", got: value.description)
        }
        // Double(Int64.max) rounds up to 2^63, so the upper test must be strict.
        guard rounded >= Double(bounds.min) && rounded < Double(bounds.max) + 1 else {
            throw .outOfRange(value: value.description, type: type)
        }
        return Int64(rounded)
    }

    private static func rawUnsigned(_ value: TagValue, type: TagDataType, scaling: Scaling?) throws(WriteRefusal)
        -> UInt64
    {
        let bounds = typeBounds(type)
        if scaling == nil {
            switch value {
            case .int(let i):
                guard i >= 0 && UInt64(i) <= bounds.max else { throw .outOfRange(value: value.description, type: type) }
                return UInt64(i)
            case .uint(let u):
                guard u <= bounds.max else { throw .outOfRange(value: value.description, type: type) }
                return u
            default: break
            }
        }
        let raw = try rawDouble(value, type: type, scaling: scaling)
        let rounded = scaling == nil ? raw : raw.rounded(.toNearestOrAwayFromZero)
        guard rounded == rounded.rounded(.towardZero) else {
            throw .typeMismatch(expected: "a whole number for \(type)", got: value.description)
        }
        guard rounded >= 0 && rounded < Double(bounds.max) + 1 else {
            throw .outOfRange(value: value.description, type: type)
        }
        return UInt64(rounded)
    }

    private static func encodeText(
        _ value: TagValue, registers: Int, order: WordOrder, into base: UnsafeMutablePointer<UInt16>
    )
        throws(WriteRefusal)
    {
        guard case .string(let s) = value else {
            throw .typeMismatch(expected: "text for string(\(registers))", got: value.description)
        }
        let bytes = Array(s.utf8)
        guard bytes.allSatisfy({ $0 < 0x80 && $0 != 0 }) else { throw .notASCII(s) }
        guard bytes.count <= registers * 2 else { throw .tooLong(s, capacity: registers * 2) }
        for i in 0..<registers {
            let high = 2 * i < bytes.count ? UInt16(bytes[2 * i]) : 0
            let low = 2 * i + 1 < bytes.count ? UInt16(bytes[2 * i + 1]) : 0
            base[i] = order.swapsBytes ? (low << 8 | high) : (high << 8 | low)
        }
    }
}

/// Why a write was refused before it reached the device.
public enum WriteRefusal: Error, Equatable, Sendable, CustomStringConvertible {
    case unknownTag(String)
    case notWritable(tag: String)
    case readOnlyArea(tag: String, area: ModbusArea)
    case notModbus(tag: String)
    case typeMismatch(expected: String, got: String)
    case outOfRange(value: String, type: TagDataType)
    case outsideLimits(tag: String, value: Double, limits: WriteLimits)
    case notASCII(String)
    case tooLong(String, capacity: Int)

    public var description: String {
        switch self {
        case .unknownTag(let t): return "no tag \(t) on this device"
        case .notWritable(let t): return "tag \(t) is not configured as writable"
        case .readOnlyArea(let t, let area):
            return
                "tag \(t) is in the \(area.rawValue) area, which Modbus cannot write (only coil and holding_register)"
        case .notModbus(let t): return "tag \(t) is not a Modbus tag"
        case .typeMismatch(let expected, let got): return "expected \(expected), got \(got)"
        case .outOfRange(let value, let type): return "value \(value) does not fit \(type)"
        case .outsideLimits(let t, let v, let l):
            return "value \(formatDouble(v)) for tag \(t) is outside its write limits "
                + "[\(formatDouble(l.minimum)), \(formatDouble(l.maximum))]"
        case .notASCII(let s): return "text \"\(s)\" is not plain ASCII without NUL"
        case .tooLong(let s, let capacity): return "text \"\(s)\" is longer than the tag's \(capacity) characters"
        }
    }
}
