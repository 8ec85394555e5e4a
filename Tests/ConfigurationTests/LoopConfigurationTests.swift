import Foundation
import Tags
import Testing

@testable import Configuration

/// `config check` on loops: wiring mistakes a control engineer makes, each reported at the loop's line.
@Suite struct LoopConfigurationTests {
    static let plant = """
        poll_groups:
          - name: fast
            period: 100ms
        devices:
          - name: plc
            type: modbus_tcp
            host: 127.0.0.1
        tags:
          - name: level
            device: plc
            area: input_register
            address: 0
            type: float32
          - name: pump
            device: plc
            area: holding_register
            address: 0
            type: float32
            writable: true
            limits: {min: 0, max: 10}
          - name: valve
            device: plc
            area: holding_register
            address: 2
            type: float32
        """

    func errors(_ loop: String) -> [ConfigDiagnostic] {
        do {
            _ = try ConfigurationLoader.parse(yaml: Self.plant + "\nloops:\n" + loop, file: "plant.yaml")
            return []
        } catch {
            return error.errors
        }
    }

    /// A one-state model in flow style, appended as the last key of a loop item.
    static let model =
        "\n    model: {type: state_space, a: [[0.9]], b: [[0.1]], c: [[1]], operating_point: {mvs: [3], cvs: [12]}}\n"

    @Test func aWellFormedLoopLoads() throws {
        let loop = """
              - name: tank
                period: 100ms
                cvs:
                  - {tag: level, setpoint: 12}
                mvs:
                  - {tag: pump, low: 0, high: 8, rate: 1, pid: {cv: level, gain: 1, integral_time: 10s}}
            """
        let loaded = try ConfigurationLoader.parse(
            yaml: Self.plant + "\nloops:\n" + loop + Self.model, file: "plant.yaml")
        #expect(loaded.configuration.loops.map(\.name) == ["tank"])
    }

    @Test func maxIterationsIsAWholeNumberOfAtLeastOne() throws {
        let loop = """
              - name: tank
                period: 100ms
                cvs:
                  - {tag: level, setpoint: 12}
                mvs:
                  - {tag: pump, low: 0, high: 8, rate: 1, pid: {cv: level, gain: 1, integral_time: 10s}}
                supervisor: {max_iterations: @N@}
            """
        let loaded = try ConfigurationLoader.parse(
            yaml: Self.plant + "\nloops:\n" + loop.replacingOccurrences(of: "@N@", with: "60") + Self.model,
            file: "plant.yaml")
        #expect(loaded.configuration.loops[0].supervisor.maxIterations == 60)
        let e = errors(loop.replacingOccurrences(of: "@N@", with: "0") + Self.model)
        #expect(e.contains { $0.message.contains("max_iterations") }, "\(e)")
    }

    /// The threshold of `loop/NAME/model/degraded` (decision 0036): 0.05 unless set, and above zero.
    @Test func modelAlertNRMSEDefaultsAndMustBePositive() throws {
        let loop = """
              - name: tank
                period: 100ms
                cvs:
                  - {tag: level, setpoint: 12}
                mvs:
                  - {tag: pump, low: 0, high: 8, rate: 1, pid: {cv: level, gain: 1, integral_time: 10s}}
            """
        func load(_ text: String) throws -> LoopDefinition {
            try ConfigurationLoader.parse(yaml: Self.plant + "\nloops:\n" + text + Self.model, file: "plant.yaml")
                .configuration.loops[0]
        }
        #expect(try load(loop).modelAlertNRMSE == 0.05)
        #expect(try load(loop + "\n    model_alert_nrmse: 0.02").modelAlertNRMSE == 0.02)
        let e = errors(loop + "\n    model_alert_nrmse: -1" + Self.model)
        #expect(e.contains { $0.message.contains("model_alert_nrmse must be a number above 0") && $0.line > 0 }, "\(e)")
        // The initial shadow model: a ledger version id (decision 0036).
        #expect(try load(loop).shadowVersion == nil)
        #expect(try load(loop + "\n    shadow: 3").shadowVersion == 3)
        let bad = errors(loop + "\n    shadow: latest" + Self.model)
        #expect(bad.contains { $0.message.contains("'shadow'") && $0.line > 0 }, "\(bad)")
    }

    @Test func mvMustBeWritableAndInsideItsTagLimits() {
        let loop = """
              - name: tank
                period: 100ms
                cvs:
                  - {tag: level, setpoint: 12}
                mvs:
                  - {tag: valve, low: 0, high: 8, rate: 1, pid: {cv: level, gain: 1, integral_time: 10s}}
                  - {tag: pump, low: 0, high: 20, rate: 1, pid: {cv: level, gain: 1, integral_time: 10s}}
            """
        let e = errors(loop + Self.model)
        #expect(e.contains { $0.message.contains("MV 'valve' is not writable") && $0.line >= 27 }, "\(e)")
        #expect(e.contains { $0.message.contains("'pump'") && $0.message.contains("limits") })
    }

    @Test func modelDimensionsMustMatchTheLoop() {
        let loop = """
              - name: tank
                period: 100ms
                cvs:
                  - {tag: level, setpoint: 12}
                mvs:
                  - {tag: pump, low: 0, high: 8, rate: 1, pid: {cv: level, gain: 1, integral_time: 10s}}
                model:
                  type: state_space
                  a: [[0.9, 0], [0, 0.8]]
                  b: [[0.1]]
                  c: [[1, 0]]
                  operating_point: {mvs: [3], cvs: [12]}
            """
        let e = errors(loop)
        #expect(e.contains { $0.message.contains("model B must be 2×1") })
    }

    @Test func unknownTagsAreNamed() {
        let loop = """
              - name: tank
                period: 100ms
                cvs:
                  - {tag: levle, setpoint: 12}
                mvs:
                  - {tag: pump, low: 0, high: 8, rate: 1, pid: {cv: levle, gain: 1, integral_time: 10s}}
            """
        let e = errors(loop + Self.model)
        #expect(e.contains { $0.message.contains("levle") })
    }

    /// The loop's state is served as device `loop-<name>` with tags `loop/<name>/…`; configured ones may not clash.
    @Test func theLoopsOwnDeviceAndTagNamesAreReserved() {
        let loop = """
              - name: tank
                period: 100ms
                cvs:
                  - {tag: level, setpoint: 12}
                mvs:
                  - {tag: pump, low: 0, high: 8, rate: 1, pid: {cv: level, gain: 1, integral_time: 10s}}
            """ + Self.model
        let clashing = Self.plant.replacingOccurrences(of: "  - name: plc", with: "  - name: loop-tank")
            .replacingOccurrences(of: "device: plc", with: "device: loop-tank")
            .replacingOccurrences(of: "  - name: valve", with: "  - name: loop/tank/mode")
        let e: [ConfigDiagnostic]
        do {
            _ = try ConfigurationLoader.parse(yaml: clashing + "\nloops:\n" + loop, file: "plant.yaml")
            e = []
        } catch {
            e = error.errors
        }
        #expect(e.contains { $0.message.contains("served as device 'loop-tank', which is also a configured device") })
        #expect(e.contains { $0.message.contains("tag 'loop/tank/mode'") && $0.message.contains("'loop/tank/'") })
        #expect(e.allSatisfy { $0.file == "plant.yaml" && $0.line > 0 })
        #expect(errors(loop).isEmpty)
    }
}

/// Times in a loop's PID and FOPDT model carry their unit: `30s` is accepted, a bare `3.2` (seconds? minutes?
/// cycles?) is refused at its line and column with what was expected.
@Suite struct LoopUnitsTests {
    static func loop(integral: String, timeConstant: String, deadTime: String = "1s") -> String {
        """
              - name: tank
                period: 100ms
                cvs:
                  - {tag: level, setpoint: 12}
                mvs:
                  - {tag: pump, low: 0, high: 8, rate: 1, pid: {cv: level, gain: 1, integral_time: \(integral)}}
                model:
                  type: fopdt
                  gains:
                    - [{gain: 2, time_constant: \(timeConstant), dead_time: \(deadTime)}]
                  operating_point: {mvs: [3], cvs: [12]}

        """
    }

    func errors(_ loop: String) -> [ConfigDiagnostic] {
        do {
            _ = try ConfigurationLoader.parse(
                yaml: LoopConfigurationTests.plant + "\nloops:\n" + loop, file: "plant.yaml")
            return []
        } catch {
            return error.errors
        }
    }

    @Test func timesWithUnitsAreAccepted() throws {
        let loaded = try ConfigurationLoader.parse(
            yaml: LoopConfigurationTests.plant + "\nloops:\n" + Self.loop(integral: "10s", timeConstant: "1.5m"),
            file: "plant.yaml")
        let loop = try #require(loaded.configuration.loops.first)
        #expect(loop.mvs[0].pid.integralSeconds == 10)
        guard case .transferFunctions(let gains, _) = loop.model else {
            Issue.record("expected an FOPDT model")
            return
        }
        #expect(gains[0][0]?.timeConstant == 90)
        #expect(gains[0][0]?.deadTime == 1)
    }

    @Test func aBareNumberForATimeConstantIsRefusedWithLineAndColumn() {
        let text = Self.loop(integral: "10s", timeConstant: "3.2")
        let found = errors(text)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let k = lines.firstIndex { $0.contains("time_constant") }!
        let line = LoopConfigurationTests.plant.split(separator: "\n", omittingEmptySubsequences: false).count + 2 + k
        let column = lines[k].distance(from: lines[k].startIndex, to: lines[k].range(of: "3.2")!.lowerBound) + 1
        let error = found.first { $0.message.contains("time_constant") }
        #expect(error?.line == line, "\(found)")
        #expect(error?.column == column, "\(found)")
        #expect(error?.message.contains("3.2") == true && error?.hint?.contains("30s") == true, "\(found)")
    }

    @Test func aBareNumberForAPIDIntegralTimeOrDeadTimeIsRefused() {
        #expect(errors(Self.loop(integral: "30", timeConstant: "3s")).contains { $0.message.contains("integral_time") })
        #expect(
            errors(Self.loop(integral: "30s", timeConstant: "3s", deadTime: "2")).contains {
                $0.message.contains("dead_time")
            })
    }
}
