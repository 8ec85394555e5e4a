/// `sparkplug.templates`: which devices are published as Sparkplug template instances (Ignition UDTs) instead of,
/// or beside, flat metrics (docs/decisions/0037-sparkplug-templates.md).
public struct SparkplugTemplateSettings: Sendable, Hashable {
    /// Each loop's device as an instance of `EdgePilot/Loop_<n>CV_<m>MV` (off by default: existing Ignition tag
    /// paths of the loops' flat metrics stay as they are).
    public var loops: Bool
    /// Keep the flat metrics beside the instances (both tag paths exist in Ignition; a migration aid).
    public var keepFlatMetrics: Bool
    /// Repeated device types: each listed device is one instance of the type's definition.
    public var types: [SparkplugDeviceType]

    public init(loops: Bool = false, keepFlatMetrics: Bool = false, types: [SparkplugDeviceType] = []) {
        self.loops = loops
        self.keepFlatMetrics = keepFlatMetrics
        self.types = types
    }
}

/// `sparkplug.templates.types[]`: a definition named `name` whose members are tag name suffixes, and the devices
/// that are instances of it (one instance per device, named after the type's last path component).
public struct SparkplugDeviceType: Sendable, Hashable {
    public var name: String
    public var members: [String]
    public var devices: [String]

    public init(name: String, members: [String], devices: [String]) {
        self.name = name
        self.members = members
        self.devices = devices
    }

    /// The instance metric's name in a device's DBIRTH: `Pump` for `Site/Pump`.
    public var instanceName: String { String(name.split(separator: "/").last ?? Substring(name)) }

    /// The tags of a device that can be `member`: named exactly so, or ending in `/<member>` (`pump1/flow` for
    /// `flow`). A valid configuration has exactly one.
    public static func tags(for member: String, in tags: [TagDefinition]) -> [TagDefinition] {
        tags.filter { $0.name == member || $0.name.hasSuffix("/" + member) }
    }
}
