import Testing

@testable import Control

@Suite struct SupervisorTests {
    let second: UInt64 = 1_000_000_000

    func inMPC(_ settings: SupervisorSettings = SupervisorSettings()) -> Supervisor {
        Supervisor(settings: settings, mode: .mpc)
    }

    @Test func shedsAfterConsecutiveNonOptimalSolvesOnly() {
        var s = inMPC(SupervisorSettings(maxNonOptimalCycles: 3))
        #expect(s.evaluate(SupervisorObservation(now: 1, solverStatus: .iterationLimit)) == nil)
        #expect(s.evaluate(SupervisorObservation(now: 2, solverStatus: .iterationLimit)) == nil)
        #expect(s.evaluate(SupervisorObservation(now: 3, solverStatus: .optimal)) == nil)  // resets the count
        #expect(s.evaluate(SupervisorObservation(now: 4, solverStatus: .timeLimit)) == nil)
        #expect(s.evaluate(SupervisorObservation(now: 5, solverStatus: .infeasible)) == nil)
        let t = s.evaluate(SupervisorObservation(now: 6, solverStatus: .numericalFailure))
        #expect(
            t
                == ModeTransition(
                    from: .mpc, to: .pid,
                    reason: .solverNotOptimal(consecutiveCycles: 3, lastStatus: .numericalFailure),
                    time: 6))
        #expect(s.mode == .pid)
    }

    @Test func shedsOnSolveOverBudgetAndOnInputFaults() {
        var s = inMPC(SupervisorSettings(solveBudgetNanoseconds: 1000))
        #expect(s.evaluate(SupervisorObservation(now: 1, solverStatus: .optimal, solveNanoseconds: 1000)) == nil)
        #expect(
            s.evaluate(SupervisorObservation(now: 2, solverStatus: .optimal, solveNanoseconds: 1001))?.reason
                == .solveOverBudget(nanoseconds: 1001))
        for fault in [
            TransitionReason.badQuality(.controlledVariable, index: 1), .staleInput(.manipulatedVariable, index: 0),
            .badQuality(.disturbanceVariable, index: 0),
        ] {
            var s = inMPC()
            let t = s.evaluate(SupervisorObservation(now: 5, inputFault: fault))
            #expect(t?.to == .pid && t?.reason == fault)
        }
    }

    @Test func predictionErrorMustPersistBeforeShedding() {
        var s = inMPC(SupervisorSettings(predictionErrorDurationNanoseconds: 10 * second))
        #expect(s.evaluate(SupervisorObservation(now: 0, solverStatus: .optimal, predictionErrorCV: 1)) == nil)
        #expect(s.evaluate(SupervisorObservation(now: 9 * second, solverStatus: .optimal, predictionErrorCV: 1)) == nil)
        // A healthy sample restarts the timer.
        #expect(s.evaluate(SupervisorObservation(now: 9 * second + 1, solverStatus: .optimal)) == nil)
        #expect(
            s.evaluate(SupervisorObservation(now: 10 * second, solverStatus: .optimal, predictionErrorCV: 0)) == nil)
        #expect(
            s.evaluate(SupervisorObservation(now: 19 * second, solverStatus: .optimal, predictionErrorCV: 0)) == nil)
        let t = s.evaluate(SupervisorObservation(now: 20 * second, solverStatus: .optimal, predictionErrorCV: 0))
        #expect(t?.reason == .predictionError(cv: 0) && t?.time == 20 * second)
    }

    @Test func returnsToMPCAfterAHealthyPeriodOnlyWhenConfigured() {
        var manualOnly = Supervisor(settings: SupervisorSettings(), mode: .pid)
        for k in 0..<100 {
            #expect(manualOnly.evaluate(SupervisorObservation(now: UInt64(k) * second, solverStatus: .optimal)) == nil)
        }
        var s = Supervisor(settings: SupervisorSettings(autoReturnAfterNanoseconds: 30 * second), mode: .pid)
        #expect(s.evaluate(SupervisorObservation(now: 0, solverStatus: .optimal)) == nil)
        #expect(s.evaluate(SupervisorObservation(now: 20 * second, solverStatus: .iterationLimit)) == nil)  // unhealthy
        #expect(s.evaluate(SupervisorObservation(now: 21 * second, solverStatus: .optimal)) == nil)
        #expect(s.evaluate(SupervisorObservation(now: 50 * second, solverStatus: .optimal)) == nil)
        let t = s.evaluate(SupervisorObservation(now: 51 * second, solverStatus: .optimal))
        #expect(t == ModeTransition(from: .pid, to: .mpc, reason: .healthyPeriodElapsed, time: 51 * second))
    }

    @Test func operatorRequestsAndPIDDropToManual() {
        var s = Supervisor(mode: .manual)
        #expect(s.evaluate(SupervisorObservation(now: 1, solverStatus: .infeasible)) == nil)  // manual ignores health
        #expect(s.evaluate(SupervisorObservation(now: 2, request: .pid))?.reason == .operatorRequest)
        let t = s.evaluate(SupervisorObservation(now: 3, inputFault: .staleInput(.controlledVariable, index: 0)))
        #expect(t?.to == .manual && t?.reason == .staleInput(.controlledVariable, index: 0))
        // An MV readback fault does not stop the PIDs (they still see their CVs).
        _ = s.evaluate(SupervisorObservation(now: 4, request: .pid))
        #expect(
            s.evaluate(SupervisorObservation(now: 5, inputFault: .badQuality(.manipulatedVariable, index: 0))) == nil)
        #expect(s.evaluate(SupervisorObservation(now: 6, request: .mpc))?.to == .mpc)
        #expect(s.lastTransition?.reason == .operatorRequest)
    }
}

/// The supervised loop on the nonlinear quadruple tank: MPC ↔ PID ↔ MANUAL with bumpless switches.
@Suite struct ControlLoopTests {
    static let rate = 0.1

    func makeLoop(autoReturn: UInt64?) throws -> (ControlLoop, QuadrupleTank) {
        let plant = QuadrupleTank.minimumPhase
        let h0 = plant.steadyState(voltages: (3, 3))
        let mvs = [
            MVSettings(moveWeight: 0.5, low: 0.5, high: 6, maxIncrease: Self.rate, maxDecrease: Self.rate),
            MVSettings(moveWeight: 0.5, low: 0.5, high: 6, maxIncrease: Self.rate, maxDecrease: Self.rate),
        ]
        let mpc = try ModelPredictiveController(
            model: plant.linearModel(voltages: (3, 3), period: 10),
            configuration: MPCConfiguration(
                predictionHorizon: 30, controlHorizon: 10,
                outputs: [CVSettings(target: .setpoint(0.5 * h0.0 + 0.5)), CVSettings(target: .setpoint(0.5 * h0.1))],
                inputs: mvs))
        // PIDs with the same rate limits, so a switch to PID moves at most one MPC rate step.
        func pid() throws -> PIDController {
            try PIDController(
                settings: PIDSettings(
                    gain: 1.5, integralTime: 60, outputLow: 0.5, outputHigh: 6, maxIncrease: Self.rate,
                    maxDecrease: Self.rate, period: 10),
                initialOutput: 3)
        }
        let loop = try ControlLoop(
            mpc: mpc, pids: [pid(), pid()], pairings: [PIDPairing(cv: 0, mv: 0), PIDPairing(cv: 1, mv: 1)],
            supervisor: SupervisorSettings(
                maxNonOptimalCycles: 3, solveBudgetNanoseconds: .max, maxInputAgeNanoseconds: 30_000_000_000,
                autoReturnAfterNanoseconds: autoReturn),
            initialOutputs: [3, 3])
        return (loop, plant)
    }

    @Test func everySwitchIsBumplessAndCarriesAReason() throws {
        let (loop, plant) = try makeLoop(autoReturn: 300_000_000_000)
        var h = plant.steadyState(voltages: (3, 3))
        var transitions = [ModeTransition]()
        var previous = loop.outputs
        var maxJumpAtSwitch = 0.0
        for k in 0..<400 {
            let now = UInt64(k) * 10_000_000_000
            let readbackGood = !(150..<160).contains(k)  // MV readback fault: MPC must shed to PID
            loop.setMeasurement(0, value: plant.sensorGain * h.0, good: true, timestamp: now)
            loop.setMeasurement(1, value: plant.sensorGain * h.1, good: true, timestamp: now)
            loop.setInputReadback(0, good: readbackGood, timestamp: now)
            loop.setInputReadback(1, good: true, timestamp: now)
            if k == 5 { loop.request(.mpc) }
            if k == 60 { loop.request(.pid) }
            if k == 250 {
                // A setpoint step the starved solver cannot finish: the MPC must shed after 3 cycles.
                loop.mpc.solver.settings.maxIterations = 1
                try loop.mpc.setTarget(0, .setpoint(0.5 * h.0 - 0.5))
            }
            if k == 270 { loop.mpc.solver.settings.maxIterations = 0 }
            if k == 330 { loop.request(.manual) }
            if k == 350 { loop.request(.mpc) }
            let report = loop.step(now: now)
            let u = loop.outputs
            for l in 0..<2 {
                #expect(abs(u[l] - previous[l]) <= Self.rate + 1e-9, "sample \(k) MV \(l) moved \(u[l] - previous[l])")
            }
            if let t = report.transition {
                transitions.append(t)
                for l in 0..<2 { maxJumpAtSwitch = max(maxJumpAtSwitch, abs(u[l] - previous[l])) }
                // The slope check alone cannot tell a bump: the PIDs have the same rate limit, so a PID that starts
                // from the wrong output walks away at full rate and passes it. A PID (or the operator) takes over
                // from exactly where the MVs were; the MPC starts from them and moves at most one step.
                if t.to == .pid || t.to == .manual {
                    for l in 0..<2 {
                        #expect(
                            abs(u[l] - previous[l]) <= 1e-9,
                            "sample \(k): \(t.from)→\(t.to) moved MV \(l) by \(u[l] - previous[l]) at the switch")
                    }
                }
            }
            previous = u
            plant.advance(levels: &h, voltages: (u[0], u[1]), duration: 10)
        }
        let summary = transitions.map { "\($0.from)→\($0.to) \($0.reason)" }
        #expect(transitions.count >= 8, "\(summary)")
        #expect(transitions.contains { $0.to == .manual && $0.reason == .operatorRequest })
        #expect(transitions.first?.to == .mpc && transitions.first?.reason == .operatorRequest)
        #expect(transitions.contains { $0.to == .pid && $0.reason == .operatorRequest })
        #expect(transitions.contains { $0.to == .pid && $0.reason == .badQuality(.manipulatedVariable, index: 0) })
        #expect(transitions.contains { $0.to == .mpc && $0.reason == .healthyPeriodElapsed })
        #expect(
            transitions.contains {
                if case .solverNotOptimal = $0.reason { return $0.to == .pid }
                return false
            }, "\(summary)")
        #expect(maxJumpAtSwitch <= Self.rate + 1e-9)
    }

    @Test func badMeasurementInPIDModeFallsBackToManualAndHolds() throws {
        let (loop, plant) = try makeLoop(autoReturn: nil)
        let h = plant.steadyState(voltages: (3, 3))
        loop.request(.pid)
        for k in 0..<20 {
            let now = UInt64(k) * 10_000_000_000
            loop.setMeasurement(0, value: k >= 10 ? .nan : plant.sensorGain * h.0, good: true, timestamp: now)
            loop.setMeasurement(1, value: plant.sensorGain * h.1, good: true, timestamp: now)
            loop.setInputReadback(0, good: true, timestamp: now)
            loop.setInputReadback(1, good: true, timestamp: now)
            let before = loop.outputs
            let report = loop.step(now: now)
            if k == 10 {
                #expect(report.transition?.to == .manual)
                #expect(report.transition?.reason == .badQuality(.controlledVariable, index: 0))
                #expect(loop.outputs == before)
            }
        }
        #expect(loop.mode == .manual)
    }
}
