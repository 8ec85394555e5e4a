import Foundation
import History
import Tags
import TestSupport

/// A sample as history stored it or Sparkplug carried it, comparable across both (timestamps in ms).
struct Point: Hashable, CustomStringConvertible {
    var tag: String
    var timestamp: Int64
    var value: Float
    var description: String { "\(tag)@\(timestamp)=\(value)" }
}

/// What reached the Sparkplug host, compared sample by sample with what the agent recorded in its history.
struct Delivery {
    static let compared = ["tank1/level", "tank2/level", "tank3/level", "tank4/level", "tank1/raw"]

    /// History's samples of the compared tags, per tag in time order.
    let history: [String: [Point]]
    /// History's quality of every sample of the compared tags (null values included), per tag by timestamp (ms).
    let recorded: [String: [Int64: Recorded]]
    let messages: [Received]

    /// What history holds besides the value: the quality, and whether there was a value at all.
    struct Recorded {
        var quality: Quality
        var isNull: Bool
    }

    init(historyPath: String, messages: [Received]) throws {
        let reader = try HistoryReader(path: historyPath)
        defer { reader.close() }
        var history: [String: [Point]] = [:]
        var recorded: [String: [Int64: Recorded]] = [:]
        for tag in Self.compared {
            let rows = try reader.samples(tag: tag, since: 0, limit: 1_000_000)
            recorded[tag] = Dictionary(
                rows.map { ($0.timestamp / 1000, Recorded(quality: $0.quality, isNull: $0.value == .null)) },
                uniquingKeysWith: { _, last in last })
            history[tag] = rows.compactMap { row in
                let v: Float
                switch row.value {
                case .real(let d): v = Float(d)
                case .integer(let i): v = Float(i)
                default: return nil
                }
                return Point(tag: tag, timestamp: row.timestamp / 1000, value: v)
            }
        }
        self.history = history
        self.recorded = recorded
        self.messages = messages
    }

    /// The compared samples one message carried.
    static func points(_ m: Received) -> [Point] {
        m.metrics.compactMap { x in
            guard let name = x["name"] as? String, compared.contains(name), let ts = x.int("timestamp"),
                let v = x.double("value")
            else { return nil }
            return Point(tag: name, timestamp: ts, value: Float(v))
        }
    }

    var data: [Received] { messages.filter { $0.kind == "DDATA" } }
    var live: [Received] { data.filter { !$0.isHistorical } }
    var historical: [Received] { data.filter(\.isHistorical) }

    /// History's samples with a timestamp in `from ... to` that never arrived, live, historical or in a DBIRTH (which
    /// carries the current sample, then not sent again as data), leaving out those in an `excused` range.
    func missing(from: Int64, to: Int64, excused: [ClosedRange<Int64>] = []) -> [Point] {
        let received = Set((data + messages.filter { $0.kind == "DBIRTH" }).flatMap(Self.points))
        return Self.compared.flatMap { history[$0] ?? [] }.filter { p in
            p.timestamp >= from && p.timestamp <= to && !received.contains(p)
                && !excused.contains { $0.contains(p.timestamp) }
        }
    }

    /// Samples that arrived but that history does not hold (a value or a timestamp made up or mangled).
    func unknown(excused: [ClosedRange<Int64>] = []) -> [Point] {
        let recorded = Set(history.values.flatMap { $0 })
        return data.flatMap(Self.points).filter { p in
            !recorded.contains(p) && !excused.contains { $0.contains(p.timestamp) }
        }
    }

    /// The Quality property a Sparkplug host must see for a quality history recorded: 192 good, 500 stale, 0 for
    /// everything else (docs/decisions/0011; the host has no "uncertain").
    static func sparkplugQuality(_ q: Quality) -> Int {
        switch q.code {
        case .good: return 192
        case .stale: return 500
        default: return 0
        }
    }

    /// Samples of the compared tags among `messages` whose Quality property or is_null is not what history recorded
    /// for that tag and timestamp. Samples history does not hold are left to `unknown`.
    func qualityMismatches(_ messages: [Received]) -> [String] {
        var out: [String] = []
        for m in messages {
            for x in m.metrics {
                guard let name = x["name"] as? String, Self.compared.contains(name), let ts = x.int("timestamp"),
                    let r = recorded[name]?[ts]
                else { continue }
                let quality = (x.property("Quality") as? NSNumber)?.intValue
                let isNull = x.bool("is_null") ?? false
                if quality != Self.sparkplugQuality(r.quality) || isNull != r.isNull {
                    out.append(
                        "\(name)@\(ts): Quality \(quality.map(String.init) ?? "none") is_null \(isNull), history "
                            + "\(r.quality.code) null \(r.isNull)")
                }
            }
        }
        return out
    }

    /// The Quality properties among the compared samples of `messages`, with how often each came.
    static func qualities(_ messages: [Received]) -> [Int: Int] {
        var out: [Int: Int] = [:]
        for m in messages {
            for x in m.metrics {
                guard let name = x["name"] as? String, compared.contains(name) else { continue }
                out[(x.property("Quality") as? NSNumber)?.intValue ?? -1, default: 0] += 1
            }
        }
        return out
    }

    /// Tags whose samples, among `messages` in the order received, do not come in strictly increasing time order.
    static func outOfOrder(_ messages: [Received]) -> [String] {
        let points = messages.flatMap(Self.points)
        return compared.filter { tag in
            let ts = points.filter { $0.tag == tag }.map(\.timestamp)
            return !zip(ts, ts.dropFirst()).allSatisfy { $0 < $1 }
        }
    }

    /// Historical samples that had already arrived before (live or historical): the duplicates.
    var duplicates: Int {
        var seen = Set<Point>()
        var n = 0
        for m in data {
            for p in Self.points(m) where !seen.insert(p).inserted && m.isHistorical { n += 1 }
        }
        return n
    }

    /// A short account for failure messages: counts, not thousands of samples.
    func summary(_ points: [Point]) -> String {
        let byTag = Dictionary(grouping: points, by: \.tag).mapValues(\.count)
        let span = points.map(\.timestamp)
        return "\(points.count) samples \(byTag), from \(span.min() ?? 0) to \(span.max() ?? 0): "
            + "\(points.sorted { $0.timestamp < $1.timestamp }.prefix(5))"
    }
}
