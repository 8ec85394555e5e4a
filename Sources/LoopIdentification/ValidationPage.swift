import Foundation

/// The validation report as one self-contained HTML page: inline CSS, one inline SVG per plot drawn here, no
/// script, font or image from anywhere, so it opens from a USB stick on a plant laptop with no network.
public enum ValidationPage {
    static let colours = ["#222222", "#d62728", "#1f77b4", "#2ca02c", "#9467bd"]
    static let width = 900.0
    static let height = 260.0
    static let margin = (left: 70.0, right: 10.0, bottom: 30.0)
    /// One legend line per trace above the plot area: names are long (a file path), so they are not set side by side.
    static let legendLine = 14.0

    public static func html(_ r: LoopValidationReport) -> String {
        func n(_ x: Double?, _ digits: Int = 4) -> String {
            x.map { String(format: "%.\(digits)g", $0) } ?? "n/a"
        }
        var body: [String] = []
        body.append("<h1>Model validation: loop \(escape(r.loop))</h1>")
        body.append(
            "<p>Candidate <b>\(escape(r.candidate))</b> against the active model <b>\(escape(r.active))</b>, "
                + "replayed on \(escape(r.historyFile)) from \(escape(r.since)) to \(escape(r.until)): "
                + "\(n(r.usableSeconds, 6)) s usable in \(r.stretches) stretches at \(n(r.periodSeconds)) s, "
                + "\(r.leftOut.count) stretches left out.</p>")
        body.append("<h2>Open loop: fit % (100·(1 − ‖y − ŷ‖/‖y − ȳ‖))</h2>")
        body.append(
            table(
                ["CV", "candidate", "active"],
                r.openLoop.map { [$0.cv, n($0.candidateFitPercent, 3), n($0.activeFitPercent, 3)] }))
        body.append(
            "<p>Lowest candidate fit \(n(r.candidateLowestFitPercent, 3)) %; the loop's model_min_fit is "
                + "\(n(r.minimumFitPercent, 3)) %: "
                + (r.candidateMeetsMinimumFit ? "reached" : "<b>not reached</b>") + ".</p>")
        body.append("<h2>Closed loop: candidate MPC against the \(escape(r.plant)) model</h2>")
        body.append("<p>\(escape(r.plantReason)).</p>")
        body.append(
            table(
                ["CV", "IAE", "soft-limit violations", "worst violation"],
                r.closedLoopCVs.map { [$0.cv, n($0.iae), String($0.violations), n($0.worstViolation)] }))
        body.append(table(["MV", "travel"], r.closedLoopMVs.map { [$0.mv, n($0.travel)] }))
        body.append(
            "<p>\(r.closedLoopSteps) steps, \(r.nonOptimalSteps) not optimal; QP solve time p99 "
                + "\(n(r.solveP99Microseconds)) µs.</p>")
        if !r.leftOut.isEmpty {
            body.append("<h2>Left out</h2>")
            body.append(
                table(
                    ["from (UTC)", "to", "seconds", "reason", "why"],
                    r.leftOut.map { [$0.start, $0.end, n($0.seconds, 6), $0.reason, $0.detail] }))
        }
        body.append("<h2>Plots</h2>")
        for plot in r.plots { body.append(svg(plot)) }
        return """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>Model validation: \(escape(r.loop))</title>
            <style>
            body{font-family:sans-serif;max-width:960px;margin:1em auto;color:#222}
            table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
            td:first-child,th:first-child{text-align:left}figure{margin:1em 0}figcaption{font-weight:bold}
            </style></head><body>
            \(body.joined(separator: "\n"))
            </body></html>

            """
    }

    static func table(_ header: [String], _ rows: [[String]]) -> String {
        "<table><tr>" + header.map { "<th>\(escape($0))</th>" }.joined() + "</tr>"
            + rows.map { "<tr>" + $0.map { "<td>\(escape($0))</td>" }.joined() + "</tr>" }.joined() + "</table>"
    }

    /// One plot as inline SVG: axes with min/max labels, one polyline per trace and stretch, a legend.
    static func svg(_ plot: ValidationPlot) -> String {
        let points = plot.traces.flatMap { $0.stretches.flatMap { $0 } }.filter { $0.1.isFinite }
        let (left, right, bottom) = margin
        let top = 8 + legendLine * Double(plot.traces.count)
        let (w, h) = (width, height + top)
        var t0 = points.map(\.0).min() ?? 0
        var t1 = points.map(\.0).max() ?? 1
        var v0 = points.map(\.1).min() ?? 0
        var v1 = points.map(\.1).max() ?? 1
        if t1 <= t0 { (t0, t1) = (t0 - 1, t0 + 1) }
        if v1 - v0 <= 1e-12 * max(1, abs(v1)) { (v0, v1) = (v0 - 1, v1 + 1) }
        let pad = (v1 - v0) * 0.05
        (v0, v1) = (v0 - pad, v1 + pad)
        func x(_ t: Double) -> String { String(format: "%.1f", left + (t - t0) / (t1 - t0) * (w - left - right)) }
        func y(_ v: Double) -> String { String(format: "%.1f", h - bottom - (v - v0) / (v1 - v0) * (h - top - bottom)) }
        func label(_ v: Double) -> String { String(format: "%.4g", v) }
        var out = [
            "<figure><figcaption>\(escape(plot.title))</figcaption>",
            // No xmlns: inline SVG in HTML needs none, and the page then names no address at all.
            "<svg width=\"\(Int(w))\" height=\"\(Int(h))\" "
                + "viewBox=\"0 0 \(Int(w)) \(Int(h))\" font-size=\"11\">",
            "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(w - left - right)\" height=\"\(h - top - bottom)\" "
                + "fill=\"none\" stroke=\"#999\"/>",
            "<text x=\"\(left - 4)\" y=\"\(top + 8)\" text-anchor=\"end\">\(label(v1))</text>",
            "<text x=\"\(left - 4)\" y=\"\(h - bottom)\" text-anchor=\"end\">\(label(v0))</text>",
            "<text x=\"\(left)\" y=\"\(h - 8)\">\(label(t0)) s</text>",
            "<text x=\"\(w - right)\" y=\"\(h - 8)\" text-anchor=\"end\">\(label(t1)) s</text>",
        ]
        for (i, trace) in plot.traces.enumerated() {
            let colour = colours[i % colours.count]
            for stretch in trace.stretches {
                // A NaN (a range CV's setpoint) breaks the line rather than drawing to nowhere.
                var runs: [[String]] = [[]]
                for (t, v) in stretch {
                    if v.isFinite {
                        runs[runs.count - 1].append("\(x(t)),\(y(v))")
                    } else if !runs[runs.count - 1].isEmpty {
                        runs.append([])
                    }
                }
                for run in runs where !run.isEmpty {
                    out.append(
                        "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"1.2\" points=\""
                            + run.joined(separator: " ") + "\"/>")
                }
            }
            out.append(
                "<text x=\"\(left)\" y=\"\(legendLine * Double(i + 1))\" fill=\"\(colour)\">"
                    + "\(escape(trace.name))</text>")
        }
        out.append("</svg></figure>")
        return out.joined(separator: "\n")
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
