// identifybench: the time `edgepilot identify` takes on one day of 1 s history of a 2×2 loop, from SQLite.
//
// Writes a history file with HistoryStore (86,400 samples per CV and MV of a known 2×2 FOPDT plant under GBN
// moves, noise on the CVs, one manual hour), then times reading it (LoopHistory.read) and identifying
// (LoopIdentification.run) in process, and, with --edgepilot PATH, the CLI end to end. Prints figures; asserts none.
//
//   swift build -c release --product identifybench && swift build -c release --product edgepilot
//   .build/release/identifybench --edgepilot .build/release/edgepilot [--structure fopdt|ss] [--seconds N] [--keep]
import Configuration
import Foundation
import History
import LoopIdentification
import Tags

let arguments = CommandLine.arguments
func option(_ name: String) -> String? {
    arguments.firstIndex(of: name).flatMap { $0 + 1 < arguments.count ? arguments[$0 + 1] : nil }
}
let edgepilot = option("--edgepilot")
let structure = option("--structure") ?? "fopdt"
let seconds = Int(option("--seconds") ?? "86400")!

let dir = FileManager.default.temporaryDirectory.appendingPathComponent("identifybench-\(getpid())").path
try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
// --keep leaves the history file and configuration for a look with the CLI.
let keep = arguments.contains("--keep")
defer { if keep { print("kept \(dir)") } else { try? FileManager.default.removeItem(atPath: dir) } }
let historyPath = dir + "/history.db"
let configPath = dir + "/edgepilot.yaml"

// The plant: K, τ (s), θ (s) per CV × MV.
let gains = [[2.0, 0.5], [-0.6, 1.5]]
let taus = [[30.0, 45.0], [40.0, 25.0]]
let thetas = [[2, 4], [3, 1]]
let start: Int64 = 1_780_000_000
/// xorshift64*: deterministic, so every run writes the same file.
struct Generator {
    var state: UInt64 = 0x9e37_79b9_7f4a_7c15
    mutating func next() -> Double {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return Double((state &* 0x2545_f491_4f6c_dd1d) >> 11) / Double(1 << 53)
    }
}
var generator = Generator()

func iso(_ s: Int64) -> String {
    let f = ISO8601DateFormatter()
    f.timeZone = TimeZone(identifier: "UTC")
    return f.string(from: Date(timeIntervalSince1970: Double(s)))
}

let writeStart = Date()
do {
    let store = try HistoryStore(path: historyPath)
    var rows = [HistoryRow]()
    func us(_ k: Int) -> Int64 { (start + Int64(k)) * 1_000_000 }
    rows.append(HistoryRow(tag: "loop/bench/mode", timestamp: us(-10), value: .text("mpc")))
    rows.append(HistoryRow(tag: "loop/bench/mode", timestamp: us(seconds / 2), value: .text("manual")))
    rows.append(HistoryRow(tag: "loop/bench/mode", timestamp: us(seconds / 2 + 3600), value: .text("mpc")))
    var u = [3.0, 3.0]
    var held = [0, 0]
    var past = [[Double]](repeating: [Double](repeating: 3, count: 8), count: 2)
    var x = [[0.0, 0.0], [0.0, 0.0]]
    for k in 0..<seconds {
        for i in 0..<2 {
            // GBN: hold at least 20 s, then switch with probability 0.1 per second.
            held[i] += 1
            if k == 0 || (held[i] >= 20 && generator.next() < 0.1) {
                if k > 0 { u[i] = u[i] > 3 ? 2.5 : 3.5 }
                held[i] = 0
                rows.append(HistoryRow(tag: "mv\(i + 1)", timestamp: us(k), value: .real(u[i])))
            }
            past[i].append(u[i])
        }
        for j in 0..<2 {
            var y = 10.0 * Double(j + 1)
            for i in 0..<2 {
                y += x[j][i]
                let a = exp(-1 / taus[j][i])
                x[j][i] = a * x[j][i] + gains[j][i] * (1 - a) * (past[i][past[i].count - 1 - thetas[j][i]] - 3)
            }
            rows.append(
                HistoryRow(tag: "cv\(j + 1)", timestamp: us(k), value: .real(y + 0.02 * (2 * generator.next() - 1))))
        }
        if rows.count >= 20_000 {
            try store.append(rows)
            rows.removeAll(keepingCapacity: true)
        }
        for i in 0..<2 where past[i].count > 64 { past[i].removeFirst(past[i].count - 8) }
    }
    try store.append(rows)
    store.close()
}
let writeSeconds = Date().timeIntervalSince(writeStart)

let config = """
    history:
      path: \(historyPath)
    devices:
      - {name: plant, type: modbus_tcp, host: 127.0.0.1, port: 1502}
    tags:
      - {name: cv1, device: plant, area: input_register, address: 0, type: float32}
      - {name: cv2, device: plant, area: input_register, address: 2, type: float32}
      - {name: mv1, device: plant, area: holding_register, address: 0, type: float32, writable: true, limits: {min: 0, max: 10}}
      - {name: mv2, device: plant, area: holding_register, address: 2, type: float32, writable: true, limits: {min: 0, max: 10}}
    loops:
      - name: bench
        period: 1s
        cvs: [{tag: cv1, setpoint: 10}, {tag: cv2, setpoint: 20}]
        mvs:
          - {tag: mv1, low: 0.5, high: 9.5, rate: 1, pid: {cv: cv1, gain: 0.5, integral_time: 30s}}
          - {tag: mv2, low: 0.5, high: 9.5, rate: 1, pid: {cv: cv2, gain: 0.5, integral_time: 30s}}
        model:
          type: fopdt
          gains: [[{gain: 1, time_constant: 10s}, null], [null, {gain: 1, time_constant: 10s}]]
          operating_point: {mvs: [3, 3], cvs: [10, 20]}

    """
try config.write(toFile: configPath, atomically: true, encoding: .utf8)
let loop = try ConfigurationLoader.load(contentsOf: configPath).configuration.loops[0]
let since = start * 1_000_000
let until = (start + Int64(seconds)) * 1_000_000

let readStart = Date()
let reader = try HistoryReader(path: historyPath)
let history = try LoopHistory.read(reader, loop: loop, since: since, until: until)
reader.close()
let readSeconds = Date().timeIntervalSince(readStart)
let fitStart = Date()
let settings = LoopIdentificationSettings(structure: structure == "ss" ? .stateSpace(order: 4) : .fopdt)
let report = try LoopIdentification.run(loop: loop, history: history, settings: settings)
let fitSeconds = Date().timeIntervalSince(fitStart)

let rowCount = history.rows.values.reduce(0) { $0 + $1.count }
print("identifybench: \(seconds) s of 1 s history, 2 CVs × 2 MVs, \(rowCount) rows; structure \(report.structure)")
print(String(format: "  write history (HistoryStore):        %.2f s (not part of identify)", writeSeconds))
print(String(format: "  read from SQLite (LoopHistory.read): %.2f s", readSeconds))
print(String(format: "  prepare + identify:                  %.2f s", fitSeconds))
print(String(format: "  in process, read + identify:         %.2f s", readSeconds + fitSeconds))
for path in report.paths {
    print(
        "  \(path.cv) ← \(path.input): gain \(path.gain.map { String(format: "%.4g", $0) } ?? "-")"
            + (path.timeConstant.map { String(format: ", τ %.4g s", $0) } ?? "")
            + (path.deadTime.map { String(format: ", θ %.3g s", $0) } ?? ""))
}
for output in report.outputs {
    print("  \(output.cv): validation fit \(output.validationFitPercent.map { String(format: "%.2f", $0) } ?? "-") %")
}
print("  left out: " + report.leftOut.map { "\($0.reason) \(Int($0.seconds)) s" }.joined(separator: ", "))

if let edgepilot {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: edgepilot)
    process.arguments = [
        "identify", "--config", configPath, "--loop", "bench", "--since", iso(start), "--until",
        iso(start + Int64(seconds)),
        "--structure", structure, "--output", dir + "/model.yaml", "--json",
    ]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    let cliStart = Date()
    try process.run()
    process.waitUntilExit()
    let cliSeconds = Date().timeIntervalSince(cliStart)
    print(
        String(format: "  edgepilot identify end to end (CLI):  %.2f s, exit %d", cliSeconds, process.terminationStatus)
    )
}
