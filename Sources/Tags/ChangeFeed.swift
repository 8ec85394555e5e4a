import Synchronization

/// Fans reported tag changes out to a fixed set of consumers (history, publisher, control), each with a bounded
/// queue of its own.
///
/// Queues are allocated once, so publishing never allocates; the lock is held only to copy one small value.
/// A consumer that falls behind loses its oldest changes first and the loss is counted, so a stalled consumer
/// can never grow memory or stall the pollers.
///
/// A text value travels with its change: its bytes are copied into a ring shared by the consumers, so a consumer
/// that reads the change later still gets the text of that change, not the tag's text by then (a loop's mode going
/// →pid, →manual, →mpc between two history commits must stay three different texts).
public final class ChangeFeed: @unchecked Sendable {
    private let queues: [Queue]
    private let texts: TextRing

    /// Builds a feed with `consumers` queues of `capacity` changes each, and a ring of `textBytes` bytes for text
    /// values (a change whose text was overwritten before its consumer read it gets `nil` from `text(of:)`).
    public init(consumers: Int, capacity: Int = 65_536, textBytes: Int = 262_144) {
        queues = (0..<consumers).map { _ in Queue(capacity: capacity) }
        texts = TextRing(capacity: textBytes)
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

    /// Adds a change carrying a text value to every consumer's queue; the first `length` bytes of `text` go with it.
    public func publish(_ change: TagChange, text: UnsafeRawPointer, length: Int) {
        var change = change
        if !queues.isEmpty { change.textPosition = texts.append(text, length: length) }
        publish(change)
    }

    /// The text a change carried, as it was when it was published; nil when it has none or the ring overwrote it.
    public func text(of change: TagChange) -> String? {
        guard change.textPosition > 0, case .text(let length) = change.sample.value else { return nil }
        return texts.read(at: change.textPosition - 1, length: length)
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

/// Bytes of text values in publication order; positions count every byte ever appended, so a reader can tell
/// whether the bytes it wants were overwritten since. Allocated once; appending never allocates.
private final class TextRing: @unchecked Sendable {
    private let capacity: Int
    private let bytes: UnsafeMutablePointer<UInt8>
    private let written = Mutex<UInt64>(0)

    init(capacity: Int) {
        self.capacity = max(1, capacity)
        bytes = .allocate(capacity: self.capacity)
        bytes.initialize(repeating: 0, count: self.capacity)
    }

    deinit { bytes.deallocate() }

    /// Copies `length` bytes in; returns their position plus one.
    func append(_ text: UnsafeRawPointer, length: Int) -> UInt64 {
        let n = min(max(0, length), capacity)
        return written.withLock { total in
            let start = total
            var i = 0
            while i < n {
                bytes[Int((start + UInt64(i)) % UInt64(capacity))] = text.load(fromByteOffset: i, as: UInt8.self)
                i += 1
            }
            total += UInt64(n)
            return start + 1
        }
    }

    func read(at position: UInt64, length: Int) -> String? {
        let n = min(max(0, length), capacity)
        var copy = [UInt8](repeating: 0, count: n)
        let intact = written.withLock { total -> Bool in
            guard total - position <= UInt64(capacity), position + UInt64(n) <= total else { return false }
            for i in 0..<n { copy[i] = bytes[Int((position + UInt64(i)) % UInt64(capacity))] }
            return true
        }
        return intact ? String(decoding: copy, as: UTF8.self) : nil
    }
}
