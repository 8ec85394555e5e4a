import Tags

/// Cross-checks of loops against the tags and poll groups of the same configuration.
enum LoopValidator {
    /// Each CV's and MV's engineering span, for weights taken per span (Config/README.md, "Units"): the tag's write
    /// limits, else its scaling's engineering range, else the loop's own soft limits (CV) or low … high (MV).
    static func withSpans(_ loops: [LoopDefinition], tags: [TagDefinition]) -> [LoopDefinition] {
        let tagByName = Dictionary(tags.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        func span(_ low: Double, _ high: Double) -> Double? {
            let s = high - low
            return s.isFinite && s > 0 ? s : nil
        }
        func tagSpan(_ name: String) -> Double? {
            guard let tag = tagByName[name] else { return nil }
            if let l = tag.limits, let s = span(l.minimum, l.maximum) { return s }
            if let sc = tag.scaling {
                return span(min(sc.engineeringLow, sc.engineeringHigh), max(sc.engineeringLow, sc.engineeringHigh))
            }
            return nil
        }
        return loops.map { loop in
            var out = loop
            for i in out.cvs.indices {
                out.cvs[i].span = tagSpan(out.cvs[i].tag) ?? span(out.cvs[i].softLow, out.cvs[i].softHigh)
            }
            for l in out.mvs.indices {
                out.mvs[l].span = tagSpan(out.mvs[l].tag) ?? span(out.mvs[l].low, out.mvs[l].high)
            }
            // All or nothing: scaling the MVs (which always have a span) but not a CV without one would shift the
            // balance between them by the MVs' span², the opposite of weighting alike.
            if out.cvs.contains(where: { $0.span == nil }) {
                for i in out.cvs.indices { out.cvs[i].span = nil }
                for l in out.mvs.indices { out.mvs[l].span = nil }
            }
            return out
        }
    }

    static func validate(
        loops: [(LoopDefinition, Location)], tags: [(TagDefinition, Location)], pollGroups: [(PollGroup, Location)],
        devices: [(DeviceDefinition, Location)] = [], sink: inout DiagnosticSink
    ) {
        let tagByName = Dictionary(tags.map { ($0.0.name, $0.0) }, uniquingKeysWith: { a, _ in a })
        let groupPeriod = Dictionary(
            pollGroups.map { ($0.0.name, $0.0.periodMilliseconds) }, uniquingKeysWith: { a, _ in a })
        var names: [String: Location] = [:]
        var writers: [String: String] = [:]
        for (loop, at) in loops {
            func error(_ message: String, hint: String? = nil) {
                sink.diagnostics.append(
                    ConfigDiagnostic(.error, file: at.file, line: at.line, message: message, hint: hint))
            }
            func warning(_ message: String, hint: String? = nil) {
                sink.diagnostics.append(
                    ConfigDiagnostic(.warning, file: at.file, line: at.line, message: message, hint: hint))
            }
            let what = "loop '\(loop.name)'"
            if let earlier = names[loop.name] {
                error("\(what) is defined twice", hint: "first defined at \(earlier.file):\(earlier.line)")
            }
            names[loop.name] = at
            if !loop.name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) {
                error("\(what): names may contain letters, digits, '_' and '-' only (the CLI and upstream use them)")
            }
            // The loop's state is served as device `loop-<name>` with tags `loop/<name>/…` (history, Sparkplug).
            if let device = devices.first(where: { $0.0.name == "loop-\(loop.name)" }) {
                error(
                    "\(what) is served as device 'loop-\(loop.name)', which is also a configured device "
                        + "(\(device.1.file):\(device.1.line))",
                    hint: "rename the loop or the device")
            }
            if let tag = tags.first(where: { $0.0.name.hasPrefix("loop/\(loop.name)/") }) {
                error(
                    "tag '\(tag.0.name)' (\(tag.1.file):\(tag.1.line)) is in the name space 'loop/\(loop.name)/' "
                        + "of \(what)'s own state tags",
                    hint: "rename the tag or the loop")
            }
            if loop.periodMilliseconds < 10 { error("\(what): period \(loop.periodMilliseconds)ms is below 10ms") }
            if loop.cvs.isEmpty { error("\(what) has no CVs") }
            if loop.mvs.isEmpty { error("\(what) has no MVs") }

            // Tags: exist, are numbers; MVs writable with the loop's limits inside the tag's.
            func numericTag(_ name: String, _ role: String) -> TagDefinition? {
                guard let tag = tagByName[name] else {
                    error(
                        "\(what): \(role) '\(name)' is not a configured tag",
                        hint: closest(to: name, in: Array(tagByName.keys)).map { "did you mean '\($0)'?" })
                    return nil
                }
                if !tag.type.isNumeric || tag.type == .bool {
                    error("\(what): \(role) '\(name)' is \(tag.type); a loop needs a numeric tag")
                    return nil
                }
                return tag
            }
            var inputTags: [TagDefinition] = []
            for cv in loop.cvs { if let t = numericTag(cv.tag, "CV") { inputTags.append(t) } }
            for dv in loop.dvs { if let t = numericTag(dv, "DV") { inputTags.append(t) } }
            let cvNames = loop.cvs.map(\.tag)
            for mv in loop.mvs {
                guard let tag = numericTag(mv.tag, "MV") else { continue }
                inputTags.append(tag)
                if !tag.writable {
                    error("\(what): MV '\(mv.tag)' is not writable", hint: "set writable: true and limits on the tag")
                } else if let limits = tag.limits {
                    if mv.low < limits.minimum || mv.high > limits.maximum {
                        error(
                            "\(what): MV '\(mv.tag)' limits \(formatDouble(mv.low)) … \(formatDouble(mv.high)) are "
                                + "outside the tag's limits \(formatDouble(limits.minimum)) … "
                                + "\(formatDouble(limits.maximum))",
                            hint: "the loop's limits must lie inside what the tag may be written with")
                    }
                }
                if let other = writers[mv.tag] {
                    error("\(what): MV '\(mv.tag)' is already written by loop '\(other)'")
                }
                writers[mv.tag] = loop.name
                if !cvNames.contains(mv.pid.cv) {
                    error(
                        "\(what): the PID of MV '\(mv.tag)' controls '\(mv.pid.cv)', which is not a CV of the loop",
                        hint: "use one of: \(cvNames.joined(separator: ", "))")
                }
                if let target = mv.target, target < mv.low || target > mv.high {
                    error("\(what): MV '\(mv.tag)' target \(formatDouble(target)) is outside its limits")
                }
            }
            if Set(loop.mvs.map(\.tag)).count != loop.mvs.count { error("\(what): an MV is listed twice") }
            if Set(cvNames).count != cvNames.count { error("\(what): a CV is listed twice") }
            if let hb = loop.heartbeatTag {
                if let tag = tagByName[hb] {
                    if !tag.writable || !tag.type.isNumeric || tag.type.isFloatingPoint || tag.type == .bool {
                        error(
                            "\(what): heartbeat '\(hb)' must be a writable integer tag (e.g. uint16 holding register)")
                    } else if let l = tag.limits, l.maximum - max(0, l.minimum) < 1 {
                        error("\(what): heartbeat '\(hb)' limits leave no room to count")
                    }
                    if let other = writers[hb] {
                        error("\(what): heartbeat '\(hb)' is also written by loop '\(other)'")
                    }
                    writers[hb] = loop.name
                } else {
                    error("\(what): heartbeat '\(hb)' is not a configured tag")
                }
            }

            // Model shapes against the loop's CVs, MVs and DVs.
            let (ny, nu, nd) = (loop.cvs.count, loop.mvs.count, loop.dvs.count)
            switch loop.model {
            case .stateSpace(let a, let b, let bd, let c, _):
                let n = a.count
                if n == 0 || a.contains(where: { $0.count != n }) { error("\(what): model A must be square (n×n)") }
                if b.count != n || b.contains(where: { $0.count != nu }) {
                    error("\(what): model B must be \(n)×\(nu) (states × MVs)")
                }
                if nd > 0 && (bd.count != n || bd.contains(where: { $0.count != nd })) {
                    error("\(what): model Bd must be \(n)×\(nd) (states × DVs)")
                }
                if nd == 0 && !bd.isEmpty { error("\(what): model has Bd but the loop has no DVs") }
                if c.count != ny || c.contains(where: { $0.count != n }) {
                    error("\(what): model C must be \(ny)×\(n) (CVs × states)")
                }
            case .transferFunctions(let g, let gd):
                if g.count != ny || g.contains(where: { $0.count != nu }) {
                    error("\(what): model gains must be \(ny)×\(nu) (one row per CV, one entry per MV)")
                }
                if nd > 0 && (gd.count != ny || gd.contains(where: { $0.count != nd })) {
                    error("\(what): model disturbances must be \(ny)×\(nd) (one row per CV, one entry per DV)")
                }
            }
            if loop.nominalMVs.count != nu || loop.nominalCVs.count != ny || loop.nominalDVs.count != nd {
                error(
                    "\(what): operating_point needs \(nu) mvs, \(ny) cvs and \(nd) dvs values; found "
                        + "\(loop.nominalMVs.count), \(loop.nominalCVs.count), \(loop.nominalDVs.count)")
            }

            // Timing: the loop should see a fresh sample every cycle, and never call a fresh one stale.
            for tag in inputTags {
                guard let poll = groupPeriod[tag.pollGroup] else { continue }
                if loop.periodMilliseconds < poll {
                    warning(
                        "\(what): period \(loop.periodMilliseconds)ms is shorter than the \(poll)ms poll of "
                            + "'\(tag.name)': the loop sees the same sample in several cycles",
                        hint: "poll the loop's tags at least as fast as the loop runs")
                } else if loop.periodMilliseconds % poll != 0 {
                    warning(
                        "\(what): period \(loop.periodMilliseconds)ms is not a multiple of the \(poll)ms poll of "
                            + "'\(tag.name)': samples reach the loop with an age that varies from cycle to cycle",
                        hint: "use a loop period that is a multiple of the poll period, or poll faster")
                }
                if loop.supervisor.maxInputAgeMilliseconds < 2 * poll {
                    error(
                        "\(what): max_input_age \(loop.supervisor.maxInputAgeMilliseconds)ms is under two polls "
                            + "(\(poll)ms) of '\(tag.name)': fresh samples would look stale",
                        hint: "allow at least two poll periods plus the device's response time")
                }
            }
            if let p = loop.realtimePriority, p > 50 {
                warning(
                    "\(what): realtime_priority \(p) is above the unit's LimitRTPRIO=50; the loop will run unprioritized"
                )
            }
            if loop.kpiWindowMilliseconds < 10 * loop.periodMilliseconds {
                error("\(what): kpi_window must span at least 10 periods")
            }
        }
    }
}

extension TagDataType {
    var isFloatingPoint: Bool { self == .float32 || self == .float64 }
}
