import Control

// The entry point: prepared data + options → models, fits, uncertainties, residual tests, provenance.

/// An error from preparing data or identifying: what was wrong and what was expected.
public struct IdentificationError: Error, Equatable, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        case dimension
        case nonFinite
        case invalidOption
        case insufficientData
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

/// Which kind of model to identify.
public enum ModelStructure: Sendable, Equatable {
    /// One transfer function per MV→CV pair, all MVs onto a CV fitted jointly; the kinds allowed, chosen
    /// per CV "where the data asks" (see `IdentificationOptions.parsimonyMargin`).
    case transferFunctions(Set<PathKind>)
    /// One MIMO state-space model by PO-MOESP; `order` nil selects it from the data.
    case stateSpace(order: Int?)

    /// First order plus dead time only.
    public static var fopdt: ModelStructure { .transferFunctions([.firstOrder]) }
    /// First order, integrating and second order, chosen per CV.
    public static var automatic: ModelStructure { .transferFunctions([.firstOrder, .integrating, .secondOrder]) }
}

/// Settings for `Identifier`.
public struct IdentificationOptions: Sendable, Equatable {
    public var structure: ModelStructure
    /// The first part of the data (in time) is fitted on, the rest validates: fit % and residual tests are
    /// reported on data the model did not see. 1 validates on the estimation data (not recommended).
    public var estimationFraction: Double
    /// Largest dead time searched (s); nil: a tenth of the estimation span, at most 60 periods.
    public var maximumDeadTime: Double?
    /// A structure with more parameters (or states) is chosen only if its validation fit % beats the
    /// simpler one by more than this many points. Why: with noisy plant data an extra pole always fits a
    /// little better; an MPC model should carry only dynamics the data clearly shows.
    public var parsimonyMargin: Double
    /// Lags for the residual tests.
    public var residualLags: Int
    /// Block rows of the Hankel matrices (state space): the horizon, in samples, over which past data
    /// predicts the future. It bounds the order (≤ (blockRows − 1)·outputs), must exceed the largest dead
    /// time in samples, and should cover a good part of the slowest time constant: on the quadruple tank
    /// at 2 s, 10 rows placed the slow poles 15–40 % off, 20 rows within 10 %. Cost grows with its square.
    public var blockRows: Int
    /// Largest order tried when the order is selected from the data.
    public var maximumOrder: Int
    /// Estimate D (direct feedthrough) in the state-space model. Off by default: sampled plants respond
    /// one sample late, and Control's models have no D.
    public var feedthrough: Bool

    public init(
        structure: ModelStructure = .automatic, estimationFraction: Double = 2.0 / 3.0, maximumDeadTime: Double? = nil,
        parsimonyMargin: Double = 1, residualLags: Int = 20, blockRows: Int = 20, maximumOrder: Int = 8,
        feedthrough: Bool = false
    ) {
        self.structure = structure
        self.estimationFraction = estimationFraction
        self.maximumDeadTime = maximumDeadTime
        self.parsimonyMargin = parsimonyMargin
        self.residualLags = residualLags
        self.blockRows = blockRows
        self.maximumOrder = maximumOrder
        self.feedthrough = feedthrough
    }
}

/// How well a model reproduces one CV.
public struct OutputFit: Sendable, Equatable {
    public var output: String
    public var estimationFitPercent: Double
    /// On the validation part: the figure to judge a model by.
    public var validationFitPercent: Double
    /// Residual tests on the validation part (on the estimation part when there is none).
    public var residuals: ResidualAnalysis
}

/// The transfer functions identified for one CV.
public struct OutputTransferFunctions: Sendable, Equatable {
    public var output: String
    /// One per MV, in input order.
    public var paths: [TransferPath]
    /// Every structure tried, including the chosen one.
    public var candidates: [CandidateFit]
}

/// One state-space order tried, and its validation fit (mean over outputs).
public struct OrderCandidate: Sendable, Equatable {
    public var order: Int
    public var validationFitPercent: Double
}

/// Everything an identification run found, for the CLI to print and the model ledger to keep.
public struct IdentificationResult: Sendable, Equatable {
    public var period: Double
    public var inputNames: [String]
    public var outputNames: [String]
    /// FNV-1a of the prepared samples (see `PreparedData.fingerprint`).
    public var dataFingerprint: DataFingerprint
    public var estimationSamples: Int
    public var validationSamples: Int
    /// Stretches left out by data preparation, passed through.
    public var excluded: [ExcludedStretch]
    /// Per CV: fit % and residual tests, whichever structure was identified.
    public var outputs: [OutputFit]
    /// Per CV, when transfer functions were identified.
    public var transferFunctions: [OutputTransferFunctions]?
    /// When a state-space model was identified.
    public var stateSpace: IdentifiedStateSpace?
    public var orderCandidates: [OrderCandidate]
}

extension IdentificationResult {
    /// The identified transfer functions as the Control module's model (dead time as delay states), ready
    /// for an MPC: nil unless transfer functions were identified and every path is first order, the only
    /// kind `StateSpaceModel.fromTransferFunctions` represents. Time unit: the data's (seconds).
    public func transferFunctionModel(inputNominal: [Double]? = nil, outputNominal: [Double]? = nil)
        throws(ControlError) -> StateSpaceModel?
    {
        guard let transferFunctions else { return nil }
        var rows = [[FirstOrderDeadTime?]]()
        for output in transferFunctions {
            var row = [FirstOrderDeadTime?]()
            for path in output.paths {
                guard let fopdt = path.firstOrderDeadTime else { return nil }
                row.append(fopdt)
            }
            rows.append(row)
        }
        return try StateSpaceModel.fromTransferFunctions(
            rows, period: period, inputNominal: inputNominal, outputNominal: outputNominal)
    }
}

/// Identifies process models from prepared data. A value type with no state: call `identify` from any thread.
public struct Identifier: Sendable {
    public var options: IdentificationOptions

    public init(options: IdentificationOptions = IdentificationOptions()) {
        self.options = options
    }

    public func identify(_ data: PreparedData) throws(IdentificationError) -> IdentificationResult {
        try check(data)
        let total = data.sampleCount
        let fraction = Swift.min(Swift.max(options.estimationFraction, 0.1), 1)
        let estimationTotal = Swift.max(1, Int((Double(total) * fraction).rounded()))
        // Split in time: segments before the split point fit, after it validate; one may be split.
        var estimation = [Int]()
        var remaining = estimationTotal
        for segment in data.segments {
            let take = Swift.min(segment.count, remaining)
            estimation.append(take)
            remaining -= take
        }
        var result = IdentificationResult(
            period: data.period, inputNames: data.inputNames, outputNames: data.outputNames,
            dataFingerprint: data.fingerprint, estimationSamples: estimationTotal,
            validationSamples: total - estimationTotal, excluded: data.excluded, outputs: [], transferFunctions: nil,
            stateSpace: nil, orderCandidates: [])
        switch options.structure {
        case .transferFunctions(let kinds):
            guard !kinds.isEmpty else {
                throw IdentificationError(.invalidOption, "no transfer-function kinds allowed; expected at least one")
            }
            try identifyTransferFunctions(data, estimation: estimation, kinds: kinds, into: &result)
        case .stateSpace(let order):
            try identifyStateSpace(data, estimation: estimation, order: order, into: &result)
        }
        return result
    }

    private func check(_ data: PreparedData) throws(IdentificationError) {
        guard data.period.isFinite && data.period > 0 else {
            throw IdentificationError(.invalidOption, "period is \(data.period); expected a finite value > 0")
        }
        guard data.inputCount > 0, data.outputCount > 0 else {
            throw IdentificationError(.insufficientData, "expected at least one input and one output")
        }
        for (s, segment) in data.segments.enumerated() {
            guard segment.inputs.count == data.inputCount, segment.outputs.count == data.outputCount else {
                throw IdentificationError(
                    .dimension,
                    "segment \(s) has \(segment.inputs.count) inputs and \(segment.outputs.count) outputs; expected "
                        + "\(data.inputCount) and \(data.outputCount)")
            }
            for signal in segment.inputs + segment.outputs {
                guard signal.count == segment.count else {
                    throw IdentificationError(.dimension, "segment \(s): signals differ in length")
                }
                if signal.contains(where: { !$0.isFinite }) {
                    throw IdentificationError(.nonFinite, "segment \(s) holds a non-finite sample")
                }
            }
        }
        guard data.sampleCount >= 30 else {
            throw IdentificationError(
                .insufficientData, "\(data.sampleCount) usable samples; expected at least 30 (see the excluded list)")
        }
    }

    private func identifyTransferFunctions(
        _ data: PreparedData, estimation: [Int], kinds: Set<PathKind>, into result: inout IdentificationResult
    ) throws(IdentificationError) {
        let span = Double(result.estimationSamples) * data.period
        let maximumDeadTime = options.maximumDeadTime ?? Swift.min(span / 10, 60 * data.period)
        guard maximumDeadTime >= 0 && maximumDeadTime.isFinite else {
            throw IdentificationError(.invalidOption, "maximumDeadTime is \(maximumDeadTime); expected ≥ 0")
        }
        var models = [OutputTransferFunctions]()
        for j in 0..<data.outputCount {
            let miso = MISOData(
                period: data.period,
                segments: data.segments.indices.map { s in
                    MISOData.Segment(
                        inputs: data.segments[s].inputs, output: data.segments[s].outputs[j], estimation: estimation[s])
                }, inputCount: data.inputCount)
            let fitter = TransferFunctionFitter(
                data: miso, allowedKinds: kinds, maximumDeadTime: maximumDeadTime,
                parsimonyMargin: options.parsimonyMargin)
            let (chosen, candidates) = fitter.fit()
            models.append(
                OutputTransferFunctions(output: data.outputNames[j], paths: chosen.paths, candidates: candidates))
            let residuals = miso.residuals(chosen.paths, drift: chosen.drift, estimationOnly: false)
            result.outputs.append(
                OutputFit(
                    output: data.outputNames[j], estimationFitPercent: chosen.fit.estimationFitPercent,
                    validationFitPercent: chosen.fit.validationFitPercent,
                    residuals: residualAnalysis(data, estimation: estimation, residuals: residuals)))
        }
        result.transferFunctions = models
    }

    /// Residual tests on the validation part of each segment (on the estimation part if nothing validates).
    private func residualAnalysis(_ data: PreparedData, estimation: [Int], residuals: [[Double]]) -> ResidualAnalysis {
        let validates = data.segments.indices.contains { estimation[$0] < data.segments[$0].count }
        var r = [[Double]]()
        var u = [[[Double]]]()
        for (s, segment) in data.segments.enumerated() {
            let range = validates ? estimation[s]..<segment.count : 0..<estimation[s]
            guard !range.isEmpty else { continue }
            r.append(Array(residuals[s][range]))
            u.append(segment.inputs.map { Array($0[range]) })
        }
        return ResidualAnalysis(residuals: r, inputs: u, lags: options.residualLags)
    }

    private func identifyStateSpace(
        _ data: PreparedData, estimation: [Int], order: Int?, into result: inout IdentificationResult
    ) throws(IdentificationError) {
        let i = options.blockRows
        guard i >= 2 else { throw IdentificationError(.invalidOption, "blockRows is \(i); expected ≥ 2") }
        let mimo = MIMOData(
            period: data.period,
            segments: data.segments.indices.map { s in
                MIMOData.Segment(
                    inputs: data.segments[s].inputs, outputs: data.segments[s].outputs, estimation: estimation[s])
            }, inputCount: data.inputCount, outputCount: data.outputCount)
        let identifier = SubspaceIdentifier(data: mimo, blockRows: i, feedthrough: options.feedthrough)
        guard let (vectors, singularValues) = identifier.observabilitySubspace() else {
            throw IdentificationError(
                .insufficientData,
                "too few estimation samples for \(i) block rows; expected segments longer than \(2 * i) samples")
        }
        let largest = (i - 1) * data.outputCount
        let orders: [Int]
        if let order {
            guard order >= 1 && order <= largest else {
                throw IdentificationError(.invalidOption, "order \(order); expected 1…\(largest) for \(i) block rows")
            }
            orders = [order]
        } else {
            orders = Array(1...Swift.max(1, Swift.min(options.maximumOrder, largest)))
        }
        var fitted = [(model: IdentifiedStateSpace, outputs: [OutputFit], mean: Double)]()
        for n in orders {
            let (a, c) = identifier.systemMatrices(order: n, vectors: vectors, singularValues: singularValues)
            let (b, d, initial, levels) = identifier.inputMatrices(a: a, c: c)
            let model = IdentifiedStateSpace(
                order: n, inputCount: data.inputCount, outputCount: data.outputCount, period: data.period, a: a.data,
                b: b, c: c.data, d: d, singularValues: singularValues)
            let outputs = evaluate(
                model, identifier: identifier, initial: initial, levels: levels, data: data, estimation: estimation)
            let fits = outputs.map {
                $0.validationFitPercent.isFinite ? $0.validationFitPercent : $0.estimationFitPercent
            }
            let mean = fits.reduce(0, +) / Double(fits.count)
            fitted.append((model, outputs, mean.isFinite ? mean : -.infinity))
            result.orderCandidates.append(OrderCandidate(order: n, validationFitPercent: mean))
        }
        // Fewest states within the parsimony margin of the best.
        let best = fitted.map(\.mean).max() ?? -.infinity
        let chosen = fitted.first { $0.mean >= best - options.parsimonyMargin } ?? fitted[0]
        result.stateSpace = chosen.model
        result.outputs = chosen.outputs
    }

    private func evaluate(
        _ model: IdentifiedStateSpace, identifier: SubspaceIdentifier, initial: [[Double]], levels: [[Double]],
        data: PreparedData, estimation: [Int]
    ) -> [OutputFit] {
        var residuals = [[[Double]]](repeating: [], count: data.outputCount)
        for (s, segment) in data.segments.enumerated() {
            let (x0, level) =
                estimation[s] > 0
                ? (initial[s], levels[s]) : identifier.initialState(model, segment: identifier.data.segments[s])
            let simulated = model.simulate(inputs: segment.inputs, initialState: x0)
            for q in 0..<data.outputCount {
                residuals[q].append((0..<segment.count).map { segment.outputs[q][$0] - simulated[q][$0] - level[q] })
            }
        }
        return (0..<data.outputCount).map { q in
            var er = [Double]()
            var ey = [Double]()
            var vr = [Double]()
            var vy = [Double]()
            for (s, segment) in data.segments.enumerated() {
                er += residuals[q][s][0..<estimation[s]]
                ey += segment.outputs[q][0..<estimation[s]]
                vr += residuals[q][s][estimation[s]...]
                vy += segment.outputs[q][estimation[s]...]
            }
            return OutputFit(
                output: data.outputNames[q], estimationFitPercent: FitMetrics.fitPercent(residuals: er, measured: ey),
                validationFitPercent: FitMetrics.fitPercent(residuals: vr, measured: vy),
                residuals: residualAnalysis(data, estimation: estimation, residuals: residuals[q]))
        }
    }
}
