import ArgumentParser
import Foundation
import LocalControl
import LoopRuntime

/// `edgepilot loop NAME model list|show|add|activate|rollback`: the loop's model ledger (decision 0031).
extension LoopCommand {
    func runModel() throws {
        let usage =
            "usage: edgepilot loop \(name) model list | show ID | add FILE [--note TEXT] | "
            + "activate ID [--force] [--note TEXT] | rollback [--note TEXT] | shadow ID|off"
        guard let sub = values.first?.lowercased() else { throw ValidationError(usage) }
        var request: ControlRequest
        switch (sub, values.count) {
        case ("list", 1): request = ControlRequest(command: .loopModelList, loop: name)
        case ("show", 2): request = ControlRequest(command: .loopModelShow, value: values[1], loop: name)
        case ("activate", 2): request = ControlRequest(command: .loopModelActivate, value: values[1], loop: name)
        case ("rollback", 1): request = ControlRequest(command: .loopModelRollback, loop: name)
        case ("shadow", 2): request = ControlRequest(command: .loopModelShadow, value: values[1], loop: name)
        case ("add", 2):
            request = ControlRequest(command: .loopModelAdd, loop: name)
            do {
                request.text = try String(contentsOfFile: values[1], encoding: .utf8)
            } catch {
                throw CLIError("cannot read \(values[1]): \((error as NSError).localizedDescription)")
            }
            request.path = values[1]
        default: throw ValidationError(usage)
        }
        if force && sub != "activate" { throw ValidationError("--force applies to 'model activate' only") }
        request.force = force ? true : nil
        request.note = note
        let response = try connection.send(request)
        guard response.ok, let report = response.models else {
            throw CLIError(response.error ?? "the agent refused")
        }
        if output.json {
            try printJSON(report)
            return
        }
        if let message = report.message { print("\(name): \(message)") }
        if sub == "show", let v = report.versions.first {
            print(Self.renderVersion(v, minFit: report.minFitPercent))
        } else if sub == "list" {
            print(Self.renderLedger(report))
        }
    }

    static func renderLedger(_ report: ModelLedgerReport) -> String {
        if report.versions.isEmpty { return "loop \(report.loop) has no model versions yet" }
        let rows = report.versions.map { v -> [String] in
            [
                (v.active ? "* " : "  ") + String(v.id), v.source,
                v.fitPercent.map { String(format: "%.1f %%", $0) } ?? "-",
                formatTimestamp(v.createdAt), v.createdBy, v.note,
            ]
        }
        var out = [
            table(["VERSION", "SOURCE", "FIT", "CREATED", "BY", "NOTE"], rows),
            (report.shadow.map { "version \($0) runs in shadow (loop/\(report.loop)/shadow/nrmse)\n" } ?? "")
                + "(* in force; an identified model needs a fit ≥ \(String(format: "%.1f", report.minFitPercent)) % "
                + "(model_min_fit) unless --force)",
        ]
        if !report.activations.isEmpty {
            out.append("activations, newest first:")
            let rows = report.activations.map { a -> [String] in
                [
                    formatTimestamp(a.timestamp), String(a.version), a.previous.map(String.init) ?? "-",
                    a.action + (a.forced ? " (forced)" : ""), a.activatedBy, a.note,
                ]
            }
            out.append(table(["WHEN", "VERSION", "REPLACED", "ACTION", "BY", "NOTE"], rows))
        }
        return out.joined(separator: "\n")
    }

    static func renderVersion(_ v: ModelVersionReport, minFit: Double) -> String {
        var lines = [
            "version \(v.id)\(v.active ? " (in force)" : "")  source \(v.source)  hash \(v.hash)",
            "created \(formatTimestamp(v.createdAt)) by \(v.createdBy)" + (v.note.isEmpty ? "" : "  note: \(v.note)"),
        ]
        if let window = v.window { lines.append("window: \(window)") }
        if let hash = v.dataHash { lines.append("data hash: \(hash)") }
        if let fit = v.fitDetail { lines.append("fit on validation data: \(fit)") }
        if let m = v.model {
            lines.append("CVs: \(m.cvs.joined(separator: ", "))  MVs: \(m.mvs.joined(separator: ", "))")
            if !m.dvs.isEmpty { lines.append("DVs: \(m.dvs.joined(separator: ", "))") }
            lines.append("type: \(m.type)")
            func entry(_ e: LoopModelContent.FOPDT?) -> String {
                guard let e else { return "-" }
                return "K \(e.gain) τ \(e.timeConstant) s θ \(e.deadTime) s"
            }
            for (i, row) in (m.gains ?? []).enumerated() where i < m.cvs.count {
                lines.append("  \(m.cvs[i]): " + row.map(entry).joined(separator: " | "))
            }
            for (name, matrix) in [("a", m.a), ("b", m.b), ("bd", m.bd), ("c", m.c)] {
                if let matrix, !matrix.isEmpty { lines.append("  \(name): \(matrix)") }
            }
            let p = m.operatingPoint
            lines.append("operating point: MVs \(p.mvs)  CVs \(p.cvs)" + (p.dvs.isEmpty ? "" : "  DVs \(p.dvs)"))
        }
        return lines.joined(separator: "\n")
    }
}
