import Testing

@testable import LoopRuntime

/// Time at MV limits, time beyond CV soft limits and violation events, as the KPI window counts them.
@Suite struct LoopConstraintKPITests {
    /// One CV with soft limits [2, 18] and a hysteresis band of 0.1, one MV; 1 s cycles over a 600 s window.
    final class Harness {
        var kpi = LoopKPIAccumulator(
            cvs: 1, mvs: 1, windowNanoseconds: 600_000_000_000, amplitude: [0.1], ultimatePeriod: [60], period: 1,
            softLow: [2], softHigh: [18], hysteresis: [0.1])
        let error = allocateFilled(1, 0.0)
        let cv = allocateFilled(1, Double.nan)
        let limits = allocateFilled(1, UInt8(0))
        var now: Int64 = 0

        func cycle(_ y: Double, mv bits: UInt8 = 0) {
            now += 1_000_000_000
            cv[0] = y
            limits[0] = bits
            kpi.add(now: now, dt: 1_000_000_000, mode: 2, error: error, cv: cv, limits: limits)
        }

        deinit {
            kpi.deallocate()
            error.deallocate()
            cv.deallocate()
            limits.deallocate()
        }
    }

    @Test("noise around a soft limit is one violation event, not one per crossing")
    func hysteresisCountsOneEventForNoise() {
        let h = Harness()
        for y in [17.0, 18.05, 17.95, 18.02, 17.93, 18.04, 17.96] { h.cycle(y) }
        var w = h.kpi.window()
        #expect(w.violations == [1])
        // Back inside by more than the band ends the event; the next excursion is a second one.
        h.cycle(17.85)
        h.cycle(18.3)
        w = h.kpi.window()
        #expect(w.violations == [2])
        #expect(abs(w.worst[0] - 0.3) < 1e-9)
        // Straight from above the high limit to below the low one: a new event on the other side.
        h.cycle(1.5)
        #expect(h.kpi.window().violations == [3])
        #expect(abs(h.kpi.window().worst[0] - 0.5) < 1e-9)
    }

    @Test("percent of time beyond each soft limit and at each MV limit, over the covered window")
    func percentOfTime() {
        let h = Harness()
        let low = LoopKPIAccumulator.MVLimit.low
        let high = LoopKPIAccumulator.MVLimit.high
        let rate = LoopKPIAccumulator.MVLimit.rate
        // 10 cycles: 3 above the soft high, 1 below the soft low; the MV 2 at low, 4 at high (1 of them also at
        // its rate limit), 1 more at its rate limit only.
        let values = [10.0, 18.5, 19, 18.2, 10, 1.9, 10, 10, 10, 10]
        let bits: [UInt8] = [low, low, high, high | rate, high, high, rate, 0, 0, 0]
        for k in 0..<10 { h.cycle(values[k], mv: bits[k]) }
        let w = h.kpi.window()
        #expect(w.seconds == 10)
        #expect(w.aboveSoft == [3] && w.belowSoft == [1])
        #expect(w.atLow == [2] && w.atHigh == [4] && w.atRate == [2])
        #expect(w.saturated == [6])
        #expect(w.violations == [2])
    }

    @Test("a bad CV neither counts time nor starts a new event when it comes back beyond the limit")
    func badValueKeepsTheEvent() {
        let h = Harness()
        h.cycle(18.5)
        h.cycle(.nan)
        h.cycle(18.4)
        let w = h.kpi.window()
        #expect(w.violations == [1] && w.aboveSoft == [2])
    }

    @Test("events and times leave the window as it rolls on")
    func eventsAgeOut() {
        let h = Harness()
        h.cycle(18.5)
        #expect(h.kpi.window().violations == [1])
        for _ in 0..<700 { h.cycle(10) }
        let w = h.kpi.window()
        #expect(w.violations == [0] && w.aboveSoft == [0] && w.worst == [0])
    }
}
