import Devices
import Foundation

/// Monotonic time in nanoseconds (CLOCK_MONOTONIC), the loops' schedule clock.
@inline(__always) func loopMonotonicNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

/// Wall-clock microseconds since the Unix epoch, the tag tables' timestamp clock.
@inline(__always) func loopWallMicroseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
}

/// A fixed ring of the last `capacity` samples plus the all-time maximum; percentiles are computed by the
/// reader (which sorts a copy), so recording costs one store.
struct SampleRing {
    let capacity: Int
    let values: UnsafeMutablePointer<Int64>
    var count = 0
    var next = 0
    var maximum: Int64 = 0
    /// Samples ever recorded: a reader that remembers it can take only the samples recorded since.
    var total: UInt64 = 0

    init(capacity: Int) {
        self.capacity = capacity
        values = .allocate(capacity: capacity)
        values.initialize(repeating: 0, count: capacity)
    }

    func deallocate() { values.deallocate() }

    mutating func record(_ v: Int64) {
        values[next] = v
        next = (next + 1) % capacity
        count = min(count + 1, capacity)
        if v > maximum { maximum = v }
        total &+= 1
    }

    /// Copies the samples recorded after the reader's `cursor` (the newest ones if more than fit, or than the ring
    /// kept) into `buffer` and moves the cursor to `total`; returns how many it copied.
    func copy(since cursor: inout UInt64, into buffer: UnsafeMutableBufferPointer<Int64>) -> Int {
        let n = Int(min(total &- min(cursor, total), UInt64(count), UInt64(buffer.count)))
        cursor = total
        for k in 0..<n { buffer[k] = values[(next - n + k + capacity) % capacity] }
        return n
    }

    /// p50, p99 of the retained samples and the all-time maximum.
    func summary() -> (p50: Int64, p99: Int64, max: Int64) {
        guard count > 0 else { return (0, 0, 0) }
        let sorted = (0..<count).map { values[$0] }.sorted()
        func at(_ q: Double) -> Int64 { sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * q).rounded()))] }
        return (at(0.5), at(0.99), maximum)
    }
}

/// Loop performance over a rolling window, in fixed memory: the window is cut into `bucketCount` buckets, each
/// accumulating integrated absolute error per CV, time per mode, saturated time per MV and the load disturbances
/// the oscillation detector saw. The window's figures are the sum of the buckets.
///
/// Oscillation detection follows Hägglund (1995, "A control-loop performance monitor"): the integrated absolute
/// error between two zero crossings of the control error is compared with IAE_lim = 2a/ω_u (a the acceptable
/// amplitude, ω_u ≈ 2π/T_i); every excursion above it is a load disturbance, and a loop with more than n_lim = 10
/// of them within the supervision time T_sup = 50·T_i (exponential forgetting) is oscillating.
struct LoopKPIAccumulator {
    static let bucketCount = 60
    let ny: Int
    let nu: Int
    let bucketNanoseconds: Int64
    let stride: Int
    /// Per bucket: [start, nanoseconds, manual, pid, mpc, iae×ny, saturated×nu, loads×ny] as Doubles.
    let buckets: UnsafeMutablePointer<Double>
    var current = 0
    var currentStart: Int64 = -1
    // Oscillation detector per CV.
    let iaeLimit: UnsafeMutablePointer<Double>
    let forgetting: UnsafeMutablePointer<Double>
    let excursion: UnsafeMutablePointer<Double>
    let lastSign: UnsafeMutablePointer<Double>
    let detector: UnsafeMutablePointer<Double>
    let iaeTotal: UnsafeMutablePointer<Double>
    let loadsTotal: UnsafeMutablePointer<Double>
    static let loadLimit = 10.0

    init(
        cvs ny: Int, mvs nu: Int, windowNanoseconds: Int64, amplitude: [Double], ultimatePeriod: [Double],
        period: Double
    ) {
        self.ny = ny
        self.nu = nu
        bucketNanoseconds = max(1, windowNanoseconds / Int64(Self.bucketCount))
        stride = 5 + 2 * ny + nu
        buckets = .allocate(capacity: stride * Self.bucketCount)
        buckets.initialize(repeating: 0, count: stride * Self.bucketCount)
        func make(_ f: (Int) -> Double) -> UnsafeMutablePointer<Double> {
            let p = UnsafeMutablePointer<Double>.allocate(capacity: max(ny, 1))
            for i in 0..<max(ny, 1) { (p + i).initialize(to: i < ny ? f(i) : 0) }
            return p
        }
        // IAE_lim = 2a/ω_u with ω_u = 2π/T_u.
        iaeLimit = make { 2 * amplitude[$0] * ultimatePeriod[$0] / (2 * Double.pi) }
        forgetting = make { max(0, 1 - period / (50 * ultimatePeriod[$0])) }
        excursion = make { _ in 0 }
        lastSign = make { _ in 0 }
        detector = make { _ in 0 }
        iaeTotal = make { _ in 0 }
        loadsTotal = make { _ in 0 }
    }

    func deallocate() {
        for p in [buckets, iaeLimit, forgetting, excursion, lastSign, detector, iaeTotal, loadsTotal] { p.deallocate() }
    }

    /// Starts a new, empty window at `now`.
    mutating func reset(now: Int64) {
        buckets.update(repeating: 0, count: stride * Self.bucketCount)
        for i in 0..<ny {
            excursion[i] = 0
            lastSign[i] = 0
            detector[i] = 0
            iaeTotal[i] = 0
            loadsTotal[i] = 0
        }
        current = 0
        currentStart = now
        buckets[0] = Double(now)
    }

    /// Adds one cycle of `dt` ns ending at `now`: `error[i]` is the control error of CV i (NaN when undefined, e.g.
    /// in MANUAL), `saturated[l]` whether MV l sits at a limit, `mode` 0 manual / 1 pid / 2 mpc.
    mutating func add(
        now: Int64, dt: Int64, mode: Int, error: UnsafeMutablePointer<Double>, saturated: UnsafeMutablePointer<Bool>
    ) {
        if currentStart < 0 { reset(now: now) }
        while now - currentStart >= bucketNanoseconds {
            current = (current + 1) % Self.bucketCount
            currentStart += bucketNanoseconds
            let b = buckets + current * stride
            b.update(repeating: 0, count: stride)
            b[0] = Double(currentStart)
        }
        let b = buckets + current * stride
        let h = Double(dt) / 1e9
        b[1] += Double(dt)
        b[2 + mode] += Double(dt)
        for i in 0..<ny {
            detector[i] *= forgetting[i]
            let e = error[i]
            guard e.isFinite else {
                excursion[i] = 0
                lastSign[i] = 0
                continue
            }
            b[5 + i] += abs(e) * h
            iaeTotal[i] += abs(e) * h
            let sign: Double = e > 0 ? 1 : (e < 0 ? -1 : 0)
            if sign != 0 && lastSign[i] != 0 && sign != lastSign[i] {
                if excursion[i] > iaeLimit[i] {
                    b[5 + ny + nu + i] += 1
                    loadsTotal[i] += 1
                    detector[i] += 1
                }
                excursion[i] = 0
            }
            if sign != 0 { lastSign[i] = sign }
            excursion[i] += abs(e) * h
        }
        for l in 0..<nu where saturated[l] { b[5 + ny + l] += Double(dt) }
    }

    /// The window's sums: covered seconds, seconds per mode, IAE per CV, saturated seconds per MV, loads per CV.
    func window() -> (seconds: Double, modes: [Double], iae: [Double], saturated: [Double], loads: [Double]) {
        var total = [Double](repeating: 0, count: stride)
        for k in 0..<Self.bucketCount {
            let b = buckets + k * stride
            for j in 1..<stride { total[j] += b[j] }
        }
        return (
            total[1] / 1e9, (0..<3).map { total[2 + $0] / 1e9 }, (0..<ny).map { total[5 + $0] },
            (0..<nu).map { total[5 + ny + $0] / 1e9 }, (0..<ny).map { total[5 + ny + nu + $0] }
        )
    }
}
