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
/// accumulating integrated absolute error per CV, time per mode, time at each limit per MV, time beyond each soft
/// limit, violation events and the worst violation per CV, and the load disturbances the oscillation detector saw.
/// The window's figures are the sum of the buckets (the maximum, for the worst violation).
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
    /// Per bucket, as Doubles: [start, nanoseconds, manual, pid, mpc, iae×ny, saturated×nu, loads×ny,
    /// atLow×nu, atHigh×nu, atRate×nu, belowSoft×ny, aboveSoft×ny, violations×ny, worst×ny]; `Column` names the
    /// offsets.
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
    // Soft-limit violations per CV: the limits, the hysteresis band and which side the CV is beyond (−1, 0, 1).
    let softLow: UnsafeMutablePointer<Double>
    let softHigh: UnsafeMutablePointer<Double>
    let band: UnsafeMutablePointer<Double>
    let violating: UnsafeMutablePointer<Double>
    static let loadLimit = 10.0

    /// What an MV was doing in a cycle, as bits of `add`'s `limits` (saturated = at low or high).
    enum MVLimit {
        static let low: UInt8 = 1
        static let high: UInt8 = 2
        static let rate: UInt8 = 4
    }

    /// Offsets of the bucket columns.
    struct Column {
        let iae: Int, saturated: Int, loads: Int, atLow: Int, atHigh: Int, atRate: Int
        let belowSoft: Int, aboveSoft: Int, violations: Int, worst: Int

        init(ny: Int, nu: Int) {
            iae = 5
            saturated = iae + ny
            loads = saturated + nu
            atLow = loads + ny
            atHigh = atLow + nu
            atRate = atHigh + nu
            belowSoft = atRate + nu
            aboveSoft = belowSoft + ny
            violations = aboveSoft + ny
            worst = violations + ny
        }
    }
    let column: Column

    /// The window's figures: seconds are covered time, per mode, and per MV and CV condition.
    struct Window {
        var seconds: Double
        var modes: [Double]
        var iae: [Double]
        var saturated: [Double]
        var loads: [Double]
        var atLow: [Double]
        var atHigh: [Double]
        var atRate: [Double]
        var belowSoft: [Double]
        var aboveSoft: [Double]
        var violations: [Double]
        /// Largest distance beyond a soft limit (engineering units), 0 when none.
        var worst: [Double]
    }

    /// `softLow`/`softHigh` are the CVs' soft limits (±infinity when none) and `hysteresis` how far back inside a
    /// CV must come before its next excursion counts as a new violation event.
    init(
        cvs ny: Int, mvs nu: Int, windowNanoseconds: Int64, amplitude: [Double], ultimatePeriod: [Double],
        period: Double, softLow: [Double]? = nil, softHigh: [Double]? = nil, hysteresis: [Double]? = nil
    ) {
        self.ny = ny
        self.nu = nu
        bucketNanoseconds = max(1, windowNanoseconds / Int64(Self.bucketCount))
        column = Column(ny: ny, nu: nu)
        stride = column.worst + ny
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
        self.softLow = make { softLow?[$0] ?? -.infinity }
        self.softHigh = make { softHigh?[$0] ?? .infinity }
        band = make { max(0, hysteresis?[$0] ?? 0) }
        violating = make { _ in 0 }
    }

    func deallocate() {
        for p in [
            buckets, iaeLimit, forgetting, excursion, lastSign, detector, iaeTotal, loadsTotal, softLow, softHigh, band,
            violating,
        ] {
            p.deallocate()
        }
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
            violating[i] = 0
        }
        current = 0
        currentStart = now
        buckets[0] = Double(now)
    }

    /// One step of a CV's violation state with hysteresis: `state` is the side it was beyond (−1 low, 1 high, 0
    /// inside). Beyond a limit it is violating; it stops only once back inside by more than `band`, so noise
    /// around a limit counts one event, not one per crossing. `entered` says a new event began.
    static func violation(
        state: Double, value y: Double, low: Double, high: Double, band: Double
    ) -> (state: Double, entered: Bool) {
        if y > high { return (1, state != 1) }
        if y < low { return (-1, state != -1) }
        if state == 1 && y > high - band { return (1, false) }
        if state == -1 && y < low + band { return (-1, false) }
        return (0, false)
    }

    /// Adds one cycle of `dt` ns ending at `now`: `error[i]` is the control error of CV i (NaN when undefined, e.g.
    /// in MANUAL), `cv[i]` its value (NaN when bad), `limits[l]` the `MVLimit` bits of MV l, `mode` 0 manual /
    /// 1 pid / 2 mpc.
    mutating func add(
        now: Int64, dt: Int64, mode: Int, error: UnsafeMutablePointer<Double>, cv: UnsafeMutablePointer<Double>,
        limits: UnsafeMutablePointer<UInt8>
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
        let c = column
        let h = Double(dt) / 1e9
        b[1] += Double(dt)
        b[2 + mode] += Double(dt)
        for i in 0..<ny {
            detector[i] *= forgetting[i]
            // Soft limits are the plant's, whoever drives the MVs: counted in every mode while the CV is good; a
            // bad CV leaves the violation state as it was, so a dropout inside an excursion is not a second event.
            let y = cv[i]
            if y.isFinite {
                let (lo, hi) = (softLow[i], softHigh[i])
                let step = Self.violation(state: violating[i], value: y, low: lo, high: hi, band: band[i])
                violating[i] = step.state
                if step.entered { b[c.violations + i] += 1 }
                if y < lo {
                    b[c.belowSoft + i] += Double(dt)
                    b[c.worst + i] = max(b[c.worst + i], lo - y)
                } else if y > hi {
                    b[c.aboveSoft + i] += Double(dt)
                    b[c.worst + i] = max(b[c.worst + i], y - hi)
                }
            }
            let e = error[i]
            guard e.isFinite else {
                excursion[i] = 0
                lastSign[i] = 0
                continue
            }
            b[c.iae + i] += abs(e) * h
            iaeTotal[i] += abs(e) * h
            let sign: Double = e > 0 ? 1 : (e < 0 ? -1 : 0)
            if sign != 0 && lastSign[i] != 0 && sign != lastSign[i] {
                if excursion[i] > iaeLimit[i] {
                    b[c.loads + i] += 1
                    loadsTotal[i] += 1
                    detector[i] += 1
                }
                excursion[i] = 0
            }
            if sign != 0 { lastSign[i] = sign }
            excursion[i] += abs(e) * h
        }
        for l in 0..<nu {
            let bits = limits[l]
            if bits & (MVLimit.low | MVLimit.high) != 0 { b[c.saturated + l] += Double(dt) }
            if bits & MVLimit.low != 0 { b[c.atLow + l] += Double(dt) }
            if bits & MVLimit.high != 0 { b[c.atHigh + l] += Double(dt) }
            if bits & MVLimit.rate != 0 { b[c.atRate + l] += Double(dt) }
        }
    }

    /// The window's sums (the worst violation: its maximum).
    func window() -> Window {
        var total = [Double](repeating: 0, count: stride)
        let c = column
        for k in 0..<Self.bucketCount {
            let b = buckets + k * stride
            for j in 1..<c.worst { total[j] += b[j] }
            for j in c.worst..<stride { total[j] = max(total[j], b[j]) }
        }
        func seconds(_ at: Int, _ n: Int) -> [Double] { (0..<n).map { total[at + $0] / 1e9 } }
        func values(_ at: Int, _ n: Int) -> [Double] { (0..<n).map { total[at + $0] } }
        return Window(
            seconds: total[1] / 1e9, modes: seconds(2, 3), iae: values(c.iae, ny), saturated: seconds(c.saturated, nu),
            loads: values(c.loads, ny), atLow: seconds(c.atLow, nu), atHigh: seconds(c.atHigh, nu),
            atRate: seconds(c.atRate, nu), belowSoft: seconds(c.belowSoft, ny), aboveSoft: seconds(c.aboveSoft, ny),
            violations: values(c.violations, ny), worst: values(c.worst, ny))
    }
}
