import ArgumentParser
import Foundation
import LocalControl

/// `edgepilot monitors`: the figures of every watched loop (`monitors:`), read from the `monitor/<name>/…` tags
/// the agent keeps, so the command shows exactly what history and Sparkplug carry.
struct MonitorsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "monitors",
        abstract: "Show each watched loop's performance: Harris index, oscillation, stiction, service factor, IAE.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    /// One monitor's figures; nil where the window does not hold enough data yet.
    struct Row: Codable {
        var name: String
        var harrisIndex: Double?
        var oscillating: Bool?
        var stiction: Bool?
        var stictionIndex: Double?
        var serviceFactor: Double?
        var iae: Double?
        var variance: Double?
        var loadCount: Double?
        /// Microseconds since the epoch of the figures' last computation.
        var timestamp: Int64 = 0
    }

    func run() throws {
        let path = try connection.resolvedPath()
        let tags = try ControlClient(path: path).send(ControlRequest(command: .tags, tag: "monitor/*")).tags ?? []
        let rows = Self.rows(tags)
        if output.json {
            try printJSON(rows)
            return
        }
        if rows.isEmpty {
            print("no monitors: add a 'monitors:' section to the configuration (Config/README.md)")
            return
        }
        func number(_ v: Double?, _ digits: Int = 3) -> String { v.map { String(format: "%.\(digits)f", $0) } ?? "-" }
        func flag(_ v: Bool?) -> String { v.map { $0 ? "YES" : "no" } ?? "-" }
        print(
            table(
                ["MONITOR", "HARRIS", "OSCILLATING", "STICTION", "SERVICE", "IAE", "VARIANCE", "AGE"],
                rows.map { r in
                    [
                        r.name, number(r.harrisIndex, 2), flag(r.oscillating),
                        flag(r.stiction) + (r.stictionIndex.map { String(format: " (%.2f)", $0) } ?? ""),
                        r.serviceFactor.map { String(format: "%.1f %%", 100 * $0) } ?? "-", number(r.iae),
                        number(r.variance, 4), r.timestamp > 0 ? formatAge(microseconds: r.timestamp) : "-",
                    ]
                }))
    }

    /// Groups the `monitor/<name>/<figure>` tags by monitor; figures without a good value stay nil.
    static func rows(_ tags: [TagReport]) -> [Row] {
        var rows: [String: Row] = [:]
        for t in tags {
            let parts = t.name.split(separator: "/", maxSplits: 2).map(String.init)
            guard parts.count == 3, parts[0] == "monitor" else { continue }
            var row = rows[parts[1]] ?? Row(name: parts[1])
            defer { rows[parts[1]] = row }
            guard t.quality == "good", let value = t.value else { continue }
            row.timestamp = max(row.timestamp, t.timestamp)
            let number: Double? =
                switch value {
                case .double(let d): d
                case .int(let i): Double(i)
                case .uint(let u): Double(u)
                default: nil
                }
            let truth: Bool? = if case .bool(let b) = value { b } else { nil }
            switch parts[2] {
            case "harris_index": row.harrisIndex = number
            case "oscillating": row.oscillating = truth
            case "stiction": row.stiction = truth
            case "stiction_index": row.stictionIndex = number
            case "service_factor": row.serviceFactor = number
            case "iae": row.iae = number
            case "variance": row.variance = number
            case "load_count": row.loadCount = number
            default: break
            }
        }
        return rows.values.sorted { $0.name < $1.name }
    }
}
