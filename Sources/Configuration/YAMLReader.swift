import Yams

/// Reads one YAML mapping field by field, turning every wrong or unknown key into a located diagnostic.
///
/// Codable stops at the first error and forgets where it was; technicians need every error with its line, so the
/// configuration is read from Yams' node tree instead (see docs/decisions/0009-configuration-errors.md).
struct MappingReader {
    let node: Node
    let what: String
    private(set) var known: [String] = []
    private let pairs: [(key: String, keyNode: Node, value: Node)]

    init?(_ node: Node, what: String, sink: inout DiagnosticSink) {
        guard case .mapping(let mapping) = node else {
            sink.error(node.line, node.column, "\(what) must be a mapping of keys to values", hint: nil)
            return nil
        }
        self.node = node
        self.what = what
        var pairs: [(String, Node, Node)] = []
        var seen: Set<String> = []
        for (k, v) in mapping {
            let name = k.string ?? ""
            if seen.contains(name) {
                sink.error(k.line, k.column, "key '\(name)' appears twice in \(what)")
            }
            seen.insert(name)
            pairs.append((name, k, v))
        }
        self.pairs = pairs
    }

    var line: Int { node.line }

    func has(_ key: String) -> Bool { pairs.contains { $0.key == key } }

    mutating func value(_ key: String) -> Node? {
        known.append(key)
        return pairs.first { $0.key == key }?.value
    }

    mutating func string(_ key: String, required: Bool = false, sink: inout DiagnosticSink) -> String? {
        guard let v = value(key) else {
            if required { sink.error(line, node.column, "\(what) is missing '\(key)'") }
            return nil
        }
        guard case .scalar(let s) = v else {
            sink.error(v.line, v.column, "'\(key)' in \(what) must be a single value, not a list or mapping")
            return nil
        }
        return s.string
    }

    mutating func int(
        _ key: String, required: Bool = false, range: ClosedRange<Int>? = nil, sink: inout DiagnosticSink
    ) -> Int? {
        guard let text = string(key, required: required, sink: &sink), let v = value(key) else { return nil }
        let parsed: Int? =
            text.lowercased().hasPrefix("0x") ? Int(text.dropFirst(2), radix: 16) : Int(text.replacingUnderscores())
        guard let n = parsed else {
            sink.error(v.line, v.column, "'\(key)' in \(what) must be a whole number, found '\(text)'")
            return nil
        }
        if let range, !range.contains(n) {
            sink.error(
                v.line, v.column,
                "'\(key)' in \(what) must be between \(range.lowerBound) and \(range.upperBound), found \(n)")
            return nil
        }
        return n
    }

    mutating func double(_ key: String, required: Bool = false, sink: inout DiagnosticSink) -> Double? {
        guard let text = string(key, required: required, sink: &sink), let v = value(key) else { return nil }
        guard let d = Double(text.replacingUnderscores()), d.isFinite else {
            sink.error(v.line, v.column, "'\(key)' in \(what) must be a number, found '\(text)'")
            return nil
        }
        return d
    }

    mutating func bool(_ key: String, sink: inout DiagnosticSink) -> Bool? {
        guard let text = string(key, sink: &sink), let v = value(key) else { return nil }
        switch text.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default:
            sink.error(v.line, v.column, "'\(key)' in \(what) must be true or false, found '\(text)'")
            return nil
        }
    }

    mutating func duration(_ key: String, required: Bool = false, sink: inout DiagnosticSink) -> Int? {
        guard let text = string(key, required: required, sink: &sink), let v = value(key) else { return nil }
        guard let ms = UnitParser.milliseconds(text) else {
            sink.error(
                v.line, v.column, "'\(key)' in \(what) must be a duration, found '\(text)'",
                hint: "write it with a unit: 250ms, 1s, 10m, 2h or 30d")
            return nil
        }
        return ms
    }

    mutating func size(_ key: String, sink: inout DiagnosticSink) -> Int64? {
        guard let text = string(key, sink: &sink), let v = value(key) else { return nil }
        guard let bytes = UnitParser.bytes(text) else {
            sink.error(
                v.line, v.column, "'\(key)' in \(what) must be a size, found '\(text)'",
                hint: "write it with a unit: 500MB, 2GiB")
            return nil
        }
        return bytes
    }

    mutating func list(_ key: String, sink: inout DiagnosticSink) -> [Node]? {
        guard let v = value(key) else { return nil }
        if case .scalar(let s) = v, s.string.isEmpty || s.string == "~" || s.string == "null" { return [] }
        guard case .sequence(let seq) = v else {
            sink.error(v.line, v.column, "'\(key)' in \(what) must be a list (items starting with '- ')")
            return nil
        }
        return Array(seq)
    }

    /// Reports every key that was never asked for, with the nearest known key as a hint.
    func reportUnknownKeys(sink: inout DiagnosticSink) {
        for (key, keyNode, _) in pairs where !known.contains(key) {
            let suggestion = closest(to: key, in: known)
            sink.error(
                keyNode.line, keyNode.column, "unknown key '\(key)' in \(what)",
                hint: suggestion.map { "did you mean '\($0)'?" } ?? "known keys: \(known.joined(separator: ", "))")
        }
    }
}

extension Node {
    var line: Int { mark?.line ?? 0 }
    var column: Int { mark?.column ?? 1 }
}

extension String {
    func replacingUnderscores() -> String { String(filter { $0 != "_" }) }
}
