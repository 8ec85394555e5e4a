import Tags

/// A tag's fields as written, each with its line and column, whether they came from YAML or a CSV row.
///
/// Both sources go through this one conversion so a register map imported from a spreadsheet is checked exactly
/// like a tag written in YAML.
struct TagFields {
    static let all = [
        "name", "device", "area", "address", "type", "order", "units", "description", "deadband", "writable",
        "scaling", "limits", "poll_group", "node", "browse_path",
    ]
    /// Columns a CSV register map may have; `scaling` and `limits` are flattened into their parts.
    static let csvColumns = [
        "name", "device", "area", "address", "type", "order", "units", "description", "deadband", "writable",
        "raw_low", "raw_high", "eng_low", "eng_high", "min", "max", "poll_group", "node", "browse_path",
    ]

    let file: String
    let line: Int
    var fields: [String: (String, Int, Int)]

    private func text(_ key: String) -> String? {
        guard let v = fields[key]?.0.trimmingCharacters(in: .whitespaces), !v.isEmpty else { return nil }
        return v
    }

    private func at(_ key: String) -> (Int, Int) {
        guard let f = fields[key] else { return (line, 1) }
        return (f.1, f.2)
    }

    mutating func build(defaultDevice: String?, sink: inout DiagnosticSink) -> TagDefinition? {
        let before = sink.diagnostics.count
        func fail(_ key: String, _ message: String, hint: String? = nil) {
            let (l, c) = at(key)
            sink.error(l, c, message, hint: hint)
        }
        guard let name = text("name") else {
            fail("name", "a tag is missing 'name'")
            return nil
        }
        let what = "tag '\(name)'"
        if name.contains(where: { "+#\"".contains($0) }) || name.hasPrefix("/") || name.hasSuffix("/") {
            fail(
                "name", "\(what): names may not contain '+', '#' or quotes, nor start or end with '/'",
                hint: "'/' inside a name makes folders upstream, e.g. tank1/level")
        }
        guard let device = text("device") ?? defaultDevice else {
            fail("device", "\(what) is missing 'device'")
            return nil
        }
        let type: TagDataType?
        if let t = text("type") {
            let opcua = text("node") != nil || text("browse_path") != nil
            type = TagDataType(configName: t) ?? (opcua ? TagDataType(opcuaName: t) : nil)
            if type == nil {
                fail(
                    "type", "\(what) has unknown type '\(t)'",
                    hint: "use bool, int16, uint16, int32, uint32, int64, uint64, float32, float64 or string(N)")
            }
        } else {
            fail("type", "\(what) is missing 'type'")
            type = nil
        }
        var source: TagSource?
        if let node = text("node") {
            source = .opcua(node: node)
            if text("browse_path") != nil { fail("browse_path", "\(what) has both node and browse_path; give one") }
        } else if let path = text("browse_path") {
            source = .opcuaBrowsePath(path)
        } else {
            let area: ModbusArea?
            if let a = text("area") {
                area = ModbusArea(rawValue: a.lowercased().replacingOccurrences(of: " ", with: "_"))
                if area == nil {
                    fail(
                        "area", "\(what) has unknown area '\(a)'",
                        hint: "use coil, discrete_input, input_register or holding_register")
                }
            } else {
                fail("area", "\(what) is missing 'area'")
                area = nil
            }
            var address: Int?
            if let a = text("address") {
                address = a.lowercased().hasPrefix("0x") ? Int(a.dropFirst(2), radix: 16) : Int(a)
                if address == nil || address! < 0 || address! > 65535 {
                    fail(
                        "address", "\(what) address must be a whole number from 0 to 65535, found '\(a)'",
                        hint: "addresses are zero-based protocol addresses (40001 in PLC notation is address 0)")
                    address = nil
                }
            } else {
                fail("address", "\(what) is missing 'address'")
            }
            if let area, let address { source = .modbus(area: area, address: address) }
        }
        var order = WordOrder.abcd
        if let o = text("order") {
            if let parsed = WordOrder(rawValue: o.uppercased()) {
                order = parsed
            } else {
                fail("order", "\(what) has unknown word order '\(o)'", hint: "use ABCD, BADC, CDAB or DCBA")
            }
        }
        let deadband = number("deadband", what, sink: &sink) ?? 0
        if deadband < 0 { fail("deadband", "\(what) deadband must not be negative") }
        var writable = false
        if let w = text("writable") {
            switch w.lowercased() {
            case "true", "yes", "1", "y": writable = true
            case "false", "no", "0", "n": writable = false
            default: fail("writable", "\(what) writable must be true or false, found '\(w)'")
            }
        }
        var scaling: Scaling?
        let scaleKeys = ["raw_low", "raw_high", "eng_low", "eng_high"]
        let scaleValues = scaleKeys.map { number($0, what, sink: &sink) }
        if scaleValues.contains(where: { $0 != nil }) {
            if scaleValues.contains(where: { $0 == nil }) {
                fail(
                    "raw_low", "\(what) scaling needs all of raw_low, raw_high, eng_low and eng_high")
            } else if scaleValues[0] == scaleValues[1] {
                fail("raw_high", "\(what) scaling has raw_low equal to raw_high, which maps every value to one point")
            } else {
                scaling = Scaling(
                    rawLow: scaleValues[0]!, rawHigh: scaleValues[1]!, engineeringLow: scaleValues[2]!,
                    engineeringHigh: scaleValues[3]!)
            }
        }
        var limits: WriteLimits?
        let lo = number("min", what, sink: &sink)
        let hi = number("max", what, sink: &sink)
        if lo != nil || hi != nil {
            if let lo, let hi {
                if lo > hi {
                    fail("min", "\(what) limits have min \(formatDouble(lo)) above max \(formatDouble(hi))")
                } else {
                    limits = WriteLimits(minimum: lo, maximum: hi)
                }
            } else {
                fail("min", "\(what) limits need both min and max")
            }
        }
        guard sink.diagnostics.count == before, let type, let source else { return nil }
        return TagDefinition(
            name: name, device: device, source: source, type: type, order: order, scaling: scaling,
            units: text("units"), description: text("description"), deadband: deadband, writable: writable,
            limits: limits, pollGroup: text("poll_group") ?? "")
    }

    private func number(_ key: String, _ what: String, sink: inout DiagnosticSink) -> Double? {
        guard let t = text(key) else { return nil }
        guard let d = Double(t.replacingUnderscores()), d.isFinite else {
            let (l, c) = at(key)
            sink.error(l, c, "\(what) '\(key)' must be a number, found '\(t)'")
            return nil
        }
        return d
    }
}
