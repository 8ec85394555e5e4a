import Control
import Devices
import Tags

/// Tuning a technician may change at run time (`edgepilot loop NAME tune`); everything else needs a reload.
public struct LoopTuning: Sendable, Equatable {
    public var cvWeights: [Double]
    public var moveWeights: [Double]
    public var pidGains: [Double]
    public var pidIntegralSeconds: [Double]
    public var pidDerivativeSeconds: [Double]

    public init(_ d: LoopDefinition) {
        cvWeights = d.cvs.map(\.weight)
        moveWeights = d.mvs.map(\.moveWeight)
        pidGains = d.mvs.map(\.pid.gain)
        pidIntegralSeconds = d.mvs.map(\.pid.integralSeconds)
        pidDerivativeSeconds = d.mvs.map(\.pid.derivativeSeconds)
    }
}

/// Builds the `Control` objects of a configured loop; also what `config check` runs to find model and tuning
/// errors that only the controller's construction can see (stability, definiteness).
public enum LoopFactory {
    /// The configured targets of the CVs.
    package static func targets(_ d: LoopDefinition) -> [CVTarget] {
        d.cvs.map { cv in
            if let sp = cv.setpoint { return .setpoint(sp) }
            return .range(low: cv.rangeLow ?? -.infinity, high: cv.rangeHigh ?? .infinity)
        }
    }

    package static func model(_ d: LoopDefinition) throws(ControlError) -> StateSpaceModel {
        let period = Double(d.periodMilliseconds) / 1000
        let nd = d.nominalDVs.isEmpty ? nil : d.nominalDVs
        switch d.model {
        case .stateSpace(let a, let b, let bd, let c, let continuous):
            if continuous {
                return try StateSpaceModel.discretizing(
                    continuousA: a, b: b, bd: bd, c: c, period: period, inputNominal: d.nominalMVs,
                    disturbanceNominal: nd, outputNominal: d.nominalCVs)
            }
            return try StateSpaceModel(
                a: a, b: b, bd: bd, c: c, period: period, inputNominal: d.nominalMVs, disturbanceNominal: nd,
                outputNominal: d.nominalCVs)
        case .transferFunctions(let g, let gd):
            func convert(_ m: [[LoopFOPDT?]]) -> [[FirstOrderDeadTime?]] {
                m.map { row in
                    row.map {
                        $0.map {
                            FirstOrderDeadTime(gain: $0.gain, timeConstant: $0.timeConstant, deadTime: $0.deadTime)
                        }
                    }
                }
            }
            return try StateSpaceModel.fromTransferFunctions(
                convert(g), disturbances: convert(gd), period: period, inputNominal: d.nominalMVs,
                disturbanceNominal: nd, outputNominal: d.nominalCVs)
        }
    }

    /// Rate limits per cycle of each MV.
    static func rateSteps(_ d: LoopDefinition) -> [(up: Double, down: Double)] {
        let h = Double(d.periodMilliseconds) / 1000
        return d.mvs.map { ($0.rateUp * h, $0.rateDown * h) }
    }

    static func pidSettings(_ d: LoopDefinition, _ tuning: LoopTuning, mv l: Int) -> PIDSettings {
        let mv = d.mvs[l]
        let steps = rateSteps(d)[l]
        return PIDSettings(
            gain: tuning.pidGains[l], integralTime: tuning.pidIntegralSeconds[l],
            derivativeTime: tuning.pidDerivativeSeconds[l], action: mv.pid.directAction ? .direct : .reverse,
            outputLow: mv.low, outputHigh: mv.high, maxIncrease: steps.up, maxDecrease: steps.down,
            period: Double(d.periodMilliseconds) / 1000)
    }

    /// 1/span², the factor that turns a weight per (engineering span)² into one per engineering unit².
    static func perUnit(_ span: Double?) -> Double {
        guard let span, span.isFinite, span > 0 else { return 1 }
        return 1 / (span * span)
    }

    /// The MPC's settings for `d`: the configured (and tuned) weights are per span², so each is divided by its
    /// variable's span² here — an error of a whole span costs the same whatever the units (issue 12, item 7).
    package static func mpcConfiguration(
        _ d: LoopDefinition, tuning: LoopTuning, targets: [CVTarget]
    ) -> MPCConfiguration {
        let steps = rateSteps(d)
        return MPCConfiguration(
            predictionHorizon: d.predictionHorizon, controlHorizon: d.controlHorizon,
            outputs: d.cvs.indices.map { i in
                CVSettings(
                    weight: tuning.cvWeights[i] * perUnit(d.cvs[i].span), target: targets[i],
                    softLow: d.cvs[i].softLow, softHigh: d.cvs[i].softHigh)
            },
            inputs: d.mvs.indices.map { l in
                let mv = d.mvs[l]
                let scale = perUnit(mv.span)
                return MVSettings(
                    moveWeight: tuning.moveWeights[l] * scale, low: mv.low, high: mv.high, maxIncrease: steps[l].up,
                    maxDecrease: steps[l].down, target: mv.target, targetWeight: mv.targetWeight * scale)
            },
            estimator: EstimatorTuning(
                stateNoise: d.stateNoise, disturbanceNoise: d.disturbanceNoise, measurementNoise: d.measurementNoise),
            // The worst-case iteration count bounds the solve's time: a solve reaching it is non-optimal (shed
            // after max_non_optimal_cycles), like one over the time budget.
            solver: QPSettings(maxIterations: d.supervisor.maxIterations ?? 0))
    }

    /// A complete supervised loop, starting in MANUAL with `initialOutputs` applied.
    public static func build(
        _ d: LoopDefinition, tuning: LoopTuning, targets: [CVTarget], initialOutputs: [Double]
    ) throws(ControlError) -> ControlLoop {
        let configuration = mpcConfiguration(d, tuning: tuning, targets: targets)
        let mpc = try ModelPredictiveController(model: model(d), configuration: configuration)
        mpc.clock = { UInt64(max(0, loopMonotonicNanoseconds())) }
        var pids: [PIDController] = []
        var pairings: [PIDPairing] = []
        for l in d.mvs.indices {
            let cv = d.cvs.firstIndex { $0.tag == d.mvs[l].pid.cv } ?? 0
            pids.append(try PIDController(settings: pidSettings(d, tuning, mv: l), initialOutput: initialOutputs[l]))
            pairings.append(PIDPairing(cv: cv, mv: l))
        }
        let supervisor = SupervisorSettings(
            maxNonOptimalCycles: d.supervisor.maxNonOptimalCycles,
            solveBudgetNanoseconds: UInt64(d.supervisor.solveBudgetMicroseconds) * 1000,
            maxInputAgeNanoseconds: UInt64(d.supervisor.maxInputAgeMilliseconds) * 1_000_000,
            // Returning to the operator's mode is the runner's decision (it knows what the operator asked for).
            autoReturnAfterNanoseconds: nil)
        return try ControlLoop(
            mpc: mpc, pids: pids, pairings: pairings, supervisor: supervisor, initialOutputs: initialOutputs)
    }

    /// Builds every loop of `configuration` once, to report what the controller's construction rejects.
    public static func check(_ configuration: AgentConfiguration) -> [String] {
        var problems: [String] = []
        for d in configuration.loops {
            do {
                _ = try build(d, tuning: LoopTuning(d), targets: targets(d), initialOutputs: d.nominalMVs)
            } catch {
                problems.append("loop '\(d.name)': \(error.message)")
            }
        }
        return problems
    }
}
