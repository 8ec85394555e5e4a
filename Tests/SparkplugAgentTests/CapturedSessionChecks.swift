import Foundation
import TestSupport
import Testing

/// The checks of `SparkplugConformanceTests`, each over the whole capture (the table maps tck-ids to them).
extension CapturedSessionChecks {
    // MARK: Topics and flags

    static let nodeTypes: Set<String> = ["NBIRTH", "NDEATH", "NDATA", "NCMD"]
    static let deviceTypes: Set<String> = ["DBIRTH", "DDEATH", "DDATA", "DCMD"]

    /// The topic is spBv1.0/Plant1/TYPE/edge1 for node types and spBv1.0/Plant1/TYPE/edge1/plant for device types.
    static func topicProblem(_ topic: String) -> String? {
        let parts = topic.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 4, parts[0] == "spBv1.0", parts[1] == "Plant1", parts[3] == "edge1" else {
            return "\(topic): not spBv1.0/Plant1/<type>/edge1[/device]"
        }
        if nodeTypes.contains(parts[2]) { return parts.count == 4 ? nil : "\(topic): a device id on a node type" }
        if deviceTypes.contains(parts[2]) {
            return parts.count == 5 && parts[4] == "plant" ? nil : "\(topic): no device id on a device type"
        }
        return "\(topic): unknown message type"
    }

    static let topicShapes: CaptureCheck = { c in
        let sent = c.agent.publishes.map(\.topic) + c.agent.connects.compactMap { $0.will?.topic }
        let seen = c.messages.map(\.topic)
        #expect(Set(c.messages.map(\.kind)) == ["NBIRTH", "DBIRTH", "NDATA", "DDATA", "DDEATH", "NDEATH"])
        let problems = (sent + seen).compactMap(topicProblem)
        #expect(problems.isEmpty, "\(Set(problems))")
        #expect(c.agent.connects.allSatisfy { $0.will?.topic == "spBv1.0/Plant1/NDEATH/edge1" })
    }

    /// After every CONNECT and before its first NBIRTH: NCMD, DCMD of every device and the Primary Host's STATE, QoS 1.
    static let subscriptions: CaptureCheck = { c in
        let events = c.agent.events
        let connectIndices = events.indices.filter { if case .connect = events[$0] { true } else { false } }
        #expect(connectIndices.count >= 3, "initial, after the broker outage, after the restart")
        for (n, start) in connectIndices.enumerated() {
            let end = n + 1 < connectIndices.count ? connectIndices[n + 1] : events.count
            let session = events[start..<end]
            let birth = session.firstIndex {
                if case .publish(let t, _, _) = $0 { t.contains("/NBIRTH/") } else { false }
            }
            var subscribed: [BrokerLog.Subscription] = []
            for e in session[start..<(birth ?? end)] { if case .subscribe(let s) = e { subscribed += s } }
            for topic in ["spBv1.0/Plant1/NCMD/edge1", "spBv1.0/Plant1/DCMD/edge1/+", "spBv1.0/STATE/Host1"] {
                #expect(subscribed.contains { $0.topic == topic && $0.qos == 1 }, "session \(n): \(subscribed)")
            }
        }
        // And they work: the DCMD reached the PLC, the NCMD was answered (see rebirthAnswer).
        #expect(c.pumpAfterDCMD == ConformanceCapture.pumpValue)
    }

    /// Every CONNECT: MQTT 3.1.1, clean session, Will = NDEATH at QoS 1 not retained.
    static let connects: CaptureCheck = { c in
        let connects = c.agent.connects
        #expect(connects.count >= 3)
        for (i, connect) in connects.enumerated() {
            #expect(connect.protocolLevel == 2 && connect.cleanSession, "CONNECT \(i)")
            #expect(
                connect.will == .init(topic: "spBv1.0/Plant1/NDEATH/edge1", qos: 1, retain: false),
                "CONNECT \(i): \(connect.will.map { "\($0)" } ?? "no Will")")
        }
        // The Will the broker published after the kill arrived at QoS 1 (a QoS 1 subscription gets min(both)).
        #expect(c.all("NDEATH").allSatisfy { $0.qos == 1 }, "the Wills and the NDEATH arrive at QoS 1")
    }

    /// As sent (mosquitto's log) and as received: QoS 0, retain false; nothing retained afterwards.
    static func flags(_ kind: String) -> CaptureCheck {
        { c in
            let sent = c.agent.publishes.filter {
                $0.topic.split(separator: "/").dropFirst(2).first.map(String.init) == kind
            }
            #expect(!sent.isEmpty, "no \(kind) published")
            #expect(
                sent.allSatisfy { $0.qos == 0 && !$0.retain },
                "\(kind): \(Set(sent.map { "q\($0.qos) r\($0.retain)" }))")
            #expect(c.all(kind).allSatisfy { $0.qos == 0 && !$0.retain })
            #expect(c.retainedAfterwards.isEmpty, "retained: \(c.retainedAfterwards.map { $0["topic"] ?? "" })")
        }
    }

    // MARK: seq

    static let seqPresence: CaptureCheck = { c in
        for m in c.messages {
            if m.kind == "NDEATH" {
                #expect(m.seq == nil, "NDEATH \(m.index) carries seq \(m.seq ?? -1)")
            } else {
                #expect(m.seq != nil, "\(m.kind) \(m.index) has no seq")
            }
        }
        for kind in ["NBIRTH", "DBIRTH", "NDATA", "DDATA", "DDEATH", "NDEATH"] {
            #expect(!c.all(kind).isEmpty, "\(kind)")
        }
    }

    static let nbirthSeqZero: CaptureCheck = { c in
        let births = c.all("NBIRTH")
        #expect(births.count == 4)
        #expect(births.allSatisfy { $0.seq == 0 }, "\(births.map { $0.seq ?? -1 })")
    }

    /// Within each birth epoch seq goes +1 per message (255 → 0), and the capture saw the wrap.
    static let seqIncrements: CaptureCheck = { c in
        var wrapped = false
        var checkedKinds: Set<String> = []
        for epoch in c.epochs {
            for (previous, m) in zip(epoch, epoch.dropFirst()) {
                guard let p = previous.seq, let s = m.seq else { continue }
                #expect(s == (p + 1) % 256, "\(m.kind) \(m.index): seq \(s) after \(p)")
                if p == 255 && s == 0 { wrapped = true }
                checkedKinds.insert(m.kind)
            }
        }
        #expect(wrapped, "seq passed 255 within one session")
        #expect(checkedKinds.isSuperset(of: ["DBIRTH", "NDATA", "DDATA", "DDEATH"]), "\(checkedKinds)")
    }

    // MARK: Timestamps

    /// The payload timestamp is the publication time in ms since the epoch, UTC: at most 10 s before the host's
    /// (UTC) receipt, not after it (1 s of slack for two clocks read on one machine).
    static let payloadTimestamps: CaptureCheck = { c in
        for m in c.messages where m.kind != "NDEATH" {
            guard let ts = m.timestamp else {
                Issue.record("\(m.kind) \(m.index) has no payload timestamp")
                continue
            }
            #expect(
                ts >= m.receivedAt - 10_000 && ts <= m.receivedAt + 1_000,
                "\(m.kind) \(m.index): \(ts) vs \(m.receivedAt)")
        }
    }

    static let metricTimestamps: CaptureCheck = { c in
        for m in c.messages where m.kind != "NDEATH" && m.kind != "DDEATH" {
            for metric in m.metrics {
                guard let ts = metric.int("timestamp") else {
                    Issue.record("\(m.kind) \(m.index): \(c.name(metric) ?? "?") has no timestamp")
                    continue
                }
                #expect(
                    ts >= c.startedAt - 1_000 && ts <= m.receivedAt + 1_000,
                    "\(m.kind) \(m.index): \(c.name(metric) ?? "?") at \(ts)")
            }
        }
    }

    // MARK: Metrics

    static let birthMetricDefinitions: CaptureCheck = { c in
        for m in c.messages where m.kind.hasSuffix("BIRTH") {
            var lowercased: Set<String> = []
            for metric in m.metrics {
                let name = metric["name"] as? String ?? ""
                #expect(!name.isEmpty, "\(m.kind) \(m.index): a metric without a name")
                #expect(lowercased.insert(name.lowercased()).inserted, "\(m.kind): '\(name)' differs only by case")
                let type = metric.int("datatype") ?? 0
                #expect((1...34).contains(type), "\(m.kind) \(name): datatype \(type)")
                #expect(metric["field"] is String || metric.bool("is_null") == true, "\(m.kind) \(name): no value")
            }
        }
    }

    /// Every data metric was declared by the birth of its epoch (NBIRTH for NDATA, the device's DBIRTH for DDATA).
    static let dataOnlyForBornMetrics: CaptureCheck = { c in
        let tags: Set<String> = [
            "tank1/level", "tank2/level", "tank3/level", "tank4/level", "pump1/voltage", "tank1/raw",
        ]
        for epoch in c.epochs {
            let node = Set(epoch[0].metrics.compactMap { $0["name"] as? String })
            var device: Set<String> = []
            for m in epoch {
                if m.kind == "DBIRTH" {
                    device = Set(m.metrics.compactMap { $0["name"] as? String })
                    #expect(device == tags, "DBIRTH \(m.index) declares \(device)")
                }
                guard m.isData else { continue }
                for metric in m.metrics {
                    let name = c.name(metric) ?? "?"
                    #expect((m.kind == "NDATA" ? node : device).contains(name), "\(m.kind) \(m.index): \(name) unborn")
                }
            }
        }
    }

    static let bdSeqs: CaptureCheck = { c in
        let births = c.all("NBIRTH")
        let deaths = c.all("NDEATH")
        for m in births + deaths {
            let metric = m.metrics.first { $0["name"] as? String == "bdSeq" }
            #expect(metric?.int("datatype") == 4, "\(m.kind) \(m.index): bdSeq Int64")
        }
        let b = births.map { c.bdSeq($0) ?? -1 }
        let d = deaths.map { c.bdSeq($0) ?? -1 }
        guard b.count == 4, d.count == 3 else {
            Issue.record("expected 4 NBIRTH and 3 NDEATH, got bdSeq \(b) and \(d)")
            return
        }
        #expect(b[0] == 0, "the first CONNECT of a fresh node: 0")
        #expect(b[1] == b[0], "a rebirth keeps the bdSeq")
        #expect(b[2] == b[1] + 1, "the CONNECT after the broker outage: +1")
        #expect(b[3] == b[2] + 1, "the restart after kill -9: +1")
        // The broker's Will when it shut down, its Will after the kill, the agent's own NDEATH at the stop.
        #expect(d == [b[1], b[2], b[3]], "each NDEATH carries the bdSeq of the NBIRTH it ends")
        for death in deaths {
            let birth = births.last { $0.index < death.index }
            #expect(birth.flatMap { c.bdSeq($0) } == c.bdSeq(death), "NDEATH \(death.index)")
        }
    }

    static let payloadsDecode: CaptureCheck = { c in
        #expect(c.messages.allSatisfy { $0.error == nil }, "\(c.messages.compactMap(\.error))")
        for m in c.all("NDEATH") {
            #expect(m.metrics.count == 1 && m.metrics.first?["name"] as? String == "bdSeq", "NDEATH \(m.index)")
        }
    }

    static let rebirthMetric: CaptureCheck = { c in
        for m in c.all("NBIRTH") {
            let metric = m.metrics.first { $0["name"] as? String == "Node Control/Rebirth" }
            #expect(metric?.int("datatype") == 11, "NBIRTH \(m.index): Boolean")
            #expect(metric?.bool("value") == false, "NBIRTH \(m.index): false")
            #expect(metric?["alias"] is NSNull, "NBIRTH \(m.index): no alias")
        }
    }

    /// After the broker handed the NCMD to the agent, data stops (at most one, being written as it arrived) until a
    /// complete birth sequence with the same bdSeq.
    static let rebirthAnswer: CaptureCheck = { c in
        let events = c.agent.events
        guard
            let ncmd = events.firstIndex(where: {
                if case .delivered(let t, _, _) = $0 { t.contains("/NCMD/") } else { false }
            })
        else {
            Issue.record("the NCMD never reached the agent")
            return
        }
        let after = events[ncmd...]
        guard
            let birth = after.firstIndex(where: {
                if case .publish(let t, _, _) = $0 { t.contains("/NBIRTH/") } else { false }
            })
        else {
            Issue.record("no NBIRTH after the NCMD")
            return
        }
        let data = events[ncmd..<birth].filter {
            if case .publish(let t, _, _) = $0 { t.contains("DATA/") } else { false }
        }
        #expect(data.count <= 1, "\(data.count) data messages after the Rebirth request, before the NBIRTH")
        if case .publish(let t, _, _) = events[events.index(after: birth)] {
            #expect(t == "spBv1.0/Plant1/DBIRTH/edge1/plant", "the DBIRTH follows the NBIRTH")
        }
    }

    /// Each epoch starts with NBIRTH; DBIRTH precedes the device's data and all NDATA; nothing outside an epoch.
    static let birthsFirst: CaptureCheck = { c in
        #expect(c.outsideEpochs.isEmpty, "\(c.outsideEpochs.map { "\($0.kind) \($0.index)" })")
        for epoch in c.epochs {
            let dbirth = epoch.firstIndex { $0.kind == "DBIRTH" }
            let ddeath = epoch.firstIndex { $0.kind == "DDEATH" }
            let firstData = epoch.firstIndex(where: \.isData)
            if let firstData, ddeath.map({ $0 > firstData }) ?? true {
                #expect(dbirth.map { $0 < firstData } ?? false, "epoch at \(epoch[0].index): data before DBIRTH")
            }
        }
        // On the wire: nothing is published before the CONNECT's subscriptions.
        var subscribed = false
        for e in c.agent.events {
            switch e {
            case .connect: subscribed = false
            case .subscribe: subscribed = true
            case .publish(let t, _, _) where t.contains("/NBIRTH/"): #expect(subscribed, "NBIRTH before SUBSCRIBE")
            default: break
            }
        }
    }

    /// After every CONNECT, the first NBIRTH follows the delivery of the Primary Host's STATE.
    static let birthsAfterState: CaptureCheck = { c in
        var stateSeen = false
        var births = 0
        for e in c.agent.events {
            switch e {
            case .connect: stateSeen = false
            case .delivered(let t, _, _) where t == "spBv1.0/STATE/Host1": stateSeen = true
            case .publish(let t, _, _) where t.contains("/NBIRTH/"):
                births += 1
                #expect(stateSeen, "NBIRTH \(births) before the STATE of Host1")
            default: break
            }
        }
        #expect(births == 4)
    }

    /// Live data carries only values that differ from the last ones the host has for the metric in this epoch.
    static func onlyChanges(_ kind: String) -> CaptureCheck {
        { c in
            var repeats: [String] = []
            for epoch in c.epochs {
                var last: [String: String] = [:]
                for m in epoch where m.kind == kind || m.kind.hasSuffix("BIRTH") {
                    for metric in m.metrics where metric.bool("is_historical") != true {
                        guard let name = c.name(metric) else { continue }
                        let key = (m.device ?? "") + "/" + name
                        let value = "\(metric["value"] ?? "null")"
                        if m.isData, last[key] == value { repeats.append("\(m.kind) \(m.index) \(name)=\(value)") }
                        last[key] = value
                    }
                }
            }
            #expect(repeats.isEmpty, "unchanged values sent again: \(repeats.prefix(10)) (\(repeats.count))")
            #expect(c.all(kind).count >= 1)
        }
    }

    static let chronological: CaptureCheck = { c in
        for m in c.messages where m.kind != "NDEATH" {
            var last: [String: Int64] = [:]
            for metric in m.metrics where metric.bool("is_historical") != true {
                guard let name = c.name(metric), let ts = metric.int("timestamp") else { continue }
                #expect(last[name].map { $0 <= ts } ?? true, "\(m.kind) \(m.index): \(name) out of order")
                last[name] = ts
            }
        }
    }

    /// The NBIRTH carries values read when it was built: every metric has a value, and those that change all the
    /// time (the poll count, the uptime) carry a reading taken at the birth, not one from the last NDATA tick or the
    /// session's start. (A metric that did not change keeps the time it was captured.)
    static let nbirthValues: CaptureCheck = { c in
        for m in c.all("NBIRTH") {
            for metric in m.metrics {
                let name = c.name(metric) ?? "?"
                #expect(metric["field"] is String, "NBIRTH \(m.index): \(name) without a value")
                guard name == "Polling/Polls" || name == "Properties/Uptime" else { continue }
                if let ts = metric.int("timestamp"), let birth = m.timestamp {
                    #expect(birth - ts <= 1_000, "NBIRTH \(m.index): \(name) read \(birth - ts) ms before the birth")
                }
            }
        }
    }

    /// DBIRTH: every metric with a good value, and the written voltage in every DBIRTH after it was written (a
    /// metric that does not change is still born with its current value).
    static let dbirthValues: CaptureCheck = { c in
        let written = c.messages.firstIndex {
            $0.kind == "DDATA"
                && $0.metrics.contains {
                    c.name($0) == "pump1/voltage" && $0.double("value") == ConformanceCapture.pumpValue
                }
        }
        for m in c.all("DBIRTH") {
            for metric in m.metrics {
                #expect(metric["field"] is String, "DBIRTH \(m.index): \(c.name(metric) ?? "?") without a value")
                #expect(metric.property("Quality") as? Int == 192, "DBIRTH \(m.index): \(c.name(metric) ?? "?")")
            }
            if let written, m.index > written {
                #expect(
                    m.metrics.first { $0["name"] as? String == "pump1/voltage" }?.double("value")
                        == ConformanceCapture.pumpValue)
            }
        }
    }

    static let deviceDeath: CaptureCheck = { c in
        let deaths = c.all("DDEATH")
        #expect(deaths.count >= 1 && deaths.allSatisfy { $0.device == "plant" })
        if let death = deaths.first {
            #expect(
                c.messages.dropFirst(death.index + 1).first { $0.device == "plant" }?.kind == "DBIRTH",
                "after DDEATH, the next device message is its DBIRTH")
        }
    }

    /// The stop: the agent publishes NDEATH itself (QoS 1), then DISCONNECT, nothing in between.
    static let gracefulDeath: CaptureCheck = { c in
        let events = c.agent.events
        guard let disconnect = events.lastIndex(of: .disconnect), disconnect > 0 else {
            Issue.record("no DISCONNECT: \(events.suffix(3))")
            return
        }
        #expect(
            events[disconnect - 1] == .publish(topic: "spBv1.0/Plant1/NDEATH/edge1", qos: 1, retain: false),
            "\(events[disconnect - 1])")
        #expect(
            c.agent.publishes.filter { $0.topic.contains("/NDEATH/") }.count == 1,
            "only the stop publishes NDEATH; the kill left it to the Will")
    }

    static let aliases: CaptureCheck = { c in
        var seen: [Int64: String] = [:]
        for m in c.messages where m.kind.hasSuffix("BIRTH") {
            for metric in m.metrics {
                guard let alias = metric.int("alias") else {
                    let name = metric["name"] as? String ?? "?"
                    #expect(name == "bdSeq" || name.hasPrefix("Node Control/"), "\(m.kind): \(name) without alias")
                    continue
                }
                let name = metric["name"] as? String
                #expect(name != nil, "\(m.kind) \(m.index): alias \(alias) without a name")
                if let other = seen[alias] { #expect(other == name, "alias \(alias): \(other) and \(name ?? "?")") }
                seen[alias] = name
            }
        }
        #expect(Set(seen.values).count == seen.count, "one alias per metric across the node and its devices")
        for m in c.messages where m.isData {
            for metric in m.metrics {
                #expect(metric["name"] is NSNull && metric.int("alias") != nil, "\(m.kind) \(m.index): alias only")
            }
        }
        // The agent understood a DCMD by alias alone.
        #expect(c.pumpAlias != nil && c.pumpAfterDCMD == ConformanceCapture.pumpValue)
    }

    /// Every PropertySet: as many keys as values, each value typed (UInt32 in the schema) with a Sparkplug type
    /// whose value field matches; Quality is Int32 (3) in int_value with 0, 192 or 500.
    static let properties: CaptureCheck = { c in
        let fieldOf: [Int64: String] = [
            1: "int_value", 2: "int_value", 3: "int_value", 5: "int_value", 6: "int_value", 7: "int_value",
            4: "long_value", 8: "long_value", 13: "long_value", 9: "float_value", 10: "double_value",
            11: "boolean_value", 12: "string_value", 14: "string_value", 15: "string_value",
            20: "propertyset_value", 21: "propertysets_value",
        ]
        var checked = 0
        var qualities = 0
        for m in c.messages {
            for metric in m.metrics {
                guard let set = metric["properties"] as? [String: Any] else { continue }
                let counts = metric["property_counts"] as? [Int] ?? []
                #expect(counts.count == 2 && counts[0] == counts[1], "\(m.kind) \(m.index): keys/values \(counts)")
                for (key, any) in set {
                    guard let p = any as? [String: Any] else { continue }
                    checked += 1
                    let type = p.int("type") ?? 0
                    #expect(p.bool("has_type") == true, "\(m.kind) \(key): type missing")
                    #expect(fieldOf[type] != nil, "\(m.kind) \(key): type \(type)")
                    if p.bool("is_null") != true {
                        #expect(
                            p["field"] as? String == fieldOf[type],
                            "\(m.kind) \(key): type \(type) in \(p["field"] ?? "")")
                    }
                    if key == "Quality" {
                        qualities += 1
                        #expect(type == 3 && p["field"] as? String == "int_value", "Quality type \(type)")
                        #expect([0, 192, 500].contains(p.int("value") ?? -1), "Quality \(p["value"] ?? "")")
                    }
                }
            }
        }
        #expect(checked > 0 && qualities > 0)
    }

    static let oneConnection: CaptureCheck = { c in
        // CONNECT and disconnection alternate: never a second CONNECT while one is up (mosquitto logs a takeover
        // as a second CONNECT without a DISCONNECT or a lost connection in between; the log shows both).
        let log = c.brokerLog
        #expect(!log.contains("already connected, closing old connection"), "two connections at once")
    }
}
