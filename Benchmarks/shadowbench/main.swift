// shadowbench — what a shadow model costs the loop thread per cycle (decision 0036): the quadruple tank in closed
// loop under its MPC, the model in force and a shadow candidate (gains 10 % off) each stepped every cycle by
// `ModelPredictionMonitor`, as `LoopRunner` does after posting its writes. Prints µs per cycle (median, p99) and heap
// allocations per cycle of each, and the shadow's cost as a ratio of the active model's monitor and of the MPC step.
import CAllocCounter
import Control
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

func nowNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

let cycles = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 20_000 : 20_000
let period = 2.0
let plant = QuadrupleTank.minimumPhase
let h0 = plant.steadyState(voltages: (3, 3))
let model = try plant.linearModel(voltages: (3, 3), period: period)
var candidatePlant = plant
candidatePlant.pumpGain = (plant.pumpGain.0 * 1.1, plant.pumpGain.1 * 0.9)
let candidate = try candidatePlant.linearModel(voltages: (3, 3), period: period)
let mpc = try ModelPredictiveController(
    model: model,
    configuration: MPCConfiguration(
        predictionHorizon: 40, controlHorizon: 8,
        outputs: [
            CVSettings(weight: 1, target: .setpoint(0.5 * h0.0), softLow: 1, softHigh: 9),
            CVSettings(weight: 1, target: .setpoint(0.5 * h0.1), softLow: 1, softHigh: 9),
        ],
        inputs: [
            MVSettings(moveWeight: 0.1, low: 0.5, high: 8, maxIncrease: 0.4, maxDecrease: 0.4),
            MVSettings(moveWeight: 0.1, low: 0.5, high: 8, maxIncrease: 0.4, maxDecrease: 0.4),
        ]))
mpc.clock = nowNanoseconds
let window = 300
let active = ModelPredictionMonitor(model: model, horizon: 40, window: window, scale: [10, 10])
let shadow = ModelPredictionMonitor(model: candidate, horizon: 40, window: window, scale: [10, 10])

var levels = h0
var applied = [3.0, 3.0]
var command = [3.0, 3.0]
var y = [0.5 * h0.0, 0.5 * h0.1]
let none = [Double]()
var times: (mpc: [UInt64], active: [UInt64], shadow: [UInt64]) = ([], [], [])
times.mpc.reserveCapacity(cycles)
times.active.reserveCapacity(cycles)
times.shadow.reserveCapacity(cycles)
var allocations: (active: UInt64, shadow: UInt64) = (0, 0)
let yPointer = UnsafeMutablePointer<Double>.allocate(capacity: 2)
let uPointer = UnsafeMutablePointer<Double>.allocate(capacity: 2)
defer {
    yPointer.deallocate()
    uPointer.deallocate()
}
for k in 0..<cycles {
    // Setpoint steps every 100 cycles keep the MVs moving.
    if k % 100 == 0 {
        let up = (k / 100) % 2 == 1
        try mpc.setTarget(0, .setpoint(0.5 * h0.0 + (up ? 0.5 : 0)))
    }
    yPointer[0] = y[0]
    yPointer[1] = y[1]
    uPointer[0] = applied[0]
    uPointer[1] = applied[1]
    let t0 = nowNanoseconds()
    _ = mpc.step(measurement: y, disturbance: none, appliedInput: applied, output: &command)
    let t1 = nowNanoseconds()
    var a0 = ep_alloc_count_thread()
    active.step(measurement: yPointer, applied: uPointer, disturbance: uPointer)
    let t2 = nowNanoseconds()
    allocations.active += ep_alloc_count_thread() - a0
    a0 = ep_alloc_count_thread()
    shadow.step(measurement: yPointer, applied: uPointer, disturbance: uPointer)
    let t3 = nowNanoseconds()
    allocations.shadow += ep_alloc_count_thread() - a0
    times.mpc.append(t1 - t0)
    times.active.append(t2 - t1)
    times.shadow.append(t3 - t2)
    applied = command
    plant.advance(levels: &levels, voltages: (applied[0], applied[1]), duration: period)
    y = [0.5 * levels.0, 0.5 * levels.1]
}

/// Median and p99 (the mean is left out: a few preempted cycles would dominate it).
func microseconds(_ values: [UInt64]) -> (median: Double, p99: Double) {
    let sorted = values.sorted()
    let median = Double(sorted[sorted.count / 2]) / 1000
    let p99 = Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.99))]) / 1000
    return (median, p99)
}
let m = microseconds(times.mpc)
let a = microseconds(times.active)
let s = microseconds(times.shadow)
print("shadowbench: quadruple tank (4 states, 2 MVs, 2 CVs), horizon 40, window \(window), \(cycles) cycles")
print(String(format: "MPC step (model in force):       median %8.3f µs  p99 %8.3f µs", m.median, m.p99))
print(
    String(
        format: "active model prediction:         median %8.3f µs  p99 %8.3f µs  allocations/cycle %.3f", a.median,
        a.p99, Double(allocations.active) / Double(cycles)))
print(
    String(
        format: "shadow model prediction:         median %8.3f µs  p99 %8.3f µs  allocations/cycle %.3f", s.median,
        s.p99, Double(allocations.shadow) / Double(cycles)))
print(
    String(
        format: "medians: shadow / active prediction %.2f, shadow / MPC step %.3f", s.median / max(1e-9, a.median),
        s.median / max(1e-9, m.median)))
print(
    String(
        format: "NRMSE (fraction of a 10 cm span): model in force %.4f, shadow (gains ±10 %%) %.4f", active.worst,
        shadow.worst))
