// Births for many metrics: NBIRTH/DBIRTH size and the time the session takes to build and encode them, with the
// metrics flat or as template instances (issue 13), plain or compressed as the publisher compresses births
// (sparkplug.compression, decision 0038). Same shape as encode_bench.py --births.

import Foundation
import Sparkplug

/// One device of `metrics` Double metrics, flat (`pump<i>/m<k>`) or as `metrics / members` instances of a
/// `members`-member definition; each metric with timestamp, Quality and readOnly as the agent births them.
/// With a `compressor`, every birth is compressed by it within the timed build, as the publisher's `step` does.
func birthsBenchmark(
    metrics: Int, members: Int, seconds: Double, compressor: SparkplugCompressor?
) throws -> [String: Any] {
    func compressed(_ actions: [EdgeNodeAction]) throws -> [EdgeNodeAction] {
        guard let compressor else { return actions }
        return try actions.map { action in
            guard case .publish(var p) = action else { return action }
            p.payload = try compressor.compress(p.payload)
            return .publish(p)
        }
    }
    func run(templates: Bool) throws -> [String: Any] {
        var session = try EdgeNodeSession(
            configuration: EdgeNodeConfiguration(groupID: "G", edgeNodeID: "N"), nodeMetrics: [], lastBdSeq: nil)
        let instances = metrics / members
        var flat: [SparkplugMetric] = []
        flat.reserveCapacity(metrics)
        for i in 0..<instances {
            for k in 0..<members {
                let name = "pump\(i)/m\(k)"
                flat.append(
                    SparkplugMetric(
                        name: name, timestamp: 1_700_000_000_000, value: .double(Double(i * members + k) * 0.5),
                        properties: [.quality(.good), .readOnly(true)]))
            }
        }
        if templates {
            try session.declareTemplate(
                SparkplugTemplateDefinition(
                    name: "Pump",
                    members: (0..<members).map { SparkplugMetric(name: "m\($0)", timestamp: nil, nullOf: .double) }))
        }
        // Every instance is a device of its own (a repeated device type), flat or templated alike.
        for i in 0..<instances {
            let slice = Array(flat[(i * members)..<((i + 1) * members)])
            let binding =
                templates
                ? SparkplugTemplateBinding(
                    instanceName: "pump\(i)", definition: "Pump",
                    members: Dictionary(uniqueKeysWithValues: (0..<members).map { ("pump\(i)/m\($0)", "m\($0)") }))
                : nil
            _ = try session.addDevice("d\(i)", metrics: slice, template: binding, now: 0)
        }
        _ = session.prepareConnect(now: 0)
        var births = try compressed(session.connected(now: 1))
        func sizes(_ actions: [EdgeNodeAction]) -> (nbirth: Int, dbirth: Int, count: Int) {
            var n = 0
            var d = 0
            var c = 0
            for case .publish(let p) in actions {
                if p.topic.contains("/NBIRTH/") { n += p.payload.count } else { d += p.payload.count }
                c += 1
            }
            return (n, d, c)
        }
        let size = sizes(births)
        var now: UInt64 = 10_000
        var rounds = 0
        let start = DispatchTime.now().uptimeNanoseconds
        var elapsed = 0.0
        repeat {
            session.requestRebirth(now: now)
            now += 2_000
            births = try compressed(session.serveDueRebirth(now: now))
            rounds += 1
            elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        } while elapsed < seconds || rounds < 3
        return [
            "nbirth_bytes": size.nbirth, "dbirth_bytes": size.dbirth, "messages": size.count,
            "build_ms": elapsed * 1000 / Double(rounds), "rounds": rounds,
        ]
    }
    return [
        "implementation": "swift EdgeNodeSession (swift-protobuf 1.39.0)", "metrics": metrics, "members": members,
        "compression": compressor?.algorithm.rawValue.lowercased() ?? "none", "flat": try run(templates: false),
        "templates": try run(templates: true),
    ]
}
