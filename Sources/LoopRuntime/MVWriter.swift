import Devices
import Foundation
import Logging
import Tags

/// Carries one loop's MV values and heartbeat to the PLC on a thread of its own, through each tag's `DeviceDriver`,
/// so that the loop thread never waits on a device (docs/decisions/0010-real-time-loops.md).
///
/// The mailbox holds one value per MV: a newer value replaces one not yet written (latest wins; the loop counts that
/// as an overrun). Because values can be skipped, each write is rate-limited again here, against what the PLC last
/// confirmed — the only value the PLC is known to hold — so no move the PLC receives exceeds one rate step, however
/// far the link lags the loop (docs/decisions/0018-mv-rate-limits-at-the-plc.md). The outcome of each MV's last
/// write — and whether it failed, in which writing period of the loop (`epoch`) — is kept for the loop's supervisor
/// and for `edgepilot loops`. Between writes the thread also drains the loop's events (logging and auditing are slow
/// and belong here, not on the loop thread).
final class MVWriter: @unchecked Sendable {
    private let count: Int
    private let bindings: [LoopTagBinding]
    private let heartbeatBinding: LoopTagBinding?
    private let events: LoopEventLog
    private let logger: Logger
    private let loopName: String

    // The mailbox, guarded by `lock`; `condition` wakes the thread.
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let values: UnsafeMutablePointer<Double>
    private let dirty: UnsafeMutablePointer<Bool>
    private let valueEpochs: UnsafeMutablePointer<UInt64>
    private var heartbeat: UInt64 = 0
    private var heartbeatDirty = false
    private var stopping = false

    // Outcomes, guarded by `resultLock`.
    private let resultLock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let writes: UnsafeMutablePointer<UInt64>
    private let writeErrors: UnsafeMutablePointer<UInt64>
    private let failed: UnsafeMutablePointer<Bool>
    private let failedEpochs: UnsafeMutablePointer<UInt64>
    private let relimited: UnsafeMutablePointer<UInt64>
    private var lastErrors: [String?]

    // The writer thread's own: one rate step per write, and the range the PLC's value is known to lie in — one
    // value after a confirmed write, widened by a write whose outcome is unknown; NaN until the first write.
    private let rateUp: [Double]
    private let rateDown: [Double]
    private let plcLow: UnsafeMutablePointer<Double>
    private let plcHigh: UnsafeMutablePointer<Double>
    private let plcEpochs: UnsafeMutablePointer<UInt64>

    private var thread: pthread_t?

    /// `bindings` are the MVs in the loop's order; each must have a driver. `rateUp`/`rateDown` are the largest moves
    /// of one write (one cycle's rate step).
    init(
        loopName: String, bindings: [LoopTagBinding], heartbeat: LoopTagBinding?, events: LoopEventLog,
        logger: Logger, rateUp: [Double], rateDown: [Double]
    ) {
        self.loopName = loopName
        self.bindings = bindings
        heartbeatBinding = heartbeat
        self.events = events
        self.logger = logger
        self.rateUp = rateUp
        self.rateDown = rateDown
        count = bindings.count
        let n = max(count, 1)
        values = .allocate(capacity: n)
        values.initialize(repeating: .nan, count: n)
        dirty = .allocate(capacity: n)
        dirty.initialize(repeating: false, count: n)
        valueEpochs = allocateFilled(n, 0)
        failedEpochs = allocateFilled(n, 0)
        relimited = allocateFilled(n, 0)
        plcLow = allocateFilled(n, Double.nan)
        plcHigh = allocateFilled(n, Double.nan)
        plcEpochs = allocateFilled(n, 0)
        writes = .allocate(capacity: n)
        writes.initialize(repeating: 0, count: n)
        writeErrors = .allocate(capacity: n)
        writeErrors.initialize(repeating: 0, count: n)
        failed = .allocate(capacity: n)
        failed.initialize(repeating: false, count: n)
        lastErrors = [String?](repeating: nil, count: count)
        pthread_mutex_init(lock, nil)
        pthread_mutex_init(resultLock, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        stop()
        values.deallocate()
        dirty.deallocate()
        writes.deallocate()
        writeErrors.deallocate()
        failed.deallocate()
        valueEpochs.deallocate()
        failedEpochs.deallocate()
        relimited.deallocate()
        plcLow.deallocate()
        plcHigh.deallocate()
        plcEpochs.deallocate()
        pthread_mutex_destroy(lock)
        pthread_mutex_destroy(resultLock)
        pthread_cond_destroy(condition)
        lock.deallocate()
        resultLock.deallocate()
        condition.deallocate()
    }

    // MARK: - The loop thread's side

    /// Hands over the values of the MVs flagged in `write`, and the heartbeat when given; wakes the writer. `epoch`
    /// numbers the loop's current writing period (see `copyFailures`).
    /// Returns the first MV whose value handed over earlier had not been written yet (it is replaced: an overrun).
    func post(
        values newValues: UnsafePointer<Double>, write: UnsafePointer<Bool>, heartbeat beat: UInt64?, epoch: UInt64
    ) -> Int? {
        var overrun: Int?
        pthread_mutex_lock(lock)
        for l in 0..<count where write[l] {
            if dirty[l] && overrun == nil { overrun = l }
            values[l] = newValues[l]
            valueEpochs[l] = epoch
            dirty[l] = true
        }
        if let beat {
            heartbeat = beat
            heartbeatDirty = true
        }
        pthread_cond_signal(condition)
        pthread_mutex_unlock(lock)
        return overrun
    }

    /// Drops the values not written yet (the loop shed to MANUAL: the operator owns the MVs from now on).
    func discardPending() {
        pthread_mutex_lock(lock)
        for l in 0..<count { dirty[l] = false }
        pthread_mutex_unlock(lock)
    }

    /// Copies whether each MV's last write failed into `target`, counting only failures of values posted in writing
    /// period `epoch` or later: a failure from before the loop last started writing (an outage it sat out in
    /// MANUAL) says nothing about the link now, and must not shed the loop the cycle it resumes.
    func copyFailures(into target: UnsafeMutablePointer<Bool>, since epoch: UInt64) {
        pthread_mutex_lock(resultLock)
        for l in 0..<count { target[l] = failed[l] && failedEpochs[l] >= epoch }
        pthread_mutex_unlock(resultLock)
    }

    /// MV `l`'s writes, failed writes, writes limited again against the PLC's confirmed value, and last error.
    func outcome(_ l: Int) -> (writes: UInt64, errors: UInt64, relimited: UInt64, lastError: String?) {
        pthread_mutex_lock(resultLock)
        defer { pthread_mutex_unlock(resultLock) }
        return (writes[l], writeErrors[l], relimited[l], lastErrors[l])
    }

    // MARK: - The writer thread

    func start() {
        guard thread == nil else { return }
        pthread_mutex_lock(lock)
        stopping = false
        pthread_mutex_unlock(lock)
        thread = startLoopThread { [self] in run() }
    }

    /// Ends the thread after its current write; what was not written yet is dropped (the loop has stopped).
    func stop() {
        guard let t = thread else { return }
        pthread_mutex_lock(lock)
        stopping = true
        pthread_cond_signal(condition)
        pthread_mutex_unlock(lock)
        pthread_join(t, nil)
        thread = nil
    }

    private func run() {
        var pending = [Double](repeating: .nan, count: count)
        var pendingEpochs = [UInt64](repeating: 0, count: count)
        var take = [Bool](repeating: false, count: count)
        while true {
            pthread_mutex_lock(lock)
            while !stopping && !heartbeatDirty && !(0..<count).contains(where: { dirty[$0] }) && !events.hasPending {
                var ts = timespec()
                clock_gettime(CLOCK_MONOTONIC, &ts)
                ts.tv_sec += 1
                pthread_cond_timedwait(condition, lock, &ts)
            }
            if stopping {
                pthread_mutex_unlock(lock)
                return
            }
            for l in 0..<count {
                pending[l] = values[l]
                pendingEpochs[l] = valueEpochs[l]
                take[l] = dirty[l]
                dirty[l] = false
            }
            let beat = heartbeatDirty ? heartbeat : nil
            heartbeatDirty = false
            pthread_mutex_unlock(lock)

            for l in 0..<count where take[l] { write(l, pending[l], epoch: pendingEpochs[l]) }
            if let beat, let b = heartbeatBinding {
                _ = try? b.driver!.writeTag(b.index, .int(Int64(beat)))
            }
            events.drain()
        }
    }

    private func write(_ l: Int, _ wanted: Double, epoch: UInt64) {
        let b = bindings[l]
        let d = b.table.definitions[b.index]
        // One rate step from every value the PLC may hold: from the confirmed one, and from any write whose outcome
        // is unknown (a timeout may have landed). The range is never wider than one step, so this never empties.
        var value = wanted
        if epoch != plcEpochs[l] {
            // The loop starts writing again after sitting in MANUAL: the PLC's value may have been changed by
            // others since; the loop limited this first value against the readback, which is newer than any write.
            plcEpochs[l] = epoch
            plcLow[l] = .nan
            plcHigh[l] = .nan
        }
        if plcLow[l].isFinite {
            value = min(max(value, plcHigh[l] - rateDown[l]), plcLow[l] + rateUp[l])
        }
        if !d.presentsAsDouble { value = value.rounded() }
        let tagValue: TagValue = d.presentsAsDouble ? .double(value) : .int(Int64(value))
        do {
            _ = try b.driver!.writeTag(b.index, tagValue)
            plcLow[l] = value
            plcHigh[l] = value
            pthread_mutex_lock(resultLock)
            writes[l] &+= 1
            if abs(value - wanted) > 1e-9 * max(1, abs(wanted)) { relimited[l] &+= 1 }
            failed[l] = false
            pthread_mutex_unlock(resultLock)
        } catch {
            if case .failed = error, plcLow[l].isFinite {
                plcLow[l] = min(plcLow[l], value)
                plcHigh[l] = max(plcHigh[l], value)
            }
            let text = "\(error)"
            pthread_mutex_lock(resultLock)
            let first = !failed[l]
            writeErrors[l] &+= 1
            failed[l] = true
            failedEpochs[l] = epoch
            lastErrors[l] = text
            pthread_mutex_unlock(resultLock)
            if first {
                logger.warning(
                    "MV write failed", metadata: ["loop": "\(loopName)", "tag": "\(d.name)", "error": "\(text)"])
            }
        }
    }
}

/// Starts a joinable POSIX thread running `body`. The loops use their own threads, not Swift concurrency, so that
/// the loop thread can take a realtime priority and neither thread ever shares a pool with blocking work.
func startLoopThread(_ body: @escaping () -> Void) -> pthread_t {
    final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }
    let box = Unmanaged.passRetained(Box(body))
    var t = pthread_t()
    let rc = pthread_create(
        &t, nil,
        { raw in
            Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
            return nil
        }, box.toOpaque())
    precondition(rc == 0, "cannot create a loop thread: \(rc)")
    return t
}
