import Synchronization

/// Fans reported tag changes out to a fixed set of consumers (history, publisher, control), each with a bounded
/// queue of its own.
///
/// Queues are allocated once, so publishing never allocates; the lock is held only to copy one small value.
/// A consumer that falls behind loses its oldest changes first and the loss is counted, so a stalled consumer
/// can never grow memory or stall the pollers.
public final class ChangeFeed: @unchecked Sendable {
    private let queues: [Queue]

    /// Builds a feed with `consumers` queues of `capacity` changes each.
    public init(consumers: Int, capacity: Int = 65_536) {
        queues = (0..<consumers).map { _ in Queue(capacity: capacity) }
    }

    public var consumerCount: Int { queues.count }

    /// Adds a change to every consumer's queue.
    public func publish(_ change: TagChange) {
        // Indexed loop, not for-in: in unoptimized builds the for-in iterator reads elements through a generic
        // coroutine whose frame is sometimes heap-allocated, which would break the poll path's zero-allocation test.
        var i = 0
        while i < queues.count {
            queues[i].push(change)
            i += 1
        }
    }

    /// Moves up to `buffer.count` of consumer `consumer`'s oldest changes into `buffer`; returns how many.
    public func drain(consumer: Int, into buffer: UnsafeMutableBufferPointer<TagChange>) -> Int {
        queues[consumer].pop(into: buffer)
    }

    /// Changes consumer `consumer` lost because its queue was full.
    public func dropped(consumer: Int) -> UInt64 { queues[consumer].dropped }

    /// Changes waiting in consumer `consumer`'s queue.
    public func pending(consumer: Int) -> Int { queues[consumer].count }

    private final class Queue: @unchecked Sendable {
        private struct State: ~Copyable {
            var head = 0
            var count = 0
            var dropped: UInt64 = 0
        }

        private let capacity: Int
        private let storage: UnsafeMutablePointer<TagChange>
        private let state = Mutex(State())

        init(capacity: Int) {
            self.capacity = max(1, capacity)
            storage = .allocate(capacity: self.capacity)
            storage.initialize(repeating: TagChange(tag: 0, sample: .initial), count: self.capacity)
        }

        deinit { storage.deallocate() }

        func push(_ change: TagChange) {
            state.withLock { s in
                if s.count == capacity {
                    s.head = (s.head + 1) % capacity
                    s.count -= 1
                    s.dropped += 1
                }
                storage[(s.head + s.count) % capacity] = change
                s.count += 1
            }
        }

        func pop(into buffer: UnsafeMutableBufferPointer<TagChange>) -> Int {
            state.withLock { s in
                let n = min(s.count, buffer.count)
                for i in 0..<n { buffer[i] = storage[(s.head + i) % capacity] }
                s.head = (s.head + n) % capacity
                s.count -= n
                return n
            }
        }

        var dropped: UInt64 { state.withLock { $0.dropped } }
        var count: Int { state.withLock { $0.count } }
    }
}
