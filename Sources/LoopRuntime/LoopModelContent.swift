import Foundation
import Tags

/// A loop's model as the model ledger keeps it (decision 0031): the tags it relates, the model, and the operating
/// point its deviations are taken from. Its canonical JSON is what is stored and hashed, so the same model
/// (whatever its YAML spelling, comments or key order) is one version.
public struct LoopModelContent: Codable, Sendable, Equatable {
    public struct FOPDT: Codable, Sendable, Equatable {
        public var gain: Double
        /// Seconds.
        public var timeConstant: Double
        /// Seconds.
        public var deadTime: Double
    }

    public struct OperatingPoint: Codable, Sendable, Equatable {
        public var mvs: [Double]
        public var cvs: [Double]
        public var dvs: [Double]
    }

    public var cvs: [String]
    public var mvs: [String]
    public var dvs: [String]
    /// `fopdt` or `state_space`.
    public var type: String
    public var continuous: Bool?
    public var a: [[Double]]?
    public var b: [[Double]]?
    public var bd: [[Double]]?
    public var c: [[Double]]?
    public var gains: [[FOPDT?]]?
    public var disturbances: [[FOPDT?]]?
    public var operatingPoint: OperatingPoint

    /// The model of `d` (its configuration's, or one already swapped in), with its tags.
    public init(_ d: LoopDefinition) {
        self.init(
            model: d.model, nominalMVs: d.nominalMVs, nominalCVs: d.nominalCVs, nominalDVs: d.nominalDVs,
            cvs: d.cvs.map(\.tag), mvs: d.mvs.map(\.tag), dvs: d.dvs)
    }

    /// A model block read on its own (`edgepilot loop NAME model add FILE`), for the loop's tags.
    public init(
        model: LoopModelDefinition, nominalMVs: [Double], nominalCVs: [Double], nominalDVs: [Double],
        cvs: [String], mvs: [String], dvs: [String]
    ) {
        self.cvs = cvs
        self.mvs = mvs
        self.dvs = dvs
        operatingPoint = OperatingPoint(mvs: nominalMVs, cvs: nominalCVs, dvs: nominalDVs)
        switch model {
        case .stateSpace(let a, let b, let bd, let c, let continuous):
            type = "state_space"
            (self.a, self.b, self.bd, self.c, self.continuous) = (a, b, bd, c, continuous)
        case .transferFunctions(let g, let gd):
            type = "fopdt"
            func convert(_ m: [[LoopFOPDT?]]) -> [[FOPDT?]] {
                m.map { row in
                    row.map { $0.map { FOPDT(gain: $0.gain, timeConstant: $0.timeConstant, deadTime: $0.deadTime) } }
                }
            }
            gains = convert(g)
            disturbances = convert(gd)
        }
    }

    public var model: LoopModelDefinition {
        if type == "state_space" {
            return .stateSpace(a: a ?? [], b: b ?? [], bd: bd ?? [], c: c ?? [], continuous: continuous ?? false)
        }
        func convert(_ m: [[FOPDT?]]?) -> [[LoopFOPDT?]] {
            (m ?? []).map { row in
                row.map { $0.map { LoopFOPDT(gain: $0.gain, timeConstant: $0.timeConstant, deadTime: $0.deadTime) } }
            }
        }
        return .transferFunctions(gains: convert(gains), disturbances: convert(disturbances))
    }

    /// Sorted keys and Foundation's shortest round-trip spelling of each number: equal content, equal text.
    public var canonicalJSON: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // The configuration accepts finite numbers only, so encoding cannot fail on NaN.
        return (try? encoder.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    /// FNV-1a 64 of the canonical JSON, in hex: an identity for "the same model", not a security check.
    public var hash: String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in canonicalJSON.utf8 {
            h ^= UInt64(byte)
            h = h &* 0x0000_0100_0000_01b3
        }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    public static func decode(_ json: String) throws -> LoopModelContent {
        try JSONDecoder().decode(LoopModelContent.self, from: Data(json.utf8))
    }

    /// Why this model cannot drive loop `d` (other tags or dimensions), or nil when it fits.
    public func mismatch(with d: LoopDefinition) -> String? {
        func differ(_ what: String, _ mine: [String], _ loop: [String]) -> String? {
            mine == loop
                ? nil
                : "its \(what) are [\(mine.joined(separator: ", "))], the loop's are [\(loop.joined(separator: ", "))]"
        }
        if let why = differ("CVs", cvs, d.cvs.map(\.tag)) ?? differ("MVs", mvs, d.mvs.map(\.tag))
            ?? differ("DVs", dvs, d.dvs)
        {
            return why
        }
        let (ny, nu, nd) = (cvs.count, mvs.count, dvs.count)
        func shape(_ m: [[Double]]?, rows: Int?, columns: Int?, _ name: String) -> String? {
            let m = m ?? []
            if let rows, m.count != rows { return "'\(name)' has \(m.count) rows, the loop needs \(rows)" }
            if let columns, m.contains(where: { $0.count != columns }) {
                return "a row of '\(name)' does not have \(columns) entries"
            }
            return nil
        }
        if type == "state_space" {
            let n = (a ?? []).count
            if let why = shape(a, rows: n, columns: n, "a") ?? shape(b, rows: n, columns: nu, "b")
                ?? shape(c, rows: ny, columns: n, "c")
                ?? ((bd ?? []).isEmpty ? nil : shape(bd, rows: n, columns: nd, "bd"))
            {
                return why
            }
        } else {
            let g = gains ?? []
            if g.count != ny || g.contains(where: { $0.count != nu }) {
                return "'gains' is not \(ny) × \(nu) (CVs × MVs)"
            }
            let gd = disturbances ?? []
            if !gd.isEmpty && (gd.count != ny || gd.contains(where: { $0.count != nd })) {
                return "'disturbances' is not \(ny) × \(nd) (CVs × DVs)"
            }
        }
        if operatingPoint.mvs.count != nu || operatingPoint.cvs.count != ny
            || (!operatingPoint.dvs.isEmpty && operatingPoint.dvs.count != nd)
        {
            return "its operating point does not have one value per MV, CV and DV"
        }
        return nil
    }

    /// `d` with this model and operating point in place of its own.
    public func applied(to d: LoopDefinition) -> LoopDefinition {
        var out = d
        out.model = model
        out.nominalMVs = operatingPoint.mvs
        out.nominalCVs = operatingPoint.cvs
        out.nominalDVs = operatingPoint.dvs
        return out
    }
}
