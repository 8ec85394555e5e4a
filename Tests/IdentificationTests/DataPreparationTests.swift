import Control
import Identification
import Testing

@Suite struct DataPreparationTests {
    /// MV1 changes by exception (irregular rows) and is in manual 50–60 s; CV1 is sampled every second and
    /// bad 100–105 s and 112–115 s, which leaves 105–112 s too short to keep.
    static func histories() -> (inputs: [SignalHistory], outputs: [SignalHistory]) {
        let mv = SignalHistory(
            name: "MV1", timestamps: [0, 10.3, 50, 60, 120.5, 150], values: [1, 2, 3, 3, 4, 5],
            conditions: [.usable, .usable, .manual, .usable, .usable, .usable])
        let times = (0..<200).map(Double.init)
        let cv = SignalHistory(
            name: "CV1", timestamps: times, values: times,
            conditions: times.map { (100..<105).contains($0) || (112..<115).contains($0) ? .badQuality : .usable })
        return ([mv], [cv])
    }

    @Test func excludesBadManualAndShortStretchesAndSaysWhich() throws {
        let (inputs, outputs) = Self.histories()
        let data = try DataPreparation(period: 1, minimumSegmentSamples: 30).prepare(inputs: inputs, outputs: outputs)
        #expect(
            data.excluded == [
                ExcludedStretch(start: 50, end: 60, reason: .manual, signal: "MV1"),
                ExcludedStretch(start: 100, end: 105, reason: .badQuality, signal: "CV1"),
                ExcludedStretch(start: 105, end: 112, reason: .tooShort, signal: nil),
                ExcludedStretch(start: 112, end: 115, reason: .badQuality, signal: "CV1"),
            ])
        #expect(data.segments.map(\.startTime) == [0, 60, 115])
        #expect(data.segments.map(\.count) == [50, 40, 85])
        #expect(data.sampleCount == 175)
    }

    /// Zero-order hold of report-by-exception rows, and offsets removed per segment.
    @Test func holdsValuesAndRemovesOffsetsPerSegment() throws {
        let (inputs, outputs) = Self.histories()
        let data = try DataPreparation(period: 1, minimumSegmentSamples: 30).prepare(inputs: inputs, outputs: outputs)
        let first = data.segments[0]
        // 10.3 s is after the 10 s grid point, so the value 2 first shows at 11 s.
        #expect(first.inputs[0][10] + first.inputOffsets[0] == 1)
        #expect(first.inputs[0][11] + first.inputOffsets[0] == 2)
        let last = data.segments[2]
        #expect(last.inputs[0][5] + last.inputOffsets[0] == 3)  // t = 120: before the 120.5 s row
        #expect(last.inputs[0][6] + last.inputOffsets[0] == 4)
        for (k, value) in last.outputs[0].enumerated() {
            #expect(abs(value + last.outputOffsets[0] - Double(115 + k)) < 1e-9)
        }
        for segment in data.segments {
            for signal in segment.inputs + segment.outputs {
                #expect(abs(signal.reduce(0, +) / Double(signal.count)) < 1e-9)
            }
        }
        #expect(abs(last.outputOffsets[0] - 157) < 1e-9)
    }

    /// A held value older than maximumSampleAge counts as missing data.
    @Test func staleValuesAreMissing() throws {
        let (inputs, outputs) = Self.histories()
        let data = try DataPreparation(period: 1, minimumSegmentSamples: 30, maximumSampleAge: 30)
            .prepare(inputs: inputs, outputs: outputs)
        // MV1's rows at 10.3 s and 50 s leave 41–49 s stale; its rows at 60 s and 120.5 s leave 91–120 s
        // stale (masking CV1's bad stretches: MV1 is checked first); after its last row at 150 s, 181 s on.
        #expect(
            data.excluded == [
                ExcludedStretch(start: 41, end: 50, reason: .noData, signal: "MV1"),
                ExcludedStretch(start: 50, end: 60, reason: .manual, signal: "MV1"),
                ExcludedStretch(start: 91, end: 121, reason: .noData, signal: "MV1"),
                ExcludedStretch(start: 181, end: 200, reason: .noData, signal: "MV1"),
            ])
        #expect(data.segments.map(\.count) == [41, 31, 60])
    }

    @Test func rejectsInconsistentHistories() {
        let broken = SignalHistory(name: "MV1", timestamps: [0, 2, 1], values: [1, 2, 3])
        let cv = SignalHistory(name: "CV1", timestamps: [0, 1, 2], values: [1, 2, 3])
        #expect(throws: IdentificationError.self) {
            try DataPreparation(period: 1).prepare(inputs: [broken], outputs: [cv])
        }
        #expect(throws: IdentificationError.self) {
            try PreparedData(period: 1, inputs: [[1, 2, 3]], outputs: [[1, 2]])
        }
    }

    /// End to end: garbage in the bad-quality and manual stretches does not reach the fit.
    @Test func identificationIgnoresExcludedStretches() throws {
        let period = 1.0
        let truth = FirstOrderDeadTime(gain: 1.5, timeConstant: 10, deadTime: 3)
        let plant = try StateSpaceModel.fromTransferFunctions([[truth]], period: period)
        let count = 3000
        let u = Plants.gbn(inputs: 1, count: count, settlingTime: 50, period: period, amplitude: 1, seed: 71)[0]
        var y = Plants.noisy(Plants.simulate(plant, inputs: [u])[0], sigma: 0.02, seed: 72)
        var inputConditions = [SampleCondition](repeating: .usable, count: count)
        var outputConditions = [SampleCondition](repeating: .usable, count: count)
        for k in 700..<760 {
            y[k] = 1e3  // a dropped-out transmitter
            outputConditions[k] = .badQuality
        }
        for k in 1800..<1900 {
            y[k] += 5  // operator's manual moves not in u
            inputConditions[k] = .manual
        }
        let times = (0..<count).map { Double($0) * period }
        let data = try DataPreparation(period: period, minimumSegmentSamples: 100).prepare(
            inputs: [SignalHistory(name: "MV", timestamps: times, values: u, conditions: inputConditions)],
            outputs: [SignalHistory(name: "CV", timestamps: times, values: y, conditions: outputConditions)])
        #expect(data.excluded.map(\.reason) == [.badQuality, .manual])
        #expect(data.segments.count == 3)
        let result = try Identifier(options: IdentificationOptions(structure: .fopdt)).identify(data)
        let path = try #require(result.transferFunctions?.first?.paths.first)
        #expect(abs(path.gain - 1.5) < 0.045)
        #expect(abs(path.timeConstant - 10) < 1)
        #expect(abs(path.deadTime - 3) < 1)
        #expect(result.excluded == data.excluded)
        #expect(result.outputs[0].validationFitPercent > 90)
    }
}
