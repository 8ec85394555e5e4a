// The session's metric tables: declarations checked and aliased once, live values and qualities kept for the next
// birth, changes checked against them. Apart from the session for the file-length limit; it reads only the
// configuration and the alias counter, no connection state.

extension EdgeNodeSession {
    /// A table for `metrics` as declared (names unique and not the session's own, values of the declared type,
    /// no dataset/template types), with aliases from the one node-wide counter when aliases are used.
    mutating func makeTable(_ metrics: [SparkplugMetric], owner: String) throws(SparkplugError) -> MetricTable {
        var table = MetricTable()
        for m in metrics {
            guard let name = m.name, !name.isEmpty else {
                throw .invalidRequest("\(owner): every metric needs a name")
            }
            guard table.byName[name] == nil else { throw .invalidRequest("\(owner): metric '\(name)' declared twice") }
            // The session's own metrics; other Node Control metrics (Scan Rate) are the node's to declare.
            guard name != Self.bdSeqMetric, name != Self.rebirthMetric, name != Self.nextServerMetric else {
                throw .invalidRequest("\(owner): metric name '\(name)' is reserved for the session")
            }
            if let v = m.value, v.dataType != m.dataType {
                throw .invalidValue(
                    context: "\(owner) metric '\(name)'", reason: "declared \(m.dataType), value is \(v.dataType)")
            }
            if [.unknown, .dataSet, .template, .propertySet, .propertySetList].contains(m.dataType) {
                throw .unsupportedDataType(context: "\(owner) metric '\(name)'", m.dataType.rawValue)
            }
            var alias: UInt64?
            if configuration.useAliases {
                // tck-id-payloads-alias-uniqueness: one counter across the node and all its devices.
                alias = nextAlias
                nextAlias += 1
            }
            table.byName[name] = table.metrics.count
            if let alias { table.byAlias[alias] = table.metrics.count }
            table.metrics.append(
                MetricState(
                    name: name, alias: alias, dataType: m.dataType, value: m.value, timestamp: m.timestamp,
                    properties: m.properties, isTransient: m.isTransient))
        }
        return table
    }

    /// The declared metric a host's message names, by name first, else by alias.
    static func lookup(_ table: MetricTable, name: String?, alias: UInt64?) -> MetricState? {
        if let name, let i = table.byName[name] { return table.metrics[i] }
        if let alias, let i = table.byAlias[alias] { return table.metrics[i] }
        return nil
    }

    /// Checks changes against the declarations, stores live values, and returns the metrics to publish.
    func apply(_ changes: [SparkplugMetric], to table: inout MetricTable, owner: String) throws(SparkplugError)
        -> [SparkplugMetric]
    {
        var none: [Int]?
        return try apply(changes, to: &table, owner: owner, indices: &none)
    }

    /// `indices`, when not nil, receives the table index of each returned metric.
    func apply(
        _ changes: [SparkplugMetric], to table: inout MetricTable, owner: String, indices: inout [Int]?
    ) throws(SparkplugError) -> [SparkplugMetric] {
        var out: [SparkplugMetric] = []
        out.reserveCapacity(changes.count)
        for var m in changes {
            guard let name = m.name, let i = table.byName[name] else {
                throw .unknownMetric("\(owner) has no metric '\(m.label)' (declare it before the birth)")
            }
            let declared = table.metrics[i]
            guard m.dataType == declared.dataType else {
                throw .invalidValue(
                    context: "\(owner) metric '\(name)'",
                    reason: "declared \(declared.dataType), update is \(m.dataType)")
            }
            if !m.isHistorical {
                // Report by exception: a live value and quality the host already has (from the birth or earlier
                // data) is not sent again (tck-id-operational-behavior-data-publish-dbirth-change) — e.g. the
                // first poll after a DBIRTH that already carried it, or a written value echoed and then polled.
                let unchanged =
                    declared.value != nil && m.value == declared.value
                    && m.properties.allSatisfy { p in declared.properties.contains(p) }
                if unchanged { continue }
                table.metrics[i].value = m.value
                table.metrics[i].timestamp = m.timestamp
                // The sample's properties (its Quality) replace the declared ones of the same key, so the next
                // birth carries the quality of the value it carries, not the one declared before the first poll.
                for p in m.properties {
                    if let k = table.metrics[i].properties.firstIndex(where: { $0.key == p.key }) {
                        table.metrics[i].properties[k] = p
                    } else {
                        table.metrics[i].properties.append(p)
                    }
                }
            }
            if let alias = declared.alias {
                m.alias = alias
                m.name = nil
            }
            out.append(m)
            indices?.append(i)
        }
        return out
    }

    /// `metrics` with the names of those a host addressed by alias only (commands), for the caller's actions.
    func resolveNames(_ metrics: [SparkplugMetric], in table: MetricTable, owner: String)
        throws(SparkplugError) -> [SparkplugMetric]
    {
        var out = metrics
        for i in out.indices where out[i].name == nil {
            guard let alias = out[i].alias, let m = Self.lookup(table, name: nil, alias: alias) else {
                throw .unknownMetric("\(owner): command for \(out[i].label), which this node did not declare")
            }
            out[i].name = m.name
        }
        return out
    }
}
