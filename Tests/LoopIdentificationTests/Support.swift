import Configuration
import Foundation
import History
import Tags
import TestSupport

extension PlantRecording {
    /// Writes the recording into a new history file at `path` with `HistoryStore`, as the agent would.
    func write(to path: String, edit: (inout [HistoryRow]) -> Void = { _ in }) throws {
        let store = try HistoryStore(path: path)
        defer { store.close() }
        var rows = rows().map { row -> HistoryRow in
            let value: HistoryValue
            switch row.value {
            case .number(let x): value = .real(x)
            case .text(let t): value = .text(t)
            }
            return HistoryRow(
                tag: row.tag, timestamp: row.timestamp, value: value, quality: row.good ? .good : Quality(.timeout))
        }
        edit(&rows)
        try store.append(rows)
    }

    /// An ISO-8601 time `seconds` after the recording's start.
    func iso(_ seconds: Int) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: Date(timeIntervalSince1970: Double(start + Int64(seconds))))
    }

    /// The agent configuration of the recorded loop, its history at `history`; `model` replaces the placeholder
    /// model block (lines as `edgepilot identify` writes them, at the top level).
    static func configuration(history: String, model: String? = nil) -> String {
        let placeholder = """
            model:
              type: fopdt
              gains:
                - [{gain: 1, time_constant: 10s, dead_time: 0s}, {gain: -1, time_constant: 10s, dead_time: 0s}]
              operating_point: {mvs: [3, 3], cvs: [50]}
            """
        let block = (model ?? placeholder).split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.isEmpty ? "" : "    " + $0 }.joined(separator: "\n")
        return """
            agent:
              control_socket: /tmp/edgepilot-identify-unused.sock
            history:
              path: \(history)
            devices:
              - name: plant
                type: modbus_tcp
                host: 127.0.0.1
                port: 1502
            tags:
              - {name: plant/level, device: plant, area: input_register, address: 0, type: float32}
              - {name: plant/valve1, device: plant, area: holding_register, address: 0, type: float32, writable: true, limits: {min: 0, max: 10}}
              - {name: plant/valve2, device: plant, area: holding_register, address: 2, type: float32, writable: true, limits: {min: 0, max: 10}}
            loops:
              - name: unit
                period: 1s
                mode: manual
                cvs:
                  - {tag: plant/level, setpoint: 50}
                mvs:
                  - tag: plant/valve1
                    low: 0.5
                    high: 9.5
                    rate: 1
                    pid: {cv: plant/level, gain: 0.5, integral_time: 30s}
                  - tag: plant/valve2
                    low: 0.5
                    high: 9.5
                    rate: 1
                    pid: {cv: plant/level, gain: 0.5, integral_time: 30s, action: direct}
            \(block)
                horizons: {prediction: 60, control: 10}

            """
    }

    /// The loop as the configuration loader reads it.
    static func loopDefinition() throws -> LoopDefinition {
        let dir = try TemporaryDirectory("edgepilot-identify-config")
        defer { dir.remove() }
        let path = dir.path + "/edgepilot.yaml"
        try configuration(history: dir.path + "/history.db").write(toFile: path, atomically: true, encoding: .utf8)
        return try ConfigurationLoader.load(contentsOf: path).configuration.loops[0]
    }
}
