import Devices
import LocalControl
import LoopRuntime
import ModbusDriver
import OPCUADriver
import SparkplugPublisher
import Systemd
import Tags

/// The runtime's side of the Sparkplug publisher: its change-feed consumer, its view of the devices, and the
/// control-socket commands `mqtt status` and `mqtt rebirth`.
extension AgentRuntime {
    /// The publisher's queue in the change feed (the history writer has queue 0).
    static let sparkplugConsumer = 1

    /// One queue for history, plus one for the publisher when Sparkplug is configured.
    static func changeFeedConsumers(for configuration: AgentConfiguration) -> Int {
        configuration.sparkplug == nil ? 1 : 2
    }

    /// Builds the publisher when the configuration has a `sparkplug:` section (not started).
    func makeSparkplugPublisher(_ configuration: AgentConfiguration) throws -> EdgeNodePublisher? {
        guard let settings = configuration.sparkplug else { return nil }
        guard feed.consumerCount > Self.sparkplugConsumer else {
            throw AgentStartError("sparkplug was enabled by a reload; it needs a restart")
        }
        do {
            return try EdgeNodePublisher(
                settings: settings, historyPath: configuration.history.path, feed: feed,
                consumer: Self.sparkplugConsumer, view: sparkplugView(current, retired: []),
                agentVersion: AgentVersion.current, audit: { [weak self] in self?.recordAudit($0) })
        } catch {
            throw AgentStartError("\(error)")
        }
    }

    /// The devices of generation `g` in configuration order, then the loops' and the monitors' devices; `retired` tables still resolve
    /// queued change ids.
    func sparkplugView(_ g: Generation, retired: [TagTable]) -> EdgeNodePublisher.View {
        EdgeNodePublisher.View(
            devices: g.configuration.devices.compactMap { d in
                g.tables[d.name].map { (d.name, $0, g.drivers[d.name]) }
            }
                + g.loopDevices.values.sorted { $0.device.name < $1.device.name }.map {
                    ($0.device.name, $0.table, $0 as any DeviceDriver)
                }
                + g.monitorDevices.values.sorted { $0.device.name < $1.device.name }.map {
                    ($0.device.name, $0.table, $0 as any DeviceDriver)
                },
            directory: TagDirectory(tables: Array(g.tables.values) + retired),
            templates: sparkplugTemplates(g))
    }

    /// With `sparkplug.templates.loops`, each loop's device as an instance `Loop` of the definition its number of
    /// CVs and MVs implies; each device of a `templates.types` entry as an instance of that type, its members the
    /// tags whose names end in the member names (docs/decisions/0037-sparkplug-templates.md).
    func sparkplugTemplates(_ g: Generation) -> [String: DeviceTemplate] {
        guard let settings = g.configuration.sparkplug?.templates else { return [:] }
        var templates: [String: DeviceTemplate] = [:]
        if settings.loops {
            for loop in g.loopDevices.values {
                templates[loop.device.name] = DeviceTemplate(
                    definition: loop.templateDefinitionName, instanceName: "Loop", members: loop.templateMembers,
                    parameters: loop.templateParameters, keepFlatMetrics: settings.keepFlatMetrics)
            }
        }
        for type in settings.types {
            for device in type.devices {
                guard let table = g.tables[device] else { continue }
                var members: [String: String] = [:]
                for member in type.members {
                    // The configuration guarantees exactly one.
                    if let tag = SparkplugDeviceType.tags(for: member, in: table.definitions).first {
                        members[tag.name] = member
                    }
                }
                templates[device] = DeviceTemplate(
                    definition: type.name, instanceName: type.instanceName, members: members,
                    parameters: [(name: "device", value: device)], keepFlatMetrics: settings.keepFlatMetrics)
            }
        }
        return templates
    }

    /// What `mqtt status` and `status` show; nil without Sparkplug.
    func sparkplugStatus() -> MQTTStatusReport? { sparkplug?.report }

    func handleMQTT(_ request: ControlRequest, from peer: ControlPeer) -> ControlResponse {
        guard let sparkplug else {
            return .failure("Sparkplug is not configured: add a 'sparkplug:' section to \(configPath)")
        }
        if request.command == .mqttRebirth {
            sparkplug.rebirth()
            logger.notice("rebirth requested", metadata: ["source": "\(peer.auditSource)"])
        }
        var response = ControlResponse()
        response.mqtt = sparkplug.report
        return response
    }
}
