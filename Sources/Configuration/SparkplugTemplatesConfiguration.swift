import Tags
import Yams

/// `sparkplug.templates`, apart from the rest of the section (docs/decisions/0037-sparkplug-templates.md).
extension Builder {
    /// `templates: {loops: true|false, keep_flat_metrics: true|false, types: [...]}`; `templates: true` is short for
    /// `loops: true`.
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
        if let b = t.bool("keep_flat_metrics", sink: &sink) { settings.templates.keepFlatMetrics = b }
        if let list = t.list("types", sink: &sink) {
            for item in list { if let type = readDeviceType(item) { settings.templates.types.append(type) } }
        }
        if settings.templates.keepFlatMetrics && !settings.templates.loops && settings.templates.types.isEmpty,
            let v = t.value("keep_flat_metrics")
        {
            sink.warning(v.line, v.column, "keep_flat_metrics has no effect without loops: true or types")
        }
        var names: Set<String> = []
        for type in settings.templates.types where !names.insert(type.name).inserted {
            sink.error(node.line, node.column, "template type '\(type.name)' is declared twice")
        }
        t.reportUnknownKeys(sink: &sink)
    }

    /// `{name: Pump, members: [flow, running], devices: [pump1, pump2]}`.
    private mutating func readDeviceType(_ node: Node) -> SparkplugDeviceType? {
        guard var r = MappingReader(node, what: "a sparkplug template type", sink: &sink) else { return nil }
        let name = r.string("name", required: true, sink: &sink) ?? ""
        if let v = r.value("name"), name.isEmpty || name.hasPrefix("/") || name.hasSuffix("/") {
            sink.error(v.line, v.column, "template type name '\(name)' must be a non-empty UDT name, e.g. Pump")
        }
        func strings(_ key: String) -> [(String, Node)] {
            guard let list = r.list(key, sink: &sink) else {
                if !r.has(key) { sink.error(r.line, node.column, "template type '\(name)' is missing '\(key)'") }
                return []
            }
            var out: [(String, Node)] = []
            for item in list {
                if case .scalar(let s) = item, !s.string.isEmpty {
                    out.append((s.string, item))
                } else {
                    sink.error(item.line, item.column, "'\(key)' of template type '\(name)' lists names")
                }
            }
            if out.isEmpty, let v = r.value(key) {
                sink.error(v.line, v.column, "template type '\(name)' needs at least one entry in '\(key)'")
            }
            return out
        }
        let members = strings("members")
        var seen: Set<String> = []
        for (m, n) in members where !seen.insert(m).inserted {
            sink.error(n.line, n.column, "member '\(m)' appears twice in template type '\(name)'")
        }
        let devices = strings("devices")
        for (d, n) in devices {
            sparkplugTypeLocations["\(name)|\(d)"] = Location(file: sink.file, line: n.line, column: n.column)
        }
        r.reportUnknownKeys(sink: &sink)
        return SparkplugDeviceType(name: name, members: members.map(\.0), devices: devices.map(\.0))
    }

    /// Once devices and tags are read: every listed device exists and is listed once, and every member is exactly
    /// one of its tags, of the same published type on every device of the type.
    mutating func validateTemplateTypes() {
        guard let (settings, at) = sparkplug else { return }
        var typeOf: [String: String] = [:]
        for type in settings.templates.types {
            var first: (device: String, tags: [TagDefinition])?
            for device in type.devices {
                let place = sparkplugTypeLocations["\(type.name)|\(device)"] ?? at
                func error(_ text: String, hint: String? = nil) {
                    sink.error(place.line, place.column, text, hint: hint)
                }
                if let other = typeOf[device] {
                    error("device '\(device)' is listed in template types '\(other)' and '\(type.name)'")
                    continue
                }
                typeOf[device] = type.name
                guard devices.contains(where: { $0.0.name == device }) else {
                    error("template type '\(type.name)' lists device '\(device)', which is not configured")
                    continue
                }
                let deviceTags = tags.map(\.0).filter { $0.device == device }
                var matched: [TagDefinition] = []
                for member in type.members {
                    let candidates = SparkplugDeviceType.tags(for: member, in: deviceTags)
                    if candidates.count == 1 {
                        matched.append(candidates[0])
                    } else if candidates.isEmpty {
                        error(
                            "device '\(device)' has no tag for member '\(member)' of template type '\(type.name)'",
                            hint: "a member is a tag named '\(member)' or ending in '/\(member)'")
                    } else {
                        error(
                            "member '\(member)' of template type '\(type.name)' matches \(candidates.count) tags of "
                                + "device '\(device)': \(candidates.map(\.name).joined(separator: ", "))")
                    }
                }
                guard matched.count == type.members.count else { continue }
                guard let (firstDevice, firstTags) = first else {
                    first = (device, matched)
                    continue
                }
                for (k, (a, b)) in zip(firstTags, matched).enumerated()
                where Self.publishedKind(a) != Self.publishedKind(b) {
                    error(
                        "member '\(type.members[k])' of template type '\(type.name)' is \(Self.publishedKind(b)) on "
                            + "device '\(device)' ('\(b.name)') but \(Self.publishedKind(a)) on '\(firstDevice)' "
                            + "('\(a.name)'): a template's members have one type")
                }
            }
        }
    }

    /// What decides a tag's Sparkplug datatype (the publisher's mapping): its type, and whether it presents as
    /// a double (scaled) or a float.
    private static func publishedKind(_ tag: TagDefinition) -> String {
        guard tag.presentsAsDouble else { return "\(tag.type)" }
        return tag.type == .float32 && tag.scaling == nil ? "float" : "double"
    }
}
