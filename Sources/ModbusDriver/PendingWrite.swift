import Modbus
import Synchronization
import Tags

/// A checked write, ready for the poller thread: the tag, its plan entry, and the words (or bit) to send.
struct WriteOperation: Sendable {
    var tag: Int
    var entry: PlanEntry
    var area: ModbusArea
    var address: Int
    var words: [UInt16]
    var bit: Bool
}

/// A write waiting for the poller thread, and the caller waiting for its result.
final class PendingWrite: @unchecked Sendable {
    let operation: WriteOperation
    private let waker = Waker()
    // 0 queued, 1 taken by the poller, 2 abandoned by the caller
    private let state = Atomic<Int>(0)
    private let result = Mutex<Result<ModbusWriteResult, ModbusWriteError>?>(nil)

    /// Monotonic nanoseconds when the write was queued; its age is checked when the poller takes it.
    let queuedAt: Int64

    init(_ operation: WriteOperation) {
        self.operation = operation
        queuedAt = monotonicNanoseconds()
    }

    /// The poller claims the write; false if the caller already gave up.
    func begin() -> Bool { state.compareExchange(expected: 0, desired: 1, ordering: .acquiringAndReleasing).exchanged }

    func complete(_ r: Result<ModbusWriteResult, ModbusWriteError>) {
        result.withLock { $0 = r }
        waker.signal()
    }

    func await(until deadline: Int64) -> Result<ModbusWriteResult, ModbusWriteError>? {
        while true {
            if let r = result.withLock({ $0 }) { return r }
            if monotonicNanoseconds() >= deadline {
                // Abandon only if not started; once the poller has it, the device sees it, so report its outcome.
                if state.compareExchange(expected: 0, desired: 2, ordering: .acquiringAndReleasing).exchanged {
                    return nil
                }
                waker.wait(until: monotonicNanoseconds() + 50_000_000)
                continue
            }
            waker.wait(until: deadline)
        }
    }
}
