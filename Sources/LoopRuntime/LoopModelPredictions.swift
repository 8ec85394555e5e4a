import Control
import Foundation
import Tags

/// The rolling prediction error of the model in force and of a shadow candidate (decision 0036), stepped by the
/// loop thread after the cycle's writes are posted, so it never delays them.
///
/// New monitors (a model activated, a shadow set or cleared) are built on the caller's thread and taken over at the
/// next cycle; the ones they replace are parked and freed by the next change, on that caller's thread. Nothing is
/// allocated or freed on the loop thread.
final class LoopModelPredictions: @unchecked Sendable {
    /// NRMSE and shadow version as other threads see them.
    struct Figures: Sendable {
        var active = Double.nan
        var shadow = Double.nan
        var shadowVersion: Int64?
        var degraded = false
    }

    private let lock = NSLock()
    private let threshold: Double
    // Guarded by `lock`.
    private var pendingActive: ModelPredictionMonitor?
    private var pendingShadow: ModelPredictionMonitor?
    private var clearShadow = false
    private var pendingShadowVersion: Int64?
    private var retiredActive: ModelPredictionMonitor?
    private var retiredShadow: ModelPredictionMonitor?
    private var figures = Figures()
    // Loop thread only.
    private var active: ModelPredictionMonitor?
    private var shadow: ModelPredictionMonitor?
    private var shadowVersion: Int64?

    init(definition d: LoopDefinition) {
        threshold = d.modelAlertNRMSE
        active = Self.monitor(d)
    }

    /// A monitor of `d`'s model: horizon the MPC's prediction horizon (at most half the window), window the KPI
    /// window, each CV's error scaled by its engineering span. Nil when the model cannot be built (the loop would
    /// not have been built either).
    static func monitor(_ d: LoopDefinition) -> ModelPredictionMonitor? {
        guard let model = try? LoopFactory.model(d) else { return nil }
        let window = max(2, d.kpiWindowMilliseconds / max(1, d.periodMilliseconds))
        return ModelPredictionMonitor(
            model: model, horizon: min(d.predictionHorizon, window / 2), window: window,
            scale: d.cvs.map { $0.span ?? 1 })
    }

    /// The model in force changed (ledger activation): its monitor starts afresh at the next cycle.
    func replaceActive(_ d: LoopDefinition) {
        let fresh = Self.monitor(d)
        lock.lock()
        retiredActive = nil
        pendingActive = fresh
        lock.unlock()
    }

    /// Runs `d`'s model in shadow (ledger version `version`), or none with nil.
    func setShadow(_ d: LoopDefinition?, version: Int64?) {
        let fresh = d.flatMap(Self.monitor)
        lock.lock()
        retiredShadow = nil
        pendingShadow = fresh
        clearShadow = fresh == nil
        pendingShadowVersion = fresh == nil ? nil : version
        figures.shadowVersion = fresh == nil ? nil : version
        if fresh == nil { figures.shadow = .nan }
        lock.unlock()
    }

    var current: Figures {
        lock.lock()
        defer { lock.unlock() }
        return figures
    }

    /// One cycle, on the loop thread: the CVs measured now, the MVs in force over the last period, the DVs now.
    /// `good` false (a bad CV or DV) restarts both models: they cannot be driven through a gap.
    func step(
        good: Bool, measurement: UnsafePointer<Double>, applied: UnsafePointer<Double>,
        disturbance: UnsafePointer<Double>
    ) {
        lock.lock()
        if let fresh = pendingActive {
            retiredActive = active
            active = fresh
            pendingActive = nil
        }
        if pendingShadow != nil || clearShadow {
            retiredShadow = shadow
            shadow = pendingShadow
            shadowVersion = pendingShadowVersion
            pendingShadow = nil
            clearShadow = false
        }
        lock.unlock()
        if good {
            active?.step(measurement: measurement, applied: applied, disturbance: disturbance)
            shadow?.step(measurement: measurement, applied: applied, disturbance: disturbance)
        } else {
            active?.reset()
            shadow?.reset()
        }
        let a = active?.worst ?? .nan
        let s = shadow?.worst ?? .nan
        lock.lock()
        figures.active = a
        figures.shadow = s
        figures.shadowVersion = shadow == nil ? nil : shadowVersion
        figures.degraded = a > threshold
        lock.unlock()
    }
}
