import Foundation
import Logging
import Synchronization

/// The loop thread's clock: one release every period on an absolute CLOCK_MONOTONIC schedule, with an optional
/// SCHED_FIFO priority.
///
/// The next release is one period after the previous one was due, never after the cycle ran, so lateness does not
/// accumulate; a cycle that runs past its deadline (the next release) skips the releases it overlapped and is
/// counted as missed. Sleeps are cut into slices of at most 100 ms so that `stop()` is prompt.
final class LoopSchedule: @unchecked Sendable {
    let periodNanoseconds: Int64
    private let priority: Int?
    private let loopName: String
    private let logger: Logger
    private let stopping = Atomic<Bool>(false)
    private let policy = Mutex<String>("normal")
    private var thread: pthread_t?

    init(periodNanoseconds: Int64, realtimePriority: Int?, loopName: String, logger: Logger) {
        self.periodNanoseconds = periodNanoseconds
        priority = realtimePriority
        self.loopName = loopName
        self.logger = logger
    }

    /// How the loop thread is scheduled, as `edgepilot loops` shows it (`SCHED_FIFO 50`, or why not).
    var scheduling: String { policy.withLock { $0 } }

    var isRunning: Bool { thread != nil }

    /// Starts the loop thread: `cycle(wake, lateness)` at every release, then `completed(skipped, cycleTime)` with
    /// the releases skipped because the cycle overran (0 normally) and how long the cycle took.
    func start(
        cycle: @escaping (_ wake: Int64, _ lateness: Int64) -> Void,
        completed: @escaping (_ skipped: UInt64, _ cycleNanoseconds: Int64) -> Void
    ) {
        guard thread == nil else { return }
        stopping.store(false, ordering: .releasing)
        thread = startLoopThread { [self] in run(cycle, completed) }
    }

    /// Ends the loop thread after its current cycle and waits for it.
    func stop() {
        guard let t = thread else { return }
        stopping.store(true, ordering: .releasing)
        pthread_join(t, nil)
        thread = nil
    }

    private func run(
        _ cycle: (_ wake: Int64, _ lateness: Int64) -> Void,
        _ completed: (_ skipped: UInt64, _ cycleNanoseconds: Int64) -> Void
    ) {
        if let priority {
            var param = sched_param()
            param.sched_priority = Int32(priority)
            let rc = pthread_setschedparam(pthread_self(), SCHED_FIFO, &param)
            if rc == 0 {
                policy.withLock { $0 = "SCHED_FIFO \(priority)" }
            } else {
                policy.withLock { $0 = "normal: SCHED_FIFO \(priority) refused (\(String(cString: strerror(rc))))" }
                logger.warning(
                    "realtime priority refused; the loop runs with normal scheduling",
                    metadata: ["loop": "\(loopName)", "error": "\(String(cString: strerror(rc)))"])
            }
        }
        var release = loopMonotonicNanoseconds() + periodNanoseconds
        while !stopping.load(ordering: .acquiring) {
            sleep(until: release)
            if stopping.load(ordering: .acquiring) { break }
            let wake = loopMonotonicNanoseconds()
            cycle(wake, wake - release)
            let done = loopMonotonicNanoseconds()
            release += periodNanoseconds
            var skipped: UInt64 = 0
            if done > release {
                let missed = (done - release) / periodNanoseconds + 1
                release += missed * periodNanoseconds
                skipped = UInt64(missed)
            }
            completed(skipped, done - wake)
        }
    }

    private func sleep(until deadline: Int64) {
        while !stopping.load(ordering: .relaxed) {
            let now = loopMonotonicNanoseconds()
            if now >= deadline { return }
            let target = min(deadline, now + 100_000_000)
            var ts = timespec(tv_sec: Int(target / 1_000_000_000), tv_nsec: Int(target % 1_000_000_000))
            _ = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nil)
        }
    }
}
