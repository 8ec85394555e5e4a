import Foundation

/// Limits applied while decoding untrusted bytes. Every length field is checked against both the bytes
/// actually remaining and these caps before anything is allocated, so a forged length cannot make the
/// decoder allocate more than the message it already holds.
public struct DecodingLimits: Sendable, Hashable {
    /// Longest String, ByteString or XmlElement accepted, in bytes.
    public var maxStringLength: Int
    /// Largest element count of any array.
    public var maxArrayLength: Int
    /// Deepest nesting of Variant / DataValue / DiagnosticInfo structures.
    public var maxNestingDepth: Int

    /// Creates limits; the defaults match a 16 MiB message budget.
    public init(maxStringLength: Int = 16 << 20, maxArrayLength: Int = 1 << 20, maxNestingDepth: Int = 16) {
        self.maxStringLength = maxStringLength
        self.maxArrayLength = maxArrayLength
        self.maxNestingDepth = maxNestingDepth
    }
}

/// Sequential little-endian writer of OPC UA binary encodings.
struct BinaryWriter {
    var bytes: [UInt8]

    init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    var count: Int { bytes.count }

    mutating func write(_ v: UInt8) { bytes.append(v) }
    mutating func write(_ v: Int8) { bytes.append(UInt8(bitPattern: v)) }
    mutating func write(_ v: Bool) { bytes.append(v ? 1 : 0) }
    mutating func write(_ v: UInt16) { appendLE(v) }
    mutating func write(_ v: Int16) { appendLE(UInt16(bitPattern: v)) }
    mutating func write(_ v: UInt32) { appendLE(v) }
    mutating func write(_ v: Int32) { appendLE(UInt32(bitPattern: v)) }
    mutating func write(_ v: UInt64) { appendLE(v) }
    mutating func write(_ v: Int64) { appendLE(UInt64(bitPattern: v)) }
    mutating func write(_ v: Float) { appendLE(v.bitPattern) }
    mutating func write(_ v: Double) { appendLE(v.bitPattern) }

    mutating func appendLE<T: FixedWidthInteger>(_ v: T) {
        var le = v.littleEndian
        withUnsafeBytes(of: &le) { bytes.append(contentsOf: $0) }
    }

    mutating func write(raw: some Sequence<UInt8>) { bytes.append(contentsOf: raw) }

    /// String with Int32 length prefix; nil encodes as the null string (-1).
    mutating func write(string: String?) {
        guard let string else { return write(Int32(-1)) }
        write(Int32(string.utf8.count))
        // A native string lends its UTF-8 storage; only a bridged one needs the copy.
        if string.utf8.withContiguousStorageIfAvailable({ bytes.append(contentsOf: $0) }) == nil {
            bytes.append(contentsOf: Array(string.utf8))
        }
    }

    mutating func write(byteString: [UInt8]?) {
        guard let byteString else { return write(Int32(-1)) }
        write(Int32(byteString.count))
        bytes.append(contentsOf: byteString)
    }

    mutating func write<T>(array: [T]?, _ element: (inout BinaryWriter, T) -> Void) {
        guard let array else { return write(Int32(-1)) }
        write(Int32(array.count))
        for e in array { element(&self, e) }
    }

    mutating func write<T: BinaryEncodable>(_ v: T) { v.encode(to: &self) }

    mutating func write<T: BinaryEncodable>(array: [T]?) {
        write(array: array) { w, e in e.encode(to: &w) }
    }

    /// Overwrites 4 bytes at `offset`; used to patch message sizes after the body is known.
    mutating func patch(_ v: UInt32, at offset: Int) {
        let le = v.littleEndian
        bytes[offset] = UInt8(truncatingIfNeeded: le)
        bytes[offset + 1] = UInt8(truncatingIfNeeded: le >> 8)
        bytes[offset + 2] = UInt8(truncatingIfNeeded: le >> 16)
        bytes[offset + 3] = UInt8(truncatingIfNeeded: le >> 24)
    }
}

/// Sequential little-endian reader with bounds checks on every access.
struct BinaryReader {
    let bytes: [UInt8]
    private(set) var position: Int
    let end: Int
    let limits: DecodingLimits
    var depth = 0

    init(_ bytes: [UInt8], limits: DecodingLimits = DecodingLimits()) {
        self.bytes = bytes
        self.position = 0
        self.end = bytes.count
        self.limits = limits
    }

    init(_ bytes: [UInt8], from start: Int, to end: Int, limits: DecodingLimits = DecodingLimits()) {
        self.bytes = bytes
        self.position = start
        self.end = end
        self.limits = limits
    }

    var remaining: Int { end - position }
    var isAtEnd: Bool { position >= end }

    func error(_ what: String) -> OPCUAError {
        .decoding("\(what) at byte \(position) of \(end)")
    }

    mutating func need(_ n: Int, _ what: @autoclosure () -> String) throws {
        if n < 0 || n > remaining {
            throw error("\(what()): need \(n) bytes, \(remaining) remain")
        }
    }

    mutating func skip(_ n: Int) throws {
        try need(n, "skip")
        position += n
    }

    mutating func readLE<T: FixedWidthInteger>(_: T.Type) throws -> T {
        let size = MemoryLayout<T>.size
        try need(size, "\(T.self)")
        var v: T = 0
        for i in 0..<size {
            v |= T(truncatingIfNeeded: bytes[position + i]) << (8 * i)
        }
        position += size
        return v
    }

    mutating func readUInt8() throws -> UInt8 {
        try need(1, "Byte")
        defer { position += 1 }
        return bytes[position]
    }
    mutating func readInt8() throws -> Int8 { Int8(bitPattern: try readUInt8()) }
    mutating func readBool() throws -> Bool { try readUInt8() != 0 }
    mutating func readUInt16() throws -> UInt16 { try readLE(UInt16.self) }
    mutating func readInt16() throws -> Int16 { Int16(bitPattern: try readLE(UInt16.self)) }
    mutating func readUInt32() throws -> UInt32 { try readLE(UInt32.self) }
    mutating func readInt32() throws -> Int32 { Int32(bitPattern: try readLE(UInt32.self)) }
    mutating func readUInt64() throws -> UInt64 { try readLE(UInt64.self) }
    mutating func readInt64() throws -> Int64 { Int64(bitPattern: try readLE(UInt64.self)) }
    mutating func readFloat() throws -> Float { Float(bitPattern: try readLE(UInt32.self)) }
    mutating func readDouble() throws -> Double { Double(bitPattern: try readLE(UInt64.self)) }

    mutating func readRaw(_ n: Int) throws -> [UInt8] {
        try need(n, "raw bytes")
        defer { position += n }
        return Array(bytes[position..<position + n])
    }

    /// Reads an Int32 length; -1 means null. Checks it against the remaining bytes and the cap.
    mutating func readLength(_ what: String, cap: Int, minElementSize: Int) throws -> Int? {
        let n = try readInt32()
        if n == -1 { return nil }
        if n < -1 { throw error("\(what) has negative length \(n)") }
        let count = Int(n)
        if count > cap { throw error("\(what) length \(count) exceeds the limit \(cap)") }
        if count * minElementSize > remaining {
            throw error("\(what) length \(count) exceeds the \(remaining) bytes remaining")
        }
        return count
    }

    mutating func readByteString() throws -> [UInt8]? {
        guard let n = try readLength("ByteString", cap: limits.maxStringLength, minElementSize: 1) else { return nil }
        return try readRaw(n)
    }

    mutating func readString() throws -> String? {
        guard let n = try readLength("String", cap: limits.maxStringLength, minElementSize: 1) else { return nil }
        let s = String(decoding: bytes[position..<position + n], as: UTF8.self)
        position += n
        return s
    }

    mutating func readArray<T>(
        _ what: String, minElementSize: Int = 1, _ element: (inout BinaryReader) throws -> T
    ) throws -> [T]? {
        guard let n = try readLength(what, cap: limits.maxArrayLength, minElementSize: minElementSize) else {
            return nil
        }
        var out: [T] = []
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(try element(&self)) }
        return out
    }

    mutating func read<T: BinaryDecodable>(_: T.Type) throws -> T { try T(from: &self) }

    mutating func readArray<T: BinaryDecodable>(of _: T.Type) throws -> [T] {
        try readArray("\(T.self)[]") { r in try T(from: &r) } ?? []
    }

    /// Guards recursive structures (Variant in DataValue in Variant …) against stack exhaustion.
    mutating func nested<T>(_ body: (inout BinaryReader) throws -> T) throws -> T {
        depth += 1
        defer { depth -= 1 }
        if depth > limits.maxNestingDepth { throw error("nesting deeper than \(limits.maxNestingDepth)") }
        return try body(&self)
    }
}

/// A type with an OPC UA binary encoding.
protocol BinaryEncodable {
    func encode(to w: inout BinaryWriter)
}

/// A type decodable from OPC UA binary.
protocol BinaryDecodable {
    init(from r: inout BinaryReader) throws
}

typealias BinaryCodable = BinaryEncodable & BinaryDecodable
