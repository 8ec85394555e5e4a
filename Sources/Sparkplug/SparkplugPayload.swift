import Foundation
import SwiftProtobuf

/// What went wrong decoding, encoding or handling a Sparkplug message; each case says where and what was expected.
public enum SparkplugError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The bytes are not a Sparkplug B protobuf payload.
    case malformedPayload(String)
    /// A metric's value does not fit its declared data type.
    case invalidValue(context: String, reason: String)
    /// DataSet, PropertySet or an unknown type number, which EdgePilot does not handle.
    case unsupportedDataType(context: String, UInt32)
    /// A metric in a command has neither a datatype nor a name/alias this node published.
    case unknownMetric(String)
    /// The topic is not in the Sparkplug B namespace or not for this node.
    case invalidTopic(String)
    /// A call that the session's state does not allow (e.g. data for an undeclared metric).
    case invalidRequest(String)

    public var description: String {
        switch self {
        case .malformedPayload(let why): "malformed Sparkplug payload: \(why)"
        case .invalidValue(let context, let reason): "invalid value of \(context): \(reason)"
        case .unsupportedDataType(let context, let type):
            "\(context): data type \(SparkplugDataType(rawValue: type)?.description ?? "#\(type)") is not supported"
        case .unknownMetric(let what): "unknown metric: \(what)"
        case .invalidTopic(let topic): "not a Sparkplug B topic for this node: '\(topic)'"
        case .invalidRequest(let why): why
        }
    }
}

/// One entry of a metric's PropertySet, e.g. `engUnit` = "°C" or `Quality` = 500.
public struct SparkplugProperty: Sendable, Hashable {
    public var key: String
    /// nil sends the property with is_null set; its type is then `nullType`.
    public var value: SparkplugValue?
    public var nullType: SparkplugDataType

    public init(key: String, value: SparkplugValue) {
        self.key = key
        self.value = value
        self.nullType = value.dataType
    }

    public init(key: String, nullOf type: SparkplugDataType) {
        self.key = key
        self.value = nil
        self.nullType = type
    }

    public var dataType: SparkplugDataType { value?.dataType ?? nullType }

    /// Ignition's engineering unit tag property.
    public static func engUnit(_ unit: String) -> Self { .init(key: "engUnit", value: .string(unit)) }
    /// Ignition's engineering range low limit.
    public static func engLow(_ v: Double) -> Self { .init(key: "engLow", value: .double(v)) }
    /// Ignition's engineering range high limit.
    public static func engHigh(_ v: Double) -> Self { .init(key: "engHigh", value: .double(v)) }
    /// Ignition's Documentation tag property (binding name `documentation`), shown in the tag's editor.
    public static func documentation(_ text: String) -> Self { .init(key: "documentation", value: .string(text)) }
    /// Ignition's Tooltip tag property (binding name `tooltip`), shown on hover in clients.
    public static func tooltip(_ text: String) -> Self { .init(key: "tooltip", value: .string(text)) }
    /// Ignition's Read Only tag property (binding name `readOnly`): MQTT Engine refuses writes from clients.
    public static func readOnly(_ v: Bool) -> Self { .init(key: "readOnly", value: .boolean(v)) }
    /// The Sparkplug "Quality" property: Int32 (type 3) with 0, 192 or 500.
    public static func quality(_ q: SparkplugQuality) -> Self { .init(key: "Quality", value: .int32(q.rawValue)) }
}

/// A metric as it appears in a payload: a birth definition, a data change or a command.
public struct SparkplugMetric: Sendable, Hashable {
    /// Sent in births, and in data/commands when aliases are not used.
    public var name: String?
    public var alias: UInt64?
    /// Acquisition time, ms since the epoch (UTC).
    public var timestamp: UInt64?
    public var dataType: SparkplugDataType
    /// nil = null (is_null set, no value field).
    public var value: SparkplugValue?
    public var properties: [SparkplugProperty]
    /// Stored data (store-and-forward): the host must not take it as the live value.
    public var isHistorical: Bool
    /// The host must not historize it.
    public var isTransient: Bool

    public init(
        name: String?, alias: UInt64? = nil, timestamp: UInt64?, value: SparkplugValue,
        properties: [SparkplugProperty] = [], isHistorical: Bool = false, isTransient: Bool = false
    ) {
        self.name = name
        self.alias = alias
        self.timestamp = timestamp
        self.dataType = value.dataType
        self.value = value
        self.properties = properties
        self.isHistorical = isHistorical
        self.isTransient = isTransient
    }

    /// A null value of `dataType`.
    public init(
        name: String?, alias: UInt64? = nil, timestamp: UInt64?, nullOf dataType: SparkplugDataType,
        properties: [SparkplugProperty] = [], isHistorical: Bool = false, isTransient: Bool = false
    ) {
        self.name = name
        self.alias = alias
        self.timestamp = timestamp
        self.dataType = dataType
        self.value = nil
        self.properties = properties
        self.isHistorical = isHistorical
        self.isTransient = isTransient
    }

    public var isNull: Bool { value == nil }

    /// The "Quality" property, if present and valid.
    public var quality: SparkplugQuality? {
        guard case .int32(let q)? = properties.first(where: { $0.key == "Quality" })?.value else { return nil }
        return SparkplugQuality(rawValue: q)
    }

    public var label: String { name ?? alias.map { "alias \($0)" } ?? "unnamed metric" }
}

/// A Sparkplug B payload: encode for publishing, decode for commands.
public struct SparkplugPayload: Sendable, Hashable {
    /// Publish time, ms since the epoch (UTC).
    public var timestamp: UInt64?
    public var seq: UInt64?
    public var metrics: [SparkplugMetric]
    public var uuid: String?
    public var body: [UInt8]?

    public init(
        timestamp: UInt64?, seq: UInt64? = nil, metrics: [SparkplugMetric], uuid: String? = nil, body: [UInt8]? = nil
    ) {
        self.timestamp = timestamp
        self.seq = seq
        self.metrics = metrics
        self.uuid = uuid
        self.body = body
    }

    /// The protobuf encoding. Throws if a metric's value disagrees with its declared type.
    public func serialized() throws(SparkplugError) -> [UInt8] {
        var p = SpB_Payload()
        if let timestamp { p.timestamp = timestamp }
        if let seq { p.seq = seq }
        if let uuid { p.uuid = uuid }
        if let body { p.body = Data(body) }
        p.metrics.reserveCapacity(metrics.count)
        for m in metrics {
            p.metrics.append(try Self.encode(m))
        }
        do {
            return try p.serializedBytes()
        } catch {
            throw .malformedPayload("encoding failed: \(error)")
        }
    }

    /// Decodes a payload received from the network. `typeOf` supplies the data type of metrics that arrive
    /// without one (hosts may omit it in commands for metrics the node declared in its births).
    /// Never traps on malformed input: every problem is a `SparkplugError`. `memberTypeOf` does the same for the
    /// members of a template instance metric (named by its name or alias) that arrive without a datatype.
    public init(
        decoding bytes: [UInt8], typeOf: (_ name: String?, _ alias: UInt64?) -> SparkplugDataType? = { _, _ in nil },
        memberTypeOf: (_ instance: String?, _ alias: UInt64?, _ member: String?) -> SparkplugDataType? = { _, _, _ in
            nil
        }
    ) throws(SparkplugError) {
        let p: SpB_Payload
        do {
            p = try SpB_Payload(serializedBytes: bytes)
        } catch {
            throw .malformedPayload("\(bytes.count) bytes: \(error)")
        }
        timestamp = p.hasTimestamp ? p.timestamp : nil
        seq = p.hasSeq ? p.seq : nil
        uuid = p.hasUuid ? p.uuid : nil
        body = p.hasBody ? [UInt8](p.body) : nil
        metrics = []
        metrics.reserveCapacity(p.metrics.count)
        for (i, m) in p.metrics.enumerated() {
            metrics.append(try Self.decode(m, index: i, typeOf: typeOf, memberTypeOf: memberTypeOf))
        }
    }

    // MARK: Mapping

    static func encode(_ m: SparkplugMetric) throws(SparkplugError) -> SpB_Payload.Metric {
        var out = SpB_Payload.Metric()
        if let name = m.name { out.name = name }
        if let alias = m.alias { out.alias = alias }
        if let ts = m.timestamp { out.timestamp = ts }
        out.datatype = m.dataType.rawValue
        if m.isHistorical { out.isHistorical = true }
        if m.isTransient { out.isTransient = true }
        if let value = m.value {
            guard value.dataType == m.dataType else {
                throw .invalidValue(
                    context: m.label, reason: "declared \(m.dataType) but the value is \(value.dataType)")
            }
            switch value.wire {
            case .int(let v): out.intValue = v
            case .long(let v): out.longValue = v
            case .float(let v): out.floatValue = v
            case .double(let v): out.doubleValue = v
            case .boolean(let v): out.booleanValue = v
            case .string(let v): out.stringValue = v
            case .bytes(let v): out.bytesValue = v
            case .template(let t): out.templateValue = try encode(t, of: m.label)
            }
        } else {
            out.isNull = true
        }
        if !m.properties.isEmpty {
            var set = SpB_Payload.PropertySet()
            for prop in m.properties {
                set.keys.append(prop.key)
                set.values.append(try encode(prop, of: m.label))
            }
            out.properties = set
        }
        return out
    }

    static func encode(_ prop: SparkplugProperty, of metric: String) throws(SparkplugError) -> SpB_Payload.PropertyValue
    {
        var pv = SpB_Payload.PropertyValue()
        pv.type = prop.dataType.rawValue
        guard let value = prop.value else {
            pv.isNull = true
            return pv
        }
        guard pv.setBasic(value.wire) else {
            throw .invalidValue(
                context: "\(metric) property '\(prop.key)'", reason: "\(value.dataType) is not a property value type")
        }
        return pv
    }

    static func decode(
        _ m: SpB_Payload.Metric, index: Int, typeOf: (String?, UInt64?) -> SparkplugDataType?,
        memberTypeOf: (String?, UInt64?, String?) -> SparkplugDataType?, parent: String? = nil
    ) throws(SparkplugError) -> SparkplugMetric {
        let name = m.hasName ? m.name : nil
        let alias = m.hasAlias ? m.alias : nil
        var context = name.map { "metric '\($0)'" } ?? alias.map { "metric alias \($0)" } ?? "metric #\(index)"
        if let parent { context = "\(parent) member \(context)" }
        let type: SparkplugDataType
        if m.hasDatatype {
            guard let t = SparkplugDataType(rawValue: m.datatype) else {
                throw .unsupportedDataType(context: context, m.datatype)
            }
            type = t
        } else if let t = typeOf(name, alias) {
            type = t
        } else {
            throw .unknownMetric("\(context) has no datatype and is not one this node declared")
        }
        var properties: [SparkplugProperty] = []
        if m.hasProperties {
            let set = m.properties
            guard set.keys.count == set.values.count else {
                // tck-id-payloads-propertyset-keys-array-size
                throw .invalidValue(
                    context: context, reason: "PropertySet has \(set.keys.count) keys but \(set.values.count) values")
            }
            for (key, pv) in zip(set.keys, set.values) {
                properties.append(try decode(pv, key: key, context: context))
            }
        }
        let ts = m.hasTimestamp ? m.timestamp : nil
        let wire: WireValue?
        switch m.value {
        case .intValue(let v)?: wire = .int(v)
        case .longValue(let v)?: wire = .long(v)
        case .floatValue(let v)?: wire = .float(v)
        case .doubleValue(let v)?: wire = .double(v)
        case .booleanValue(let v)?: wire = .boolean(v)
        case .stringValue(let v)?: wire = .string(v)
        case .bytesValue(let v)?: wire = .bytes(v)
        case .templateValue(let t)?:
            wire = .template(try decode(t, context: context) { member in memberTypeOf(name, alias, member) })
        case .datasetValue?, .extensionValue?:
            throw .unsupportedDataType(context: context, type.rawValue)
        case nil: wire = nil
        }
        guard let wire, !(m.hasIsNull && m.isNull) else {
            if wire == nil && !(m.hasIsNull && m.isNull) {
                throw .invalidValue(context: context, reason: "no value and is_null not set")
            }
            return SparkplugMetric(
                name: name, alias: alias, timestamp: ts, nullOf: type, properties: properties,
                isHistorical: m.isHistorical, isTransient: m.isTransient)
        }
        let value = try SparkplugValue(type: type, wire: wire, context: context)
        return SparkplugMetric(
            name: name, alias: alias, timestamp: ts, value: value, properties: properties,
            isHistorical: m.isHistorical, isTransient: m.isTransient)
    }

    static func decode(_ pv: SpB_Payload.PropertyValue, key: String, context: String) throws(SparkplugError)
        -> SparkplugProperty
    {
        let location = "\(context) property '\(key)'"
        guard pv.hasType, let type = SparkplugDataType(rawValue: pv.type) else {
            throw .unsupportedDataType(context: location, pv.type)
        }
        let wire: WireValue
        switch pv.value {
        case .intValue(let v)?: wire = .int(v)
        case .longValue(let v)?: wire = .long(v)
        case .floatValue(let v)?: wire = .float(v)
        case .doubleValue(let v)?: wire = .double(v)
        case .booleanValue(let v)?: wire = .boolean(v)
        case .stringValue(let v)?: wire = .string(v)
        case .propertysetValue?, .propertysetsValue?, .extensionValue?:
            throw .unsupportedDataType(context: location, type.rawValue)
        case nil:
            return SparkplugProperty(key: key, nullOf: type)
        }
        return SparkplugProperty(key: key, value: try SparkplugValue(type: type, wire: wire, context: location))
    }
}
