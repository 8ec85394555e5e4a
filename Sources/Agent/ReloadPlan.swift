import LocalControl
import Tags

/// What a reload from the running configuration to a new one does to each device, loop and monitor, decided from the two
/// configurations alone.
///
/// The runtime's reload follows this plan, and `edgepilot config diff` shows it before anything is touched: the
/// preview and the reload cannot disagree because they are the same decision.
struct ReloadPlan {
    private(set) var items: [ReloadItem] = []
    /// Settings a reload leaves as they are (they need a restart of the agent).
    private(set) var needsRestart: [String] = []
    /// Whether the Sparkplug births change (a device or a tag's name, type or units), so a new session starts.
    private(set) var newBirths = false

    init(from old: AgentConfiguration, to new: AgentConfiguration) {
        var keptDevices = Set<String>()
        for device in new.devices {
            guard let before = old.device(named: device.name) else {
                items.append(ReloadItem(kind: "device", name: device.name, action: .add, reasons: []))
                continue
            }
            let reasons = Self.deviceChanges(device.name, before: before, after: device, old: old, new: new)
            if reasons.isEmpty { keptDevices.insert(device.name) }
            items.append(
                ReloadItem(
                    kind: "device", name: device.name, action: reasons.isEmpty ? .keep : .restart, reasons: reasons))
        }
        for device in old.devices where new.device(named: device.name) == nil {
            items.append(ReloadItem(kind: "device", name: device.name, action: .remove, reasons: []))
        }
        for loop in new.loops {
            guard let before = old.loops.first(where: { $0.name == loop.name }) else {
                items.append(ReloadItem(kind: "loop", name: loop.name, action: .add, reasons: []))
                continue
            }
            var reasons: [String] = []
            if before != loop { reasons.append("its definition changed") }
            let tags = loop.cvs.map(\.tag) + loop.mvs.map(\.tag) + loop.dvs + (loop.heartbeatTag.map { [$0] } ?? [])
            let devices = Set(tags.compactMap { tag in new.tags.first { $0.name == tag }?.device })
            for device in devices.sorted() where !keptDevices.contains(device) {
                reasons.append("its device \(device) restarts")
            }
            items.append(
                ReloadItem(kind: "loop", name: loop.name, action: reasons.isEmpty ? .keep : .restart, reasons: reasons))
        }
        for loop in old.loops where !new.loops.contains(where: { $0.name == loop.name }) {
            items.append(ReloadItem(kind: "loop", name: loop.name, action: .remove, reasons: []))
        }
        // A monitor runs on while its definition and its tags' devices stay: its window is kept.
        for monitor in new.monitors {
            guard let before = old.monitors.first(where: { $0.name == monitor.name }) else {
                items.append(ReloadItem(kind: "monitor", name: monitor.name, action: .add, reasons: []))
                continue
            }
            var reasons: [String] = []
            if before != monitor { reasons.append("its definition changed") }
            let tags = [monitor.pv, monitor.sp, monitor.op] + (monitor.auto.map { [$0] } ?? [])
            let devices = Set(tags.compactMap { tag in new.tags.first { $0.name == tag }?.device })
            for device in devices.sorted() where !keptDevices.contains(device) {
                reasons.append("its device \(device) restarts")
            }
            // A loop's state tags belong to the loop's device, rebuilt when the loop restarts.
            let loops = Set(tags.compactMap { tag in new.loops.first { tag.hasPrefix("loop/\($0.name)/") }?.name })
            for loop in loops.sorted() where !keepsLoop(loop) { reasons.append("its loop \(loop) restarts") }
            items.append(
                ReloadItem(
                    kind: "monitor", name: monitor.name, action: reasons.isEmpty ? .keep : .restart, reasons: reasons))
        }
        for monitor in old.monitors where !new.monitors.contains(where: { $0.name == monitor.name }) {
            items.append(ReloadItem(kind: "monitor", name: monitor.name, action: .remove, reasons: []))
        }
        if new.history != old.history { needsRestart.append("history settings") }
        if new.controlSocketPath != old.controlSocketPath { needsRestart.append("control_socket") }
        if new.readOnlyGroup != old.readOnlyGroup { needsRestart.append("read_only_group") }
        if new.logLevel != old.logLevel { needsRestart.append("log_level") }
        if new.metrics != old.metrics { needsRestart.append("metrics") }
        if new.sparkplug != old.sparkplug {
            needsRestart.append(
                old.sparkplug == nil
                    ? "sparkplug (enabled)" : new.sparkplug == nil ? "sparkplug (removed)" : "sparkplug settings")
        }
        newBirths = Self.birthSignature(old) != Self.birthSignature(new)
    }

    func keepsDevice(_ name: String) -> Bool {
        items.contains { $0.kind == "device" && $0.name == name && $0.action == .keep }
    }

    func keepsLoop(_ name: String) -> Bool {
        items.contains { $0.kind == "loop" && $0.name == name && $0.action == .keep }
    }

    func keepsMonitor(_ name: String) -> Bool {
        items.contains { $0.kind == "monitor" && $0.name == name && $0.action == .keep }
    }

    /// The one-line form the journal shows after a reload.
    var summary: ReloadSummary {
        var s = ReloadSummary()
        for item in items {
            let name = item.kind == "device" ? item.name : "\(item.kind) \(item.name)"
            switch item.action {
            case .keep: s.kept.append(name)
            case .restart: s.restarted.append(name)
            case .add: s.added.append(name)
            case .remove: s.removed.append(name)
            }
        }
        s.ignored = needsRestart
        return s
    }

    /// Why a device that exists before and after is restarted; empty when it is kept as it runs.
    private static func deviceChanges(
        _ name: String, before: DeviceDefinition, after: DeviceDefinition, old: AgentConfiguration,
        new: AgentConfiguration
    ) -> [String] {
        var reasons: [String] = []
        if before.transport != after.transport { reasons.append("its address changed") }
        var settings = after
        settings.transport = before.transport
        if settings != before { reasons.append("its connection settings changed") }
        let oldTags = old.tags.filter { $0.device == name }
        let newTags = new.tags.filter { $0.device == name }
        if oldTags != newTags {
            let oldByName = Dictionary(oldTags.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            let newNames = Set(newTags.map(\.name))
            let added = newTags.filter { oldByName[$0.name] == nil }.count
            let removed = oldTags.filter { !newNames.contains($0.name) }.count
            let changed = newTags.filter { tag in oldByName[tag.name].map { $0 != tag } ?? false }.count
            var parts: [String] = []
            if added > 0 { parts.append("\(added) added") }
            if removed > 0 { parts.append("\(removed) removed") }
            if changed > 0 { parts.append("\(changed) changed") }
            reasons.append("tags: " + (parts.isEmpty ? "reordered" : parts.joined(separator: ", ")))
        }
        if pollGroups(of: newTags, in: old) != pollGroups(of: newTags, in: new) {
            reasons.append("a poll group of its tags changed")
        }
        return reasons
    }

    private static func pollGroups(of tags: [TagDefinition], in c: AgentConfiguration) -> [PollGroup] {
        c.pollGroups.filter { g in tags.contains { $0.pollGroup == g.name } }
    }

    /// Device names with their tags' names, types and units, as the Sparkplug births carry them.
    private static func birthSignature(_ c: AgentConfiguration) -> [String] {
        c.devices.map { d in
            d.name + "|"
                + c.tags.filter { $0.device == d.name }.map { "\($0.name):\($0.type):\($0.units ?? "")" }
                .joined(separator: ",")
        }
            + c.loops.map { l in
                "loop-\(l.name)|" + (l.cvs.map(\.tag) + l.mvs.map(\.tag) + l.dvs).joined(separator: ",")
            }
            // A monitor's tags are fixed by its name; only the PV's units (the IAE's) could change them.
            + c.monitors.map { m in
                "monitor-\(m.name)|" + (c.tags.first { $0.name == m.pv }?.units ?? "")
            }
    }
}

/// One device's or loop's fate in a reload.
struct ReloadItem {
    enum Action: String { case keep, restart, add, remove }
    var kind: String
    var name: String
    var action: Action
    var reasons: [String]
}
