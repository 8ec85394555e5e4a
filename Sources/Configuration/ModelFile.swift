import Foundation
import Tags
import Yams

/// A loop's `model:` block read from a file of its own (what `edgepilot identify --output` writes), with the
/// provenance identify put in its comments: the history window, the data hash and the validation fit.
public struct ModelFile: Sendable {
    public var model: LoopModelDefinition
    public var nominalMVs: [Double]
    public var nominalCVs: [Double]
    public var nominalDVs: [Double]
    /// The file came from `edgepilot identify` (its header comment says so).
    public var identified: Bool
    /// `2026-… … 2026-…`, as identify wrote it.
    public var window: String?
    public var dataHash: String?
    /// The fit per CV as recorded (e.g. "level1 96.4 %, level2 95.9 %"), and the lowest of them; nil when a CV's
    /// fit is "n/a" or no fit was recorded.
    public var fitDetail: String?
    public var fitPercent: Double?

    /// Reads `yaml` (named `file` in messages); every problem is located (file, line, column) as in the
    /// configuration.
    public static func parse(yaml: String, file: String) throws(ConfigurationError) -> ModelFile {
        var sink = DiagnosticSink(file: file)
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw ConfigurationError([ConfigurationLoader.yamlDiagnostic(error, file: file)])
        } catch {
            throw ConfigurationError([ConfigDiagnostic(file: file, line: 0, message: "\(error)")])
        }
        guard let root, var top = MappingReader(root, what: "a model file", sink: &sink) else {
            sink.error(1, 1, "the file is empty", hint: "write it with 'edgepilot identify … --output FILE'")
            throw ConfigurationError(sink.diagnostics)
        }
        var builder = Builder(sink: sink, baseDirectory: ".")
        var model: LoopModelDefinition?
        var nominal: (mvs: [Double], cvs: [Double], dvs: [Double]) = ([], [], [])
        if let node = top.value("model") {
            (model, nominal) = builder.readLoopModel(node, "the model file")
        } else {
            builder.sink.error(
                1, 1, "the file has no 'model:' block", hint: "write it with 'edgepilot identify … --output FILE'")
        }
        top.reportUnknownKeys(sink: &builder.sink)
        guard !builder.sink.hasErrors, let model else { throw ConfigurationError(builder.sink.diagnostics) }
        var out = ModelFile(
            model: model, nominalMVs: nominal.mvs, nominalCVs: nominal.cvs, nominalDVs: nominal.dvs, identified: false)
        out.readProvenance(yaml)
        return out
    }

    /// The comment lines `ModelBlock.yaml` (LoopIdentification) writes above the block.
    private mutating func readProvenance(_ yaml: String) {
        for raw in yaml.split(separator: "\n", omittingEmptySubsequences: true) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            guard line.hasPrefix("#") else { continue }
            let text = line.dropFirst().trimmingCharacters(in: .whitespaces)
            if text.hasPrefix("Identified by `edgepilot identify`") { identified = true }
            if text.hasPrefix("window:") {
                let value = text.dropFirst("window:".count)
                window = String(value.split(separator: ";").first ?? "").trimmingCharacters(in: .whitespaces)
            }
            if text.hasPrefix("data hash"), let colon = text.firstIndex(of: ":") {
                dataHash = text[text.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            if let range = text.range(of: "fit on validation data:") {
                let detail = text[range.upperBound...].trimmingCharacters(in: .whitespaces)
                fitDetail = detail
                var fits: [Double] = []
                var complete = true
                for part in detail.split(separator: ",") {
                    // "level1 96.4 %": the number before the percent sign.
                    let words = part.split(separator: " ").filter { $0 != "%" }
                    if let last = words.last, let fit = Double(last.replacingOccurrences(of: "%", with: "")) {
                        fits.append(fit)
                    } else {
                        complete = false
                    }
                }
                fitPercent = complete ? fits.min() : nil
            }
        }
    }
}
