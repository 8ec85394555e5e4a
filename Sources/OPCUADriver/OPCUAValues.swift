import Devices
import Foundation
import OPCUA
import Tags

/// Conversions between OPC UA values and tag values, shared by the device driver and the commissioning commands.
///
/// Reading maps every built-in type onto the tag's configured type: numbers and booleans onto numeric and bool tags
/// (refusing values the tag type cannot hold rather than wrapping them), anything — including arrays, which are
/// shown as JSON-like text `[1, 2, 3]` — onto text tags. Writing goes the other way into the *exact* built-in type
/// the server holds, since servers reject a Variant of another type with BadTypeMismatch.
public enum OPCUAValues {
    /// OPC UA status → tag quality: Good is good, Uncertain keeps the value with `.uncertain`, Bad is `.deviceStatus`.
    public static func quality(_ status: StatusCode) -> Quality {
        if status.isGood { return .good }
        if status.isUncertain { return Quality(.uncertain, detail: status.rawValue) }
        return Quality(.deviceStatus, detail: status.rawValue)
    }

    /// How a tag's quality reads to people. A device status of an OPC UA tag carries the status code's name
    /// (`bad (BadFilterNotAllowed (0x80450000))`), since the hex code alone means little to a technician; other
    /// tags and qualities read as `Quality.description`.
    public static func describe(_ quality: Quality, of definition: TagDefinition) -> String {
        switch definition.source {
        case .opcua, .opcuaBrowsePath: break
        case .modbus, .computed: return quality.description
        }
        switch quality.code {
        case .deviceStatus: return "bad (\(StatusCode(quality.detail)))"
        case .uncertain: return "uncertain (\(StatusCode(quality.detail)))"
        default: return quality.description
        }
    }

    /// Unix microseconds of an OPC UA DateTime.
    public static func microseconds(_ t: DateTime) -> Int64 {
        (t.ticks - 116_444_736_000_000_000) / 10
    }

    /// The sample time: the source timestamp (when the value changed in the device), else the server's, else now.
    public static func sampleTime(_ dv: DataValue, now: Int64) -> Int64 {
        if let t = dv.sourceTimestamp, t.ticks != 0 { return microseconds(t) }
        if let t = dv.serverTimestamp, t.ticks != 0 { return microseconds(t) }
        return now
    }

    /// The sample time from a value's timestamps, with the same preference as `sampleTime(_:now:)`.
    public static func sampleTime(source: DateTime?, server: DateTime?, now: Int64) -> Int64 {
        if let t = source, t.ticks != 0 { return microseconds(t) }
        if let t = server, t.ticks != 0 { return microseconds(t) }
        return now
    }

    /// Appends UTF-8 text, cut to at most `capacity` bytes at a character boundary so that a long text never ends
    /// in half a character.
    static func appendUTF8(_ text: UnsafeRawBufferPointer, to buffer: inout [UInt8], capacity: Int) {
        var n = text.count
        if n > capacity {
            n = capacity
            while n > 0 && text[n] & 0xC0 == 0x80 { n -= 1 }
        }
        var i = 0
        while i < n {
            buffer.append(text[i])
            i += 1
        }
    }

    /// Appends bytes as `0x` and two lowercase hex digits each (as `describe` shows a ByteString), up to
    /// `capacity` characters.
    static func appendHex(_ bytes: UnsafeRawBufferPointer, to buffer: inout [UInt8], capacity: Int) {
        let digits: StaticString = "0123456789abcdef"
        guard capacity >= 2 else { return }
        buffer.append(UInt8(ascii: "0"))
        buffer.append(UInt8(ascii: "x"))
        var i = 0
        while i < bytes.count && buffer.count + 2 <= capacity {
            buffer.append(digits.utf8Start[Int(bytes[i] >> 4)])
            buffer.append(digits.utf8Start[Int(bytes[i] & 0x0F)])
            i += 1
        }
    }

    /// The value as a tag of `definition`'s type, or nil if it does not fit (a decode error for the tag).
    /// For text tags the text is returned in `text`.
    public static func sampleValue(_ v: Variant, for definition: TagDefinition, text: inout String) -> SampleValue? {
        switch definition.type {
        case .bool:
            if case .boolean(let b) = v { return .bool(b) }
            return v.doubleValue.map { .bool($0 != 0) }
        case .string:
            text = describe(v)
            return .text(length: text.utf8.count)
        case .float32, .float64:
            guard let d = v.doubleValue else { return nil }
            return .double(definition.scaling?.toEngineering(d) ?? d)
        default:
            if let scaling = definition.scaling {
                return v.doubleValue.map { .double(scaling.toEngineering($0)) }
            }
            return integer(v, as: definition.type)
        }
    }

    private static func integer(_ v: Variant, as type: TagDataType) -> SampleValue? {
        let signed: Int64?
        let unsigned: UInt64?
        switch v {
        case .boolean(let b): (signed, unsigned) = (b ? 1 : 0, b ? 1 : 0)
        case .sbyte(let x): (signed, unsigned) = (Int64(x), UInt64(exactly: x))
        case .byte(let x): (signed, unsigned) = (Int64(x), UInt64(x))
        case .int16(let x): (signed, unsigned) = (Int64(x), UInt64(exactly: x))
        case .uint16(let x): (signed, unsigned) = (Int64(x), UInt64(x))
        case .int32(let x): (signed, unsigned) = (Int64(x), UInt64(exactly: x))
        case .uint32(let x): (signed, unsigned) = (Int64(x), UInt64(x))
        case .int64(let x): (signed, unsigned) = (x, UInt64(exactly: x))
        case .uint64(let x): (signed, unsigned) = (Int64(exactly: x), x)
        case .float(let f): (signed, unsigned) = (Int64(exactly: f), UInt64(exactly: f))
        case .double(let d): (signed, unsigned) = (Int64(exactly: d), UInt64(exactly: d))
        default: return nil
        }
        switch type {
        case .int16: return signed.flatMap { Int16(exactly: $0) }.map { .int(Int64($0)) }
        case .int32: return signed.flatMap { Int32(exactly: $0) }.map { .int(Int64($0)) }
        case .int64: return signed.map { .int($0) }
        case .uint16: return unsigned.flatMap { UInt16(exactly: $0) }.map { .uint(UInt64($0)) }
        case .uint32: return unsigned.flatMap { UInt32(exactly: $0) }.map { .uint(UInt64($0)) }
        case .uint64: return unsigned.map { .uint($0) }
        default: return nil
        }
    }

    /// Human text for any value: scalars as themselves, arrays as `[a, b, c]`, matrices with their dimensions.
    public static func describe(_ v: Variant) -> String {
        switch v {
        case .null: return "null"
        case .boolean(let b): return b ? "true" : "false"
        case .sbyte(let x): return String(x)
        case .byte(let x): return String(x)
        case .int16(let x): return String(x)
        case .uint16(let x): return String(x)
        case .int32(let x): return String(x)
        case .uint32(let x): return String(x)
        case .int64(let x): return String(x)
        case .uint64(let x): return String(x)
        case .float(let f): return String(f)
        case .double(let d): return String(d)
        case .string(let s): return s
        case .dateTime(let t): return isoTime(t)
        case .guid(let g): return g.uuidString.lowercased()
        case .byteString(let b): return "0x" + b.map { String(format: "%02x", $0) }.joined()
        case .xmlElement(let x): return x
        case .nodeId(let n): return n.description
        case .expandedNodeId(let n): return n.description
        case .statusCode(let s): return s.description
        case .qualifiedName(let q): return q.description
        case .localizedText(let t): return t.text ?? ""
        case .extensionObject(let e): return "ExtensionObject(\(e.typeId))"
        case .dataValue(let d): return describe(d.value)
        case .diagnosticInfo: return "DiagnosticInfo"
        case .array(let a):
            let quoted = [.string, .xmlElement, .localizedText, .qualifiedName, .nodeId, .guid, .dateTime]
                .contains(a.elementType)
            let items = a.elements.map { e -> String in
                let s = describe(e)
                return quoted ? "\"" + s.replacingOccurrences(of: "\"", with: "\\\"") + "\"" : s
            }
            let body = "[" + items.joined(separator: ", ") + "]"
            if let dims = a.dimensions { return "\(body) dims \(dims.map(String.init).joined(separator: "x"))" }
            return body
        }
    }

    /// ISO-8601 with milliseconds, or `null` for the null DateTime.
    public static func describeTime(_ t: DateTime) -> String { isoTime(t) }

    static func isoTime(_ t: DateTime) -> String {
        if t.ticks == 0 { return "null" }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: t.date)
    }

    /// The specification's spelling of a built-in type (`Double`, `UInt32`, `SByte`, `ByteString`).
    public static func typeName(_ t: BuiltinType) -> String {
        let raw = "\(t)"
        if raw.hasPrefix("uint") { return "UInt" + raw.dropFirst(4) }
        if raw == "sbyte" { return "SByte" }
        return raw.prefix(1).uppercased() + raw.dropFirst()
    }

    /// The built-in type for a name as technicians write it (`Double`, `int32`, `Float`, `string` …).
    public static func builtinType(named name: String) -> BuiltinType? {
        let n = name.lowercased()
        let aliases: [String: BuiltinType] = [
            "bool": .boolean, "int8": .sbyte, "uint8": .byte, "float32": .float, "real": .float,
            "float64": .double, "lreal": .double, "text": .string,
        ]
        if let t = aliases[n] { return t }
        return BuiltinType.allCases.first { "\($0)".lowercased() == n }
    }

    /// Parses technician text into a Variant of exactly `type` (an array when `array`, written `[1, 2, 3]`).
    public static func variant(parsing text: String, as type: BuiltinType, array: Bool = false) throws(DeviceWriteError)
        -> Variant
    {
        if array {
            var body = text.trimmingCharacters(in: .whitespaces)
            guard body.hasPrefix("["), body.hasSuffix("]") else {
                throw .refused("'\(text)' is not an array: write it as [a, b, c]")
            }
            body = String(body.dropFirst().dropLast())
            let parts =
                body.trimmingCharacters(in: .whitespaces).isEmpty ? [] : splitArray(body)
            var elements: [Variant] = []
            for p in parts {
                var item = p.trimmingCharacters(in: .whitespaces)
                if item.count >= 2, item.hasPrefix("\""), item.hasSuffix("\"") {
                    item = String(item.dropFirst().dropLast()).replacingOccurrences(of: "\\\"", with: "\"")
                }
                elements.append(try variant(parsing: item, as: type))
            }
            do {
                return .array(try VariantArray(type, elements))
            } catch {
                throw .refused("\(error)")
            }
        }
        let t = text.trimmingCharacters(in: .whitespaces)
        func bad(_ expected: String) -> DeviceWriteError { .refused("'\(text)' is not \(expected) (\(type))") }
        switch type {
        case .boolean:
            switch t.lowercased() {
            case "true", "1", "on", "yes": return .boolean(true)
            case "false", "0", "off", "no": return .boolean(false)
            default: throw bad("true or false")
            }
        case .sbyte:
            guard let x = Int8(t) else { throw bad("a whole number from -128 to 127") }
            return .sbyte(x)
        case .byte:
            guard let x = UInt8(t) else { throw bad("a whole number from 0 to 255") }
            return .byte(x)
        case .int16:
            guard let x = Int16(t) else { throw bad("a whole number from -32768 to 32767") }
            return .int16(x)
        case .uint16:
            guard let x = UInt16(t) else { throw bad("a whole number from 0 to 65535") }
            return .uint16(x)
        case .int32:
            guard let x = Int32(t) else { throw bad("a 32-bit whole number") }
            return .int32(x)
        case .uint32:
            guard let x = UInt32(t) else { throw bad("an unsigned 32-bit whole number") }
            return .uint32(x)
        case .int64:
            guard let x = Int64(t) else { throw bad("a 64-bit whole number") }
            return .int64(x)
        case .uint64:
            guard let x = UInt64(t) else { throw bad("an unsigned 64-bit whole number") }
            return .uint64(x)
        case .float:
            guard let d = Double(t), d.isFinite, abs(d) <= Double(Float.greatestFiniteMagnitude) else {
                throw bad("a number that fits a 32-bit float")
            }
            return .float(Float(d))
        case .double:
            guard let d = Double(t), d.isFinite else { throw bad("a finite number") }
            return .double(d)
        case .string: return .string(text)
        case .xmlElement: return .xmlElement(text)
        case .localizedText: return .localizedText(LocalizedText(text))
        case .dateTime:
            let f = ISO8601DateFormatter()
            f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            guard let date = f.date(from: t) ?? ISO8601DateFormatter().date(from: t) else {
                throw bad("an ISO-8601 time such as 2024-05-17T12:30:45Z")
            }
            return .dateTime(DateTime(date))
        case .guid:
            guard let g = UUID(uuidString: t) else { throw bad("a GUID") }
            return .guid(g)
        case .byteString:
            var hex = t.lowercased()
            if hex.hasPrefix("0x") { hex.removeFirst(2) }
            guard hex.count % 2 == 0, hex.allSatisfy(\.isHexDigit) else { throw bad("hex bytes such as 0x00ff") }
            var bytes: [UInt8] = []
            var i = hex.startIndex
            while i < hex.endIndex {
                let j = hex.index(i, offsetBy: 2)
                bytes.append(UInt8(hex[i..<j], radix: 16)!)
                i = j
            }
            return .byteString(bytes)
        case .nodeId:
            do { return .nodeId(try NodeId(parsing: t)) } catch { throw bad("a NodeId such as ns=2;s=Name") }
        case .statusCode:
            let hex = t.lowercased().hasPrefix("0x") ? String(t.dropFirst(2)) : t
            guard let x = UInt32(hex, radix: 16) else { throw bad("a status code in hex such as 0x80740000") }
            return .statusCode(StatusCode(x))
        default:
            throw .refused("writing values of type \(type) is not supported")
        }
    }

    /// Splits array text on commas outside quotes.
    private static func splitArray(_ body: String) -> [String] {
        var parts: [String] = []
        var current = ""
        var quoted = false
        var escaped = false
        for c in body {
            if escaped {
                current.append(c)
                escaped = false
                continue
            }
            if c == "\\" {
                escaped = true
                current.append(c)
                continue
            }
            if c == "\"" { quoted.toggle() }
            if c == ",", !quoted {
                parts.append(current)
                current = ""
            } else {
                current.append(c)
            }
        }
        parts.append(current)
        return parts
    }

    /// Converts a tag write (engineering units, already limit-checked) into exactly the server's type.
    ///
    /// Scaling is undone first; then the number must fit the server's type exactly (an integer type gets no
    /// fractional value, no value outside its range), so nothing is rounded or wrapped on the way to the PLC.
    public static func variant(for value: TagValue, definition: TagDefinition, serverType: BuiltinType, array: Bool)
        throws(DeviceWriteError) -> Variant
    {
        if array || !isNumericOrBool(serverType) {
            guard case .string(let text) = value else {
                if isNumericOrBool(serverType) || array {
                    throw .refused("the node holds \(array ? "an array of " : "")\(serverType); write it as text")
                }
                return try variant(parsing: value.description, as: serverType)
            }
            return try variant(parsing: text, as: serverType, array: array)
        }
        if case .string(let text) = value { return try variant(parsing: text, as: serverType) }
        if serverType == .boolean {
            switch value {
            case .bool(let b): return .boolean(b)
            case .int(let i) where i == 0 || i == 1: return .boolean(i == 1)
            case .uint(let u) where u == 0 || u == 1: return .boolean(u == 1)
            case .double(let d) where d == 0 || d == 1: return .boolean(d == 1)
            default: throw .refused("the node holds a Boolean; '\(value)' is not true/false or 0/1")
            }
        }
        guard var number = value.doubleValue, number.isFinite else {
            throw .refused("'\(value)' is not a finite number")
        }
        if let scaling = definition.scaling { number = scaling.toRaw(number) }
        func whole<T: FixedWidthInteger>(_: T.Type) throws(DeviceWriteError) -> T {
            // Exact integers travel without going through Double, so 64-bit values keep every digit.
            if definition.scaling == nil {
                switch value {
                case .int(let i): if let x = T(exactly: i) { return x }
                case .uint(let u): if let x = T(exactly: u) { return x }
                default: break
                }
            }
            guard let x = T(exactly: number) else {
                throw .refused(
                    "\(formatDouble(number)) cannot be written exactly as \(serverType)"
                        + " (\(T.min)…\(T.max), whole numbers only)")
            }
            return x
        }
        switch serverType {
        case .sbyte: return .sbyte(try whole(Int8.self))
        case .byte: return .byte(try whole(UInt8.self))
        case .int16: return .int16(try whole(Int16.self))
        case .uint16: return .uint16(try whole(UInt16.self))
        case .int32: return .int32(try whole(Int32.self))
        case .uint32: return .uint32(try whole(UInt32.self))
        case .int64: return .int64(try whole(Int64.self))
        case .uint64: return .uint64(try whole(UInt64.self))
        case .float:
            guard abs(number) <= Double(Float.greatestFiniteMagnitude) else {
                throw .refused("\(formatDouble(number)) does not fit a Float")
            }
            return .float(Float(number))
        default: return .double(number)
        }
    }

    static func isNumericOrBool(_ t: BuiltinType) -> Bool {
        switch t {
        case .boolean, .sbyte, .byte, .int16, .uint16, .int32, .uint32, .int64, .uint64, .float, .double: return true
        default: return false
        }
    }

    /// The tag value a sample shows, as TagValue (for read-back reports).
    static func tagValue(_ v: SampleValue, text: String) -> TagValue? {
        switch v {
        case .none: return nil
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .uint(let u): return .uint(u)
        case .double(let d): return .double(d)
        case .text: return .string(text)
        }
    }
}
