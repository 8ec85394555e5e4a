import Tags
import Yams

/// Reading and checking of the top-level `monitors:` list (see Config/README.md, "monitors"): loops the agent
/// watches, never drives. Every error is placed at the line and column of the value at fault (decision 0009).
extension Builder {
    mutating func readMonitor(_ node: Node) {
        guard var r = MappingReader(node, what: "a monitor", sink: &sink) else { return }
        let name = r.string("name", required: true, sink: &sink) ?? ""
        var places: [String: Location] = [:]
        func tag(_ key: String, required: Bool) -> String? {
            guard let text = r.string(key, required: required, sink: &sink) else { return nil }
            if let v = r.value(key) { places[key] = Location(file: sink.file, line: v.line, column: v.column) }
            return text
        }
        let pv = tag("pv", required: true)
        let sp = tag("sp", required: true)
        let op = tag("op", required: true)
        let auto = tag("auto", required: false)
        let deadTime = seconds(&r, "dead_time")
        if deadTime == nil && !r.has("dead_time") {
            sink.error(r.line, 1, "monitor '\(name)' is missing 'dead_time'", hint: "e.g. dead_time: 4s")
        }
        let period = r.duration("period", sink: &sink) ?? 1000
        if period < 10, let v = r.value("period") {
            sink.error(v.line, v.column, "monitor '\(name)': period \(period)ms is below 10ms")
        }
        let window = r.duration("window", sink: &sink) ?? 3_600_000
        // The window is the monitor's memory and its figures' cost, in samples: checked with the default too.
        if period > 0, window < 64 * period || window > 100_000 * period {
            let place = r.value("window") ?? r.value("period")
            sink.error(
                place?.line ?? r.line, place?.column ?? 1,
                "monitor '\(name)': window must hold between 64 and 100000 periods, holds \(window / max(1, period))",
                hint: "e.g. window: 1h with period: 1s")
        }
        let oscillationPeriod = seconds(&r, "oscillation_period")
        if let p = oscillationPeriod, p <= 0, let v = r.value("oscillation_period") {
            sink.error(v.line, v.column, "monitor '\(name)': oscillation_period must be above zero")
        }
        let amplitude = r.double("amplitude", sink: &sink)
        if let a = amplitude, !(a > 0), let v = r.value("amplitude") {
            sink.error(v.line, v.column, "monitor '\(name)': amplitude must be above zero")
        }
        r.reportUnknownKeys(sink: &sink)
        guard !name.isEmpty, let pv, let sp, let op, let deadTime else { return }
        let monitor = MonitorDefinition(
            name: name, pv: pv, sp: sp, op: op, auto: auto, deadTimeSeconds: deadTime, periodMilliseconds: period,
            windowMilliseconds: window, oscillationPeriodSeconds: oscillationPeriod, amplitude: amplitude)
        monitors.append((monitor, Location(file: sink.file, line: r.line), places))
    }

    /// Names unique and fit for tag paths, the tags configured and numeric; fills the amplitude and output range
    /// from the tags' spans.
    mutating func validateMonitors() {
        var tagByName = Dictionary(tags.map { ($0.0.name, $0.0) }, uniquingKeysWith: { a, _ in a })
        // The agent's own loops may be watched too, through their state tags (device `loop-<name>`): a CV's value
        // and setpoint, an MV's value, with the span of the tag behind them.
        for (loop, _) in loops {
            func state(_ name: String, _ behind: String) {
                guard var tag = tagByName[behind] else { return }
                tag.name = name
                tag.device = "loop-\(loop.name)"
                tag.type = .float64
                tagByName[name] = tag
            }
            for cv in loop.cvs {
                state("loop/\(loop.name)/cv/\(cv.tag)/value", cv.tag)
                state("loop/\(loop.name)/cv/\(cv.tag)/setpoint", cv.tag)
            }
            for mv in loop.mvs { state("loop/\(loop.name)/mv/\(mv.tag)/value", mv.tag) }
        }
        var seen: [String: Location] = [:]
        for k in monitors.indices {
            let (monitor, at, places) = monitors[k]
            let what = "monitor '\(monitor.name)'"
            if let earlier = seen[monitor.name] {
                sink.error(at.line, 1, "\(what) is defined twice", hint: "first defined at line \(earlier.line)")
            }
            seen[monitor.name] = at
            if !monitor.name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) {
                sink.error(at.line, 1, "\(what): names may contain letters, digits, '_' and '-' only")
            }
            if devices.contains(where: { $0.0.name == "monitor-\(monitor.name)" }) {
                sink.error(
                    at.line, 1, "\(what) is served as device 'monitor-\(monitor.name)', also a configured device")
            }
            for (key, name) in [("pv", monitor.pv), ("sp", monitor.sp), ("op", monitor.op), ("auto", monitor.auto)] {
                guard let name else { continue }
                let place = places[key] ?? at
                guard let tag = tagByName[name] else {
                    sink.error(
                        place.line, place.column, "\(what): \(key) '\(name)' is not a configured tag",
                        hint: closest(to: name, in: Array(tagByName.keys)).map { "did you mean '\($0)'?" })
                    continue
                }
                // `auto` may be a coil or a number; the others are measurements.
                let fits =
                    key == "auto" ? tag.type.isNumeric || tag.type == .bool : tag.type.isNumeric && tag.type != .bool
                if !fits {
                    sink.error(
                        place.line, place.column, "\(what): \(key) '\(name)' is \(tag.type); it must be a number")
                }
            }
            func span(_ name: String) -> (Double, Double)? {
                guard let tag = tagByName[name] else { return nil }
                if let l = tag.limits, l.maximum > l.minimum { return (l.minimum, l.maximum) }
                if let sc = tag.scaling, sc.engineeringHigh != sc.engineeringLow {
                    return (min(sc.engineeringLow, sc.engineeringHigh), max(sc.engineeringLow, sc.engineeringHigh))
                }
                return nil
            }
            if monitor.amplitude == nil {
                if let (low, high) = span(monitor.pv) {
                    monitors[k].0.amplitude = 0.01 * (high - low)
                } else if tagByName[monitor.pv] != nil {
                    sink.error(
                        at.line, 1, "\(what): the PV tag '\(monitor.pv)' has no span to take 1 % of as amplitude",
                        hint: "give the acceptable oscillation amplitude, e.g. amplitude: 0.5 (PV units)")
                }
            }
            if let (low, high) = span(monitor.op) {
                monitors[k].0.outputLow = low
                monitors[k].0.outputHigh = high
            }
        }
    }
}
