import CAllocCounter
import Testing

@testable import Control

/// The per-cycle paths must not touch the heap once running (fixed memory on the control cycle).
@Suite struct AllocationTests {
    @Test func counterSeesAllocations() {
        let before = ep_alloc_count_thread()
        let array = [Int](repeating: 1, count: Int.random(in: 100...200))
        #expect(ep_alloc_count_thread() > before)
        #expect(array.count >= 100)
    }

    @Test func mpcStepAllocatesNothing() throws {
        let plant = QuadrupleTank.minimumPhase
        let h0 = plant.steadyState(voltages: (3, 3))
        let mpc = try ModelPredictiveController(
            model: plant.linearModel(voltages: (3, 3), period: 10),
            configuration: MPCConfiguration(
                predictionHorizon: 30, controlHorizon: 10,
                outputs: [
                    CVSettings(target: .setpoint(0.5 * h0.0 + 0.5), softHigh: 7.5),
                    CVSettings(target: .range(low: 6, high: 6.6), softLow: 5.5, softHigh: 7.5),
                ],
                inputs: [
                    MVSettings(
                        moveWeight: 0.5, low: 0.5, high: 6, maxIncrease: 0.1, maxDecrease: 0.1, target: 3,
                        targetWeight: 0.01),
                    MVSettings(moveWeight: 0.5, low: 0.5, high: 6, maxIncrease: 0.1, maxDecrease: 0.1),
                ]))
        var h = h0
        var y = [0.0, 0.0]
        var u = [3.0, 3.0]
        var output = [3.0, 3.0]
        let none: [Double] = []
        var allocations: UInt64 = 0
        var iterations = 0
        for k in 0..<300 {
            y[0] = plant.sensorGain * h.0
            y[1] = plant.sensorGain * h.1
            let before = ep_alloc_count_thread()
            let result = mpc.step(measurement: y, disturbance: none, appliedInput: u, output: &output)
            if k == 150 { try mpc.setTarget(0, .setpoint(0.5 * h0.0 - 0.5)) }
            let after = ep_alloc_count_thread()
            if k >= 2 { allocations += after - before }
            iterations += result.iterations
            u[0] = output[0]
            u[1] = output[1]
            plant.advance(levels: &h, voltages: (u[0], u[1]), duration: 10)
        }
        #expect(allocations == 0)
        #expect(iterations > 0)  // the QP really worked (active-set changes happened)
    }

    @Test func controlLoopStepAllocatesNothing() throws {
        let plant = QuadrupleTank.minimumPhase
        let h0 = plant.steadyState(voltages: (3, 3))
        let mvs = [MVSettings(low: 0.5, high: 6, maxIncrease: 0.1, maxDecrease: 0.1), MVSettings(low: 0.5, high: 6)]
        let mpc = try ModelPredictiveController(
            model: plant.linearModel(voltages: (3, 3), period: 10),
            configuration: MPCConfiguration(
                predictionHorizon: 30, controlHorizon: 10,
                outputs: [CVSettings(target: .setpoint(0.5 * h0.0 + 0.3)), CVSettings(target: .setpoint(0.5 * h0.1))],
                inputs: mvs))
        let pids = try [0, 1].map { _ in
            try PIDController(settings: PIDSettings(gain: 1, integralTime: 60, period: 10), initialOutput: 3)
        }
        let loop = try ControlLoop(
            mpc: mpc, pids: pids, pairings: [PIDPairing(cv: 0, mv: 0), PIDPairing(cv: 1, mv: 1)],
            supervisor: SupervisorSettings(autoReturnAfterNanoseconds: 100_000_000_000), initialOutputs: [3, 3])
        var h = h0
        var allocations: UInt64 = 0
        var modes = 0
        for k in 0..<200 {
            let now = UInt64(k) * 10_000_000_000
            loop.setMeasurement(0, value: plant.sensorGain * h.0, good: true, timestamp: now)
            loop.setMeasurement(1, value: plant.sensorGain * h.1, good: true, timestamp: now)
            loop.setInputReadback(0, good: !(100..<105).contains(k), timestamp: now)
            loop.setInputReadback(1, good: true, timestamp: now)
            if k == 3 { loop.request(.mpc) }
            let before = ep_alloc_count_thread()
            let report = loop.step(now: now)
            let after = ep_alloc_count_thread()
            if k >= 5 { allocations += after - before }
            if report.transition != nil { modes += 1 }
            let u = loop.outputs
            plant.advance(levels: &h, voltages: (u[0], u[1]), duration: 10)
        }
        #expect(allocations == 0)
        #expect(modes >= 3)  // manual→mpc, mpc→pid (readback), pid→mpc (healthy)
    }

    /// A plant test's cycles (entering TEST, moving, a CV leaving its band, the return) allocate nothing either:
    /// the sequence was laid out when the test was built (decision 0034).
    @Test func plantTestCyclesAllocateNothing() throws {
        let plant = QuadrupleTank.minimumPhase
        let h0 = plant.steadyState(voltages: (3, 3))
        let mvs = [MVSettings(low: 0.5, high: 6, maxIncrease: 0.1, maxDecrease: 0.1), MVSettings(low: 0.5, high: 6)]
        let mpc = try ModelPredictiveController(
            model: plant.linearModel(voltages: (3, 3), period: 10),
            configuration: MPCConfiguration(
                predictionHorizon: 30, controlHorizon: 10,
                outputs: [CVSettings(target: .setpoint(0.5 * h0.0)), CVSettings(target: .setpoint(0.5 * h0.1))],
                inputs: mvs))
        let pids = try [0, 1].map { _ in
            try PIDController(settings: PIDSettings(gain: 1, integralTime: 60, period: 10), initialOutput: 3)
        }
        let loop = try ControlLoop(
            mpc: mpc, pids: pids, pairings: [PIDPairing(cv: 0, mv: 0), PIDPairing(cv: 1, mv: 1)],
            initialOutputs: [3, 3])
        let completing = try PlantTest(
            cycles: 40, offsets: [(0..<40).map { ($0 / 5) % 2 == 0 ? 0.4 : -0.4 }, []],
            bandLow: [-.infinity, -.infinity], bandHigh: [.infinity, .infinity])
        let aborting = try PlantTest(
            cycles: 200, offsets: [[Double](repeating: 2, count: 200), []], bandLow: [-.infinity, -.infinity],
            bandHigh: [plant.sensorGain * h0.0 + 0.3, .infinity])
        var h = h0
        var allocations: UInt64 = 0
        var ends: [TransitionReason] = []
        for k in 0..<200 {
            let now = UInt64(k) * 10_000_000_000
            loop.setMeasurement(0, value: plant.sensorGain * h.0, good: true, timestamp: now)
            loop.setMeasurement(1, value: plant.sensorGain * h.1, good: true, timestamp: now)
            loop.setInputReadback(0, good: true, timestamp: now)
            loop.setInputReadback(1, good: true, timestamp: now)
            if k == 2 { loop.request(.mpc) }
            if k == 10 { loop.beginTest(completing) }
            if k == 80 { loop.beginTest(aborting) }
            let before = ep_alloc_count_thread()
            let report = loop.step(now: now)
            let after = ep_alloc_count_thread()
            if k >= 5 { allocations += after - before }
            if let t = report.transition, t.from == .test { ends.append(t.reason) }
            let u = loop.outputs
            plant.advance(levels: &h, voltages: (u[0], u[1]), duration: 10)
        }
        #expect(allocations == 0)
        #expect(ends.count == 2 && ends.first == .testEnded(.completed), "\(ends)")
    }
}
