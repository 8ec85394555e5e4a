/// `sparkplug.templates`: which devices are published as Sparkplug template instances (Ignition UDTs) instead of,
/// or beside, flat metrics (docs/decisions/0037-sparkplug-templates.md).
public struct SparkplugTemplateSettings: Sendable, Hashable {
    /// Each loop's device as an instance of `EdgePilot/Loop_<n>CV_<m>MV` (off by default: existing Ignition tag
    /// paths of the loops' flat metrics stay as they are).
    public var loops: Bool
    /// Keep the flat metrics beside the instances (both tag paths exist in Ignition; a migration aid).
    public var keepFlatMetrics: Bool

    public init(loops: Bool = false, keepFlatMetrics: Bool = false) {
        self.loops = loops
        self.keepFlatMetrics = keepFlatMetrics
    }
}
