import Foundation
import Tags
import Testing

@testable import Configuration

/// `monitors:`: watched loops, each mistake reported at the line and column of the value at fault.
@Suite struct MonitorConfigurationTests {
    static let plant = """
        devices:
          - name: plc
            type: modbus_tcp
            host: 127.0.0.1
        tags:
          - {name: flow, device: plc, area: input_register, address: 0, type: float32, scaling: {raw_low: 0, raw_high: 1000, eng_low: 0, eng_high: 200}}
          - {name: flow_sp, device: plc, area: input_register, address: 2, type: float32}
          - {name: valve, device: plc, area: input_register, address: 4, type: float32, scaling: {raw_low: 0, raw_high: 1000, eng_low: 0, eng_high: 100}}
          - {name: auto, device: plc, area: coil, address: 0, type: bool}
          - {name: label, device: plc, area: holding_register, address: 10, type: string(4)}
          - {name: pump, device: plc, area: holding_register, address: 20, type: float32, writable: true, limits: {min: 0, max: 10}}
        monitors:

        """

    func load(_ monitors: String) throws(ConfigurationError) -> AgentConfiguration {
        try ConfigurationLoader.parse(yaml: Self.plant + monitors, file: "plant.yaml").configuration
    }

    func errors(_ monitors: String) -> [ConfigDiagnostic] {
        do {
            _ = try load(monitors)
            return []
        } catch {
            return error.errors
        }
    }

    @Test func aMonitorLoadsWithAmplitudeAndOutputRangeFromItsTags() throws {
        let c = try load(
            """
              - {name: FIC-101, pv: flow, sp: flow_sp, op: valve, auto: auto, dead_time: 4s, period: 500ms, window: 30m}
            """)
        let m = try #require(c.monitors.first)
        #expect(m.name == "FIC-101" && m.pv == "flow" && m.sp == "flow_sp" && m.op == "valve" && m.auto == "auto")
        #expect(m.deadTimeSeconds == 4 && m.periodMilliseconds == 500 && m.windowMilliseconds == 1_800_000)
        // 1 % of the PV's engineering span (0…200); the output's range from its scaling.
        #expect(m.amplitude == 2)
        #expect(m.outputLow == 0 && m.outputHigh == 100)
        // No period given: four dead times.
        #expect(m.effectiveOscillationPeriodSeconds == 16)
    }

    @Test func aBareDeadTimeIsRefusedAtItsValue() {
        let e = errors("  - {name: f, pv: flow, sp: flow_sp, op: valve, dead_time: 4}\n")
        #expect(e.count == 1)
        #expect(e.first?.message.contains("needs a time unit") == true)
        #expect(e.first?.line == 13 && e.first?.column == 60)
    }

    @Test func anUnknownOrTextTagIsRefusedAtItsValue() {
        let e = errors(
            """
              - name: f
                pv: flwo
                sp: label
                op: valve
                dead_time: 2s
            """)
        #expect(e.count == 2)
        #expect(e[0].message.contains("pv 'flwo' is not a configured tag") && e[0].hint?.contains("'flow'") == true)
        #expect(e[0].line == 14 && e[0].column == 9)
        #expect(e[1].message.contains("sp 'label'") && e[1].line == 15)
    }

    @Test func aPVWithoutSpanNeedsAnAmplitudeAndNamesMustBeUnique() {
        let e = errors(
            """
              - {name: f, pv: flow_sp, sp: flow_sp, op: valve, dead_time: 2s}
              - {name: f, pv: flow, sp: flow_sp, op: valve, dead_time: 2s, amplitude: 1}
            """)
        #expect(e.map(\.line) == [13, 14])
        #expect(e[0].message.contains("no span") && e[0].hint?.contains("amplitude") == true)
        #expect(e[1].message.contains("defined twice"))
    }

    /// The window is the monitor's memory in samples: the default hour at a 10 ms period would be 360,000.
    @Test func aWindowOfTooManySamplesIsRefusedEvenByDefault() {
        let e = errors("  - {name: f, pv: flow, sp: flow_sp, op: valve, dead_time: 1s, period: 10ms}\n")
        #expect(e.count == 1)
        #expect(e.first?.message.contains("holds 360000") == true)
        #expect(e.first?.line == 13 && e.first?.column == 72)
    }

    /// The agent's own loops can be watched through their state tags, with the span of the tag behind each.
    @Test func anAgentLoopIsWatchedThroughItsStateTags() throws {
        let loop = """
            loops:
              - name: tank
                period: 100ms
                cvs:
                  - {tag: flow, setpoint: 12}
                mvs:
                  - {tag: pump, low: 0, high: 8, rate: 1, pid: {cv: flow, gain: 1, integral_time: 10s}}
                model: {type: state_space, a: [[0.9]], b: [[0.1]], c: [[1]], operating_point: {mvs: [3], cvs: [12]}}

            """
        let c = try ConfigurationLoader.parse(
            yaml: Self.plant
                + "  - {name: tank, pv: loop/tank/cv/flow/value, sp: loop/tank/cv/flow/setpoint, "
                + "op: loop/tank/mv/pump/value, dead_time: 1s}\n" + loop,
            file: "plant.yaml"
        ).configuration
        let m = try #require(c.monitors.first)
        #expect(m.amplitude == 2)
        #expect(m.outputLow == 0 && m.outputHigh == 10)
        let e = errors("  - {name: tank, pv: loop/other/cv/flow/value, sp: flow_sp, op: valve, dead_time: 1s}\n")
        #expect(e.count == 1 && e.first?.message.contains("'loop/other/cv/flow/value' is not a configured tag") == true)
    }
}
