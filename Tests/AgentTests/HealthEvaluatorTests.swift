import LocalControl
import Testing

/// Each rule of `edgepilot health` at its edges, with the current time passed in.
@Suite struct HealthEvaluatorTests {
    let evaluator = HealthEvaluator()
    let now: Int64 = 1_800_000_000 * 1_000_000
    func ago(_ seconds: Double) -> Int64 { now - Int64(seconds * 1_000_000) }

    func device(
        state: String = "connected", period: Double? = 0.1, age: Double? = 0.05, error: Double? = nil,
        enabled: Bool = true
    ) -> HealthCheck {
        evaluator.device(
            HealthEvaluator.Device(
                name: "plant", enabled: enabled, state: state, pollPeriodSeconds: period,
                lastGoodSample: age.map(ago), lastError: error == nil ? nil : "timeout",
                lastErrorTime: error.map(ago)),
            now: now)
    }

    @Test func deviceConnectedAndFreshIsOK() {
        let check = device()
        #expect(check.status == .ok)
        #expect(check.ageSeconds == 0.05 && check.periodSeconds == 0.1)
    }

    @Test func deviceNotConnectedIsCriticalWithItsState() {
        for state in ["connecting", "backing_off", "reconnecting", "stopped"] {
            let check = device(state: state, error: 1)
            #expect(check.status == .crit)
            #expect(check.reason.contains("not connected") && check.reason.contains("timeout"), "\(check.reason)")
        }
        #expect(device(state: "stopped", enabled: false).status == .ok)
    }

    @Test func aConnectedDeviceThatIsNotAnsweringIsCritical() {
        // Its newest good value may still be young: the state says more than the age does.
        let check = device(state: "not_answering", error: 1)
        #expect(check.status == .crit)
        #expect(
            check.reason.hasPrefix("connected but not answering") && check.reason.contains("timeout"), "\(check.reason)"
        )
    }

    @Test func staleIsCriticalPastThreePeriodsPlusGrace() {
        // 3 × 0.1 s + 2 s grace = 2.3 s.
        #expect(device(age: 2.29).status == .ok)
        let stale = device(age: 2.31)
        #expect(stale.status == .crit && stale.reason.hasPrefix("stale"))
        #expect(device(period: 10, age: 31).status == .ok)
        #expect(device(period: 10, age: 32.1).status == .crit)
        #expect(device(age: nil).status == .crit)
        // Without polled tags (OPC UA subscriptions) freshness is not judged.
        #expect(device(period: nil, age: nil).status == .ok)
    }

    @Test func aRecentErrorIsAWarning() {
        #expect(device(error: 59.9).status == .warn)
        #expect(device(error: 60.1).status == .ok)
        #expect(device(age: 5, error: 1).status == .crit, "stale outranks the error")
    }

    func history(
        pending: Int = 0, commit: Double? = 1, failed: Double? = nil, available: Int64? = 50, total: Int64? = 100
    ) -> [HealthCheck] {
        evaluator.history(
            HealthEvaluator.History(
                path: "/var/lib/edgepilot/history.db", pending: pending, lastCommit: commit.map(ago),
                lastCommitError: failed.map(ago), lastError: failed == nil ? nil : "disk I/O error",
                startedAt: ago(600),
                volumeAvailableBytes: available, volumeTotalBytes: total),
            now: now)
    }

    @Test func historyWritingFollowsTheLastCommit() {
        #expect(history()[0].status == .ok)
        #expect(history(pending: 0, commit: 3600)[0].status == .ok, "nothing waiting is nothing late")
        #expect(history(pending: 5, commit: 9.9)[0].status == .ok)
        #expect(history(pending: 5, commit: 10.1)[0].status == .warn)
        #expect(history(pending: 5, commit: 60.1)[0].status == .crit)
        // No commit since the start counts from the start.
        #expect(history(pending: 5, commit: nil)[0].status == .crit)
    }

    @Test func failingWritesAreCriticalUntilACommitSucceeds() {
        let failing = history(pending: 5, commit: 10, failed: 1)[0]
        #expect(failing.status == .crit && failing.reason.contains("disk I/O error"))
        #expect(history(pending: 5, commit: 1, failed: 10)[0].status == .ok)
    }

    @Test func diskSpaceWarnsBelowTenAndIsCriticalBelowTwoPercent() {
        #expect(history(available: 10, total: 100)[1].status == .ok)
        #expect(history(available: 999, total: 10_000)[1].status == .warn)
        #expect(history(available: 2, total: 100)[1].status == .warn)
        let full = history(available: 199, total: 10_000)[1]
        #expect(full.status == .crit && full.freePercent == 1.99 && full.freeBytes == 199)
        #expect(history(available: nil, total: nil)[1].status == .warn)
    }

    func sparkplug(connected: Bool, state: String, offline: Double?) -> HealthCheck {
        evaluator.sparkplug(
            HealthEvaluator.Sparkplug(
                edgeNode: "g/n", broker: "127.0.0.1:1883", connected: connected, sessionState: state,
                primaryHostID: "scada", notOnlineSince: offline.map(ago)),
            now: now)
    }

    @Test func sparkplugWarnsWhileReconnectingAndIsCriticalPastTwoMinutes() {
        #expect(sparkplug(connected: true, state: "online", offline: nil).status == .ok)
        #expect(sparkplug(connected: false, state: "disconnected", offline: 119).status == .warn)
        let long = sparkplug(connected: false, state: "disconnected", offline: 121)
        #expect(long.status == .crit && long.offlineSeconds == 121)
        let waiting = sparkplug(connected: true, state: "waiting_for_primary_host", offline: 30)
        #expect(waiting.status == .warn && waiting.reason.contains("scada"))
        #expect(sparkplug(connected: true, state: "waiting_for_primary_host", offline: 121).status == .crit)
    }

    @Test func aLoopShedToItsFallbackIsAWarningWithTheReason() {
        #expect(evaluator.loop(name: "tanks", mode: "mpc", requestedMode: "mpc", reason: nil).status == .ok)
        #expect(evaluator.loop(name: "tanks", mode: "manual", requestedMode: "manual", reason: nil).status == .ok)
        let shed = evaluator.loop(name: "tanks", mode: "pid", requestedMode: "mpc", reason: "CV tank1/level stale")
        #expect(shed.status == .warn && shed.reason == "shed from mpc to pid: CV tank1/level stale")
        let starting = evaluator.loop(name: "tanks", mode: "manual", requestedMode: "mpc", reason: nil)
        #expect(starting.status == .warn && starting.reason == "in manual, mpc requested: not started yet")
    }

    @Test func clockBeforeTheBuildDateIsCriticalAndAJumpAWarning() {
        #expect(evaluator.clock(now: now, notBefore: now, step: 0).status == .ok)
        #expect(evaluator.clock(now: now, notBefore: now + 1, step: 0).status == .crit)
        #expect(evaluator.clock(now: now, notBefore: 0, step: 4_900_000).status == .ok)
        #expect(evaluator.clock(now: now, notBefore: 0, step: -5_100_000).status == .warn)
        #expect(evaluator.clock(now: now, notBefore: 0, step: 5_100_000).stepSeconds == 5.1)
    }

    @Test func certificatesWarnWithinThirtyDaysAndAreCriticalOnceExpired() {
        let day: Int64 = 86_400_000_000
        #expect(evaluator.certificate(name: "c", subject: nil, notAfter: now + 31 * day, now: now).status == .ok)
        let soon = evaluator.certificate(name: "c", subject: "CN=edgepilot", notAfter: now + 29 * day, now: now)
        #expect(soon.status == .warn && soon.daysLeft == 29 && soon.reason.contains("CN=edgepilot"))
        #expect(evaluator.certificate(name: "c", subject: nil, notAfter: now - 1, now: now).status == .crit)
        #expect(evaluator.certificate(name: "c", subject: nil, notAfter: nil, now: now).status == .warn)
    }

    @Test func theReportIsItsWorstCheckAndExitCodesFollowNagios() {
        let ok = HealthCheck(component: "a", name: "a", status: .ok, reason: "")
        let warn = HealthCheck(component: "b", name: "b", status: .warn, reason: "")
        let crit = HealthCheck(component: "c", name: "c", status: .crit, reason: "")
        #expect(HealthReport(checks: []).status == .ok)
        #expect(HealthReport(checks: [ok, warn]).status == .warn)
        #expect(HealthReport(checks: [crit, ok, warn]).status == .crit)
        #expect([HealthStatus.ok, .warn, .crit, .unknown].map(\.exitCode) == [0, 1, 2, 3])
    }
}
