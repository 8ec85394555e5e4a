import Foundation

/// Parses the human spellings of durations and sizes used in the configuration.
package enum UnitParser {
    /// `250ms`, `1s`, `1.5s`, `10m`, `2h`, `30d` → milliseconds.
    package static func milliseconds(_ text: String) -> Int? {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        let units: [(String, Double)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
        for (suffix, factor) in units where t.hasSuffix(suffix) {
            let number = t.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)
            guard let value = Double(number), value >= 0, value.isFinite, value * factor < 1e15 else { return nil }
            return Int((value * factor).rounded())
        }
        return nil
    }

    /// `30s`, `1.5s`, `500ms`, `2.5m`, `1h` → seconds, without rounding to the millisecond (a time constant of
    /// 0.4 ms at a 1 ms period still counts); a bare number has no unit and is nil.
    package static func seconds(_ text: String) -> Double? {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        for (suffix, factor) in units where t.hasSuffix(suffix) {
            let number = t.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)
            guard let value = Double(number), value >= 0, value.isFinite, value * factor < 1e12 else { return nil }
            return value * factor
        }
        return nil
    }

    /// `512KB`, `100MB`, `1GiB`, `1073741824` → bytes.
    static func bytes(_ text: String) -> Int64? {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        let units: [(String, Double)] = [
            ("kib", 1024), ("mib", 1_048_576), ("gib", 1_073_741_824), ("tib", 1_099_511_627_776),
            ("kb", 1e3), ("mb", 1e6), ("gb", 1e9), ("tb", 1e12), ("b", 1),
        ]
        for (suffix, factor) in units where t.hasSuffix(suffix) {
            let number = t.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)
            guard let value = Double(number), value >= 0, value.isFinite, value * factor < 9e18 else { return nil }
            return Int64(value * factor)
        }
        return Int64(t)
    }
}
