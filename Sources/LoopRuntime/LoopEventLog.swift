import Control
import Foundation
import History
import Logging
import Synchronization
import Tags

/// Why a loop changed mode, at the runner's level (the supervisor's reasons plus the runner's own decisions).
enum LoopEventReason: Sendable {
    case supervisor(TransitionReason)
    case operatorRequest
    case startup
    case recovered(healthyNanoseconds: Int64)
    case fallbackManual(TransitionReason)
    case retuned
    /// A model version of the ledger was swapped in (decision 0031).
    case modelActivated(version: Int64)
    /// MV `mv`'s writes kept falling behind the loop: the link is slower than the loop period.
    case writesLagging(mv: Int)
    /// An operator started a plant test (decision 0034).
    case testStarted

    /// A fault the loop does not recover from by itself (`recover_after`): the controller's output was not a number.
    var needsOperator: Bool {
        if case .supervisor(.nonFiniteOutput) = self { return true }
        return false
    }

    var isFault: Bool {
        switch self {
        case .supervisor(.testEnded(.completed)), .supervisor(.testEnded(.stopped)): return false
        case .supervisor(let r): return r != .operatorRequest && r != .healthyPeriodElapsed
        case .fallbackManual, .writesLagging: return true
        default: return false
        }
    }
}

/// One mode change, recorded by the loop thread and reported by the writer thread.
struct LoopEvent {
    var from: LoopMode
    var to: LoopMode
    var reason: LoopEventReason
    var wallMicroseconds: Int64
    var bump: Double
}

/// A loop's mode changes on their way from the loop thread to the journal, the audit trail and `edgepilot loops`.
///
/// The loop thread pushes into a fixed single-producer, single-consumer ring: no lock, no allocation, never a wait
/// (a consumer 64 events behind loses the newest). The MV writer thread drains it and does the slow parts — wording
/// the reason, logging, auditing and keeping the last 20 transitions for readers.
final class LoopEventLog: @unchecked Sendable {
    private static let capacity = 64
    private static let kept = 20
    private let definition: LoopDefinition
    private let logger: Logger
    private let audit: @Sendable (AuditRecord) -> Void
    private let ring: UnsafeMutablePointer<LoopEvent>
    private let head = Atomic<Int>(0)
    private let tail = Atomic<Int>(0)
    private let recent = Mutex<[LoopTransitionReport]>([])
    /// Mode changes forced by a fault (sheds), counted by the writer thread as it drains them.
    private let faultTransitions = Atomic<UInt64>(0)
    /// The reason of the newest event pushed; touched by the loop thread only.
    private(set) var lastPushedReason: LoopEventReason?
    /// Told, as events are drained, that a plant test ended: outcome (`completed`, `stopped`, `aborted`), reason
    /// and time. Set once by the runner before its threads start.
    var testEnded: (@Sendable (_ outcome: String, _ reason: String, _ wall: Int64) -> Void)?

    init(definition: LoopDefinition, logger: Logger, audit: @escaping @Sendable (AuditRecord) -> Void) {
        self.definition = definition
        self.logger = logger
        self.audit = audit
        ring = .allocate(capacity: Self.capacity)
        recent.withLock { $0.reserveCapacity(Self.kept + 12) }
    }

    deinit { ring.deallocate() }

    /// Loop thread: records `event` for the writer thread.
    func push(_ event: LoopEvent) {
        lastPushedReason = event.reason
        let h = head.load(ordering: .relaxed)
        let t = tail.load(ordering: .acquiring)
        guard h - t < Self.capacity else { return }  // writer far behind: drop, never block
        ring[h % Self.capacity] = event
        head.store(h + 1, ordering: .releasing)
    }

    /// Whether events wait for `drain()`.
    var hasPending: Bool { head.load(ordering: .acquiring) != tail.load(ordering: .relaxed) }

    /// Writer thread (or after the loop stopped): words, logs and audits every pending event.
    func drain() {
        while true {
            let t = tail.load(ordering: .relaxed)
            guard t != head.load(ordering: .acquiring) else { return }
            let e = ring[t % Self.capacity]
            tail.store(t + 1, ordering: .releasing)
            let text = describe(e.reason)
            let report = LoopTransitionReport(
                time: e.wallMicroseconds, from: e.from.rawValue, to: e.to.rawValue, reason: text,
                bump: (e.bump * 1000).rounded() / 1000)
            recent.withLock {
                $0.append(report)
                if $0.count > Self.kept { $0.removeFirst($0.count - Self.kept) }
            }
            if e.reason.isFault { faultTransitions.add(1, ordering: .relaxed) }
            if e.from == .test && e.to != .test {
                let outcome: String
                switch e.reason {
                case .supervisor(.testEnded(.completed)): outcome = "completed"
                case .supervisor(.testEnded(.stopped)), .operatorRequest: outcome = "stopped"
                default: outcome = "aborted"
                }
                testEnded?(
                    outcome, outcome == "aborted" ? "plant test aborted: \(text)" : text, e.wallMicroseconds)
            }
            let level: Logger.Level = e.reason.isFault ? .warning : .notice
            logger.log(
                level: level, "loop mode \(e.from.rawValue) → \(e.to.rawValue): \(text)",
                metadata: ["loop": "\(definition.name)"])
            audit(
                AuditRecord(
                    timestamp: e.wallMicroseconds, source: "loop:\(definition.name)",
                    tag: "loop/\(definition.name)/mode", value: e.to.rawValue, result: "mode-change",
                    detail: "from \(e.from.rawValue): \(text)"))
        }
    }

    /// Mode changes forced by a fault since the loop started (those already drained by the writer thread).
    var sheds: UInt64 { faultTransitions.load(ordering: .relaxed) }

    /// The last transitions, oldest first.
    var transitions: [LoopTransitionReport] { recent.withLock { $0 } }

    /// A reason as the technician reads it, naming the loop's tags.
    func describe(_ reason: LoopEventReason) -> String {
        func input(_ role: InputRole, _ index: Int) -> String {
            switch role {
            case .controlledVariable: return "CV \(definition.cvs[index].tag)"
            case .manipulatedVariable: return "MV \(definition.mvs[index].tag)"
            case .disturbanceVariable: return "DV \(definition.dvs[index])"
            }
        }
        func supervisor(_ r: TransitionReason) -> String {
            switch r {
            case .operatorRequest: return "operator request"
            case .solverNotOptimal(let n, let status): return "QP not optimal \(n) cycles in a row (\(status.rawValue))"
            case .solveOverBudget(let ns): return "solve took \(Double(ns) / 1000) µs, over the budget"
            case .badQuality(let role, let index): return "bad quality on \(input(role, index))"
            case .staleInput(let role, let index): return "stale \(input(role, index))"
            case .predictionError(let cv): return "prediction error on CV \(definition.cvs[cv].tag)"
            case .healthyPeriodElapsed: return "healthy period elapsed"
            case .nonFiniteOutput(let mv):
                return "controller output for MV \(definition.mvs[mv].tag) is not a finite number"
            case .testEnded(.completed): return "plant test completed"
            case .testEnded(.stopped): return "plant test stopped by the operator"
            case .testEnded(.cvOutsideBand(let cv, let value)):
                let c = definition.cvs[cv]
                return "plant test aborted: CV \(c.tag) at \(formatDouble(value)) left its soft limits "
                    + "\(formatDouble(c.softLow)) … \(formatDouble(c.softHigh))"
            }
        }
        switch reason {
        case .supervisor(let r): return supervisor(r)
        case .operatorRequest: return "operator request"
        case .startup: return "startup: inputs good"
        case .recovered(let ns): return "recovered: inputs healthy for \(Double(ns / 1_000_000) / 1000) s"
        case .fallbackManual(let r): return "fallback to manual: \(supervisor(r))"
        case .retuned: return "retuned"
        case .modelActivated(let version): return "model version \(version) activated"
        case .testStarted: return "plant test started"
        case .writesLagging(let l):
            return "MV writes lagging: MV \(definition.mvs[l].tag) not written before the next cycle's value, "
                + "cycle after cycle (the link is slower than the loop period)"
        }
    }
}
