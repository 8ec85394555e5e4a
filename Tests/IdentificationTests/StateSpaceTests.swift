import Control
import Identification
import Testing

/// PO-MOESP on the linearised quadruple tank (plants.md, P−), 2 MVs × 2 CVs, four states.
@Suite struct StateSpaceTests {
    static let period = 2.0

    /// GBN on both pumps (settling time 450 s), 3,000 samples, white noise of 0.01 V on the outputs.
    static func quadrupleTankData(count: Int = 3000, sigma: Double = 0.01) throws -> (
        data: PreparedData, plant: StateSpaceModel, timeConstants: [Double]
    ) {
        let linear = Plants.quadrupleTankLinear()
        let plant = try StateSpaceModel.discretizing(
            continuousA: linear.a, b: linear.b, c: linear.c, period: period)
        let u = Plants.gbn(inputs: 2, count: count, settlingTime: 450, period: period, amplitude: 0.3, seed: 61)
        let clean = Plants.simulate(plant, inputs: u)
        let y = clean.enumerated().map { Plants.noisy($0.element, sigma: sigma, seed: 62 + UInt64($0.offset)) }
        return (try PreparedData(period: period, inputs: u, outputs: y), plant, linear.timeConstants)
    }

    /// Order 4 given: the four time constants within 15 %, the steady-state gains within 5 %, validation fit > 90 %.
    @Test func recoversQuadrupleTankWithOrderGiven() throws {
        let (data, plant, timeConstants) = try Self.quadrupleTankData()
        let result = try Identifier(options: IdentificationOptions(structure: .stateSpace(order: 4))).identify(data)
        let model = try #require(result.stateSpace)
        #expect(model.order == 4)
        let identified = model.poles.compactMap { $0.timeConstant(period: Self.period) }.sorted()
        #expect(identified.count == 4)
        for (estimate, truth) in zip(identified, timeConstants.sorted()) {
            #expect(abs(estimate - truth) < 0.15 * truth)
        }
        let gain = try #require(model.steadyStateGain)
        let trueGain = try plant.steadyStateGain()
        for k in 0..<4 { #expect(abs(gain[k] - trueGain[k]) < 0.05 * abs(trueGain[k])) }
        for output in result.outputs {
            #expect(output.validationFitPercent > 90)
            #expect(output.residuals.isUncorrelatedWithInputs)
        }
        // The Control module takes it as it is, with the same steady-state gain.
        let control = try model.stateSpaceModel()
        let controlGain = try control.steadyStateGain()
        for k in 0..<4 { #expect(abs(controlGain[k] - gain[k]) < 1e-9 * Swift.max(1, abs(gain[k]))) }
    }

    /// Order from the data: the chosen model is within the parsimony margin of the best order tried, no larger
    /// than the true order, and still reproduces the validation data.
    @Test func selectsOrderFromData() throws {
        let (data, _, _) = try Self.quadrupleTankData()
        let result = try Identifier(options: IdentificationOptions(structure: .stateSpace(order: nil))).identify(data)
        let model = try #require(result.stateSpace)
        let best = result.orderCandidates.map(\.validationFitPercent).max()!
        let chosen = try #require(result.orderCandidates.first { $0.order == model.order })
        #expect(chosen.validationFitPercent >= best - 1)
        #expect(model.order >= 3 && model.order <= 4)
        #expect(result.orderCandidates.count == 8)
        for output in result.outputs { #expect(output.validationFitPercent > 85) }
    }

    /// History with a manual stretch and a bad-quality stretch: three segments, the last one validation only
    /// (its initial state and levels fitted on itself). The model must still be the plant.
    @Test func identifiesAcrossSegmentsFromHistory() throws {
        let (data, plant, _) = try Self.quadrupleTankData()
        let segment = data.segments[0]
        let times = (0..<segment.count).map { Double($0) * Self.period }
        func history(_ name: String, _ values: [Double], _ bad: Range<Int>?, _ manual: Range<Int>?) -> SignalHistory {
            SignalHistory(
                name: name, timestamps: times, values: values,
                conditions: (0..<values.count).map { k in
                    if let bad, bad.contains(k) { return .badQuality }
                    if let manual, manual.contains(k) { return .manual }
                    return .usable
                })
        }
        let prepared = try DataPreparation(period: Self.period).prepare(
            inputs: [history("v1", segment.inputs[0], nil, 1200..<1300), history("v2", segment.inputs[1], nil, nil)],
            outputs: [history("y1", segment.outputs[0], 2050..<2100, nil), history("y2", segment.outputs[1], nil, nil)])
        #expect(prepared.segments.map(\.count) == [1200, 750, 900])
        let result = try Identifier(options: IdentificationOptions(structure: .stateSpace(order: 4))).identify(prepared)
        #expect(result.estimationSamples == 1900)  // the third segment only validates
        let model = try #require(result.stateSpace)
        let gain = try #require(model.steadyStateGain)
        let trueGain = try plant.steadyStateGain()
        for k in 0..<4 { #expect(abs(gain[k] - trueGain[k]) < 0.05 * abs(trueGain[k])) }
        for output in result.outputs { #expect(output.validationFitPercent > 90) }
    }

    /// Ten segments (a 5-sample dropout every 300 samples, so each segment outlasts the 450 s settling time):
    /// each segment's initial state and levels are eliminated block by block, and the model is still the plant.
    @Test func identifiesFromTenSegments() throws {
        let (data, plant, _) = try Self.quadrupleTankData()
        let segment = data.segments[0]
        let times = (0..<segment.count).map { Double($0) * Self.period }
        let dropouts: [SampleCondition] = (0..<segment.count).map { $0 % 300 >= 295 ? .badQuality : .usable }
        let prepared = try DataPreparation(period: Self.period).prepare(
            inputs: [
                SignalHistory(name: "v1", timestamps: times, values: segment.inputs[0]),
                SignalHistory(name: "v2", timestamps: times, values: segment.inputs[1]),
            ],
            outputs: [
                SignalHistory(name: "y1", timestamps: times, values: segment.outputs[0], conditions: dropouts),
                SignalHistory(name: "y2", timestamps: times, values: segment.outputs[1]),
            ])
        #expect(prepared.segments.count == 10)
        #expect(prepared.excluded.count == 10)
        let result = try Identifier(options: IdentificationOptions(structure: .stateSpace(order: 4))).identify(prepared)
        let gain = try #require(result.stateSpace?.steadyStateGain)
        let trueGain = try plant.steadyStateGain()
        for k in 0..<4 { #expect(abs(gain[k] - trueGain[k]) < 0.05 * abs(trueGain[k])) }
        for output in result.outputs { #expect(output.validationFitPercent > 90) }
    }
}
