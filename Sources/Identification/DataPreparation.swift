// From history rows to identification data: a uniform grid at the loop period over the stretches where
// every signal was usable, offsets removed per stretch, and a record of what was left out and why.

/// Why a history sample may not be used for identification. The caller derives it from the sample's
/// quality, the MV's limits and the loop's mode; this module does no I/O and knows nothing of tags.
public enum SampleCondition: UInt8, Sendable, Equatable {
    case usable
    /// Not good quality (device error, uncertain, disconnected).
    case badQuality
    /// The MV sat at a limit, so the plant did not see the move the data implies.
    case saturated
    /// The loop was in manual or another mode where the data is not a test of this model.
    case manual
}

/// One signal as history keeps it: samples at irregular times (report by exception), each value holding
/// until the next sample, with a condition per sample.
public struct SignalHistory: Sendable, Equatable {
    public var name: String
    /// Seconds, ascending (any epoch; only differences matter).
    public var timestamps: [Double]
    public var values: [Double]
    public var conditions: [SampleCondition]

    /// `conditions` nil means every sample is usable.
    public init(name: String, timestamps: [Double], values: [Double], conditions: [SampleCondition]? = nil) {
        self.name = name
        self.timestamps = timestamps
        self.values = values
        self.conditions = conditions ?? [SampleCondition](repeating: .usable, count: timestamps.count)
    }
}

/// Why a stretch of the grid was left out of identification.
public enum ExclusionReason: String, Sendable, Equatable {
    case badQuality
    case saturated
    case manual
    /// No sample yet, or the last one is older than `maximumSampleAge`.
    case noData
    /// A value that is NaN or infinite.
    case nonFinite
    /// Usable, but shorter than `minimumSegmentSamples`: too short to say anything about dynamics.
    case tooShort
}

/// A stretch of time left out, for the report ("left out 10:02–10:17, MV1 manual").
public struct ExcludedStretch: Sendable, Equatable {
    /// Start time (s) of the first grid sample left out.
    public var start: Double
    /// End time (s): the last grid sample left out plus one period.
    public var end: Double
    public var reason: ExclusionReason
    /// The signal that caused it (the first one in inputs-then-outputs order); nil for `tooShort`.
    public var signal: String?

    public init(start: Double, end: Double, reason: ExclusionReason, signal: String?) {
        self.start = start
        self.end = end
        self.reason = reason
        self.signal = signal
    }
}

/// One uninterrupted stretch of uniform samples, offsets removed.
public struct DataSegment: Sendable, Equatable {
    /// Time (s) of the first sample.
    public var startTime: Double
    /// inputs[i][k]: input i at sample k, minus `inputOffsets[i]`.
    public var inputs: [[Double]]
    public var outputs: [[Double]]
    /// What was subtracted (the segment mean, or 0 when offsets are kept); add back for engineering units.
    public var inputOffsets: [Double]
    public var outputOffsets: [Double]

    public var count: Int { outputs.first?.count ?? inputs.first?.count ?? 0 }

    public init(
        startTime: Double, inputs: [[Double]], outputs: [[Double]], inputOffsets: [Double], outputOffsets: [Double]
    ) {
        self.startTime = startTime
        self.inputs = inputs
        self.outputs = outputs
        self.inputOffsets = inputOffsets
        self.outputOffsets = outputOffsets
    }
}

/// Identification data: uniform segments at one period, the names, and what was excluded.
public struct PreparedData: Sendable, Equatable {
    public var period: Double
    public var inputNames: [String]
    public var outputNames: [String]
    public var segments: [DataSegment]
    public var excluded: [ExcludedStretch]

    public var inputCount: Int { inputNames.count }
    public var outputCount: Int { outputNames.count }
    public var sampleCount: Int { segments.reduce(0) { $0 + $1.count } }

    /// Prepared data from segments already uniform (tests, benchmarks, or a caller that resampled itself).
    public init(
        period: Double, inputNames: [String], outputNames: [String], segments: [DataSegment],
        excluded: [ExcludedStretch] = []
    ) {
        self.period = period
        self.inputNames = inputNames
        self.outputNames = outputNames
        self.segments = segments
        self.excluded = excluded
    }

    /// One segment from uniform arrays (inputs[i][k], outputs[j][k]), means removed when `removeOffsets`.
    public init(
        period: Double, inputs: [[Double]], outputs: [[Double]], removeOffsets: Bool = true, startTime: Double = 0
    ) throws(IdentificationError) {
        guard period.isFinite && period > 0 else {
            throw IdentificationError(.invalidOption, "period is \(period); expected a finite value > 0")
        }
        let count = outputs.first?.count ?? 0
        guard !inputs.isEmpty, !outputs.isEmpty, count > 0 else {
            throw IdentificationError(.insufficientData, "expected at least one input and one output with samples")
        }
        for (name, signals) in [("input", inputs), ("output", outputs)] {
            for (index, signal) in signals.enumerated() {
                guard signal.count == count else {
                    throw IdentificationError(
                        .dimension, "\(name) \(index) has \(signal.count) samples; expected \(count)")
                }
                if let k = signal.firstIndex(where: { !$0.isFinite }) {
                    throw IdentificationError(.nonFinite, "\(name) \(index) sample \(k) is \(signal[k])")
                }
            }
        }
        let segment = DataPreparation.segment(startTime: startTime, inputs: inputs, outputs: outputs, removeOffsets)
        self.init(
            period: period, inputNames: inputs.indices.map { "u\($0 + 1)" },
            outputNames: outputs.indices.map { "y\($0 + 1)" }, segments: [segment])
    }
}

/// Resamples signal histories to the loop period over the stretches where every signal is usable.
///
/// Why zero-order hold and not interpolation: history stores changes by exception, so a value is the
/// truth until the next row; interpolating between rows would invent ramps that never happened.
public struct DataPreparation: Sendable {
    /// The loop period (s): the grid spacing, and the period of the models identified from it.
    public var period: Double
    /// Usable stretches with fewer samples are dropped (and reported as `tooShort`). Set it near the settling
    /// time: each segment costs the fit its own initial state and level, so segments much shorter than the
    /// settling time say little about steady-state gain (the quadruple tank cut into 30 segments of two time
    /// constants each came out with gains 12–16 % off; 10 segments longer than the settling time, within 5 %).
    public var minimumSegmentSamples: Int
    /// A held value older than this (s) counts as missing; nil trusts report by exception indefinitely.
    public var maximumSampleAge: Double?
    /// Subtract each signal's mean per segment (identification works in deviation variables).
    public var removeOffsets: Bool
    /// Grid window (s); nil: from the latest first sample to the latest last sample of all signals.
    public var window: ClosedRange<Double>?

    public init(
        period: Double, minimumSegmentSamples: Int = 100, maximumSampleAge: Double? = nil, removeOffsets: Bool = true,
        window: ClosedRange<Double>? = nil
    ) {
        self.period = period
        self.minimumSegmentSamples = minimumSegmentSamples
        self.maximumSampleAge = maximumSampleAge
        self.removeOffsets = removeOffsets
        self.window = window
    }

    /// Builds the uniform segments and the exclusion report.
    public func prepare(inputs: [SignalHistory], outputs: [SignalHistory]) throws(IdentificationError) -> PreparedData {
        guard period.isFinite && period > 0 else {
            throw IdentificationError(.invalidOption, "period is \(period); expected a finite value > 0")
        }
        guard !inputs.isEmpty, !outputs.isEmpty else {
            throw IdentificationError(.insufficientData, "expected at least one input and one output signal")
        }
        let signals = inputs + outputs
        for signal in signals {
            guard signal.values.count == signal.timestamps.count, signal.conditions.count == signal.timestamps.count
            else {
                throw IdentificationError(
                    .dimension,
                    "\(signal.name): \(signal.timestamps.count) timestamps, \(signal.values.count) values, "
                        + "\(signal.conditions.count) conditions; expected equal counts")
            }
            guard !signal.timestamps.isEmpty else {
                throw IdentificationError(.insufficientData, "\(signal.name) has no samples")
            }
            for k in 1..<signal.timestamps.count where !(signal.timestamps[k] >= signal.timestamps[k - 1]) {
                throw IdentificationError(
                    .invalidOption, "\(signal.name): timestamp \(k) is before timestamp \(k - 1); expected ascending")
            }
        }
        let start = window?.lowerBound ?? signals.map { $0.timestamps[0] }.max()!
        let end = window?.upperBound ?? signals.map { $0.timestamps[$0.timestamps.count - 1] }.max()!
        guard end >= start else {
            return PreparedData(
                period: period, inputNames: inputs.map(\.name), outputNames: outputs.map(\.name), segments: [])
        }
        let gridCount = Int(((end - start) / period + 1e-9).rounded(.down)) + 1
        // A sample stamped a hair after a grid time (clock jitter) still counts for it.
        let tolerance = period * 1e-6

        var cursor = [Int](repeating: -1, count: signals.count)
        var excluded = [ExcludedStretch]()
        var segments = [DataSegment]()
        var current = [[Double]](repeating: [], count: signals.count)
        var currentStart = start
        var pending: ExcludedStretch?

        func closeSegment(at time: Double) {
            let count = current[0].count
            guard count > 0 else { return }
            if count >= minimumSegmentSamples {
                segments.append(
                    Self.segment(
                        startTime: currentStart, inputs: Array(current[0..<inputs.count]),
                        outputs: Array(current[inputs.count...]), removeOffsets))
            } else {
                excluded.append(ExcludedStretch(start: currentStart, end: time, reason: .tooShort, signal: nil))
            }
            current = [[Double]](repeating: [], count: signals.count)
        }
        func closePending() {
            if let stretch = pending { excluded.append(stretch) }
            pending = nil
        }

        var row = [Double](repeating: 0, count: signals.count)
        for k in 0..<gridCount {
            let t = start + Double(k) * period
            var reason: ExclusionReason?
            var culprit: String?
            for (s, signal) in signals.enumerated() {
                var j = cursor[s]
                while j + 1 < signal.timestamps.count && signal.timestamps[j + 1] <= t + tolerance { j += 1 }
                cursor[s] = j
                guard reason == nil else { continue }
                let why: ExclusionReason?
                if j < 0 {
                    why = .noData
                } else if let age = maximumSampleAge, t - signal.timestamps[j] > age {
                    why = .noData
                } else if !signal.values[j].isFinite {
                    why = .nonFinite
                } else {
                    switch signal.conditions[j] {
                    case .usable: why = nil
                    case .badQuality: why = .badQuality
                    case .saturated: why = .saturated
                    case .manual: why = .manual
                    }
                }
                if let why {
                    reason = why
                    culprit = signal.name
                } else {
                    row[s] = signal.values[j]
                }
            }
            if let reason {
                if current[0].isEmpty == false { closeSegment(at: t) }
                if let open = pending, open.reason == reason, open.signal == culprit {
                    pending?.end = t + period
                } else {
                    closePending()
                    pending = ExcludedStretch(start: t, end: t + period, reason: reason, signal: culprit)
                }
            } else {
                closePending()
                if current[0].isEmpty { currentStart = t }
                for s in 0..<signals.count { current[s].append(row[s]) }
            }
        }
        closePending()
        closeSegment(at: start + Double(gridCount) * period)
        excluded.sort { $0.start < $1.start }
        return PreparedData(
            period: period, inputNames: inputs.map(\.name), outputNames: outputs.map(\.name), segments: segments,
            excluded: excluded)
    }

    static func segment(startTime: Double, inputs: [[Double]], outputs: [[Double]], _ removeOffsets: Bool)
        -> DataSegment
    {
        func centred(_ signals: [[Double]]) -> ([[Double]], [Double]) {
            guard removeOffsets else { return (signals, [Double](repeating: 0, count: signals.count)) }
            var offsets = [Double]()
            var out = [[Double]]()
            for signal in signals {
                let mean = signal.reduce(0, +) / Double(Swift.max(signal.count, 1))
                offsets.append(mean)
                out.append(signal.map { $0 - mean })
            }
            return (out, offsets)
        }
        let (u, uOffsets) = centred(inputs)
        let (y, yOffsets) = centred(outputs)
        return DataSegment(startTime: startTime, inputs: u, outputs: y, inputOffsets: uOffsets, outputOffsets: yOffsets)
    }
}
