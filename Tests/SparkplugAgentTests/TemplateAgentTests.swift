import Foundation
import TestSupport
import Testing

/// With `sparkplug.templates.loops`, a loop is a template instance: its definition in NBIRTH, the instance in the
/// loop device's DBIRTH, member changes in DDATA, member writes by DCMD under the same policy as flat writes,
/// all read by the Tahu-decoding host through mosquitto (docs/decisions/0037-sparkplug-templates.md).
@Suite(.serialized) struct TemplateAgentTests {
    static let definition = "EdgePilot/Loop_2CV_2MV"

    static func config(modbusPort: Int, brokerPort: Int, keepFlat: Bool = false) -> String {
        guard keepFlat else {
            return LoopDeviceTests.config(modbusPort: modbusPort, brokerPort: brokerPort)
                + "  templates: {loops: true}\n"
        }
        return LoopDeviceTests.config(modbusPort: modbusPort, brokerPort: brokerPort) + """
              templates:
                loops: true
                keep_flat_metrics: true
                types:
                  - {name: EdgePilot/Tanks, members: [tank1/level, tank2/level, pump1/voltage], devices: [plant]}

            """
    }

    static func template(_ m: [String: Any]?) -> [String: Any]? { m?["template"] as? [String: Any] }
    static func members(_ t: [String: Any]?) -> [[String: Any]] { t?["metrics"] as? [[String: Any]] ?? [] }
    static func member(_ t: [String: Any]?, _ name: String) -> [String: Any]? {
        members(t).first { $0["name"] as? String == name }
    }

    @Test func loopIsATemplateInstanceOfADefinitionInNBirth() throws {
        let scenario = try SparkplugScenario(
            plant: QuadTank(extraArguments: ["--initial", "12.4", "12.7", "1.8", "1.4"])
        ) { plantPort, brokerPort in
            Self.config(modbusPort: plantPort, brokerPort: brokerPort)
        }
        defer { scenario.stop() }
        let agent = scenario.agent
        let host = scenario.host
        try host.waitFor("DBIRTH of loop-tanks") { ms in
            ms.contains { $0.kind == "DBIRTH" && $0.device == "loop-tanks" }
        }

        // tck-id-payloads-template-definition-nbirth, -is-definition, -definition-ref, -definition-members,
        // -definition-parameters, tck-id-payloads-template-version
        let nbirth = try #require(host.messages.first { $0.kind == "NBIRTH" })
        let defMetric = try #require(
            nbirth.metric("_types_/" + Self.definition), "\(nbirth.metrics.map { $0["name"] })")
        #expect(defMetric.int("datatype") == 19)
        #expect(defMetric["alias"] is NSNull)
        let def = try #require(Self.template(defMetric))
        #expect(def.bool("is_definition") == true)
        #expect(def["template_ref"] is NSNull)
        let version = try #require(def["version"] as? String)
        let memberNames = Self.members(def).compactMap { $0["name"] as? String }
        for name in [
            "mode", "reason", "model/version", "cv1/value", "cv1/setpoint", "cv2/setpoint", "mv1/value",
            "kpi/cv1/iae", "kpi/mv2/saturation", "kpi/service_factor",
        ] {
            #expect(memberNames.contains(name), "definition lacks \(name): \(memberNames)")
        }
        let parameters = (def["parameters"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        #expect(parameters == ["loop", "cv1", "cv2", "mv1", "mv2"])
        // tck-id-payloads-template-parameter-*: name, type (String = 12) and the value field of that type.
        #expect(
            (def["parameters"] as? [[String: Any]] ?? []).allSatisfy {
                $0["type"] as? Int == 12 && $0["field"] as? String == "string_value"
            })

        // tck-id-payloads-template-instance-is-definition, -instance-ref, -instance-members, -members-birth,
        // -ref-instance, -instance-parameters; the flat metrics are gone (templates replace them by default).
        let dbirth = try #require(host.messages.first { $0.kind == "DBIRTH" && $0.device == "loop-tanks" })
        #expect(dbirth.metric("loop/tanks/mode") == nil)
        let instanceMetric = try #require(dbirth.metric("Loop"))
        #expect(instanceMetric.int("datatype") == 19)
        #expect(instanceMetric["alias"] is NSNumber)
        let instance = try #require(Self.template(instanceMetric))
        #expect(instance.bool("is_definition") == false)
        #expect(instance["template_ref"] as? String == Self.definition)
        #expect(instance["version"] as? String == version)
        #expect(Self.members(instance).compactMap { $0["name"] as? String } == memberNames)
        #expect(Self.members(instance).allSatisfy { $0["alias"] is NSNull })
        #expect(Self.member(instance, "cv1/setpoint")?.int("datatype") == 10)
        #expect(Self.member(instance, "cv1/setpoint")?.property("engUnit") as? String == "cm")
        let params = (instance["parameters"] as? [[String: Any]] ?? []).reduce(into: [String: String]()) {
            $0[$1["name"] as? String ?? ""] = $1["value"] as? String
        }
        #expect(
            params == [
                "loop": "tanks", "cv1": "tank1/level", "cv2": "tank2/level", "mv1": "pump1/voltage",
                "mv2": "pump2/voltage",
            ])

        // The loop's first snapshot after the birth (it fills every member), so what follows is a change alone.
        try host.waitFor("the loop's first DDATA") { ms in
            ms.contains { $0.kind == "DDATA" && $0.device == "loop-tanks" }
        }
        // A member write, as MQTT Engine sends it (the instance by alias, the member inside), runs the loop command
        // through the allow list like the flat metric, and comes back as instance data with only that member.
        try host.send([
            "cmd": "dcmd_template", "device": "loop-tanks", "alias": instanceMetric.int("alias") ?? 0,
            "member": "mode", "datatype": "String", "value": "manual",
        ])
        try host.waitFor("mode manual as a member in DDATA") { ms in
            ms.contains { m in
                m.kind == "DDATA" && m.device == "loop-tanks"
                    && m.metrics.contains {
                        $0["name"] as? String == "Loop" && $0["alias"] is NSNumber
                            && Self.member(Self.template($0), "mode")?["value"] as? String == "manual"
                    }
            }
        }
        let data = host.messages.filter { $0.kind == "DDATA" && $0.device == "loop-tanks" }
        for m in data.flatMap(\.metrics) {
            // tck-id-payloads-template-instance-members, -members-data: data carries members of the definition,
            // only those that changed.
            let t = try #require(Self.template(m), "only the instance in the loop's DDATA: \(m)")
            #expect(t["template_ref"] as? String == Self.definition && t["version"] as? String == version)
            #expect(t.bool("is_definition") == false)
            let names = Self.members(t).compactMap { $0["name"] as? String }
            #expect(Set(names).isSubset(of: memberNames), "\(names)")
        }
        let modeChange = data.last { m in
            m.metrics.contains { Self.member(Self.template($0), "mode")?["value"] as? String == "manual" }
        }
        let changed = Self.members(Self.template(modeChange?.metrics.first)).count
        #expect(changed > 0 && changed < memberNames.count, "a mode change sends the members it changed, not all")
        // Not on the allow list: refused and audited under the flat name, as a flat write would be.
        try host.send([
            "cmd": "dcmd_template", "device": "loop-tanks", "instance": "Loop", "member": "cv2/setpoint",
            "datatype": "Double", "value": 12.0,
        ])
        func auditRows() -> [[String: Any]] {
            let audit = (try? agent.cli(["audit", "--json"]))?.stdout ?? "[]"
            return (try? JSONSerialization.jsonObject(with: Data(audit.utf8))) as? [[String: Any]] ?? []
        }
        #expect(
            eventually(timeout: 10) {
                let rows = auditRows()
                return rows.contains { $0["tag"] as? String == "loop/tanks/mode" && $0["result"] as? String == "ok" }
                    && rows.contains {
                        $0["tag"] as? String == "loop/tanks/cv/tank2/level/setpoint"
                            && $0["result"] as? String == "refused"
                    }
            }, "\(auditRows())")

        // A rebirth repeats the definition and the instance, same version, current values.
        let before = host.messages.count
        try host.send(["cmd": "rebirth"])
        try host.waitFor("rebirth") { ms in
            ms.dropFirst(before).contains { $0.kind == "DBIRTH" && $0.device == "loop-tanks" }
        }
        let again = host.messages.dropFirst(before)
        let nb = try #require(again.first { $0.kind == "NBIRTH" })
        #expect(Self.template(nb.metric("_types_/" + Self.definition))?["version"] as? String == version)
        let db = try #require(again.first { $0.kind == "DBIRTH" && $0.device == "loop-tanks" })
        let reborn = Self.template(db.metric("Loop"))
        #expect(reborn?["version"] as? String == version)
        #expect(Self.member(reborn, "mode")?["value"] as? String == "manual")
        #expect(Self.member(reborn, "cv1/setpoint")?.double("value") == 12.4)
        #expect(seqBreak(host.messages) == nil, "\(seqBreak(host.messages) ?? "")")
        // tck-id-payloads-template-definition-nbirth-only, tck-id-topics-nbirth-templates: definitions only in
        // NBIRTH, and every instance refers to a definition of the NBIRTH before it.
        var defined: Set<String> = []
        for m in host.messages {
            if m.kind == "NBIRTH" { defined = [] }
            for metric in m.metrics {
                guard let t = Self.template(metric) else { continue }
                if t.bool("is_definition") == true {
                    #expect(m.kind == "NBIRTH", "a definition in \(m.kind)")
                    defined.insert(String((metric["name"] as? String ?? "").dropFirst("_types_/".count)))
                } else {
                    #expect(defined.contains(t["template_ref"] as? String ?? ""), "\(m.kind) before its definition")
                }
            }
        }

        // `mqtt watch --json` shows the definition and the instance with their members.
        let out = agent.dir.path + "/watch.jsonl"
        let spawned = try SpawnedProcess(
            agent.binary, ["mqtt", "watch", "--config", agent.configPath, "--json", "--seconds", "40"], output: out)
        func lines() -> [[String: Any]] {
            ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").split(separator: "\n").compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
        }
        func watched(_ kind: String, _ name: String) -> [String: Any]? {
            lines().last { $0["type"] as? String == kind }.flatMap { e in
                (e["metrics"] as? [[String: Any]])?.first { $0["name"] as? String == name }
            }
        }
        // Rebirths until the watcher, which subscribes after its start, has seen one.
        #expect(
            eventually(timeout: 25) {
                if watched("DBIRTH", "Loop") != nil { return true }
                try? host.send(["cmd": "rebirth"])
                Thread.sleep(forTimeInterval: 1.5)
                return watched("DBIRTH", "Loop") != nil
            })
        _ = spawned.terminate()
        let wdef = watched("NBIRTH", "_types_/" + Self.definition)?["template"] as? [String: Any]
        #expect(wdef?["is_definition"] as? Bool == true && wdef?["version"] as? String == version, "\(wdef ?? [:])")
        let winst = watched("DBIRTH", "Loop")?["template"] as? [String: Any]
        #expect(winst?["template_ref"] as? String == Self.definition)
        let wmembers = winst?["members"] as? [[String: Any]] ?? []
        #expect(wmembers.first { $0["name"] as? String == "mode" }?["value"] as? String == "\"manual\"")
    }

    /// Beside the loop, a configured device type: the plant device is an instance of `EdgePilot/Tanks`.
    @Test func keepFlatMetricsBirthsTheInstanceBesideTheFlatMetrics() throws {
        let scenario = try SparkplugScenario(
            plant: QuadTank(extraArguments: ["--initial", "12.4", "12.7", "1.8", "1.4"])
        ) { plantPort, brokerPort in
            Self.config(modbusPort: plantPort, brokerPort: brokerPort, keepFlat: true)
        }
        defer { scenario.stop() }
        let host = scenario.host
        try host.waitFor("DBIRTH of loop-tanks") { ms in
            ms.contains { $0.kind == "DBIRTH" && $0.device == "loop-tanks" }
        }
        // Both paths carry the same values: the flat setpoint and the instance's member arrive together.
        try host.waitFor("setpoint 12.4 flat and as a member") { ms in
            ms.contains { m in
                m.device == "loop-tanks" && m.metric("loop/tanks/cv/tank1/level/setpoint")?.double("value") == 12.4
                    && Self.member(Self.template(m.metric("Loop")), "cv1/setpoint")?.double("value") == 12.4
            }
        }
        let dbirth = try #require(host.messages.first { $0.kind == "DBIRTH" && $0.device == "loop-tanks" })
        #expect(dbirth.metric("loop/tanks/mode") != nil && dbirth.metric("Loop") != nil)
        // The plant device as an instance of its configured type, beside its flat tags; its data updates both.
        let nbirth = try #require(host.messages.first { $0.kind == "NBIRTH" })
        let tanks = Self.template(nbirth.metric("_types_/EdgePilot/Tanks"))
        #expect(
            Self.members(tanks).compactMap { $0["name"] as? String } == ["tank1/level", "tank2/level", "pump1/voltage"])
        let plant = try #require(host.messages.first { $0.kind == "DBIRTH" && $0.device == "plant" })
        let instance = Self.template(plant.metric("Tanks"))
        #expect(instance?["template_ref"] as? String == "EdgePilot/Tanks")
        #expect(instance?["version"] as? String == tanks?["version"] as? String)
        #expect(plant.metric("tank1/level") != nil && plant.metric("pump2/voltage") != nil)
        let params = instance?["parameters"] as? [[String: Any]] ?? []
        #expect(params.first?["name"] as? String == "device" && params.first?["value"] as? String == "plant")
        try host.waitFor("a level in plant DDATA, flat and as a member") { ms in
            ms.contains { m in
                guard m.kind == "DDATA", m.device == "plant", let flat = m.metric("tank1/level")?.double("value")
                else { return false }
                return Self.member(Self.template(m.metric("Tanks")), "tank1/level")?.double("value") == flat
            }
        }
    }
}
