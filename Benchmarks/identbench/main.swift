// identbench: times Identification on one data file and prints the figures as one JSON object.
//
//     identbench DATA.json
//
// DATA.json: {"period": s, "inputs": [[...], ...], "outputs": [[...], ...], "estimation": N,
//             "max_dead_time": s, "order": n or null, "block_rows": i}
// Runs the MISO FOPDT fit (every MV onto each CV), the automatic structure, and the PO-MOESP state-space fit
// on the same data, the
// first `estimation` samples for fitting (the Identifier's 2/3 split is checked against it), and reports
// wall and CPU time of `identify` alone (reading the file is not timed) and fit % on the validation part.
import Foundation
import Identification

/// Wall and CPU seconds of `body`. CPU time too, because the benchmark machine is shared: wall time
/// grows with other people's load, the thread's CPU time much less.
func seconds(_ body: () throws -> Void) rethrows -> (wall: Double, cpu: Double) {
    func cpuNow() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
    }
    let start = DispatchTime.now().uptimeNanoseconds
    let cpuStart = cpuNow()
    try body()
    return (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9, cpuNow() - cpuStart)
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("identbench: \(message)\n".utf8))
    exit(2)
}

let arguments = CommandLine.arguments
guard arguments.count == 2 else { fail("usage: identbench DATA.json") }
guard let raw = FileManager.default.contents(atPath: arguments[1]),
    let json = try? JSONSerialization.jsonObject(with: raw) as? [String: Any],
    let period = json["period"] as? Double,
    let inputs = json["inputs"] as? [[Double]],
    let outputs = json["outputs"] as? [[Double]],
    let estimation = json["estimation"] as? Int,
    let maximumDeadTime = json["max_dead_time"] as? Double,
    let blockRows = json["block_rows"] as? Int
else { fail("\(arguments[1]): expected period, inputs, outputs, estimation, max_dead_time, block_rows") }
let order = json["order"] as? Int

do {
    let data = try PreparedData(period: period, inputs: inputs, outputs: outputs)
    var report: [String: Any] = ["samples": data.sampleCount, "fingerprint": data.fingerprint.hex]

    var fopdt: IdentificationResult?
    let fopdtOptions = IdentificationOptions(structure: .fopdt, maximumDeadTime: maximumDeadTime)
    let fopdtSeconds = try seconds { fopdt = try Identifier(options: fopdtOptions).identify(data) }
    guard let fopdt, fopdt.estimationSamples == estimation else {
        fail("the Identifier split at a different sample than the file's estimation count")
    }
    report["fopdt"] = [
        "seconds": fopdtSeconds.wall, "cpu_seconds": fopdtSeconds.cpu,
        "validation_fit": fopdt.outputs.map(\.validationFitPercent),
        "paths": (fopdt.transferFunctions ?? []).map { cv in
            cv.paths.map { ["gain": $0.gain, "time_constant": $0.timeConstant, "dead_time": $0.deadTime] }
        },
    ]

    // The automatic structure (first order, integrating, second order per path) for the same data: no peer
    // fits this, so it is a figure of its own, for what `edgepilot identify` would cost by default.
    var automatic: IdentificationResult?
    let automaticOptions = IdentificationOptions(structure: .automatic, maximumDeadTime: maximumDeadTime)
    let automaticSeconds = try seconds { automatic = try Identifier(options: automaticOptions).identify(data) }
    report["automatic"] = [
        "seconds": automaticSeconds.wall, "cpu_seconds": automaticSeconds.cpu,
        "validation_fit": automatic?.outputs.map(\.validationFitPercent) ?? [],
        "kinds": (automatic?.transferFunctions ?? []).map { $0.paths.map(\.kind.rawValue) },
    ]

    var stateSpace: IdentificationResult?
    let ssOptions = IdentificationOptions(structure: .stateSpace(order: order), blockRows: blockRows)
    let ssSeconds = try seconds { stateSpace = try Identifier(options: ssOptions).identify(data) }
    guard let stateSpace, let model = stateSpace.stateSpace else { fail("no state-space model") }
    report["state_space"] = [
        "seconds": ssSeconds.wall, "cpu_seconds": ssSeconds.cpu,
        "order": model.order,
        "validation_fit": stateSpace.outputs.map(\.validationFitPercent),
        "poles_abs": model.poles.map(\.magnitude).sorted(),
        "steady_state_gain": model.steadyStateGain ?? [],
    ]
    let text = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys])
    print(String(decoding: text, as: UTF8.self))
} catch {
    fail("\(error)")
}
