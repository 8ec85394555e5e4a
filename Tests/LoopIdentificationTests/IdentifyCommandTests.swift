import Configuration
import Foundation
import Tags
import TestSupport
import Testing

/// `edgepilot identify` as the engineer runs it: the built binary on a configuration and a history file.
@Suite("edgepilot identify")
struct IdentifyCommandTests {
    static let binary = productsDirectory.appendingPathComponent("edgepilot").path

    /// A directory with the recording's history file and the loop's configuration.
    struct Box {
        let dir: TemporaryDirectory
        let recording: PlantRecording
        var config: String { dir.path + "/edgepilot.yaml" }
        var history: String { dir.path + "/history.db" }

        init(_ recording: PlantRecording = PlantRecording()) throws {
            dir = try TemporaryDirectory("edgepilot-identify-cli")
            self.recording = recording
            try recording.write(to: dir.path + "/history.db")
            try PlantRecording.configuration(history: dir.path + "/history.db").write(
                toFile: dir.path + "/edgepilot.yaml", atomically: true, encoding: .utf8)
        }

        func identify(_ arguments: [String]) throws -> CommandResult {
            try runCommand(IdentifyCommandTests.binary, ["identify", "--config", config] + arguments, timeout: 120)
        }

        /// The configuration again, with `model` (as identify wrote it) as the loop's model block.
        func configurationWith(model: String) throws -> String {
            let path = dir.path + "/candidate.yaml"
            try PlantRecording.configuration(history: history, model: model).write(
                toFile: path, atomically: true, encoding: .utf8)
            return path
        }
    }

    @Test("--json reports paths, fits and the stretches left out; --output holds a model block the agent accepts")
    func identifiesAndWritesModel() throws {
        let box = try Box()
        defer { box.dir.remove() }
        let output = box.dir.path + "/model.yaml"
        let r = box.recording
        let result = try box.identify([
            "--loop", "unit", "--since", r.iso(0), "--until", r.iso(r.seconds), "--output", output, "--json",
        ])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("identify: fitting"), "progress goes to stderr: \(result.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(json["loop"] as? String == "unit")
        #expect(json["structure"] as? String == "fopdt")
        #expect((json["dataHash"] as? String)?.count == 16)
        let paths = try #require(json["paths"] as? [[String: Any]])
        #expect(paths.count == 2)
        let first = try #require(paths.first { $0["input"] as? String == "plant/valve1" })
        let gain = try #require(first["gain"] as? Double)
        #expect(abs(gain - 2) < 0.1, "gain \(gain)")
        for key in ["gainSD", "timeConstant", "timeConstantSD", "deadTime", "deadTimeSD", "cv"] {
            #expect(first[key] != nil, "path has no \(key)")
        }
        let outputs = try #require(json["outputs"] as? [[String: Any]])
        #expect(outputs.first?["validationFitPercent"] is Double)
        #expect(outputs.first?["residualsWhite"] is Bool)
        let leftOut = try #require(json["leftOut"] as? [[String: Any]])
        #expect(Set(leftOut.compactMap { $0["reason"] as? String }) == ["mode", "bad-quality"])

        let model = try String(contentsOfFile: output, encoding: .utf8)
        #expect(model.contains("# data hash (FNV-1a 64 of the samples fitted): \(json["dataHash"] as! String)"))
        #expect(model.contains("# window: \(json["since"] as! String)"))
        #expect(model.contains("fit on validation data: plant/level"))
        let candidate = try box.configurationWith(model: model)
        let loaded = try ConfigurationLoader.load(contentsOf: candidate).configuration
        guard case .transferFunctions(let gains, _) = loaded.loops[0].model else {
            Issue.record("the written model is not fopdt: \(loaded.loops[0].model)")
            return
        }
        let written = try #require(gains[0][0]?.gain)
        #expect(abs(written - gain) <= 1e-5 * abs(gain))
        #expect(abs((gains[0][1]?.gain ?? 0) - (-0.8)) < 0.05)
        // The agent's own check builds the controller from it.
        let check = try runCommand(Self.binary, ["config", "check", candidate])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
    }

    @Test("the text report names what was left out and prints the model block on stdout")
    func textReport() throws {
        let box = try Box()
        defer { box.dir.remove() }
        let r = box.recording
        let result = try box.identify(["--loop", "unit", "--since", r.iso(0), "--until", r.iso(r.seconds)])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("loop mode manual"), "\(result.stdout)")
        #expect(result.stdout.contains("plant/level bad (timeout)"), "\(result.stdout)")
        #expect(result.stdout.contains("\nmodel:\n  type: fopdt\n"), "\(result.stdout)")
    }

    @Test("--structure ss writes a discrete state-space block the agent accepts")
    func stateSpace() throws {
        let box = try Box()
        defer { box.dir.remove() }
        let output = box.dir.path + "/model.yaml"
        let r = box.recording
        let result = try box.identify([
            "--loop", "unit", "--since", r.iso(0), "--until", r.iso(r.seconds), "--structure", "ss", "--order", "2",
            "--output", output,
        ])
        #expect(result.status == 0, "\(result.stderr)")
        let model = try String(contentsOfFile: output, encoding: .utf8)
        #expect(model.contains("type: state_space"))
        let check = try runCommand(Self.binary, ["config", "check", try box.configurationWith(model: model)])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
    }

    @Test("the window as the report prints it (with milliseconds) is accepted back and gives the same data hash")
    func windowRoundTrips() throws {
        let box = try Box()
        defer { box.dir.remove() }
        let r = box.recording
        let first = try box.identify(["--loop", "unit", "--since", r.iso(0), "--until", r.iso(r.seconds), "--json"])
        #expect(first.status == 0, "\(first.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(first.stdout.utf8)) as? [String: Any])
        let since = try #require(report["since"] as? String)
        let until = try #require(report["until"] as? String)
        #expect(since.hasSuffix(".000Z"))
        let again = try box.identify(["--loop", "unit", "--since", since, "--until", until, "--json"])
        #expect(again.status == 0, "\(again.stderr)")
        let second = try JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as? [String: Any]
        #expect(second?["dataHash"] as? String == report["dataHash"] as? String)
    }

    @Test("an unknown loop is refused as not found (exit 2), naming the file and the loops it defines")
    func unknownLoop() throws {
        let box = try Box()
        defer { box.dir.remove() }
        let result = try box.identify(["--loop", "nope", "--since", "1d"])
        #expect(result.status == 2, "identify exited 1 on an unknown loop where model validate exits 2")
        #expect(result.stderr.contains("no loop 'nope' in \(box.config); loops defined: unit"), "\(result.stderr)")
    }

    @Test("an empty window is refused, naming the history file and the tags expected")
    func emptyWindow() throws {
        let box = try Box()
        defer { box.dir.remove() }
        let r = box.recording
        let result = try box.identify(["--loop", "unit", "--since", r.iso(-7200), "--until", r.iso(-3600)])
        #expect(result.status != 0)
        #expect(result.stderr.contains("no samples of loop 'unit'"), "\(result.stderr)")
        #expect(result.stderr.contains(box.history), "\(result.stderr)")
        #expect(result.stderr.contains("plant/valve1"), "\(result.stderr)")
    }

    @Test("an MV that never moved is refused, naming it")
    func mvNeverMoved() throws {
        var recording = PlantRecording()
        recording.moveSecondMV = false
        let box = try Box(recording)
        defer { box.dir.remove() }
        let r = box.recording
        let result = try box.identify(["--loop", "unit", "--since", r.iso(0), "--until", r.iso(r.seconds), "--json"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("MV plant/valve2 never moved"), "\(result.stderr)")
        #expect(result.stderr.contains("expected steps"), "\(result.stderr)")
    }

    @Test("a missing history file is refused with its path")
    func missingHistory() throws {
        let box = try Box()
        defer { box.dir.remove() }
        let result = try box.identify(["--loop", "unit", "--since", "1d", "--history", box.dir.path + "/none.db"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("none.db"), "\(result.stderr)")
    }
}
