import Configuration
import Control
import Testing

@testable import LoopRuntime

/// Default MPC weights are per engineering span: two CVs whose spans are 1000× apart (a pressure in bar and a flow
/// in l/h, say) with the same configured weight cost the same for an error of a whole span, and so do MVs.
@Suite struct LoopWeightScalingTests {
    static let yaml = """
        poll_groups:
          - {name: fast, period: 100ms}
        devices:
          - {name: plc, type: modbus_tcp, host: 127.0.0.1}
        tags:
          - {name: pressure, device: plc, area: input_register, address: 0, type: float32, units: bar}
          - {name: flow, device: plc, area: input_register, address: 2, type: float32, units: l/h}
          - name: valve
            device: plc
            area: holding_register
            address: 4
            type: float32
            units: "%"
            writable: true
            limits: {min: 0, max: 100}
          - name: speed
            device: plc
            area: holding_register
            address: 6
            type: float32
            units: rpm
            writable: true
            limits: {min: 0, max: 3000}
        loops:
          - name: unit
            period: 1s
            cvs:
              - {tag: pressure, setpoint: 0.5, soft_low: 0, soft_high: 1}
              - {tag: flow, setpoint: 500, soft_low: 0, soft_high: 1000}
            mvs:
              - {tag: valve, low: 0, high: 100, rate: 5, pid: {cv: pressure, gain: 1, integral_time: 30s}}
              - {tag: speed, low: 0, high: 3000, rate: 100, pid: {cv: flow, gain: 1, integral_time: 30s}}
            model:
              type: fopdt
              gains:
                - [{gain: 0.01, time_constant: 20s, dead_time: 1s}, null]
                - [null, {gain: 0.3, time_constant: 30s, dead_time: 2s}]
              operating_point: {mvs: [50, 1500], cvs: [0.5, 500]}

        """

    @Test func twoCVsAThousandTimesApartInSpanGetComparableEffectiveWeights() throws {
        let d = try #require(try ConfigurationLoader.parse(yaml: Self.yaml, file: "w.yaml").configuration.loops.first)
        let c = LoopFactory.mpcConfiguration(
            d, tuning: LoopTuning(d), targets: [.setpoint(0.5), .setpoint(500)])
        // The cost of an error of one whole span, from the spans as configured (soft limits, tag limits).
        let cvCost = [c.outputs[0].weight * 1 * 1, c.outputs[1].weight * 1000 * 1000]
        #expect(cvCost.max()! / cvCost.min()! < 1.01, "CV costs per span: \(cvCost)")
        let moveCost = [c.inputs[0].moveWeight * 100 * 100, c.inputs[1].moveWeight * 3000 * 3000]
        #expect(moveCost.max()! / moveCost.min()! < 1.01, "MV move costs per span: \(moveCost)")
        // And the controller builds on them.
        _ = try LoopFactory.build(
            d, tuning: LoopTuning(d), targets: [.setpoint(0.5), .setpoint(500)], initialOutputs: [50, 1500])
    }

    @Test func aLoopWithACVWithoutSpanIsWeightedPerEngineeringUnitThroughout() throws {
        let yaml = Self.yaml.replacingOccurrences(
            of: "{tag: flow, setpoint: 500, soft_low: 0, soft_high: 1000}", with: "{tag: flow, setpoint: 500}")
        let d = try #require(try ConfigurationLoader.parse(yaml: yaml, file: "w.yaml").configuration.loops.first)
        #expect(d.cvs.allSatisfy { $0.span == nil } && d.mvs.allSatisfy { $0.span == nil })
        let c = LoopFactory.mpcConfiguration(d, tuning: LoopTuning(d), targets: [.setpoint(0.5), .setpoint(500)])
        #expect(c.outputs.map(\.weight) == [1, 1] && c.inputs.map(\.moveWeight) == [1, 1])
    }
}
