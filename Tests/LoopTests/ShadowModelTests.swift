import Configuration
import Foundation
import LoopRuntime
import ModbusDriver
import Tags
import TestSupport
import Testing

/// A candidate in shadow beside a wrong model in force, on the quadruple-tank simulator (decision 0036).
@Suite struct ShadowModelTests {
    @Test("the plant's model in shadow predicts better than a wrong model in force, whose alert goes on")
    func shadowBeatsWrongActiveModel() throws {
        let plant = try TankScenario.plant()
        defer { plant.stop() }
        let s = TankScenario.speed
        let right = TankScenario.config(port: plant.port, periodMilliseconds: 50)
            .replacingOccurrences(of: "@DIR@", with: "/tmp")
            .replacingOccurrences(of: "kpi_window: 10m", with: "kpi_window: 4s\n    model_alert_nrmse: 0.002")
        // The model in force: B a third of the plant's, so every MV move is under-predicted.
        let wrong = right.replacingOccurrences(
            of: "b: \(TankScenario.matrix(TankScenario.b, scale: s))",
            with: "b: \(TankScenario.matrix(TankScenario.b, scale: s / 3))")
        #expect(wrong != right)
        let truth = try ConfigurationLoader.parse(yaml: right, file: "right.yaml").configuration.loops[0]
        let configuration = try ConfigurationLoader.parse(yaml: wrong, file: "wrong.yaml").configuration
        #expect(configuration.loops[0].modelAlertNRMSE == 0.002)
        let table = TagTable(definitions: configuration.tags)
        let poller = try ModbusPoller(
            device: configuration.devices[0], pollGroups: configuration.pollGroups, table: table)
        poller.start()
        defer { poller.stop() }
        let runner = try LoopRunner(
            definition: configuration.loops[0],
            bind: { name in table.index(of: name).map { LoopTagBinding(table: table, index: $0, driver: poller) } })
        runner.start()
        defer { runner.stop() }
        #expect(eventually(timeout: 10) { runner.snapshot().mode == "mpc" })
        try runner.setShadow(model: LoopModelContent(truth), version: 3)
        #expect(runner.shadowModelVersion == 3)
        // Setpoint steps keep the MVs moving through the 4 s window (80 cycles; horizon 40 cycles).
        for k in 0..<8 {
            try runner.setSetpoint(cv: "tank1/level", TankScenario.h0.0 + (k % 2 == 0 ? 1 : 0))
            try runner.setSetpoint(cv: "tank2/level", TankScenario.h0.1 + (k % 2 == 0 ? 0 : 0.8))
            Thread.sleep(forTimeInterval: 1.5)
        }
        let snapshot = runner.snapshot()
        let active = try #require(snapshot.modelNRMSE)
        let shadow = try #require(snapshot.shadowNRMSE)
        print("prediction NRMSE: model in force \(active), shadow \(shadow)")
        #expect(shadow < active)
        #expect(snapshot.modelDegraded == true)
        #expect(snapshot.shadowVersion == 3)
        try runner.setShadow(model: nil, version: nil)
        #expect(runner.snapshot().shadowVersion == nil)
    }
}
