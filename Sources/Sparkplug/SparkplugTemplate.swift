import Foundation

/// A Sparkplug Template value (an Ignition UDT): a definition (NBIRTH only, `isDefinition`) or an instance of one
/// (births, data and commands, `templateRef` naming the definition).
///
/// Definitions are published as a metric named `_types_/<name>` with no alias, and instances refer to them as
/// `<name>`: the convention of Eclipse Tahu's examples and of MQTT Transmission, which MQTT Engine reads into
/// Ignition's UDT definitions (docs/decisions/0037-sparkplug-templates.md).
public struct SparkplugTemplate: Sendable, Hashable {
    /// The definition's version; instances carry the version of the definition they were built from, so a host
    /// holding another version of the definition can tell (tck-id-payloads-template-version).
    public var version: String?
    /// The definition's name, on instances only (tck-id-payloads-template-instance-ref).
    public var templateRef: String?
    public var isDefinition: Bool
    /// Members. In a definition: every member any instance will carry, with its datatype (value optional). In an
    /// instance birth: every member with its value; in data and commands: only the members concerned.
    public var metrics: [SparkplugMetric]
    public var parameters: [SparkplugTemplateParameter]

    public init(
        version: String?, templateRef: String?, isDefinition: Bool, metrics: [SparkplugMetric],
        parameters: [SparkplugTemplateParameter] = []
    ) {
        self.version = version
        self.templateRef = templateRef
        self.isDefinition = isDefinition
        self.metrics = metrics
        self.parameters = parameters
    }

    /// The metric name a definition is published under in NBIRTH: Ignition's UDT types folder.
    public static func definitionMetricName(_ name: String) -> String { typesPrefix + name }
    public static let typesPrefix = "_types_/"
}

/// A template parameter: a name, a basic type and a value (the definition's default, or the instance's own).
public struct SparkplugTemplateParameter: Sendable, Hashable {
    public var name: String
    public var type: SparkplugDataType
    /// nil = no value field (a definition's parameter without a default).
    public var value: SparkplugValue?

    public init(name: String, value: SparkplugValue) {
        self.name = name
        self.type = value.dataType
        self.value = value
    }

    public init(name: String, type: SparkplugDataType) {
        self.name = name
        self.type = type
        self.value = nil
    }
}

extension SparkplugPayload {
    static func encode(_ t: SparkplugTemplate, of metric: String) throws(SparkplugError) -> SpB_Payload.Template {
        var out = SpB_Payload.Template()
        if let v = t.version { out.version = v }
        if let ref = t.templateRef { out.templateRef = ref }
        out.isDefinition = t.isDefinition
        out.metrics.reserveCapacity(t.metrics.count)
        for m in t.metrics { out.metrics.append(try encode(m)) }
        for p in t.parameters {
            var pv = SpB_Payload.Template.Parameter()
            pv.name = p.name
            pv.type = p.type.rawValue
            if let value = p.value {
                guard value.dataType == p.type else {
                    throw .invalidValue(
                        context: "\(metric) parameter '\(p.name)'",
                        reason: "declared \(p.type), value is \(value.dataType)")
                }
                // tck-id-payloads-template-parameter-value-type: parameters hold basic types only.
                guard pv.setBasic(value.wire) else {
                    throw .invalidValue(
                        context: "\(metric) parameter '\(p.name)'", reason: "\(p.type) is not a parameter type")
                }
            }
            out.parameters.append(pv)
        }
        return out
    }

    /// `memberTypeOf` supplies the datatype of a member that arrives without one (a host's command names the
    /// member of an instance the node birthed).
    static func decode(
        _ t: SpB_Payload.Template, context: String, memberTypeOf: (_ member: String?) -> SparkplugDataType?
    ) throws(SparkplugError) -> SparkplugTemplate {
        var metrics: [SparkplugMetric] = []
        metrics.reserveCapacity(t.metrics.count)
        for (i, m) in t.metrics.enumerated() {
            metrics.append(
                try decode(
                    m, index: i, typeOf: { name, _ in memberTypeOf(name) }, memberTypeOf: { _, _, _ in nil },
                    parent: context))
        }
        var parameters: [SparkplugTemplateParameter] = []
        for p in t.parameters {
            let location = "\(context) parameter '\(p.name)'"
            // tck-id-payloads-template-parameter-name-required, -type-req
            guard p.hasName, p.hasType, let type = SparkplugDataType(rawValue: p.type) else {
                throw .invalidValue(context: location, reason: "a template parameter needs a name and a type")
            }
            let wire: WireValue
            switch p.value {
            case .intValue(let v)?: wire = .int(v)
            case .longValue(let v)?: wire = .long(v)
            case .floatValue(let v)?: wire = .float(v)
            case .doubleValue(let v)?: wire = .double(v)
            case .booleanValue(let v)?: wire = .boolean(v)
            case .stringValue(let v)?: wire = .string(v)
            case .extensionValue?: throw .unsupportedDataType(context: location, type.rawValue)
            case nil:
                parameters.append(SparkplugTemplateParameter(name: p.name, type: type))
                continue
            }
            parameters.append(
                SparkplugTemplateParameter(
                    name: p.name, value: try SparkplugValue(type: type, wire: wire, context: location)))
        }
        return SparkplugTemplate(
            version: t.hasVersion ? t.version : nil, templateRef: t.hasTemplateRef ? t.templateRef : nil,
            isDefinition: t.hasIsDefinition && t.isDefinition, metrics: metrics, parameters: parameters)
    }
}
