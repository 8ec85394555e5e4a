import Foundation

/// An OPC UA DateTime: 100-ns ticks since 1601-01-01 UTC, kept exact (a `Date` would round the ticks).
public struct DateTime: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var ticks: Int64

    /// Ticks between 1601-01-01 and 1970-01-01.
    static let unixEpochTicks: Int64 = 116_444_736_000_000_000

    public init(ticks: Int64) { self.ticks = ticks }

    public init(_ date: Date) {
        ticks = Int64((date.timeIntervalSince1970 * 10_000_000).rounded()) + DateTime.unixEpochTicks
    }

    public static func now() -> DateTime { DateTime(Date()) }

    /// The null DateTime (encoded as 0), which the server reads as "not set".
    public static let null = DateTime(ticks: 0)

    public var date: Date { Date(timeIntervalSince1970: Double(ticks - DateTime.unixEpochTicks) / 10_000_000) }

    public static func < (a: DateTime, b: DateTime) -> Bool { a.ticks < b.ticks }

    public var description: String { ticks == 0 ? "null" : ISO8601DateFormatter().string(from: date) }
}

extension DateTime: BinaryCodable {
    func encode(to w: inout BinaryWriter) { w.write(ticks) }
    init(from r: inout BinaryReader) throws { ticks = try r.readInt64() }
}

/// A name qualified by a namespace index (BrowseName).
public struct QualifiedName: Hashable, Sendable, CustomStringConvertible {
    public var namespace: UInt16
    public var name: String

    public init(namespace: UInt16 = 0, _ name: String) {
        self.namespace = namespace
        self.name = name
    }

    public var description: String { namespace == 0 ? name : "\(namespace):\(name)" }
}

extension QualifiedName: BinaryCodable {
    func encode(to w: inout BinaryWriter) {
        w.write(namespace)
        w.write(string: name)
    }

    init(from r: inout BinaryReader) throws {
        namespace = try r.readUInt16()
        name = try r.readString() ?? ""
    }
}

/// Human-readable text with an optional locale.
public struct LocalizedText: Hashable, Sendable, CustomStringConvertible {
    public var locale: String?
    public var text: String?

    public init(_ text: String?, locale: String? = nil) {
        self.text = text
        self.locale = locale
    }

    public var description: String { text ?? "" }
}

extension LocalizedText: BinaryCodable {
    func encode(to w: inout BinaryWriter) {
        w.write(UInt8((locale != nil ? 1 : 0) | (text != nil ? 2 : 0)))
        if let locale { w.write(string: locale) }
        if let text { w.write(string: text) }
    }

    init(from r: inout BinaryReader) throws {
        let mask = try r.readUInt8()
        locale = mask & 1 != 0 ? try r.readString() : nil
        text = mask & 2 != 0 ? try r.readString() : nil
    }
}

/// A structure the client does not decode itself: its encoding NodeId and raw body.
public struct ExtensionObject: Hashable, Sendable {
    /// The body as it was on the wire.
    public enum Body: Hashable, Sendable {
        case none
        case binary([UInt8])
        case xml(String)
    }

    public var typeId: NodeId
    public var body: Body

    public init(typeId: NodeId, body: Body) {
        self.typeId = typeId
        self.body = body
    }

    static let null = ExtensionObject(typeId: .null, body: .none)

    init<T: BinaryEncodable>(typeId: UInt32, encoding value: T) {
        var w = BinaryWriter()
        value.encode(to: &w)
        self.init(typeId: NodeId(typeId), body: .binary(w.bytes))
    }

    /// Decodes a binary body as `T` if the type id matches, with the same limits as the outer message.
    func decode<T: BinaryDecodable>(_: T.Type, typeId expected: UInt32, limits: DecodingLimits) throws -> T? {
        guard typeId == NodeId(expected), case .binary(let bytes) = body else { return nil }
        var r = BinaryReader(bytes, limits: limits)
        return try T(from: &r)
    }
}

extension ExtensionObject: BinaryCodable {
    func encode(to w: inout BinaryWriter) {
        typeId.encode(to: &w)
        switch body {
        case .none: w.write(UInt8(0))
        case .binary(let b):
            w.write(UInt8(1))
            w.write(byteString: b)
        case .xml(let s):
            w.write(UInt8(2))
            w.write(string: s)
        }
    }

    init(from r: inout BinaryReader) throws {
        typeId = try NodeId(from: &r)
        switch try r.readUInt8() {
        case 0: body = .none
        case 1: body = .binary(try r.readByteString() ?? [])
        case 2: body = .xml(try r.readString() ?? "")
        case let e: throw r.error("ExtensionObject encoding byte \(e) is not 0, 1 or 2")
        }
    }
}

/// Vendor diagnostics attached to a result; the client only decodes it so that the rest of a message can be read.
public struct DiagnosticInfo: Hashable, Sendable {
    public var symbolicId: Int32?
    public var namespaceUri: Int32?
    public var locale: Int32?
    public var localizedText: Int32?
    public var additionalInfo: String?
    public var innerStatusCode: StatusCode?
    /// Kept in an array so the recursive value type has a finite size; holds at most one element.
    private var innerStorage: [DiagnosticInfo] = []

    public var innerDiagnosticInfo: DiagnosticInfo? {
        get { innerStorage.first }
        set { innerStorage = newValue.map { [$0] } ?? [] }
    }

    public init() {}
}

extension DiagnosticInfo: BinaryCodable {
    func encode(to w: inout BinaryWriter) {
        var mask: UInt8 = 0
        if symbolicId != nil { mask |= 0x01 }
        if namespaceUri != nil { mask |= 0x02 }
        if localizedText != nil { mask |= 0x04 }
        if locale != nil { mask |= 0x08 }
        if additionalInfo != nil { mask |= 0x10 }
        if innerStatusCode != nil { mask |= 0x20 }
        if innerDiagnosticInfo != nil { mask |= 0x40 }
        w.write(mask)
        if let symbolicId { w.write(symbolicId) }
        if let namespaceUri { w.write(namespaceUri) }
        if let locale { w.write(locale) }
        if let localizedText { w.write(localizedText) }
        if let additionalInfo { w.write(string: additionalInfo) }
        if let innerStatusCode { w.write(innerStatusCode) }
        if let innerDiagnosticInfo { innerDiagnosticInfo.encode(to: &w) }
    }

    init(from r: inout BinaryReader) throws {
        let mask = try r.readUInt8()
        if mask & 0x01 != 0 { symbolicId = try r.readInt32() }
        if mask & 0x02 != 0 { namespaceUri = try r.readInt32() }
        if mask & 0x08 != 0 { locale = try r.readInt32() }
        if mask & 0x04 != 0 { localizedText = try r.readInt32() }
        if mask & 0x10 != 0 { additionalInfo = try r.readString() }
        if mask & 0x20 != 0 { innerStatusCode = try r.read(StatusCode.self) }
        if mask & 0x40 != 0 { innerDiagnosticInfo = try r.nested { r in try DiagnosticInfo(from: &r) } }
    }
}
