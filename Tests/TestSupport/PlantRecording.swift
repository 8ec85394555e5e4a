import Foundation

/// What history would hold for a loop over a known plant: one CV fed by two MVs through first order plus dead
/// time, sampled every second, with MV steps at pseudo-random times, measurement noise, a stretch where the CV's
/// quality is bad and a stretch where the loop was in manual. Pure data (no History types), so identification
/// tests can write it with `HistoryStore` and know the true parameters.
public struct PlantRecording: Sendable {
    public enum Value: Sendable, Equatable {
        case number(Double)
        case text(String)
    }

    public struct Row: Sendable {
        public var tag: String
        /// Microseconds since the Unix epoch.
        public var timestamp: Int64
        public var value: Value
        public var good: Bool
    }

    public static let loop = "unit"
    public static let cv = "plant/level"
    public static let mvs = ["plant/valve1", "plant/valve2"]
    public static let modeTag = "loop/unit/mode"

    /// The true plant: gain (CV per MV unit), time constant (s) and dead time (s) of each MV's path.
    public var gains = [2.0, -0.8]
    public var timeConstants = [20.0, 35.0]
    public var deadTimes = [3.0, 0.0]
    /// The CV at the MVs' operating point (3, 3).
    public var level = 50.0
    /// Seconds since the Unix epoch of the first sample (a fixed time, so files and hashes repeat).
    public var start: Int64 = 1_780_000_000
    public var seconds = 3600
    /// Seconds after `start` where the CV is bad (timeout), and where the loop is in manual.
    public var badQuality = 2500..<2560
    public var manual = 1500..<1700
    /// False holds MV 2 still the whole time.
    public var moveSecondMV = true
    public var noise = 0.01

    public init() {}

    public var startMicroseconds: Int64 { start * 1_000_000 }

    /// Every row, in time order per tag: MVs only when they change (report by exception), the CV every second,
    /// the mode at each change (the first before the window, as the agent records it at start).
    public func rows() -> [Row] {
        var state = UInt64(0x2545_f491_4f6c_dd1d)
        func random() -> Double {
            // xorshift64*: deterministic, so every run writes the same file.
            state ^= state >> 12
            state ^= state << 25
            state ^= state >> 27
            return Double((state &* 0x2545_f491_4f6c_dd1d) >> 11) / Double(1 << 53)
        }
        var rows = [Row]()
        let us: (Int) -> Int64 = { (start + Int64($0)) * 1_000_000 }
        rows.append(Row(tag: Self.modeTag, timestamp: us(-30), value: .text("mpc"), good: true))
        rows.append(Row(tag: Self.modeTag, timestamp: us(manual.lowerBound), value: .text("manual"), good: true))
        rows.append(Row(tag: Self.modeTag, timestamp: us(manual.upperBound), value: .text("mpc"), good: true))
        var u = [3.0, 3.0]
        var next = [0, 0]
        var history = [[Double]](repeating: [], count: 2)
        var x = [0.0, 0.0]
        for k in 0..<seconds {
            for i in 0..<2 where k == next[i] {
                if k > 0 && (i == 0 || moveSecondMV) { u[i] = 2 + 2 * random() }
                next[i] = k + 60 + Int(90 * random())
                rows.append(Row(tag: Self.mvs[i], timestamp: us(k), value: .number(u[i]), good: true))
            }
            var y = level
            for i in 0..<2 {
                history[i].append(u[i])
                y += x[i]
                // Exact zero-order hold at 1 s with a whole-second dead time.
                let a = Foundation.exp(-1 / timeConstants[i])
                let delayed = history[i][max(0, history[i].count - 1 - Int(deadTimes[i]))]
                x[i] = a * x[i] + gains[i] * (1 - a) * (delayed - 3)
            }
            let good = !badQuality.contains(k)
            let measured = y + noise * (2 * random() - 1)
            rows.append(Row(tag: Self.cv, timestamp: us(k), value: .number(good ? measured : 0), good: good))
        }
        return rows
    }
}
