/// A template definition the node publishes in NBIRTH (an Ignition UDT definition).
public struct SparkplugTemplateDefinition: Sendable, Hashable {
    /// As instances refer to it (`template_ref`), e.g. `EdgePilot/Loop_1CV_1MV`; published as `_types_/<name>`.
    public var name: String
    /// Every member any instance carries: name and datatype (a value, if any, is the member's default).
    public var members: [SparkplugMetric]
    /// Parameters with their defaults.
    public var parameters: [SparkplugTemplateParameter]
    /// Derived from the members' and parameters' names and types, so it changes exactly when the definition does
    /// and a host that cached an older definition sees the difference.
    public var version: String

    public init(name: String, members: [SparkplugMetric], parameters: [SparkplugTemplateParameter] = []) {
        self.name = name
        self.members = members
        self.parameters = parameters
        version = Self.version(members: members, parameters: parameters)
    }

    /// `1-` and the FNV-1a 64-bit hash, in hex, of every member's and parameter's name and type in order.
    public static func version(members: [SparkplugMetric], parameters: [SparkplugTemplateParameter]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func add(_ text: String) {
            for byte in text.utf8 {
                hash ^= UInt64(byte)
                hash &*= 0x100_0000_01b3
            }
        }
        for m in members { add("m:\(m.name ?? ""):\(m.dataType.rawValue);") }
        for p in parameters { add("p:\(p.name):\(p.type.rawValue);") }
        let hex = String(hash, radix: 16)
        return "1-" + String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// The NBIRTH metric: `_types_/<name>`, no alias (tck-id-payloads-alias-birth-requirement does not cover
    /// definitions; hosts never address them), is_definition, version, members and parameters.
    func birthMetric(now: UInt64) -> SparkplugMetric {
        SparkplugMetric(
            name: SparkplugTemplate.definitionMetricName(name), timestamp: now,
            value: .template(
                SparkplugTemplate(
                    version: version, templateRef: nil, isDefinition: true, metrics: members, parameters: parameters)))
    }
}

/// How one device's metrics become the members of a template instance metric.
public struct SparkplugTemplateBinding: Sendable, Hashable {
    /// The instance metric's name in DBIRTH, e.g. `Loop`.
    public var instanceName: String
    /// The declared definition's name.
    public var definition: String
    /// The member name of each bound device metric, by the device metric's name.
    public var members: [String: String]
    /// The instance's own parameter values.
    public var parameters: [SparkplugTemplateParameter]
    /// Also birth and send the bound metrics as flat metrics, as before templates (existing tag paths stay).
    public var keepFlatMetrics: Bool

    public init(
        instanceName: String, definition: String, members: [String: String],
        parameters: [SparkplugTemplateParameter] = [], keepFlatMetrics: Bool = false
    ) {
        self.instanceName = instanceName
        self.definition = definition
        self.members = members
        self.parameters = parameters
        self.keepFlatMetrics = keepFlatMetrics
    }
}

extension EdgeNodeSession {
    /// A device's template instance: its binding, the definition's version and the instance metric's alias.
    struct InstanceState: Sendable {
        var binding: SparkplugTemplateBinding
        var version: String
        var alias: UInt64?
        /// Member name by table index, and table index by member name, in the definition's order.
        var memberOf: [Int: String]
        var indexOf: [String: Int]
        var order: [String]

        /// The DBIRTH instance metric: every member with its current value, timestamp and properties
        /// (tck-id-payloads-template-instance-members-birth), never aliased (members have no aliases).
        func birthMetric(
            _ table: MetricTable, now: UInt64, member: (MetricState) -> SparkplugMetric
        ) -> SparkplugMetric {
            var members: [SparkplugMetric] = []
            members.reserveCapacity(order.count)
            for name in order {
                var m = member(table.metrics[indexOf[name]!])
                m.name = name
                m.alias = nil
                members.append(m)
            }
            return SparkplugMetric(
                name: binding.instanceName, alias: alias, timestamp: now,
                value: .template(
                    SparkplugTemplate(
                        version: version, templateRef: binding.definition, isDefinition: false, metrics: members,
                        parameters: binding.parameters)))
        }

        /// DDATA metrics: the flat ones as they are, the bound ones as members of one instance metric carrying only
        /// what changed (tck-id-payloads-template-instance-members-data), by alias when aliases are used.
        func data(_ metrics: [SparkplugMetric], indices: [Int]) -> [SparkplugMetric] {
            var out: [SparkplugMetric] = []
            var members: [SparkplugMetric] = []
            var newest: UInt64 = 0
            var historical = true
            for (m, i) in zip(metrics, indices) {
                guard let name = memberOf[i] else {
                    out.append(m)
                    continue
                }
                if binding.keepFlatMetrics { out.append(m) }
                var member = m
                member.name = name
                member.alias = nil
                newest = max(newest, m.timestamp ?? 0)
                historical = historical && m.isHistorical
                members.append(member)
            }
            guard !members.isEmpty else { return out }
            out.append(
                SparkplugMetric(
                    name: alias == nil ? binding.instanceName : nil, alias: alias, timestamp: newest,
                    value: .template(
                        SparkplugTemplate(
                            version: version, templateRef: binding.definition, isDefinition: false, metrics: members)),
                    isHistorical: historical))
            return out
        }

        private func isInstance(_ name: String?, _ alias: UInt64?) -> Bool {
            (name != nil && name == binding.instanceName) || (name == nil && alias != nil && alias == self.alias)
        }

        /// A member's datatype for a command that names it without one.
        func memberType(instance: String?, alias: UInt64?, member: String?, in table: MetricTable) -> SparkplugDataType?
        {
            guard isInstance(instance, alias), let member, let i = indexOf[member] else { return nil }
            return table.metrics[i].dataType
        }

        /// The datatype of a command metric that names the instance (Template) or a member as `<instance>/<member>`.
        func dataType(ofCommandNamed name: String?, alias: UInt64?, in table: MetricTable) -> SparkplugDataType? {
            if isInstance(name, alias) { return .template }
            guard let name, let i = memberIndex(path: name) else { return nil }
            return table.metrics[i].dataType
        }

        private func memberIndex(path: String) -> Int? {
            let prefix = binding.instanceName + "/"
            guard path.hasPrefix(prefix) else { return nil }
            return indexOf[String(path.dropFirst(prefix.count))]
        }

        /// A command's writes to members (inside the instance metric, or named `<instance>/<member>`) as writes to
        /// the device metrics they are bound to, so they go through the same checks, policy and audit as a flat
        /// write (docs/decisions/0017-sparkplug-command-trust.md).
        func flatten(_ metrics: [SparkplugMetric], table: MetricTable, owner: String) throws(SparkplugError)
            -> [SparkplugMetric]
        {
            var out: [SparkplugMetric] = []
            for m in metrics {
                if isInstance(m.name, m.alias) {
                    guard case .template(let t)? = m.value else {
                        throw .invalidValue(
                            context: "\(owner) instance '\(binding.instanceName)'",
                            reason: "a command to a template instance must carry a Template value")
                    }
                    for member in t.metrics {
                        guard let name = member.name, let i = indexOf[name] else {
                            throw .unknownMetric(
                                "\(owner): instance '\(binding.instanceName)' has no member '\(member.label)'")
                        }
                        var flat = member
                        flat.name = table.metrics[i].name
                        flat.alias = nil
                        out.append(flat)
                    }
                } else if let name = m.name, let i = memberIndex(path: name) {
                    var flat = m
                    flat.name = table.metrics[i].name
                    out.append(flat)
                } else {
                    out.append(m)
                }
            }
            return out
        }
    }

    /// Declares a template definition, published in every NBIRTH from the next one on; devices bound to it
    /// (`addDevice(template:)`) must come after.
    public mutating func declareTemplate(_ definition: SparkplugTemplateDefinition) throws(SparkplugError) {
        let owner = "template '\(definition.name)'"
        guard !definition.name.isEmpty else { throw .invalidRequest("a template definition needs a name") }
        guard !templates.contains(where: { $0.name == definition.name }) else {
            throw .invalidRequest("\(owner) is declared twice")
        }
        var seen = Set<String>()
        for m in definition.members {
            guard let name = m.name, !name.isEmpty, seen.insert(name).inserted else {
                throw .invalidRequest("\(owner): every member needs a name of its own")
            }
            if [.unknown, .dataSet, .template, .propertySet, .propertySetList].contains(m.dataType) {
                throw .unsupportedDataType(context: "\(owner) member '\(name)'", m.dataType.rawValue)
            }
        }
        templates.append(definition)
    }

    /// Checks a binding against its definition and the device's metrics: every member bound exactly once, to a
    /// metric of the member's type (tck-id-payloads-template-instance-members), and the instance's name free.
    mutating func instanceState(_ b: SparkplugTemplateBinding, table: MetricTable, device: String)
        throws(SparkplugError) -> InstanceState
    {
        let owner = "device '\(device)' template instance '\(b.instanceName)'"
        guard let definition = templates.first(where: { $0.name == b.definition }) else {
            throw .invalidRequest("\(owner): template '\(b.definition)' is not declared")
        }
        guard !b.instanceName.isEmpty, table.byName[b.instanceName] == nil else {
            throw .invalidRequest("\(owner): the name is empty or a metric of the device already has it")
        }
        var memberOf: [Int: String] = [:]
        var indexOf: [String: Int] = [:]
        for (metric, member) in b.members {
            guard let i = table.byName[metric] else {
                throw .invalidRequest("\(owner): the device has no metric '\(metric)'")
            }
            guard let declared = definition.members.first(where: { $0.name == member }) else {
                throw .invalidRequest("\(owner): '\(b.definition)' has no member '\(member)'")
            }
            guard declared.dataType == table.metrics[i].dataType, indexOf[member] == nil else {
                throw .invalidRequest(
                    "\(owner): member '\(member)' is \(declared.dataType) in '\(b.definition)', bound once; "
                        + "'\(metric)' is \(table.metrics[i].dataType)")
            }
            memberOf[i] = member
            indexOf[member] = i
        }
        let order = definition.members.compactMap(\.name)
        if let missing = order.first(where: { indexOf[$0] == nil }) {
            throw .invalidRequest("\(owner): member '\(missing)' of '\(b.definition)' is not bound")
        }
        var alias: UInt64?
        if configuration.useAliases {
            alias = nextAlias
            nextAlias += 1
        }
        return InstanceState(
            binding: b, version: definition.version, alias: alias, memberOf: memberOf, indexOf: indexOf, order: order)
    }
}
