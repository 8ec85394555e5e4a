import Configuration
import Tags
import TestSupport
import Testing

@testable import Agent

/// The reload plan decides, from two configurations alone, which devices and loops run on and which restart; the
/// runtime's reload and `config diff` both follow it. The demo plant's file is the running configuration.
@Suite struct ReloadPlanTests {
    let running: AgentConfiguration

    init() throws {
        running = try ConfigurationLoader.load(
            contentsOf: repositoryRoot.appendingPathComponent("Config/demo-plant.yaml").path
        ).configuration
    }

    func item(_ plan: ReloadPlan, _ kind: String, _ name: String) -> ReloadItem? {
        plan.items.first { $0.kind == kind && $0.name == name }
    }

    @Test func theSameFileKeepsEverything() {
        let plan = ReloadPlan(from: running, to: running)
        #expect(!plan.items.isEmpty)
        #expect(plan.items.allSatisfy { $0.action == .keep })
        #expect(plan.needsRestart.isEmpty)
        #expect(!plan.newBirths)
        #expect(plan.summary.description.hasPrefix("kept plant"))
    }

    @Test func aChangedTagRestartsItsDeviceAndTheLoopsOnIt() throws {
        var next = running
        let index = try #require(next.tags.firstIndex { $0.name == "tank3/level" })
        next.tags[index].deadband = 0.5
        let plan = ReloadPlan(from: running, to: next)
        #expect(item(plan, "device", "plant")?.action == .restart)
        #expect(item(plan, "device", "plant")?.reasons == ["tags: 1 changed"])
        let loop = try #require(item(plan, "loop", "tanks"))
        #expect(loop.action == .restart)
        #expect(loop.reasons == ["its device plant restarts"])
        // Deadband is not in the births: no new Sparkplug session.
        #expect(!plan.newBirths)
        #expect(!plan.keepsDevice("plant") && !plan.keepsLoop("tanks"))
    }

    @Test func aRetunedLoopRestartsAloneAndItsDeviceRunsOn() throws {
        var next = running
        next.loops[0].periodMilliseconds *= 2
        let plan = ReloadPlan(from: running, to: next)
        #expect(item(plan, "device", "plant")?.action == .keep)
        #expect(item(plan, "loop", "tanks")?.reasons == ["its definition changed"])
        #expect(plan.keepsDevice("plant") && !plan.keepsLoop("tanks"))
    }

    @Test func addedAndRemovedDevicesAndTagsChangeTheBirths() throws {
        var next = running
        var extra = try #require(next.device(named: "plant"))
        extra.name = "plant2"
        next.devices.append(extra)
        var tag = try #require(next.tags.first { $0.name == "tank1/level" })
        tag.name = "plant2/level"
        tag.device = "plant2"
        next.tags.append(tag)
        let plan = ReloadPlan(from: running, to: next)
        #expect(item(plan, "device", "plant2")?.action == .add)
        #expect(item(plan, "device", "plant")?.action == .keep)
        #expect(plan.newBirths)
        let back = ReloadPlan(from: next, to: running)
        #expect(item(back, "device", "plant2")?.action == .remove)
        #expect(back.summary.removed == ["plant2"])
    }

    /// A reload cannot apply these; before the plan, log level and Sparkplug changes were dropped without a word.
    @Test func settingsAReloadCannotApplyAreNamed() throws {
        var next = running
        next.logLevel = next.logLevel == .debug ? .info : .debug
        next.history.path += ".new"
        next.controlSocketPath += ".new"
        let plan = ReloadPlan(from: running, to: next)
        #expect(plan.needsRestart == ["history settings", "control_socket", "log_level"])
        #expect(plan.items.allSatisfy { $0.action == .keep })
        #expect(plan.summary.description.contains("needs a restart to apply: history settings; control_socket"))
    }

    /// A monitor runs on (its window kept) unless its definition or a device of its tags changes.
    @Test func aMonitorRunsOnUnlessItOrItsDeviceChanges() throws {
        var watched = running
        watched.monitors = [
            MonitorDefinition(
                name: "LIC-1", pv: "tank1/level", sp: "tank2/level", op: "pump1/voltage", deadTimeSeconds: 2)
        ]
        let added = ReloadPlan(from: running, to: watched)
        #expect(item(added, "monitor", "LIC-1")?.action == .add)
        #expect(added.newBirths)
        #expect(ReloadPlan(from: watched, to: watched).keepsMonitor("LIC-1"))

        var retuned = watched
        retuned.monitors[0].deadTimeSeconds = 3
        let changed = ReloadPlan(from: watched, to: retuned)
        #expect(item(changed, "monitor", "LIC-1")?.action == .restart)
        #expect(item(changed, "monitor", "LIC-1")?.reasons == ["its definition changed"])
        #expect(!changed.newBirths)
        #expect(changed.summary.description.contains("monitor LIC-1"))

        var moved = watched
        let index = try #require(moved.tags.firstIndex { $0.name == "tank3/level" })
        moved.tags[index].deadband = 0.5
        #expect(
            item(ReloadPlan(from: watched, to: moved), "monitor", "LIC-1")?.reasons == ["its device plant restarts"])
        #expect(item(ReloadPlan(from: watched, to: running), "monitor", "LIC-1")?.action == .remove)
    }

    /// A monitor on a loop's state tags restarts with the loop (the loop's device is rebuilt).
    @Test func aMonitorOnALoopRestartsWithTheLoop() throws {
        var watched = running
        watched.monitors = [
            MonitorDefinition(
                name: "tanks", pv: "loop/tanks/cv/tank1/level/value", sp: "loop/tanks/cv/tank1/level/setpoint",
                op: "loop/tanks/mv/pump1/voltage/value", deadTimeSeconds: 2)
        ]
        #expect(ReloadPlan(from: watched, to: watched).keepsMonitor("tanks"))
        var retuned = watched
        retuned.loops[0].predictionHorizon += 1
        let plan = ReloadPlan(from: watched, to: retuned)
        #expect(item(plan, "monitor", "tanks")?.reasons == ["its loop tanks restarts"])
    }
}
