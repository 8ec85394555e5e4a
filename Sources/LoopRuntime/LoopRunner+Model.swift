import Control
import Foundation
import Tags

/// Model activation from the ledger (decision 0031): the controller is rebuilt with the new model on the caller's
/// thread, off the cycle path, and swapped in at a cycle boundary exactly as a retune is. The fresh MPC's
/// estimator has never run, so its first step initialises it from the measurements then (whole mismatch in the
/// output disturbance), and the swap starts it from the applied MVs: the MVs do not jump.
extension LoopRunner {
    /// The ledger version in force (nil until the agent registered the loop's model).
    public var activeModelVersion: Int64? {
        rebuildLock.lock()
        defer { rebuildLock.unlock() }
        return modelVersion
    }

    /// The model in force, as the ledger stores it.
    public var activeModel: LoopModelContent {
        rebuildLock.lock()
        defer { rebuildLock.unlock() }
        return LoopModelContent(modelDefinition)
    }

    /// Records which ledger version the model in force is, without touching the controller (the configuration's
    /// own model, once the agent registered it).
    public func setActiveModelVersion(_ version: Int64) {
        rebuildLock.lock()
        modelVersion = version
        rebuildLock.unlock()
    }

    /// Puts `model` (ledger version `version`) in force at the next cycle boundary; refused, with nothing changed,
    /// when it relates other tags or has other dimensions than this loop, or the controller cannot be built on it.
    public func activate(model: LoopModelContent, version: Int64) throws(LoopCommandError) {
        if let why = model.mismatch(with: definition) {
            throw LoopCommandError("model version \(version) does not fit loop '\(definition.name)': \(why)")
        }
        rebuildLock.lock()
        defer { rebuildLock.unlock() }
        if testRunning {
            throw LoopCommandError("loop '\(definition.name)' is running a plant test; stop it first ('test stop')")
        }
        let next = model.applied(to: modelDefinition)
        let tuning = tuningState.withLock { $0 }
        let (outputs, targets) = board.withLock { board.outputsAndTargets(nominal: next.nominalMVs) }
        let fresh: ControlLoop
        do {
            fresh = try LoopFactory.build(next, tuning: tuning, targets: targets, initialOutputs: outputs)
        } catch {
            throw LoopCommandError("model version \(version) rejected: \(error.message)")
        }
        modelDefinition = next
        modelVersion = version
        predictions.replaceActive(next)
        board.withLock {
            board.pendingSwap = fresh
            board.retiredLoop = nil
            board.pendingSwapReason = .modelActivated(version: version)
        }
    }

    /// Runs `model` (ledger version `version`) in shadow beside the model in force: it predicts the CVs every cycle
    /// and its NRMSE shows as `loop/NAME/shadow/nrmse`; nil stops the shadow. Refused like an activation when it
    /// relates other tags or cannot be built.
    public func setShadow(model: LoopModelContent?, version: Int64?) throws(LoopCommandError) {
        guard let model else {
            predictions.setShadow(nil, version: nil)
            return
        }
        let v = version.map(String.init) ?? "?"
        if let why = model.mismatch(with: definition) {
            throw LoopCommandError("model version \(v) does not fit loop '\(definition.name)': \(why)")
        }
        rebuildLock.lock()
        let next = model.applied(to: modelDefinition)
        rebuildLock.unlock()
        do {
            _ = try LoopFactory.model(next)
        } catch {
            throw LoopCommandError("model version \(v) rejected: \(error.message)")
        }
        predictions.setShadow(next, version: version)
    }

    /// The ledger version running in shadow, nil when none.
    public var shadowModelVersion: Int64? { predictions.current.shadowVersion }
}
