import CAllocCounter
import Foundation
import Testing

@testable import LoopMonitoring

/// A seeded source of Gaussian noise, so every synthetic loop is the same on every run.
struct Noise {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func uniform() -> Double {
        // SplitMix64.
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return (Double(z >> 11) + 0.5) / Double(UInt64(1) << 53)
    }
    mutating func gaussian() -> Double {
        let u = uniform()
        let v = uniform()
        return (-2 * log(u)).squareRoot() * cos(2 * Double.pi * v)
    }
}

@Suite struct LoopPerformanceMonitorTests {
    static func settings(
        window: Int = 4000, delay: Int = 3, order: Int = 8, period: Double = 40, amplitude: Double = 0.1,
        low: Double? = nil, high: Double? = nil
    ) -> LoopMonitorSettings {
        LoopMonitorSettings(
            samplePeriod: 1, delaySamples: delay, windowSamples: window, arOrder: order, oscillationPeriod: period,
            amplitude: amplitude, outputLow: low, outputHigh: high)
    }

    /// An error e_t = φ·e_{t−1} + ε_t has ψ_k = φ^k, σ²_e = σ²_ε/(1−φ²) and σ²_mv = σ²_ε·(1−φ^{2d})/(1−φ²), so its
    /// Harris index is 1 − φ^{2d}.
    @Test(arguments: [(0.9, 3), (0.9, 1), (0.7, 5), (0.95, 10)])
    func harrisIndexOfAnAR1ErrorIsOneMinusPhiToTheTwoD(phi: Double, d: Int) throws {
        var monitor = LoopPerformanceMonitor(settings: Self.settings(delay: d))
        var noise = Noise(seed: 11)
        var e = 0.0
        for _ in 0..<6000 {
            e = phi * e + noise.gaussian()
            monitor.add(pv: -e, sp: 0, op: 50, automatic: true)
        }
        let k = monitor.kpis()
        let expected = 1 - pow(phi, Double(2 * d))
        let index = try #require(k.harrisIndex)
        #expect(abs(index - expected) < 0.05, "Harris index \(index), expected \(expected)")
        // The window's variance is σ²_ε/(1−φ²) within sampling error.
        #expect(abs(k.variance / (1 / (1 - phi * phi)) - 1) < 0.15)
    }

    @Test func whiteNoiseErrorIsAtMinimumVariance() throws {
        var monitor = LoopPerformanceMonitor(settings: Self.settings(delay: 4))
        var noise = Noise(seed: 3)
        for _ in 0..<4000 { monitor.add(pv: 10 + noise.gaussian(), sp: 10, op: 50, automatic: true) }
        let index = try #require(monitor.kpis().harrisIndex)
        #expect(index > 0.95)
    }

    @Test func iaeVarianceAndServiceFactorCoverOnlyTheWindow() {
        var monitor = LoopPerformanceMonitor(settings: Self.settings(window: 100, low: 0, high: 100))
        // 100 samples that fall out of the window: large errors, all in manual.
        for _ in 0..<100 { monitor.add(pv: 0, sp: 50, op: 50, automatic: false) }
        // The window: error ±2, automatic except 10 samples in manual and 15 with the output at its high limit.
        for j in 0..<100 {
            let op = j < 15 ? 100.0 : 40
            monitor.add(pv: j % 2 == 0 ? 8 : 12, sp: 10, op: op, automatic: j < 90)
        }
        let k = monitor.kpis()
        #expect(k.samples == 100)
        #expect(abs(k.iae - 200) < 1e-9)
        // Mean 0, every sample ±2: Σe²/(n−1) = 400/99.
        #expect(abs(k.variance - 400.0 / 99) < 1e-9)
        #expect(abs(k.serviceFactor - 0.75) < 1e-12)
    }

    @Test func badSamplesLeaveGapsNotNumbers() {
        var monitor = LoopPerformanceMonitor(settings: Self.settings(window: 50))
        for j in 0..<50 { monitor.add(pv: j % 5 == 0 ? .nan : 9, sp: 10, op: 50, automatic: true) }
        let k = monitor.kpis()
        #expect(abs(k.iae - 40) < 1e-9)
        #expect(k.variance == 0)
        #expect(abs(k.serviceFactor - 0.8) < 1e-12)
    }

    /// Hägglund's amplitude `a` is chosen above the noise: noise of half of it is no oscillation.
    @Test func sustainedOscillationIsDetectedNoiseAndOneUpsetAreNot() {
        var oscillating = LoopPerformanceMonitor(settings: Self.settings())
        var noisy = LoopPerformanceMonitor(settings: Self.settings())
        var upset = LoopPerformanceMonitor(settings: Self.settings())
        var noise = Noise(seed: 5)
        for t in 0..<2000 {
            let sine = sin(2 * Double.pi * Double(t) / 40)
            oscillating.add(pv: 20 - sine, sp: 20, op: 50, automatic: true)
            noisy.add(pv: 20 + 0.05 * noise.gaussian(), sp: 20, op: 50, automatic: true)
            // One load disturbance decaying in 30 s, then noise around the setpoint.
            let load = t >= 500 ? 5 * exp(-Double(t - 500) / 10) : 0
            upset.add(pv: 20 + load + 0.01 * noise.gaussian(), sp: 20, op: 50, automatic: true)
        }
        #expect(oscillating.kpis().oscillating)
        #expect(!noisy.kpis().oscillating)
        #expect(!upset.kpis().oscillating)
    }

    /// A first-order process (τ = 10 s, 2 s dead time) under PI control at 1 s; `valve` maps the controller output
    /// to the valve position, `kc` and `ti` the PI tuning, the output clamped to 0…100 %.
    static func simulate(
        monitor: inout LoopPerformanceMonitor, steps: Int, kc: Double, ti: Double,
        valve: (_ output: Double, _ position: Double) -> Double
    ) {
        let a = exp(-1.0 / 10)
        var y = 40.0
        var x = 40.0
        var u = 40.0
        var delayed = [Double](repeating: 40, count: 2)
        var previousError = 0.0
        let sp = 50.0
        var noise = Noise(seed: 9)
        for _ in 0..<steps {
            let pv = y + 0.02 * noise.gaussian()
            let e = sp - pv
            u = min(100, max(0, u + kc * (e - previousError) + kc / ti * e))
            previousError = e
            x = valve(u, x)
            monitor.add(pv: pv, sp: sp, op: u, automatic: true)
            delayed.append(x)
            y = a * y + (1 - a) * delayed.removeFirst()
        }
    }

    @Test func stickingValveIsFlaggedALinearOneIsNot() {
        let settings = Self.settings(window: 1500, period: 20, amplitude: 0.2)
        // Stick-slip: the valve holds until the output has moved 3 % away, then jumps to it.
        var sticking = LoopPerformanceMonitor(settings: settings)
        Self.simulate(monitor: &sticking, steps: 3000, kc: 0.5, ti: 10) { u, x in abs(u - x) > 3 ? u : x }
        // A linear valve under the same tuning: settles, no oscillation.
        var linear = LoopPerformanceMonitor(settings: settings)
        Self.simulate(monitor: &linear, steps: 3000, kc: 0.5, ti: 10) { u, _ in u }
        // A linear valve tuned too hard: it oscillates (between the output limits), but not from stiction.
        var aggressive = LoopPerformanceMonitor(settings: settings)
        Self.simulate(monitor: &aggressive, steps: 3000, kc: 12, ti: 30) { u, _ in u }

        let s = sticking.kpis()
        let l = linear.kpis()
        let g = aggressive.kpis()
        #expect(s.oscillating && s.stiction, "sticking valve: \(s)")
        #expect(!l.oscillating && !l.stiction, "linear valve: \(l)")
        #expect(g.oscillating && !g.stiction, "aggressive tuning: \(g)")
    }

    /// Fixed memory: once built, sampling and computing every figure allocates nothing (the monitor runs for years
    /// beside the control loops).
    @Test func samplingAndFiguresAllocateNothingAfterInit() {
        var monitor = LoopPerformanceMonitor(settings: Self.settings(window: 500, low: 0, high: 100))
        var noise = Noise(seed: 21)
        for t in 0..<600 {
            let x = Double(t) / 6
            monitor.add(pv: 20 - sin(x) + 0.1 * noise.gaussian(), sp: 20, op: 50 + 10 * cos(x), automatic: true)
        }
        _ = monitor.kpis()
        var a0 = ep_alloc_count_thread()
        for t in 600..<1600 {
            let x = Double(t) / 6
            monitor.add(pv: 20 - sin(x) + 0.1 * noise.gaussian(), sp: 20, op: 50 + 10 * cos(x), automatic: true)
        }
        let sampling = ep_alloc_count_thread() - a0
        a0 = ep_alloc_count_thread()
        var flagged = 0
        for _ in 0..<10 where monitor.kpis().oscillating { flagged += 1 }
        let figures = ep_alloc_count_thread() - a0
        // Each figure on its own, so a failure names the one that allocates.
        a0 = ep_alloc_count_thread()
        _ = monitor.harrisIndex()
        let harris = ep_alloc_count_thread() - a0
        a0 = ep_alloc_count_thread()
        _ = monitor.stictionIndex()
        let stiction = ep_alloc_count_thread() - a0
        #expect(harris == 0)
        #expect(stiction == 0)
        #expect(sampling == 0)
        #expect(figures == 0)
        #expect(flagged == 10)
    }
}
