import Devices
import History
import Sparkplug
import Tags

/// How EdgePilot's tags appear as Sparkplug metrics, and how command values come back as tag values.
///
/// A tag presents as a double when it is a float or a scaled integer (engineering units); unscaled integers keep
/// their width and signedness, so Ignition shows the PLC's own type.
enum SparkplugMapping {
    static func dataType(of tag: TagDefinition) -> SparkplugDataType {
        if tag.presentsAsDouble { return tag.type == .float32 && tag.scaling == nil ? .float : .double }
        switch tag.type {
        case .bool: return .boolean
        case .int16: return .int16
        case .uint16: return .uint16
        case .int32: return .int32
        case .uint32: return .uint32
        case .int64: return .int64
        case .uint64: return .uint64
        case .float32: return .float
        case .float64: return .double
        case .string: return .string
        }
    }

    /// Sparkplug's Quality property values: 192 good, 500 stale, 0 bad (uncertain counts as bad: Ignition has no
    /// uncertain in the Sparkplug mapping, and a value the device doubts must not look good).
    static func quality(_ q: Quality) -> SparkplugQuality {
        switch q.code {
        case .good: return .good
        case .stale: return .stale
        default: return .bad
        }
    }

    /// The Sparkplug value of a tag value, converted (saturating) to the tag's declared metric type.
    static func value(_ v: TagValue?, as type: SparkplugDataType) -> SparkplugValue? {
        guard let v else { return nil }
        switch type {
        case .boolean:
            if case .bool(let b) = v { return .boolean(b) }
            return v.doubleValue.map { .boolean($0 != 0) }
        case .string:
            return .string(v.description)
        case .float: return v.doubleValue.map { .float(Float($0)) }
        case .double: return v.doubleValue.map { .double($0) }
        default: break
        }
        let i: Int64
        let u: UInt64
        switch v {
        case .int(let x): (i, u) = (x, x < 0 ? 0 : UInt64(x))
        case .uint(let x): (i, u) = (x > UInt64(Int64.max) ? .max : Int64(x), x)
        case .bool(let b): (i, u) = (b ? 1 : 0, b ? 1 : 0)
        case .double(let d):
            guard d.isFinite else { return nil }
            let r = d.rounded()
            i = r >= 9.2e18 ? .max : r <= -9.2e18 ? .min : Int64(r)
            u = r <= 0 ? 0 : r >= 1.8e19 ? .max : UInt64(r)
        case .string: return nil
        }
        switch type {
        case .int8: return .int8(Int8(clamping: i))
        case .int16: return .int16(Int16(clamping: i))
        case .int32: return .int32(Int32(clamping: i))
        case .int64: return .int64(i)
        case .uint8: return .uint8(UInt8(clamping: u))
        case .uint16: return .uint16(UInt16(clamping: u))
        case .uint32: return .uint32(UInt32(clamping: u))
        case .uint64: return .uint64(u)
        default: return nil
        }
    }

    /// A stored (queued) value as the tag's metric type.
    static func value(_ v: HistoryValue, for tag: TagDefinition, as type: SparkplugDataType) -> SparkplugValue? {
        switch v {
        case .null: return nil
        case .integer(let i):
            return value(tag.type == .bool ? .bool(i != 0) : i < 0 ? .int(i) : .uint(UInt64(i)), as: type)
        case .real(let d): return value(.double(d), as: type)
        case .text(let s): return value(.string(s), as: type)
        }
    }

    /// A metric for one sample of `tag`, with timestamp (ms) and Quality property.
    static func metric(
        _ tag: TagDefinition, value: TagValue?, quality q: Quality, timestampMicros: Int64, historical: Bool = false
    ) -> SparkplugMetric {
        let type = dataType(of: tag)
        let ts = UInt64(max(0, timestampMicros / 1000))
        let properties = [SparkplugProperty.quality(quality(q))]
        if let v = Self.value(value, as: type) {
            return SparkplugMetric(
                name: tag.name, timestamp: ts, value: v, properties: properties, isHistorical: historical)
        }
        return SparkplugMetric(
            name: tag.name, timestamp: ts, nullOf: type, properties: properties, isHistorical: historical)
    }

    /// The birth definition of `tag`: current value, engUnit, engLow/engHigh (scaling range, else write limits),
    /// documentation and tooltip (the tag's `description`) and readOnly (not `writable`), named as Ignition's tag
    /// properties are, so MQTT Engine fills them in (docs/decisions/0032-engine-node-metrics-and-scan-rate.md).
    static func birthMetric(_ tag: TagDefinition, table: TagTable, index: Int, now: UInt64) -> SparkplugMetric {
        let sample = table.read(index)
        var m = metric(
            tag, value: table.value(of: index, sample), quality: sample.quality,
            timestampMicros: sample.timestamp > 0 ? sample.timestamp : Int64(now) * 1000)
        if let units = tag.units { m.properties.append(.engUnit(units)) }
        if let s = tag.scaling {
            m.properties.append(.engLow(min(s.engineeringLow, s.engineeringHigh)))
            m.properties.append(.engHigh(max(s.engineeringLow, s.engineeringHigh)))
        } else if let l = tag.limits {
            m.properties.append(.engLow(l.minimum))
            m.properties.append(.engHigh(l.maximum))
        }
        if let d = tag.description, !d.isEmpty {
            m.properties.append(.documentation(d))
            m.properties.append(.tooltip(d))
        }
        // Ignition's default is writable; a tag the device driver would refuse must not look writable there.
        m.properties.append(.readOnly(!tag.writable))
        return m
    }

    /// Why a command value cannot be written to `tag`, or the tag value to write.
    ///
    /// The check is by kind, not exact width: a host may send a Double for a Float tag or an Int32 for an Int16
    /// tag (Ignition converts on its side); range, limits and encoding are then the poller's checks. A Boolean
    /// for a number, a number for a Boolean, text for a number or null is refused here.
    static func commandValue(_ v: SparkplugValue?, for tag: TagDefinition) -> Result<TagValue, CommandRefusal> {
        guard let v else { return .failure(CommandRefusal("a null value cannot be written")) }
        let got = "\(v.dataType)"
        switch tag.type {
        case .bool:
            if case .boolean(let b) = v { return .success(.bool(b)) }
            return .failure(CommandRefusal("wrong type: \(tag.name) is Boolean, the command carries \(got)"))
        case .string:
            switch v {
            case .string(let s), .text(let s): return .success(.string(s))
            default: return .failure(CommandRefusal("wrong type: \(tag.name) is String, the command carries \(got)"))
            }
        default:
            let number: TagValue?
            switch v {
            case .int8(let x): number = .int(Int64(x))
            case .int16(let x): number = .int(Int64(x))
            case .int32(let x): number = .int(Int64(x))
            case .int64(let x): number = .int(x)
            case .uint8(let x): number = .uint(UInt64(x))
            case .uint16(let x): number = .uint(UInt64(x))
            case .uint32(let x): number = .uint(UInt64(x))
            case .uint64(let x): number = .uint(x)
            case .float(let x): number = x.isFinite ? .double(Double(x)) : nil
            case .double(let x): number = x.isFinite ? .double(x) : nil
            default: number = nil
            }
            guard var n = number else {
                return .failure(
                    CommandRefusal("wrong type: \(tag.name) is \(dataType(of: tag)), the command carries \(got)"))
            }
            if !tag.presentsAsDouble, case .double(let d) = n {
                // An integer register takes only whole numbers; 2.5 must not be rounded silently.
                guard d == d.rounded(), abs(d) < 9.2e18 else {
                    return .failure(CommandRefusal("\(tag.name) takes whole numbers, the command carries \(d)"))
                }
                n = .int(Int64(d))
            }
            return .success(n)
        }
    }
}

/// Why a Sparkplug command was refused before it reached a device.
struct CommandRefusal: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
