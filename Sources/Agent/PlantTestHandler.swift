import Foundation
import History
import LocalControl
import LoopRuntime

/// Plant tests in the agent (decision 0034): `edgepilot loop NAME test start|stop|list|show`. A start is planned by
/// the loop (checks, defaults, the moves precomputed on this thread), recorded in the history file, then handed to
/// the loop; its end is recorded when the loop reports it. Every start and stop attempt is audited with the peer's
/// identity, accepted or refused, and so is each test's end.
extension AgentRuntime {
    func handleTest(_ request: ControlRequest, from peer: ControlPeer) -> ControlResponse {
        guard let name = request.loop else { return .failure("the command needs a loop name") }
        let source = peer.auditSource
        let action: String
        switch request.command {
        case .loopTestStart:
            let t = request.plantTest
            action = "start \(t?.signal ?? "?") \((t?.mvs ?? []).joined(separator: ","))"
        case .loopTestStop: action = "stop"
        default: action = ""
        }
        func audit(_ result: String, _ why: String) {
            guard !action.isEmpty else { return }
            recordAudit(
                AuditRecord(
                    timestamp: HistoryClock.now(), source: source, tag: "loop/\(name)/test", value: action,
                    result: result, detail: why))
        }
        guard let runner = current.loops[name] else {
            audit("refused", "unknown loop")
            return .notFound(unknownLoop(name))
        }
        var response = ControlResponse()
        do {
            switch request.command {
            case .loopTestStart:
                guard let wanted = request.plantTest else { throw LoopCommandError("test start needs its parameters") }
                let now = HistoryClock.now()
                var plan = try runner.planTest(wanted, by: source, at: now)
                let record = try ledger.recordTestStart(
                    PlantTestRecord(
                        loop: name, startedAt: now, mvs: plan.report.mvs, signal: plan.report.signal,
                        seed: plan.report.seed, startedBy: source, outcome: "running",
                        detail: Self.json(plan.report)))
                plan.report.id = record.id
                runner.onTestEnd { [weak self] report in
                    // Called on the loop's writer thread: the file write goes to a thread of its own.
                    guard let self else { return }
                    Thread.detachNewThread { self.recordTestEnd(report) }
                }
                do {
                    try runner.run(plan)
                } catch {
                    try? ledger.recordTestEnd(
                        id: record.id, endedAt: HistoryClock.now(), outcome: "aborted", reason: "\(error)",
                        detail: nil)
                    throw error
                }
                audit("ok", "test \(record.id) starts at the next cycle")
                logger.notice(
                    "plant test started",
                    metadata: ["loop": "\(name)", "test": "\(record.id)", "source": "\(source)", "plan": "\(action)"])
                response.tests = [plan.report]
            case .loopTestStop:
                try runner.stopTest()
                audit("ok", "the test stops at the next cycle")
                response.tests = runner.plantTest.map { [$0] } ?? []
            case .loopTestList:
                response.tests = try ledger.tests(loop: name, limit: request.limit ?? 100).map { merge($0, runner) }
            default:
                guard let text = request.value, let id = Int64(text) else {
                    throw LoopCommandError("test show needs a test id ('test list' shows them)")
                }
                guard let record = try ledger.test(id: id), record.loop == name else {
                    return .notFound("loop '\(name)' has no plant test \(id); 'test list' shows them")
                }
                response.tests = [merge(record, runner)]
            }
        } catch let error as LoopCommandError {
            audit("refused", error.description)
            return .failure("\(name): \(error)")
        } catch {
            audit("failed", "\(error)")
            return .failure("\(name): plant test record: \(error)")
        }
        return response
    }

    /// Books a test's end in the history file and the audit trail.
    func recordTestEnd(_ report: PlantTestReport) {
        guard let id = report.id else { return }
        let ended = report.endedAt ?? HistoryClock.now()
        do {
            try ledger.recordTestEnd(
                id: id, endedAt: ended, outcome: report.outcome, reason: report.reason ?? "",
                detail: Self.json(report))
        } catch {
            logger.warning("plant test end not recorded", metadata: ["test": "\(id)", "error": "\(error)"])
        }
        recordAudit(
            AuditRecord(
                timestamp: ended, source: "loop:\(report.loop)", tag: "loop/\(report.loop)/test", value: "end \(id)",
                result: report.outcome, detail: report.reason ?? ""))
        logger.notice(
            "plant test ended",
            metadata: [
                "loop": "\(report.loop)", "test": "\(id)", "outcome": "\(report.outcome)",
                "reason": "\(report.reason ?? "")",
            ])
    }

    /// A recorded test as reported: the plan it was recorded with, the live progress if it is this loop's current
    /// test, else the recorded outcome.
    private func merge(_ record: PlantTestRecord, _ runner: LoopRunner) -> PlantTestReport {
        if let live = runner.plantTest, live.id == record.id, live.outcome == "running" || record.endedAt == nil {
            return live
        }
        var report =
            (try? JSONDecoder().decode(PlantTestReport.self, from: Data(record.detail.utf8)))
            ?? PlantTestReport(
                id: record.id, loop: record.loop, mvs: record.mvs, signal: record.signal, amplitudes: [],
                switchTimeSeconds: 0, durationSeconds: 0, settlingTimeSeconds: 0, seed: record.seed,
                periodMilliseconds: 0, startedAt: record.startedAt, startedBy: record.startedBy, returnMode: "",
                outcome: record.outcome)
        report.id = record.id
        report.endedAt = record.endedAt
        report.reason = record.reason.isEmpty ? nil : record.reason
        // A test whose end was never recorded was cut short by the agent stopping.
        report.outcome = record.endedAt == nil ? "interrupted" : record.outcome
        report.percent = nil
        report.secondsLeft = nil
        return report
    }

    static func json(_ report: PlantTestReport) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(report)).flatMap { String(data: $0, encoding: .utf8) } ?? "{}"
    }
}
