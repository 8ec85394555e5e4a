import Testing

@testable import Control

@Suite struct PIDTests {
    func pid(_ settings: PIDSettings, output: Double = 0) throws -> PIDController {
        try PIDController(settings: settings, initialOutput: output)
    }

    @Test func proportionalAndIntegralActionFollowTheISAForm() throws {
        var c = try pid(PIDSettings(gain: 2, integralTime: 10, period: 1), output: 5)
        c.setAutomatic(setpoint: 1, measurement: 1)
        // Error 0.5: P jumps by 2·0.5 and the integral adds 2·1/10·0.5 each sample (after the output).
        #expect(abs(c.update(setpoint: 1.5, measurement: 1) - 6.0) < 1e-12)
        #expect(abs(c.update(setpoint: 1.5, measurement: 1) - 6.1) < 1e-12)
        var direct = try pid(PIDSettings(gain: 2, integralTime: 10, action: .direct, period: 1), output: 5)
        direct.setAutomatic(setpoint: 1, measurement: 1)
        #expect(abs(direct.update(setpoint: 1.5, measurement: 1) - 4.0) < 1e-12)
    }

    @Test func derivativeActsOnTheMeasurementOnlyAndIsFiltered() throws {
        var c = try pid(
            PIDSettings(
                gain: 1, integralTime: .infinity, derivativeTime: 5, filterRatio: 5, setpointWeight: 0, period: 1))
        c.setAutomatic(setpoint: 0, measurement: 0)
        // A setpoint step with b = 0 and derivative on measurement: no kick at all.
        #expect(c.update(setpoint: 10, measurement: 0) == 0)
        // A measurement step: filtered derivative −K·Td/(Tf + h)·Δy = −5/2 = −2.5, then decays by Tf/(Tf+h) = 0.5.
        #expect(abs(c.update(setpoint: 10, measurement: 1) - (-1 - 2.5)) < 1e-12)
        #expect(abs(c.update(setpoint: 10, measurement: 1) - (-1 - 1.25)) < 1e-12)
    }

    @Test func setpointWeightScalesOnlyTheProportionalKick() throws {
        var c = try pid(PIDSettings(gain: 2, integralTime: 4, setpointWeight: 0.5, period: 1))
        c.setAutomatic(setpoint: 0, measurement: 0)
        #expect(abs(c.update(setpoint: 1, measurement: 0) - 1.0) < 1e-12)  // 2·0.5·1
        #expect(abs(c.update(setpoint: 1, measurement: 0) - 1.5) < 1e-12)  // + 2·1/4·1
    }

    @Test func outputAndRateLimitsHoldAndAntiWindupReleasesQuickly() throws {
        var c = try pid(
            PIDSettings(gain: 1, integralTime: 5, outputHigh: 10, maxIncrease: 0.5, maxDecrease: 2, period: 1),
            output: 0)
        c.setAutomatic(setpoint: 0, measurement: 0)
        var last = 0.0
        // Unreachable setpoint: the output ramps at the rate limit, then sits on the high limit.
        for _ in 0..<200 {
            let u = c.update(setpoint: 100, measurement: 0)
            #expect(u <= 10 && u - last <= 0.5 + 1e-12)
            last = u
        }
        #expect(last == 10)
        // Setpoint now below the measurement: without windup the output leaves the limit at once.
        let u = c.update(setpoint: 0, measurement: 1)
        #expect(u < 10)
        #expect(last - u <= 2 + 1e-12)
    }

    @Test func trackingMakesTheSwitchToAutomaticBumpless() throws {
        var c = try pid(PIDSettings(gain: 3, integralTime: 20, derivativeTime: 2, period: 1), output: 0)
        for k in 0..<10 { c.track(output: 40 + Double(k), setpoint: 5, measurement: 4 + 0.1 * Double(k)) }
        #expect(c.output == 49)
        c.setAutomatic(setpoint: 5, measurement: 4.9)
        // Same measurement as the last tracked sample: the only change is one integral increment
        // plus the decay of the derivative filter state.
        let u = c.update(setpoint: 5, measurement: 4.9)
        #expect(abs(u - 49) < 0.5, "jump \(u - 49)")
    }

    @Test func piClosedLoopOnFirstOrderPlantHasNoOffset() throws {
        var c = try pid(PIDSettings(gain: 1.5, integralTime: 8, outputLow: 0, outputHigh: 100, period: 0.5), output: 0)
        c.setAutomatic(setpoint: 0, measurement: 0)
        var y = 0.0
        for k in 0..<400 {
            let u = c.update(setpoint: 3, measurement: y)
            let disturbance = k > 200 ? -1.0 : 0.0
            y += 0.5 / 5 * (-y + 2 * u + disturbance)  // τ = 5, K = 2
        }
        #expect(abs(y - 3) < 1e-3)
    }

    /// Tuning far outside any plant's range is refused with what was expected (a gain of 1e300 and an integral
    /// time of 1e-300 once made the output NaN and left the loop in PID with a dead MV).
    @Test func rejectsAbsurdTuning() {
        for settings in [
            PIDSettings(gain: 1e300, integralTime: 10, period: 1),
            PIDSettings(gain: 1, integralTime: 1e-300, period: 1),
            PIDSettings(gain: 1, integralTime: 10, derivativeTime: 1e300, period: 1),
        ] {
            #expect(throws: ControlError.self) { _ = try PIDController(settings: settings, initialOutput: 0) }
        }
    }

    /// Whatever the accepted tuning and inputs, the output is a number within the limits: a NaN or infinite sum
    /// holds the last output instead of passing through the clamp.
    @Test func theOutputStaysFiniteAndWithinLimitsAtTheEdgesOfTheAcceptedTuning() throws {
        var c = try pid(
            PIDSettings(
                gain: 1e6, integralTime: 0.1, derivativeTime: 1e5, outputLow: 0.5, outputHigh: 8, period: 1),
            output: 3)
        c.setAutomatic(setpoint: 12, measurement: 12)
        for k in 0..<200 {
            let y = k.isMultiple(of: 2) ? -1e302 : 1e302
            let u = c.update(setpoint: 12, measurement: y)
            #expect(u.isFinite && u >= 0.5 && u <= 8, "cycle \(k): \(u)")
            if !u.isFinite { return }
        }
        // It still controls afterwards: back near the setpoint, the output moves off its limit.
        var last = c.output
        for _ in 0..<50 { last = c.update(setpoint: 12, measurement: 12.001) }
        #expect(last.isFinite && last >= 0.5 && last <= 8)
    }

    @Test func rejectsBadTuning() {
        #expect(throws: ControlError.self) {
            _ = try PIDController(settings: PIDSettings(gain: -1, integralTime: 1, period: 1), initialOutput: 0)
        }
        #expect(throws: ControlError.self) {
            _ = try PIDController(settings: PIDSettings(gain: 1, integralTime: 0, period: 1), initialOutput: 0)
        }
        #expect(throws: ControlError.self) {
            _ = try PIDController(
                settings: PIDSettings(gain: 1, integralTime: 1, outputLow: 2, outputHigh: 1, period: 1),
                initialOutput: 0)
        }
    }
}
