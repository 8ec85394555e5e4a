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
