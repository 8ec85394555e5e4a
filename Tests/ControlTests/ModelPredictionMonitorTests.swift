import CAllocCounter
import Testing

@testable import Control

/// The rolling prediction error a shadow model is judged by (decision 0036).
@Suite struct ModelPredictionMonitorTests {
    static func model(gain: Double) throws -> StateSpaceModel {
        try StateSpaceModel.fromTransferFunctions(
            [[FirstOrderDeadTime(gain: gain, timeConstant: 15, deadTime: 2)]], period: 1)
    }

    /// Drives `monitors` with the true plant (gain 2) stepped every 37 cycles, an output offset of 50 and noise.
    static func drive(_ monitors: [ModelPredictionMonitor], cycles: Int) throws {
        let plant = try model(gain: 2)
        var x = [Double](repeating: 0, count: plant.stateCount)
        var state: UInt64 = 0x1234_5678_9abc_def1
        func noise() -> Double {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return (Double(state % 10_000) / 10_000 - 0.5) * 0.01
        }
        var u = 1.0
        for k in 0..<cycles {
            // The monitor is given the MV in force over the period that led to this measurement.
            var y = 50.0 + noise()
            for i in 0..<plant.stateCount { y += plant.c[i] * x[i] }
            for m in monitors { m.step(measurement: [y], applied: [u], disturbance: []) }
            if k % 37 == 0 { u = u == 1 ? 3 : 1 }
            var next = [Double](repeating: 0, count: plant.stateCount)
            for r in 0..<plant.stateCount {
                for i in 0..<plant.stateCount { next[r] += plant.a[r * plant.stateCount + i] * x[i] }
                next[r] += plant.b[r] * (u - 1)
            }
            x = next
        }
    }

    @Test func trueModelPredictsBetterThanAWrongGain() throws {
        let truth = ModelPredictionMonitor(model: try Self.model(gain: 2), horizon: 20, window: 200, scale: [10])
        let wrong = ModelPredictionMonitor(model: try Self.model(gain: 1), horizon: 20, window: 200, scale: [10])
        try Self.drive([truth, wrong], cycles: 150)
        #expect(truth.worst.isNaN, "no figure before a whole window was compared")
        try Self.drive([truth, wrong], cycles: 400)
        #expect(truth.worst < 0.005, "true model NRMSE \(truth.worst)")
        #expect(wrong.worst > 5 * truth.worst, "wrong gain NRMSE \(wrong.worst), true \(truth.worst)")
        truth.step(measurement: [.nan], applied: [1], disturbance: [])
        #expect(truth.worst.isNaN, "a gap restarts the monitor")
    }

    @Test func stepAllocatesNothing() throws {
        let monitor = ModelPredictionMonitor(model: try Self.model(gain: 2), horizon: 20, window: 50)
        let y = UnsafeMutablePointer<Double>.allocate(capacity: 1)
        let u = UnsafeMutablePointer<Double>.allocate(capacity: 1)
        defer {
            y.deallocate()
            u.deallocate()
        }
        var allocations: UInt64 = 0
        for k in 0..<500 {
            y.pointee = 50 + Double(k % 7) * 0.1
            u.pointee = k % 40 < 20 ? 1 : 2
            let before = ep_alloc_count_thread()
            monitor.step(measurement: y, applied: u, disturbance: u)
            allocations += ep_alloc_count_thread() - before
        }
        #expect(allocations == 0)
        #expect(monitor.worst.isFinite)
    }
}
