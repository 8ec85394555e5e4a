#if canImport(Glibc)
    import Glibc
#endif

/// Monotonic time in nanoseconds: schedules and timeouts must not jump with wall-clock corrections.
@inline(__always) package func monotonicNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

/// Wall-clock time in microseconds since the Unix epoch, for sample timestamps.
@inline(__always) package func unixMicroseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
}

/// A wake-up signal a thread can sleep on until a monotonic deadline; `signal()` ends the sleep early.
///
/// Built on a pthread condition variable bound to CLOCK_MONOTONIC so that stop requests and writes interrupt a
/// poller's sleep (including a long reconnect backoff) at once, and waiting allocates nothing.
package final class Waker: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var signalled = false

    package init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        condition.deallocate()
    }

    package func signal() {
        pthread_mutex_lock(mutex)
        signalled = true
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
    }

    /// Sleeps until `deadline` (monotonic ns) or a signal; returns whether it was signalled. Consumes the signal.
    @discardableResult
    package func wait(until deadline: Int64) -> Bool {
        var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        pthread_mutex_lock(mutex)
        while !signalled {
            if pthread_cond_timedwait(condition, mutex, &ts) == ETIMEDOUT { break }
        }
        let wasSignalled = signalled
        signalled = false
        pthread_mutex_unlock(mutex)
        return wasSignalled
    }
}
