import Foundation
import History
import TestSupport
import Testing

/// `edgepilot model validate` as the engineer runs it: the built binary on a recorded history file.
@Suite("edgepilot model validate")
struct ModelValidateCommandTests {
    /// The recording's true plant, as a model file and as the ledger's canonical content.
    static let trueModel = """
        model:
          type: fopdt
          gains:
            - [{gain: 2, time_constant: 20s, dead_time: 3s}, {gain: -0.8, time_constant: 35s, dead_time: 0s}]
          operating_point: {mvs: [3, 3], cvs: [50]}
        """

    static func content(gain: Double) -> String {
        """
        {"cvs":["plant/level"],"dvs":[],"gains":[[{"deadTime":3,"gain":\(gain),"timeConstant":20},\
        {"deadTime":0,"gain":-0.8,"timeConstant":35}]],"mvs":["plant/valve1","plant/valve2"],\
        "operatingPoint":{"cvs":[50],"dvs":[],"mvs":[3,3]},"type":"fopdt"}
        """
    }

    func validate(_ box: IdentifyCommandTests.Box, _ arguments: [String]) throws -> CommandResult {
        let r = box.recording
        return try runCommand(
            IdentifyCommandTests.binary,
            [
                "model", "validate", "--config", box.config, "--loop", "unit", "--since", r.iso(0), "--until",
                r.iso(r.seconds),
            ] + arguments, timeout: 120)
    }

    @Test("a model file: the true plant fits better than the configuration's model; the HTML page is self-contained")
    func fileCandidateAndReport() throws {
        let box = try IdentifyCommandTests.Box()
        defer { box.dir.remove() }
        let candidate = box.dir.path + "/candidate.yaml"
        try Self.trueModel.write(toFile: candidate, atomically: true, encoding: .utf8)
        let page = box.dir.path + "/report.html"
        let result = try validate(box, [candidate, "--report", page, "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(json["active"] as? String == "configuration")
        let fits = try #require((json["openLoop"] as? [[String: Any]])?.first)
        let candidateFit = try #require(fits["candidateFitPercent"] as? Double)
        let activeFit = try #require(fits["activeFitPercent"] as? Double)
        #expect(candidateFit > 95, "true plant fit \(candidateFit) %")
        #expect(activeFit < candidateFit - 10, "configuration's model fit \(activeFit) %")
        #expect(json["plant"] as? String == "candidate")
        #expect(json["candidateMeetsMinimumFit"] as? Bool == true)
        let cv = try #require((json["closedLoopCVs"] as? [[String: Any]])?.first)
        #expect((cv["iae"] as? Double)?.isFinite == true)
        #expect(cv["violations"] as? Int == 0)
        #expect((json["closedLoopMVs"] as? [[String: Any]])?.count == 2)
        #expect((json["closedLoopSteps"] as? Int ?? 0) > 1000)
        #expect((json["solveP99Microseconds"] as? Double ?? 0) > 0)
        let leftOut = try #require(json["leftOut"] as? [[String: Any]])
        #expect(Set(leftOut.compactMap { $0["reason"] as? String }) == ["mode", "bad-quality"])

        let html = try String(contentsOfFile: page, encoding: .utf8)
        try? html.write(toFile: "/tmp/mv-report.html", atomically: true, encoding: .utf8)
        try? result.stdout.write(toFile: "/tmp/mv-report.json", atomically: true, encoding: .utf8)
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        #expect(!html.contains("http://") && !html.contains("https://"), "the page names an address")
        #expect(!html.contains("<script") && !html.contains("<link") && !html.contains("<img"))
        // One plot per CV open loop, one per CV and one per MV closed loop: 1 + 1 + 2.
        #expect(html.components(separatedBy: "<svg ").count - 1 == 4)
        #expect(html.components(separatedBy: "</svg>").count - 1 == 4)
        #expect(html.contains("plant/level: recorded and predicted (open loop)"))
        #expect(html.contains("<polyline"))
    }

    @Test("a ledger version against the version in force; an unknown version is refused with status 2")
    func ledgerCandidate() throws {
        let box = try IdentifyCommandTests.Box()
        defer { box.dir.remove() }
        let ledger = try ModelLedger(path: box.history)
        let wrong = try ledger.register(
            ModelVersion(
                loop: "unit", hash: "wrong", source: "file", content: Self.content(gain: 1.2), createdAt: 1,
                createdBy: "test")
        ).version
        let right = try ledger.register(
            ModelVersion(
                loop: "unit", hash: "right", source: "identify", content: Self.content(gain: 2), fitPercent: 90,
                createdAt: 2, createdBy: "test")
        ).version
        try ledger.recordActivation(
            loop: "unit", version: wrong.id, previous: nil, by: "test", action: "activate", at: 3)
        ledger.close()

        let result = try validate(box, [String(right.id), "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(json["candidate"] as? String == "version \(right.id)")
        #expect(json["active"] as? String == "version \(wrong.id)")
        let fits = try #require((json["openLoop"] as? [[String: Any]])?.first)
        #expect((fits["candidateFitPercent"] as? Double ?? 0) > (fits["activeFitPercent"] as? Double ?? 100))

        let table = try validate(box, [String(right.id)])
        #expect(table.status == 0, "\(table.stderr)")
        #expect(table.stdout.contains("open loop (fit %"), "\(table.stdout)")

        let missing = try validate(box, ["999"])
        #expect(missing.status == 2)
        #expect(missing.stderr.contains("no model version 999"), "\(missing.stderr)")
    }
}
