import Tags

/// One metric family as the Prometheus text format (0.0.4) carries it: a name, a help line, a type and its samples.
///
/// The agent builds these on each scrape from the counters its parts already keep; nothing here is touched by a
/// poll or a control cycle.
package struct MetricFamily: Sendable {
    package enum Kind: String, Sendable { case counter, gauge, histogram }

    /// One line: the sample's labels and value; `suffix` is `_bucket`, `_sum`, `_count` (histograms) or empty.
    package struct Sample: Sendable {
        package var suffix: String
        package var labels: [(String, String)]
        package var value: Double
    }

    package var name: String
    package var help: String
    package var kind: Kind
    package private(set) var samples: [Sample] = []

    package init(_ name: String, _ kind: Kind, help: String) {
        self.name = name
        self.kind = kind
        self.help = help
    }

    /// A counter of one unlabelled sample.
    package static func counter(_ name: String, _ help: String, _ value: UInt64) -> MetricFamily {
        var f = MetricFamily(name, .counter, help: help)
        f.add([], value)
        return f
    }

    /// A gauge of one unlabelled sample.
    package static func gauge(_ name: String, _ help: String, _ value: Double) -> MetricFamily {
        var f = MetricFamily(name, .gauge, help: help)
        f.add([], value)
        return f
    }

    /// Adds one counter or gauge sample.
    package mutating func add(_ labels: [(String, String)] = [], _ value: Double) {
        samples.append(Sample(suffix: "", labels: labels, value: value))
    }

    package mutating func add(_ labels: [(String, String)] = [], _ value: UInt64) { add(labels, Double(value)) }
    package mutating func add(_ labels: [(String, String)] = [], _ value: Int) { add(labels, Double(value)) }

    /// Adds a histogram in seconds from durations kept in nanoseconds.
    package mutating func add(_ labels: [(String, String)] = [], _ histogram: DurationHistogram) {
        for i in 0..<DurationHistogram.boundCount {
            let le = formatNumber(Double(DurationHistogram.bound(i)) / 1e9)
            samples.append(
                Sample(suffix: "_bucket", labels: labels + [("le", le)], value: Double(histogram.cumulative(i))))
        }
        samples.append(
            Sample(suffix: "_bucket", labels: labels + [("le", "+Inf")], value: Double(histogram.count)))
        samples.append(Sample(suffix: "_sum", labels: labels, value: Double(histogram.sumNanoseconds) / 1e9))
        samples.append(Sample(suffix: "_count", labels: labels, value: Double(histogram.count)))
    }
}

/// Renders families in the Prometheus text exposition format, version 0.0.4 (what every Prometheus server, the
/// OpenMetrics parsers in text mode and `prometheus_client` read).
package enum MetricsText {
    package static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    package static func render(_ families: [MetricFamily]) -> String {
        var out = ""
        out.reserveCapacity(families.reduce(0) { $0 + 64 + $1.samples.count * 80 })
        for family in families {
            out += "# HELP \(family.name) \(escapeHelp(family.help))\n"
            out += "# TYPE \(family.name) \(family.kind.rawValue)\n"
            for sample in family.samples {
                out += family.name
                out += sample.suffix
                if !sample.labels.isEmpty {
                    out += "{"
                    out += sample.labels.map { "\($0.0)=\"\(escapeLabel($0.1))\"" }.joined(separator: ",")
                    out += "}"
                }
                out += " "
                out += formatNumber(sample.value)
                out += "\n"
            }
        }
        return out
    }

    /// Label values escape backslash, double quote and newline.
    static func escapeLabel(_ s: String) -> String {
        guard s.contains(where: { $0 == "\\" || $0 == "\"" || $0 == "\n" }) else { return s }
        var out = ""
        for c in s {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out
    }

    /// Help text escapes backslash and newline.
    static func escapeHelp(_ s: String) -> String {
        s.replacingBackslashesAndNewlines()
    }
}

extension String {
    fileprivate func replacingBackslashesAndNewlines() -> String {
        var out = ""
        for c in self {
            switch c {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out
    }
}

/// A sample value as the text format writes it: integers without a fraction, `NaN`, `+Inf`, `-Inf`.
func formatNumber(_ v: Double) -> String {
    if v.isNaN { return "NaN" }
    if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
    if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
    return "\(v)"
}

/// Buckets durations (ns) taken from a ring of recent samples into a cumulative histogram that lives as long as
/// the scraper: the rings forget, the histogram keeps counting.
package struct SampleHistogram: Sendable {
    package private(set) var histogram = DurationHistogram()
    package init() {}

    package mutating func add(_ samples: UnsafeMutableBufferPointer<Int64>, count: Int) {
        for k in 0..<count { histogram.record(nanoseconds: samples[k]) }
    }
}
