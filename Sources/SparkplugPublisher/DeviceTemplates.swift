import Sparkplug
import Tags

/// How one device of the publisher's view is published as a Sparkplug template instance (an Ignition UDT
/// instance) instead of, or beside, its flat metrics (docs/decisions/0037-sparkplug-templates.md).
package struct DeviceTemplate: Sendable, Hashable {
    /// The definition's name, e.g. `EdgePilot/Loop_1CV_1MV`; published in NBIRTH as `_types_/<name>`.
    package var definition: String
    /// The instance metric's name in the device's DBIRTH.
    package var instanceName: String
    /// The member name of each bound tag, by tag name.
    package var members: [String: String]
    /// The instance's String parameters in order (their names also make the definition's parameters).
    package var parameterNames: [String]
    package var parameterValues: [String]
    package var keepFlatMetrics: Bool

    package init(
        definition: String, instanceName: String, members: [String: String],
        parameters: [(name: String, value: String)], keepFlatMetrics: Bool
    ) {
        self.definition = definition
        self.instanceName = instanceName
        self.members = members
        parameterNames = parameters.map(\.name)
        parameterValues = parameters.map(\.value)
        self.keepFlatMetrics = keepFlatMetrics
    }

    /// The definition this device implies: its bound tags in table order, typed as they are published.
    func definition(for table: TagTable) -> SparkplugTemplateDefinition {
        let members = table.definitions.compactMap { tag in
            self.members[tag.name].map {
                SparkplugMetric(name: $0, timestamp: nil, nullOf: SparkplugMapping.dataType(of: tag))
            }
        }
        let parameters = parameterNames.map { SparkplugTemplateParameter(name: $0, value: .string("")) }
        return SparkplugTemplateDefinition(name: definition, members: members, parameters: parameters)
    }

    var binding: SparkplugTemplateBinding {
        SparkplugTemplateBinding(
            instanceName: instanceName, definition: definition, members: members,
            parameters: zip(parameterNames, parameterValues).map {
                SparkplugTemplateParameter(name: $0.0, value: .string($0.1))
            },
            keepFlatMetrics: keepFlatMetrics)
    }

    /// For `View.signature`: a change of any of it changes the births.
    var signature: String {
        "\(definition)|\(instanceName)|\(keepFlatMetrics)|"
            + members.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",") + "|"
            + zip(parameterNames, parameterValues).map { "\($0.0)=\($0.1)" }.joined(separator: ",")
    }
}

extension EdgeNodePublisher {
    /// Declares the definitions the view's templated devices imply and returns each device's binding. The first
    /// device of a definition fixes it; a later one whose members or types differ is published flat, with an error
    /// in the journal, rather than as an instance its definition does not describe.
    func declareTemplates(in session: inout EdgeNodeSession) -> [String: SparkplugTemplateBinding] {
        var declared: [String: SparkplugTemplateDefinition] = [:]
        var bindings: [String: SparkplugTemplateBinding] = [:]
        for d in view.devices {
            guard let t = view.templates[d.name] else { continue }
            let definition = t.definition(for: d.table)
            if let existing = declared[t.definition] {
                guard existing.version == definition.version else {
                    let why = "members differ from template \(t.definition) (version \(existing.version))"
                    logger.error("device \(d.name): \(why); published as flat metrics")
                    continue
                }
            } else {
                do {
                    try session.declareTemplate(definition)
                } catch {
                    logger.error("template \(t.definition): \(error); \(d.name) published as flat metrics")
                    continue
                }
                declared[t.definition] = definition
            }
            bindings[d.name] = t.binding
        }
        return bindings
    }
}
