import Control
import Foundation
import Identification
import TestSupport
import Testing

/// Side by side with independent Python peers on the same data in the same run: scipy's least_squares
/// (FOPDT by simulation error) and nfoursid (N4SID). Our validation fit % must be within a stated margin
/// of the peer's, or better, and both must be near the truth (so a broken peer cannot make us look good).
@Suite struct PeerTests {
    static func runPeer(_ kind: String, _ payload: [String: Any]) throws -> [String: Any] {
        let directory = try TemporaryDirectory("edgepilot-ident")
        defer { directory.remove() }
        let file = directory.url.appendingPathComponent("data.json")
        try JSONSerialization.data(withJSONObject: payload).write(to: file)
        let script = repositoryRoot.appendingPathComponent("Tests/IdentificationTests/Peers/ident_peers.py").path
        let result = try runCommand(pythonPath, [script, kind, file.path], timeout: 120)
        guard result.status == 0,
            let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        else {
            throw PeerError("ident_peers.py \(kind) failed (\(result.status)): \(result.stderr)")
        }
        return json
    }

    /// Margin: 0.5 fit % points. Same model class on both sides (MISO FOPDT with fractional dead time).
    @Test func fopdtFitMatchesScipyLeastSquares() throws {
        let period = 1.0
        let truth = [
            FirstOrderDeadTime(gain: 1.5, timeConstant: 15, deadTime: 3),
            FirstOrderDeadTime(gain: -0.8, timeConstant: 30, deadTime: 10),
        ]
        let plant = try StateSpaceModel.fromTransferFunctions([truth], period: period)
        let u = Plants.gbn(inputs: 2, count: 3000, settlingTime: 130, period: period, amplitude: 1, seed: 81)
        let y = Plants.noisy(Plants.simulate(plant, inputs: u)[0], sigma: 0.1, seed: 82)
        let data = try PreparedData(period: period, inputs: u, outputs: [y])
        let options = IdentificationOptions(structure: .fopdt, maximumDeadTime: 30)
        let ours = try Identifier(options: options).identify(data)
        let peer = try Self.runPeer(
            "fopdt",
            [
                "period": period, "inputs": data.segments[0].inputs, "output": data.segments[0].outputs[0],
                "estimation": ours.estimationSamples, "max_dead_time": 30,
            ])
        let peerFit = try #require(peer["validation_fit"] as? Double)
        let ourFit = ours.outputs[0].validationFitPercent
        let peerPaths = try #require(peer["paths"] as? [[String: Double]])
        print("identification peer FOPDT validation fit %: ours \(ourFit), scipy \(peerFit)")
        #expect(ourFit >= peerFit - 0.5)
        let paths = try #require(ours.transferFunctions?.first?.paths)
        for j in 0..<2 {
            #expect(abs(paths[j].gain - truth[j].gain) < 0.05 * abs(truth[j].gain))
            #expect(abs(peerPaths[j]["gain"]! - truth[j].gain) < 0.05 * abs(truth[j].gain))
            #expect(abs(paths[j].deadTime - truth[j].deadTime) < 1)
        }
    }

    /// Margin: 1 fit % point on each output, same order (4) and block rows (20) on both sides.
    @Test func subspaceFitMatchesNfoursid() throws {
        let (data, plant, _) = try StateSpaceTests.quadrupleTankData()
        let ours = try Identifier(options: IdentificationOptions(structure: .stateSpace(order: 4), blockRows: 20))
            .identify(data)
        let peer = try Self.runPeer(
            "n4sid",
            [
                "period": data.period, "inputs": data.segments[0].inputs, "outputs": data.segments[0].outputs,
                "estimation": ours.estimationSamples, "order": 4, "block_rows": 20,
            ])
        let peerFits = try #require(peer["validation_fit"] as? [Double])
        let peerGain = try #require(peer["steady_state_gain"] as? [[Double]])
        let trueGain = try plant.steadyStateGain()
        print(
            "identification peer N4SID validation fit %: ours \(ours.outputs.map(\.validationFitPercent)), nfoursid \(peerFits)"
        )
        for (output, peerFit) in zip(ours.outputs, peerFits) {
            #expect(output.validationFitPercent >= peerFit - 1)
        }
        // The peer must have found the plant too: its steady-state gains within 10 %.
        for j in 0..<2 {
            for i in 0..<2 { #expect(abs(peerGain[j][i] - trueGain[j * 2 + i]) < 0.1 * abs(trueGain[j * 2 + i])) }
        }
    }
}
