import Foundation
import Sparkplug
import Testing

private let definition = SparkplugTemplateDefinition(
    name: "EdgePilot/Pump",
    members: [
        SparkplugMetric(name: "flow", timestamp: nil, nullOf: .double),
        SparkplugMetric(name: "running", timestamp: nil, nullOf: .boolean),
        SparkplugMetric(name: "mode", timestamp: nil, nullOf: .string),
    ],
    parameters: [SparkplugTemplateParameter(name: "plc", value: .string(""))])

private let pumpMetrics = [
    SparkplugMetric(name: "pump1/flow", timestamp: 1, value: .double(2.5), properties: [.engUnit("m3/h")]),
    SparkplugMetric(name: "pump1/running", timestamp: 1, value: .boolean(true)),
    SparkplugMetric(name: "pump1/mode", timestamp: 1, value: .string("auto")),
    SparkplugMetric(name: "pump1/voltage", timestamp: 1, value: .float(230)),
]

private func binding(keepFlat: Bool = false) -> SparkplugTemplateBinding {
    SparkplugTemplateBinding(
        instanceName: "Pump", definition: "EdgePilot/Pump",
        members: ["pump1/flow": "flow", "pump1/running": "running", "pump1/mode": "mode"],
        parameters: [SparkplugTemplateParameter(name: "plc", value: .string("10.0.0.7"))], keepFlatMetrics: keepFlat)
}

private func bornSession(keepFlat: Bool = false, aliases: Bool = true) throws -> (
    EdgeNodeSession, [SparkplugPayload]
) {
    var s = try EdgeNodeSession(
        configuration: EdgeNodeConfiguration(groupID: "G", edgeNodeID: "N", useAliases: aliases), nodeMetrics: [],
        lastBdSeq: nil)
    try s.declareTemplate(definition)
    _ = try s.addDevice("Pump1", metrics: pumpMetrics, template: binding(keepFlat: keepFlat), now: 1)
    _ = s.prepareConnect(now: 2)
    let births = try s.connected(now: 3).payloads()
    return (s, births)
}

extension Array where Element == EdgeNodeAction {
    fileprivate func payloads() throws -> [SparkplugPayload] {
        try compactMap { if case .publish(let p) = $0 { try SparkplugPayload(decoding: p.payload) } else { nil } }
    }
}

extension SparkplugMetric {
    fileprivate var template: SparkplugTemplate? {
        if case .template(let t)? = value { t } else { nil }
    }
}

@Suite struct TemplateTests {
    @Test func definitionAndInstanceRoundTripThroughOurDecoder() throws {
        let instance = SparkplugTemplate(
            version: definition.version, templateRef: "EdgePilot/Pump", isDefinition: false,
            metrics: [
                SparkplugMetric(name: "flow", timestamp: 7, value: .double(1.5), properties: [.quality(.good)]),
                SparkplugMetric(name: "running", timestamp: 7, nullOf: .boolean),
            ],
            parameters: [
                SparkplugTemplateParameter(name: "plc", value: .string("a")),
                SparkplugTemplateParameter(name: "index", value: .int32(-3)),
                SparkplugTemplateParameter(name: "nodefault", type: .double),
            ])
        let payload = SparkplugPayload(
            timestamp: 1, seq: 0,
            metrics: [
                SparkplugMetric(
                    name: "_types_/EdgePilot/Pump", timestamp: 1,
                    value: .template(
                        SparkplugTemplate(
                            version: definition.version, templateRef: nil, isDefinition: true,
                            metrics: definition.members, parameters: definition.parameters))),
                SparkplugMetric(name: "Pump", alias: 9, timestamp: 1, value: .template(instance)),
            ])
        #expect(try SparkplugPayload(decoding: payload.serialized()) == payload)
    }

    @Test func tahuReadsDefinitionAndInstanceFields() throws {
        let (_, births) = try bornSession()
        let nbirth = try SparkplugPayload(timestamp: 1, seq: 0, metrics: births[0].metrics).serialized()
        let dbirth = try SparkplugPayload(timestamp: 1, seq: 1, metrics: births[1].metrics).serialized()
        let decoded = try decodeWithTahu([nbirth, dbirth])
        let def = try #require(decoded[0].metric("_types_/EdgePilot/Pump"))
        #expect(def.uint("datatype") == 19)
        #expect(def["alias"] is NSNull)
        let dt = try #require(def.dict("template"))
        #expect(dt.bool("is_definition") == true)
        #expect(dt["template_ref"] is NSNull)
        #expect(dt.string("version") == definition.version)
        let defMembers = dt["metrics"] as? [[String: Any]] ?? []
        #expect(defMembers.compactMap { $0.string("name") } == ["flow", "running", "mode"])
        #expect(defMembers.compactMap { $0.uint("datatype") } == [10, 11, 12])
        let params = dt["parameters"] as? [[String: Any]] ?? []
        #expect(params.first?.string("name") == "plc")
        #expect(params.first?.uint("type") == 12)

        let inst = try #require(decoded[1].metric("Pump"))
        #expect(inst.uint("datatype") == 19)
        let it = try #require(inst.dict("template"))
        #expect(it.bool("is_definition") == false)
        #expect(it.string("template_ref") == "EdgePilot/Pump")
        #expect(it.string("version") == dt.string("version"))
        let members = it["metrics"] as? [[String: Any]] ?? []
        #expect(members.compactMap { $0.string("name") } == ["flow", "running", "mode"])
        #expect((members[0]["value"] as? NSNumber)?.doubleValue == 2.5)
        #expect((members[1]["value"] as? NSNumber)?.boolValue == true)
        #expect(members[2].string("value") == "auto")
        #expect(members.allSatisfy { $0["alias"] is NSNull })
        #expect((it["parameters"] as? [[String: Any]])?.first?.string("value") == "10.0.0.7")
        // The unbound metric stays flat.
        #expect(decoded[1].metric("pump1/voltage") != nil)
        #expect(decoded[1].metric("pump1/flow") == nil)
    }

    @Test func instanceDataCarriesOnlyChangedMembersByAlias() throws {
        var (s, births) = try bornSession()
        let instanceAlias = try #require(births[1].metrics.first { $0.name == "Pump" }?.alias)
        let actions = try s.updateDevice(
            "Pump1",
            [
                SparkplugMetric(name: "pump1/flow", timestamp: 10, value: .double(3)),
                SparkplugMetric(name: "pump1/running", timestamp: 11, value: .boolean(true)),  // unchanged
                SparkplugMetric(name: "pump1/voltage", timestamp: 12, value: .float(231)),
            ], now: 20)
        let ddata = try #require(try actions.payloads().first)
        #expect(ddata.metrics.count == 2)
        #expect(ddata.metrics[0].name == nil && ddata.metrics[0].value == .float(231))
        let inst = ddata.metrics[1]
        #expect(inst.name == nil)
        #expect(inst.alias == instanceAlias)
        #expect(inst.timestamp == 10)
        let t = try #require(inst.template)
        #expect(t.templateRef == "EdgePilot/Pump")
        #expect(t.version == definition.version)
        #expect(!t.isDefinition)
        #expect(t.metrics.map(\.name) == ["flow"])
        #expect(t.metrics[0].value == .double(3))
    }

    @Test func keepFlatMetricsPublishesBoth() throws {
        var (s, births) = try bornSession(keepFlat: true)
        #expect(births[1].metrics.compactMap(\.name) == pumpMetrics.compactMap(\.name) + ["Pump"])
        let ddata = try #require(
            try s.updateDevice(
                "Pump1", [SparkplugMetric(name: "pump1/mode", timestamp: 5, value: .string("off"))], now: 6
            )
            .payloads().first)
        #expect(ddata.metrics.count == 2)
        #expect(ddata.metrics[0].value == .string("off"))
        #expect(ddata.metrics[1].template?.metrics.map(\.value) == [.string("off")])
    }

    @Test func rebirthRepeatsDefinitionAndInstanceWithCurrentValues() throws {
        var (s, _) = try bornSession(aliases: false)
        _ = try s.updateDevice("Pump1", [SparkplugMetric(name: "pump1/flow", timestamp: 5, value: .double(9))], now: 6)
        s.requestRebirth(now: 2000)
        let births = try s.serveDueRebirth(now: 3000).payloads()
        try #require(births.count == 2)
        let def = try #require(births[0].metrics.first { $0.name == "_types_/EdgePilot/Pump" }?.template)
        let inst = try #require(births[1].metrics.first { $0.name == "Pump" })
        #expect(inst.alias == nil)
        #expect(inst.template?.version == def.version)
        #expect(inst.template?.metrics.first { $0.name == "flow" }?.value == .double(9))
    }

    @Test func commandsToMembersBecomeWritesToTheBoundMetrics() throws {
        var (s, births) = try bornSession()
        let alias = try #require(births[1].metrics.first { $0.name == "Pump" }?.alias)
        // As MQTT Engine writes a UDT member: the instance metric by alias, carrying the member.
        var bytes = try SparkplugPayload(
            timestamp: 5,
            metrics: [
                SparkplugMetric(
                    name: nil, alias: alias, timestamp: 5,
                    value: .template(
                        SparkplugTemplate(
                            version: nil, templateRef: "EdgePilot/Pump", isDefinition: false,
                            metrics: [SparkplugMetric(name: "mode", timestamp: 5, value: .string("manual"))])))
            ]
        ).serialized()
        var actions = try s.handleMessage(topic: "spBv1.0/G/DCMD/N/Pump1", payload: bytes, now: 6)
        guard case .deviceCommand(let device, let writes)? = actions.first else {
            Issue.record("no device command: \(actions)")
            return
        }
        #expect(device == "Pump1")
        #expect(writes.map(\.name) == ["pump1/mode"])
        #expect(writes.map(\.value) == [.string("manual")])

        // By path, `<instance>/<member>`, as a flat write would be named.
        bytes = try SparkplugPayload(
            timestamp: 5, metrics: [SparkplugMetric(name: "Pump/flow", timestamp: 5, value: .double(4))]
        ).serialized()
        actions = try s.handleMessage(topic: "spBv1.0/G/DCMD/N/Pump1", payload: bytes, now: 6)
        guard case .deviceCommand(_, let flowWrites)? = actions.first else {
            Issue.record("no device command: \(actions)")
            return
        }
        #expect(flowWrites.map(\.name) == ["pump1/flow"])

        // A member the definition does not have is refused, naming it.
        bytes = try SparkplugPayload(
            timestamp: 5,
            metrics: [
                SparkplugMetric(
                    name: "Pump", timestamp: 5,
                    value: .template(
                        SparkplugTemplate(
                            version: nil, templateRef: "EdgePilot/Pump", isDefinition: false,
                            metrics: [SparkplugMetric(name: "speed", timestamp: 5, value: .double(1))])))
            ]
        ).serialized()
        #expect(throws: SparkplugError.self) {
            try s.handleMessage(topic: "spBv1.0/G/DCMD/N/Pump1", payload: bytes, now: 6)
        }
    }

    @Test func versionFollowsTheMembers() {
        var other = definition.members
        #expect(
            SparkplugTemplateDefinition(name: "X", members: other).version
                == SparkplugTemplateDefinition(name: "Y", members: other).version)
        let before = SparkplugTemplateDefinition(name: "X", members: other).version
        other[0].dataType = .float
        #expect(SparkplugTemplateDefinition(name: "X", members: other).version != before)
        other.append(SparkplugMetric(name: "extra", timestamp: nil, nullOf: .int32))
        #expect(SparkplugTemplateDefinition(name: "X", members: other).version != before)
    }

    @Test func bindingsThatDoNotFitTheDefinitionAreRefused() throws {
        var s = try EdgeNodeSession(
            configuration: EdgeNodeConfiguration(groupID: "G", edgeNodeID: "N"), nodeMetrics: [], lastBdSeq: nil)
        #expect(throws: SparkplugError.self) {
            try s.addDevice("P", metrics: pumpMetrics, template: binding(), now: 1)  // not declared
        }
        try s.declareTemplate(definition)
        var missing = binding()
        missing.members["pump1/mode"] = nil
        #expect(throws: SparkplugError.self) { try s.addDevice("P", metrics: pumpMetrics, template: missing, now: 1) }
        var wrongType = binding()
        wrongType.members = ["pump1/voltage": "flow", "pump1/running": "running", "pump1/mode": "mode"]
        #expect(throws: SparkplugError.self) {
            try s.addDevice("P", metrics: pumpMetrics, template: wrongType, now: 1)
        }
        #expect(throws: SparkplugError.self) { try s.declareTemplate(definition) }
    }
}
