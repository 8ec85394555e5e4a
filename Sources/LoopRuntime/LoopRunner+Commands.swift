import Control
import Synchronization
import Tags

/// Operator commands, from any thread: checked here, queued, and applied by the loop thread at its next cycle (a
/// retune is built here, on the caller's thread, and swapped in at a cycle boundary).
extension LoopRunner {
    /// Asks for a mode; the change happens at the next cycle and is reported with its reason.
    public func requestMode(_ mode: LoopMode) {
        // TEST is entered only by `test start`, with a test to run.
        guard mode != .test else { return }
        commands.withLock { $0.append(.mode(mode)) }
    }

    /// Changes CV `tag`'s setpoint (a range-controlled CV becomes setpoint-controlled).
    public func setSetpoint(cv tag: String, _ value: Double) throws(LoopCommandError) {
        guard let i = definition.cvs.firstIndex(where: { $0.tag == tag }) else {
            throw LoopCommandError(
                "loop '\(definition.name)' has no CV '\(tag)'; CVs: \(definition.cvs.map(\.tag).joined(separator: ", "))"
            )
        }
        guard value.isFinite else { throw LoopCommandError("setpoint must be a finite number") }
        let cv = definition.cvs[i]
        if value < cv.softLow || value > cv.softHigh {
            throw LoopCommandError(
                "setpoint \(formatDouble(value)) is outside CV '\(tag)' limits \(formatDouble(cv.softLow)) … "
                    + "\(formatDouble(cv.softHigh))")
        }
        commands.withLock { $0.append(.setpoint(i, value)) }
    }

    /// Sets MV `tag` by hand; only in MANUAL, inside the loop's MV limits, approached at the rate limit.
    public func setManual(mv tag: String, _ value: Double) throws(LoopCommandError) {
        guard let l = definition.mvs.firstIndex(where: { $0.tag == tag }) else {
            throw LoopCommandError(
                "loop '\(definition.name)' has no MV '\(tag)'; MVs: \(definition.mvs.map(\.tag).joined(separator: ", "))"
            )
        }
        let mv = definition.mvs[l]
        guard value.isFinite, value >= mv.low, value <= mv.high else {
            throw LoopCommandError(
                "MV '\(tag)' accepts \(formatDouble(mv.low)) … \(formatDouble(mv.high)), not \(value)")
        }
        let mode = board.withLock { board.scalars.mode }
        guard mode == .manual else {
            throw LoopCommandError(
                "loop '\(definition.name)' is in \(mode.rawValue); switch it to manual first "
                    + "('edgepilot loop \(definition.name) mode manual')")
        }
        commands.withLock { $0.append(.manual(l, value)) }
    }

    /// Validates and applies new tuning: the controller is rebuilt here (on the caller's thread) and swapped in at
    /// a cycle boundary, starting from the applied MVs, so the change is bumpless. Returns the tuning now in force.
    @discardableResult
    public func tune(_ request: LoopTuneRequest) throws(LoopCommandError) -> LoopTuning {
        rebuildLock.lock()
        defer { rebuildLock.unlock() }
        if testRunning {
            throw LoopCommandError("loop '\(definition.name)' is running a plant test; stop it first ('test stop')")
        }
        var tuning = tuningState.withLock { $0 }
        func apply(
            _ values: [String: Double]?, _ names: [String], _ what: String, valid: (Double) -> Bool,
            set: (inout LoopTuning, Int, Double) -> Void
        ) throws(LoopCommandError) {
            for (name, value) in values ?? [:] {
                guard let k = names.firstIndex(of: name) else {
                    throw LoopCommandError("\(what): '\(name)' is not one of \(names.joined(separator: ", "))")
                }
                guard valid(value) else { throw LoopCommandError("\(what) for '\(name)': \(value) is not allowed") }
                set(&tuning, k, value)
            }
        }
        let cvs = definition.cvs.map(\.tag)
        let mvs = definition.mvs.map(\.tag)
        try apply(
            request.cvWeights, cvs, "CV weight", valid: { $0.isFinite && $0 >= 0 }, set: { $0.cvWeights[$1] = $2 })
        try apply(
            request.moveWeights, mvs, "move weight", valid: { $0.isFinite && $0 > 0 }, set: { $0.moveWeights[$1] = $2 })
        try apply(request.pidGains, mvs, "PID gain", valid: { $0.isFinite && $0 > 0 }, set: { $0.pidGains[$1] = $2 })
        try apply(
            request.pidIntegralSeconds, mvs, "PID integral time", valid: { $0 > 0 },
            set: { $0.pidIntegralSeconds[$1] = $2 })
        try apply(
            request.pidDerivativeSeconds, mvs, "PID derivative time", valid: { $0.isFinite && $0 >= 0 },
            set: { $0.pidDerivativeSeconds[$1] = $2 })
        let (outputs, targets) = board.withLock { board.outputsAndTargets(nominal: definition.nominalMVs) }
        let fresh: ControlLoop
        do {
            fresh = try LoopFactory.build(modelDefinition, tuning: tuning, targets: targets, initialOutputs: outputs)
        } catch {
            throw LoopCommandError("tuning rejected: \(error.message)")
        }
        tuningState.withLock { $0 = tuning }
        board.withLock {
            board.pendingSwap = fresh
            board.retiredLoop = nil
            board.pendingSwapReason = .retuned
        }
        return tuning
    }

    /// Starts a new KPI window.
    public func resetKPIs() { commands.withLock { $0.append(.resetKPIs) } }

    public var tuning: LoopTuning { tuningState.withLock { $0 } }
}
