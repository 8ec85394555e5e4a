import Tags

/// `sparkplug.templates`, apart from the rest of the section (docs/decisions/0037-sparkplug-templates.md).
extension Builder {
    /// `templates: {loops: true|false, keep_flat_metrics: true|false}`; `templates: true` is short for `loops: true`.
    mutating func readTemplates(_ r: inout MappingReader, into settings: inout SparkplugSettings) {
        guard let node = r.value("templates") else { return }
        if case .scalar(let scalar) = node {
            switch scalar.string {
            case "true", "on", "yes": settings.templates.loops = true
            case "false", "off", "no": settings.templates.loops = false
            default:
                sink.error(
                    node.line, node.column, "sparkplug templates must be a mapping or true/false",
                    hint: "e.g. templates: {loops: true}")
            }
            return
        }
        guard var t = MappingReader(node, what: "'sparkplug.templates'", sink: &sink) else { return }
        if let b = t.bool("loops", sink: &sink) { settings.templates.loops = b }
        if let b = t.bool("keep_flat_metrics", sink: &sink), let v = t.value("keep_flat_metrics") {
            settings.templates.keepFlatMetrics = b
            if b && !settings.templates.loops {
                sink.warning(v.line, v.column, "keep_flat_metrics has no effect unless loops is true")
            }
        }
        t.reportUnknownKeys(sink: &sink)
    }
}
