import Tags
import Yams

/// Reading of the top-level `loops:` list (see Config/README.md, "loops").
///
/// Shapes, names, tags and limits are checked here, against the tags of the same file; the controller itself
/// (model stability, Kalman filter, QP factorization) is built and checked by the agent (`LoopFactory`), which
/// `edgepilot config check` also runs.
extension Builder {
    mutating func readLoop(_ node: Node) {
        guard var r = MappingReader(node, what: "a loop", sink: &sink) else { return }
        let name = r.string("name", required: true, sink: &sink) ?? ""
        let what = "loop '\(name)'"
        let period = r.duration("period", required: true, sink: &sink)
        var mode = LoopModeSetting.manual
        if let text = r.string("mode", sink: &sink), let v = r.value("mode") {
            if let m = LoopModeSetting(rawValue: text.lowercased()) {
                mode = m
            } else {
                sink.error(v.line, v.column, "\(what): unknown mode '\(text)'", hint: "use manual, pid or mpc")
            }
        }
        var cvs: [LoopCVDefinition] = []
        for n in r.list("cvs", sink: &sink) ?? [] {
            if let cv = readLoopCV(n, what) { cvs.append(cv) }
        }
        var mvs: [LoopMVDefinition] = []
        for n in r.list("mvs", sink: &sink) ?? [] {
            if let mv = readLoopMV(n, what) { mvs.append(mv) }
        }
        var dvs: [String] = []
        for n in r.list("dvs", sink: &sink) ?? [] {
            if var d = MappingReader(n, what: "a disturbance of \(what)", sink: &sink) {
                if let tag = d.string("tag", required: true, sink: &sink) { dvs.append(tag) }
                d.reportUnknownKeys(sink: &sink)
            }
        }
        var model: LoopModelDefinition?
        var nominal: (mvs: [Double], cvs: [Double], dvs: [Double]) = ([], [], [])
        if let m = r.value("model") {
            (model, nominal) = readLoopModel(m, what)
        } else {
            sink.error(r.line, 1, "\(what) is missing 'model'")
        }
        var prediction = 30
        var control = 10
        if let h = r.value("horizons"), var hr = MappingReader(h, what: "'horizons' of \(what)", sink: &sink) {
            prediction = hr.int("prediction", required: true, range: 1...1000, sink: &sink) ?? prediction
            control = hr.int("control", required: true, range: 1...1000, sink: &sink) ?? control
            hr.reportUnknownKeys(sink: &sink)
            if control > prediction {
                sink.error(h.line, h.column, "\(what): control horizon \(control) exceeds prediction \(prediction)")
            }
        }
        var estimator = (state: 0.0, disturbance: 1.0, measurement: 1.0)
        if let e = r.value("estimator"), var er = MappingReader(e, what: "'estimator' of \(what)", sink: &sink) {
            estimator.state = er.double("state_noise", sink: &sink) ?? estimator.state
            estimator.disturbance = er.double("disturbance_noise", sink: &sink) ?? estimator.disturbance
            estimator.measurement = er.double("measurement_noise", sink: &sink) ?? estimator.measurement
            er.reportUnknownKeys(sink: &sink)
            if estimator.state < 0 || estimator.disturbance <= 0 || estimator.measurement <= 0 {
                sink.error(
                    e.line, e.column, "\(what): estimator noises must be state ≥ 0, disturbance > 0, measurement > 0")
            }
        }
        var supervisor = LoopSupervisorDefinition()
        if let s = r.value("supervisor"), var sr = MappingReader(s, what: "'supervisor' of \(what)", sink: &sink) {
            if let ms = sr.duration("max_input_age", sink: &sink) { supervisor.maxInputAgeMilliseconds = ms }
            if let text = sr.string("solve_budget", sink: &sink), let v = sr.value("solve_budget") {
                if let us = microseconds(text) {
                    supervisor.solveBudgetMicroseconds = us
                } else {
                    sink.error(
                        v.line, v.column, "\(what): solve_budget must be a duration, found '\(text)'",
                        hint: "e.g. 500us, 5ms")
                }
            }
            supervisor.maxIterations = sr.int("max_iterations", range: 1...100_000, sink: &sink)
            supervisor.maxNonOptimalCycles =
                sr.int("max_non_optimal_cycles", range: 1...1000, sink: &sink) ?? supervisor.maxNonOptimalCycles
            if sr.has("healthy_period") {
                if sr.string("healthy_period", sink: &sink)?.lowercased() == "never" {
                    supervisor.healthyPeriodMilliseconds = nil
                } else if let ms = sr.duration("healthy_period", sink: &sink) {
                    supervisor.healthyPeriodMilliseconds = ms
                }
            }
            if let text = sr.string("fallback", sink: &sink), let v = sr.value("fallback") {
                switch text.lowercased() {
                case "pid": supervisor.fallback = .pid
                case "manual": supervisor.fallback = .manual
                default:
                    sink.error(v.line, v.column, "\(what): fallback must be pid or manual, found '\(text)'")
                }
            }
            sr.reportUnknownKeys(sink: &sink)
        }
        let heartbeat = r.string("heartbeat", sink: &sink)
        let priority = r.int("realtime_priority", range: 1...99, sink: &sink)
        let lock = r.bool("lock_memory", sink: &sink) ?? false
        let window = r.duration("kpi_window", sink: &sink) ?? 600_000
        var minFit = 70.0
        if let text = r.string("model_min_fit", sink: &sink), let v = r.value("model_min_fit") {
            let number = text.hasSuffix("%") ? String(text.dropLast()).trimmingCharacters(in: .whitespaces) : text
            if let fit = Double(number), fit >= 0, fit <= 100 {
                minFit = fit
            } else {
                sink.error(
                    v.line, v.column, "\(what): model_min_fit must be a percentage from 0 to 100, found '\(text)'",
                    hint: "e.g. model_min_fit: 80%")
            }
        }
        var alert = 0.05
        if let v = r.double("model_alert_nrmse", sink: &sink) {
            if v > 0 && v.isFinite {
                alert = v
            } else if let node = r.value("model_alert_nrmse") {
                sink.error(
                    node.line, node.column, "\(what): model_alert_nrmse must be a number above 0, found \(v)",
                    hint: "e.g. model_alert_nrmse: 0.05 (RMS prediction error of 5 % of the CV's span)")
            }
        }
        let shadow = r.int("shadow", range: 1...Int.max, sink: &sink)
        r.reportUnknownKeys(sink: &sink)
        guard !name.isEmpty, let period, let model else { return }
        var loop = LoopDefinition(
            name: name, periodMilliseconds: period, mode: mode, cvs: cvs, mvs: mvs, dvs: dvs, model: model,
            nominalMVs: nominal.mvs, nominalCVs: nominal.cvs, nominalDVs: nominal.dvs,
            predictionHorizon: prediction, controlHorizon: control, stateNoise: estimator.state,
            disturbanceNoise: estimator.disturbance, measurementNoise: estimator.measurement, supervisor: supervisor,
            heartbeatTag: heartbeat, realtimePriority: priority, lockMemory: lock, kpiWindowMilliseconds: window)
        loop.modelMinFitPercent = minFit
        loop.modelAlertNRMSE = alert
        loop.shadowVersion = shadow.map(Int64.init)
        loops.append((loop, Location(file: sink.file, line: r.line)))
    }

    private mutating func readLoopCV(_ node: Node, _ loop: String) -> LoopCVDefinition? {
        guard var r = MappingReader(node, what: "a CV of \(loop)", sink: &sink) else { return nil }
        let tag = r.string("tag", required: true, sink: &sink)
        var cv = LoopCVDefinition(tag: tag ?? "")
        cv.setpoint = r.double("setpoint", sink: &sink)
        if let range = r.value("range"), var rr = MappingReader(range, what: "'range'", sink: &sink) {
            cv.rangeLow = rr.double("low", required: true, sink: &sink)
            cv.rangeHigh = rr.double("high", required: true, sink: &sink)
            rr.reportUnknownKeys(sink: &sink)
            if let lo = cv.rangeLow, let hi = cv.rangeHigh, lo >= hi {
                sink.error(range.line, range.column, "\(loop): CV '\(cv.tag)' range low must be below high")
            }
        }
        if (cv.setpoint == nil) == (cv.rangeLow == nil) {
            sink.error(
                r.line, 1, "\(loop): CV '\(cv.tag)' needs either a setpoint or a range",
                hint: "setpoint: 12.5, or range: {low: 12, high: 13}")
        }
        cv.weight = r.double("weight", sink: &sink) ?? 1
        cv.softLow = r.double("soft_low", sink: &sink) ?? -.infinity
        cv.softHigh = r.double("soft_high", sink: &sink) ?? .infinity
        cv.oscillationAmplitude = r.double("oscillation_amplitude", sink: &sink)
        r.reportUnknownKeys(sink: &sink)
        if !(cv.weight >= 0) { sink.error(r.line, 1, "\(loop): CV '\(cv.tag)' weight must be ≥ 0") }
        if cv.softLow >= cv.softHigh {
            sink.error(r.line, 1, "\(loop): CV '\(cv.tag)' soft_low must be below soft_high")
        }
        return tag == nil ? nil : cv
    }

    private mutating func readLoopMV(_ node: Node, _ loop: String) -> LoopMVDefinition? {
        guard var r = MappingReader(node, what: "an MV of \(loop)", sink: &sink) else { return nil }
        let tag = r.string("tag", required: true, sink: &sink)
        let what = "\(loop): MV '\(tag ?? "?")'"
        let low = r.double("low", required: true, sink: &sink)
        let high = r.double("high", required: true, sink: &sink)
        let rate = r.double("rate", sink: &sink)
        let up = r.double("rate_up", sink: &sink) ?? rate
        let down = r.double("rate_down", sink: &sink) ?? rate
        let moveWeight = r.double("move_weight", sink: &sink) ?? 1
        let target = r.double("target", sink: &sink)
        let targetWeight = r.double("target_weight", sink: &sink) ?? (target == nil ? 0 : 0.01)
        var pid: LoopPIDDefinition?
        if let p = r.value("pid") {
            pid = readLoopPID(p, what)
        } else {
            sink.error(
                r.line, 1, "\(what) has no 'pid'",
                hint: "every MV needs its fallback PID: pid: {cv: TAG, gain: K, integral_time: 30s}")
        }
        r.reportUnknownKeys(sink: &sink)
        if up == nil || down == nil {
            sink.error(
                r.line, 1, "\(what) needs a rate limit", hint: "rate: 0.5 (units per second), or rate_up/rate_down")
        }
        if let up, let down, !(up > 0 && down > 0) { sink.error(r.line, 1, "\(what): rates must be > 0") }
        if let low, let high, low >= high { sink.error(r.line, 1, "\(what): low must be below high") }
        if moveWeight < 0 || targetWeight < 0 { sink.error(r.line, 1, "\(what): weights must be ≥ 0") }
        guard let tag, let low, let high, let up, let down, let pid else { return nil }
        return LoopMVDefinition(
            tag: tag, low: low, high: high, rateUp: up, rateDown: down, moveWeight: moveWeight, target: target,
            targetWeight: targetWeight, pid: pid)
    }

    private mutating func readLoopPID(_ node: Node, _ what: String) -> LoopPIDDefinition? {
        guard var r = MappingReader(node, what: "the PID of \(what)", sink: &sink) else { return nil }
        let cv = r.string("cv", required: true, sink: &sink)
        let gain = r.double("gain", required: true, sink: &sink)
        let ti = seconds(&r, "integral_time") ?? .infinity
        let td = seconds(&r, "derivative_time") ?? 0
        var direct = false
        if let action = r.string("action", sink: &sink), let v = r.value("action") {
            switch action.lowercased() {
            case "reverse": direct = false
            case "direct": direct = true
            default: sink.error(v.line, v.column, "\(what): PID action must be reverse or direct, found '\(action)'")
            }
        }
        r.reportUnknownKeys(sink: &sink)
        if let gain, !(gain > 0) {
            sink.error(
                r.line, 1, "\(what): PID gain must be > 0", hint: "use action: direct for a negative process gain")
        }
        if !(ti > 0) || td < 0 { sink.error(r.line, 1, "\(what): PID integral_time must be > 0, derivative_time ≥ 0") }
        guard let cv, let gain else { return nil }
        return LoopPIDDefinition(cv: cv, gain: gain, integralSeconds: ti, derivativeSeconds: td, directAction: direct)
    }

    mutating func readLoopModel(
        _ node: Node, _ what: String
    ) -> (LoopModelDefinition?, (mvs: [Double], cvs: [Double], dvs: [Double])) {
        var nominal: (mvs: [Double], cvs: [Double], dvs: [Double]) = ([], [], [])
        guard var r = MappingReader(node, what: "the model of \(what)", sink: &sink) else { return (nil, nominal) }
        let kind = r.string("type", required: true, sink: &sink)?.lowercased()
        var model: LoopModelDefinition?
        switch kind {
        case "state_space":
            let continuous = r.bool("continuous", sink: &sink) ?? false
            let a = matrix(&r, "a", required: true)
            let b = matrix(&r, "b", required: true)
            let bd = matrix(&r, "bd", required: false) ?? []
            let c = matrix(&r, "c", required: true)
            if let a, let b, let c {
                model = .stateSpace(a: a, b: b, bd: bd, c: c, continuous: continuous)
            }
        case "fopdt":
            let g = fopdtMatrix(&r, "gains", required: true)
            let gd = fopdtMatrix(&r, "disturbances", required: false) ?? []
            if let g { model = .transferFunctions(gains: g, disturbances: gd) }
        case nil:
            break
        case let other?:
            let v = r.value("type")
            sink.error(
                v?.line ?? r.line, v?.column ?? 1, "\(what): unknown model type '\(other)'",
                hint: "use state_space or fopdt")
        }
        if let op = r.value("operating_point"),
            var o = MappingReader(op, what: "'operating_point' of \(what)", sink: &sink)
        {
            nominal.mvs = vector(&o, "mvs") ?? []
            nominal.cvs = vector(&o, "cvs") ?? []
            nominal.dvs = vector(&o, "dvs") ?? []
            o.reportUnknownKeys(sink: &sink)
        } else {
            sink.error(
                r.line, 1, "\(what): the model has no 'operating_point'",
                hint: "operating_point: {mvs: [...], cvs: [...]} — the values the model's deviations are taken from")
        }
        r.reportUnknownKeys(sink: &sink)
        return (model, nominal)
    }

    mutating func seconds(_ r: inout MappingReader, _ key: String) -> Double? {
        guard let text = r.string(key, sink: &sink), let v = r.value(key) else { return nil }
        if text.lowercased() == "off" || text.lowercased() == "none" { return key == "integral_time" ? .infinity : 0 }
        if let seconds = UnitParser.seconds(text) { return seconds }
        // A bare number is refused: seconds, minutes and cycles have all been meant by one, and a model whose time
        // scale is off by 60 still loads and still runs (issue 12).
        let bare = Double(text.replacingUnderscores()) != nil
        sink.error(
            v.line, v.column,
            bare
                ? "'\(key)' needs a time unit, found the bare number '\(text)'"
                : "'\(key)' must be a duration, found '\(text)'",
            hint: "write it with its unit: 30s, 500ms, 2.5m or 1h")
        return nil
    }

    private func microseconds(_ text: String) -> Int? {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        for (suffix, factor) in [("us", 1.0), ("µs", 1.0), ("ms", 1000.0), ("s", 1e6)] where t.hasSuffix(suffix) {
            guard let v = Double(t.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)), v > 0, v < 1e12 else {
                return nil
            }
            return Int((v * factor).rounded())
        }
        return nil
    }

    private mutating func number(_ node: Node, _ what: String) -> Double? {
        if case .scalar(let s) = node, let d = Double(s.string.replacingUnderscores()), d.isFinite { return d }
        sink.error(node.line, node.column, "\(what) must be a number")
        return nil
    }

    private mutating func vector(_ r: inout MappingReader, _ key: String) -> [Double]? {
        guard let items = r.list(key, sink: &sink) else { return nil }
        var out: [Double] = []
        for item in items {
            guard let d = number(item, "an entry of '\(key)'") else { return nil }
            out.append(d)
        }
        return out
    }

    private mutating func matrix(_ r: inout MappingReader, _ key: String, required: Bool) -> [[Double]]? {
        guard let rows = r.list(key, sink: &sink) else {
            if required { sink.error(r.line, 1, "the model is missing matrix '\(key)'") }
            return nil
        }
        var out: [[Double]] = []
        for row in rows {
            guard case .sequence(let cells) = row else {
                sink.error(row.line, row.column, "each row of '\(key)' must be a list, e.g. [0.9, 0.1]")
                return nil
            }
            var values: [Double] = []
            for cell in cells {
                guard let d = number(cell, "an element of '\(key)'") else { return nil }
                values.append(d)
            }
            out.append(values)
        }
        return out
    }

    private mutating func fopdtMatrix(_ r: inout MappingReader, _ key: String, required: Bool) -> [[LoopFOPDT?]]? {
        guard let rows = r.list(key, sink: &sink) else {
            if required { sink.error(r.line, 1, "the model is missing '\(key)' (one row per CV)") }
            return nil
        }
        var out: [[LoopFOPDT?]] = []
        for row in rows {
            guard case .sequence(let cells) = row else {
                sink.error(row.line, row.column, "each row of '\(key)' must be a list with one entry per column")
                return nil
            }
            var values: [LoopFOPDT?] = []
            for cell in cells {
                if case .scalar(let s) = cell, ["", "~", "null", "0"].contains(s.string) {
                    values.append(nil)
                    continue
                }
                guard var c = MappingReader(cell, what: "an entry of '\(key)'", sink: &sink) else { return nil }
                let gain = c.double("gain", required: true, sink: &sink)
                let tau = seconds(&c, "time_constant") ?? 0
                let theta = seconds(&c, "dead_time") ?? 0
                c.reportUnknownKeys(sink: &sink)
                guard let gain else { return nil }
                if tau < 0 || theta < 0 {
                    sink.error(cell.line, cell.column, "time_constant and dead_time must be ≥ 0")
                }
                values.append(LoopFOPDT(gain: gain, timeConstant: tau, deadTime: theta))
            }
            out.append(values)
        }
        return out
    }
}
