import Foundation

/// The one thread of a device whose tags are computed from a loop rather than polled (`LoopStateDevice`,
/// `LoopMonitorDevice`): started once, asked to stop and waited for, and its state for `driverStatus`. The owner's
/// own shared fields are guarded by the same `cond`, which its thread also waits on between passes, so a stop request
/// or a command wakes it at once.
final class ComputedDeviceThread: @unchecked Sendable {
    let cond = NSCondition()
    private let name: String
    private let finished = DispatchSemaphore(value: 0)
    // Guarded by `cond`.
    private var running = false
    private var thread: Thread?
    /// Set by `stop()`; read under `cond`.
    private(set) var stopRequested = false

    init(name: String) { self.name = name }

    /// Starts `body` on the thread unless it runs already; `body` returns once `stopRequested` is seen.
    func start(_ body: @escaping @Sendable () -> Void) {
        let t = cond.withLock { () -> Thread? in
            guard !running else { return nil }
            running = true
            let t = Thread { [self] in
                body()
                cond.withLock {
                    running = false
                    thread = nil
                }
                finished.signal()
            }
            t.name = name
            thread = t
            return t
        }
        t?.start()
    }

    /// Asks the thread to stop, wakes it, and waits until it has.
    func stop() {
        let wasRunning = cond.withLock {
            stopRequested = true
            cond.broadcast()
            return thread != nil
        }
        if wasRunning { finished.wait() }
    }

    /// "connected" while the thread runs and has not been asked to stop, else "stopped"; call under `cond`.
    var state: String { running && !stopRequested ? "connected" : "stopped" }
}
