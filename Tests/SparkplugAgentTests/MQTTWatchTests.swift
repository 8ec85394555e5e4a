import Foundation
import TestSupport
import Testing

/// `edgepilot mqtt watch` against the running daemon: the node's births, data (aliases resolved), the host's NCMD
/// and the NDEATH, readable and as JSON lines.
@Suite(.serialized) struct MQTTWatchTests {
    @Test func watchDecodesTheNodesBirthsDataCommandsAndDeath() throws {
        let scenario = try SparkplugScenario(plant: noisyPlant()) { plantPort, brokerPort in
            SparkplugAgentConfig.text(modbusPort: plantPort, brokerPort: brokerPort)
        }
        defer { scenario.stop() }
        let agent = scenario.agent
        let host = scenario.host
        try host.waitFor("births and data") { (ms: [Received]) -> Bool in ms.contains { $0.kind == "DDATA" } }

        // Readable: data by name, although the node sends aliases only (the names come from the rebirth it asks
        // for below, or show as aliases until then).
        let text = try runCommand(
            agent.binary, ["mqtt", "watch", "--config", agent.configPath, "--count", "2", "--seconds", "15"])
        #expect(text.status == 0, "\(text.stderr)")
        #expect(text.stdout.contains(" DDATA plant seq="), "\(text.stdout)")

        let out = agent.dir.path + "/watch.jsonl"
        let watch = try SpawnedProcess(
            agent.binary, ["mqtt", "watch", "--config", agent.configPath, "--json", "--seconds", "60"], output: out)
        func lines() -> [[String: Any]] {
            ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").split(separator: "\n").compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
        }
        #expect(eventually(timeout: 15) { lines().contains { $0["type"] as? String == "DDATA" } }, "watching")
        try host.send(["cmd": "rebirth"])
        #expect(
            eventually(timeout: 15) {
                let l = lines()
                guard let birth = l.lastIndex(where: { $0["type"] as? String == "DBIRTH" }) else { return false }
                return l[birth...].contains { $0["type"] as? String == "DDATA" }
            })
        #expect(agent.stop() == 0)
        #expect(eventually(timeout: 15) { lines().contains { $0["type"] as? String == "NDEATH" } })
        _ = watch.terminate()

        let l = lines()
        func metrics(_ e: [String: Any]) -> [[String: Any]] { e["metrics"] as? [[String: Any]] ?? [] }
        let ncmd = l.first { $0["type"] as? String == "NCMD" }
        #expect(
            ncmd.map(metrics)?.contains {
                $0["name"] as? String == "Node Control/Rebirth" && $0["value"] as? String == "true"
            }
                == true, "\(ncmd ?? [:])")
        let dbirth = try #require(l.last { $0["type"] as? String == "DBIRTH" })
        #expect(dbirth["device"] as? String == "plant" && dbirth["seq"] != nil)
        #expect(metrics(dbirth).contains { $0["name"] as? String == "tank1/level" && $0["alias"] != nil })
        let birthIndex = try #require(l.lastIndex { $0["type"] as? String == "DBIRTH" })
        let data = try #require(l[birthIndex...].first { $0["type"] as? String == "DDATA" })
        #expect(!metrics(data).isEmpty && metrics(data).allSatisfy { $0["name"] is String }, "names from the birth")
        let death = try #require(l.last { $0["type"] as? String == "NDEATH" })
        #expect(metrics(death).first?["name"] as? String == "bdSeq")
    }
}
