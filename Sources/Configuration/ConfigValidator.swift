import Tags

/// Cross-checks between devices, tags and poll groups that no single entry can check on its own.
enum ConfigValidator {
    static func validate(
        devices: [(DeviceDefinition, Location)], tags: [(TagDefinition, Location)],
        pollGroups: [(PollGroup, Location)], history: HistorySettings, sink: inout DiagnosticSink
    ) {
        duplicates(devices.map { ($0.0.name, $0.1) }, kind: "device", sink: &sink)
        duplicates(tags.map { ($0.0.name, $0.1) }, kind: "tag", sink: &sink)
        duplicates(pollGroups.map { ($0.0.name, $0.1) }, kind: "poll group", sink: &sink)
        if history.path.isEmpty { sink.error(0, 1, "history path is empty") }

        let deviceByName = Dictionary(devices.map { ($0.0.name, $0.0) }, uniquingKeysWith: { a, _ in a })
        let groupNames = Set(pollGroups.map(\.0.name))
        for (tag, at) in tags {
            func error(_ message: String, hint: String? = nil) {
                diagnose(&sink, at, message, hint: hint)
            }
            let what = "tag '\(tag.name)'"
            guard let device = deviceByName[tag.device] else {
                error(
                    "\(what) names device '\(tag.device)', which is not configured",
                    hint: closest(to: tag.device, in: Array(deviceByName.keys)).map { "did you mean '\($0)'?" })
                continue
            }
            if !groupNames.contains(tag.pollGroup) {
                error(
                    "\(what) names poll group '\(tag.pollGroup)', which is not configured",
                    hint: "add it under poll_groups, or use one of: \(groupNames.sorted().joined(separator: ", "))")
            }
            if !tag.type.isNumeric {
                if tag.scaling != nil { error("\(what): scaling applies to numbers only, not \(tag.type)") }
                if tag.deadband > 0 { diagnose(&sink, at, "\(what): deadband is ignored for \(tag.type)", .warning) }
            }
            if OPCUAValidator.check(tag, device: device, at: at, sink: &sink) { continue }
            guard case .modbus(let area, let address) = tag.source else { continue }
            if area.isBitArea != (tag.type == .bool) {
                error(
                    "\(what): type \(tag.type) does not fit area \(area.rawValue)",
                    hint: area.isBitArea
                        ? "coils and discrete inputs hold bits: use type bool"
                        : "registers hold words: use coil or discrete_input for bool, or a numeric type")
            }
            if tag.type.registerCount < 2 && tag.order.swapsWords && !area.isBitArea {
                error(
                    "\(what): word order \(tag.order.rawValue) needs a value of two or more registers, not \(tag.type)",
                    hint: "use ABCD, or BADC to swap the two bytes of the register")
            }
            let span = area.isBitArea ? 1 : tag.type.registerCount
            if address + span - 1 > 65535 {
                error("\(what): \(tag.type) at address \(address) runs past the last address 65535")
            }
            if !area.isBitArea && span > device.maxRegistersPerRequest {
                error(
                    "\(what): \(tag.type) spans \(span) registers, more than one request to device '\(device.name)' "
                        + "may read (\(device.maxRegistersPerRequest))")
            }
            if tag.writable {
                if !area.isWritable {
                    error(
                        "\(what) is writable, but \(area.rawValue) cannot be written over Modbus",
                        hint: "use holding_register or coil, or set writable: false")
                }
                if tag.type.isNumeric {
                    if let limits = tag.limits {
                        checkLimits(tag, limits, at, &sink)
                    } else {
                        error(
                            "\(what) is writable but has no limits",
                            hint: "add limits: {min: …, max: …} in engineering units; writes outside them are refused")
                    }
                }
            } else if tag.limits != nil {
                diagnose(&sink, at, "\(what) has limits but is not writable; they are ignored", .warning)
            }
        }
        overlaps(tags, sink: &sink)
    }

    private static func checkLimits(
        _ tag: TagDefinition, _ limits: WriteLimits, _ at: Location, _ sink: inout DiagnosticSink
    ) {
        guard let range = rawRange(tag.type) else { return }
        for (label, value) in [("min", limits.minimum), ("max", limits.maximum)] {
            let raw = tag.scaling?.toRaw(value) ?? value
            if raw < range.lowerBound || raw > range.upperBound {
                diagnose(
                    &sink, at,
                    "tag '\(tag.name)': limit \(label) \(formatDouble(value)) cannot be written as \(tag.type)"
                        + (tag.scaling != nil ? " after scaling (raw \(formatDouble(raw)))" : ""),
                    hint: "\(tag.type) holds \(formatDouble(range.lowerBound)) … \(formatDouble(range.upperBound))")
            }
        }
    }

    static func rawRange(_ type: TagDataType) -> ClosedRange<Double>? {
        switch type {
        case .int16: return -32768...32767
        case .uint16: return 0...65535
        case .int32: return -2_147_483_648...2_147_483_647
        case .uint32: return 0...4_294_967_295
        case .int64: return -9.223372036854776e18...9.223372036854776e18
        case .uint64: return 0...1.8446744073709552e19
        case .float32: return -Double(Float.greatestFiniteMagnitude)...Double(Float.greatestFiniteMagnitude)
        case .float64, .bool, .string: return nil
        }
    }

    private static func overlaps(_ tags: [(TagDefinition, Location)], sink: inout DiagnosticSink) {
        struct Key: Hashable {
            let device: String
            let area: ModbusArea
        }
        var byArea: [Key: [(start: Int, end: Int, tag: TagDefinition, at: Location)]] = [:]
        for (tag, at) in tags {
            guard case .modbus(let area, let address) = tag.source else { continue }
            let span = area.isBitArea ? 1 : tag.type.registerCount
            byArea[Key(device: tag.device, area: area), default: []].append((address, address + span - 1, tag, at))
        }
        for (key, entries) in byArea {
            let sorted = entries.sorted { ($0.start, $0.at.line) < ($1.start, $1.at.line) }
            var reach: (end: Int, tag: TagDefinition)?
            for entry in sorted {
                if let r = reach, entry.start <= r.end {
                    diagnose(
                        &sink, entry.at,
                        "tag '\(entry.tag.name)' (\(key.area.rawValue) \(entry.start)…\(entry.end)) overlaps tag "
                            + "'\(r.tag.name)' on device '\(key.device)'",
                        hint: "each register may belong to one tag; check the addresses and the types' sizes")
                }
                if reach == nil || entry.end > reach!.end { reach = (entry.end, entry.tag) }
            }
        }
    }

    private static func duplicates(_ names: [(String, Location)], kind: String, sink: inout DiagnosticSink) {
        var first: [String: Location] = [:]
        for (name, at) in names {
            if let earlier = first[name] {
                diagnose(
                    &sink, at, "\(kind) '\(name)' is defined twice",
                    hint: "first defined at \(earlier.file):\(earlier.line); names must be unique")
            } else {
                first[name] = at
            }
        }
    }

    private static func diagnose(
        _ sink: inout DiagnosticSink, _ at: Location, _ message: String, _ severity: ConfigDiagnostic.Severity = .error,
        hint: String? = nil
    ) {
        sink.diagnostics.append(
            ConfigDiagnostic(severity, file: at.file, line: at.line, column: at.column, message: message, hint: hint))
    }
}
