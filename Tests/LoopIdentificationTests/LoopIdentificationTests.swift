import Foundation
import History
import Identification
import LoopIdentification
import Tags
import TestSupport
import Testing

/// The glue from a history file to an identified loop model, on a file written by `HistoryStore` over a known plant.
@Suite("identification of a loop's model from its history file")
struct LoopIdentificationTests {
    /// Reads the recording's loop back from a fresh history file and identifies it.
    static func identify(
        _ recording: PlantRecording, settings: LoopIdentificationSettings = LoopIdentificationSettings(),
        since: Int = 0, until: Int? = nil
    ) throws -> Result<LoopIdentificationReport, LoopIdentificationError> {
        let dir = try TemporaryDirectory("edgepilot-identify")
        defer { dir.remove() }
        let path = dir.path + "/history.db"
        try recording.write(to: path)
        let reader = try HistoryReader(path: path)
        defer { reader.close() }
        let loop = try PlantRecording.loopDefinition()
        let history = try LoopHistory.read(
            reader, loop: loop, since: recording.startMicroseconds + Int64(since) * 1_000_000,
            until: recording.startMicroseconds + Int64(until ?? recording.seconds) * 1_000_000)
        do {
            return .success(try LoopIdentification.run(loop: loop, history: history, settings: settings))
        } catch {
            return .failure(error)
        }
    }

    @Test("recovers gains within 5 %, time constants within 10 % and dead times within 1 s, and names what it left out")
    func recoversFirstOrderPlant() throws {
        let recording = PlantRecording()
        let report = try Self.identify(recording).get()
        #expect(report.structure == "fopdt")
        #expect(report.paths.count == 2)
        for (i, mv) in PlantRecording.mvs.enumerated() {
            let path = try #require(report.paths.first { $0.input == mv })
            #expect(path.cv == PlantRecording.cv)
            let gain = try #require(path.gain)
            let tau = try #require(path.timeConstant)
            let theta = try #require(path.deadTime)
            #expect(abs(gain - recording.gains[i]) <= 0.05 * abs(recording.gains[i]), "gain of \(mv): \(gain)")
            #expect(abs(tau - recording.timeConstants[i]) <= 0.1 * recording.timeConstants[i], "τ of \(mv): \(tau)")
            #expect(abs(theta - recording.deadTimes[i]) <= 1, "θ of \(mv): \(theta)")
            #expect(path.gainSD != nil && path.gainSD! > 0)
        }
        let fit = try #require(report.outputs.first?.validationFitPercent)
        #expect(fit > 90, "validation fit \(fit) %")
        #expect(report.validationSamples > 0)

        let manual = report.leftOut.filter { $0.reason == "mode" }
        #expect(manual.count == 1)
        #expect(manual.first?.tag == PlantRecording.modeTag)
        #expect(manual.first?.detail == "loop mode manual")
        #expect(
            manual.first?.start
                == recording.iso(recording.manual.lowerBound).replacingOccurrences(of: "Z", with: ".000Z"))
        #expect(manual.first?.seconds == Double(recording.manual.count))
        let bad = report.leftOut.filter { $0.reason == "bad-quality" }
        #expect(bad.count == 1)
        #expect(bad.first?.tag == PlantRecording.cv)
        #expect(bad.first?.seconds == Double(recording.badQuality.count))
        #expect(bad.first?.detail.contains("timeout") == true)
        #expect(report.leftOut.allSatisfy { ["mode", "bad-quality"].contains($0.reason) }, "\(report.leftOut)")
        let used = Double(recording.seconds - recording.manual.count - recording.badQuality.count)
        #expect(report.usableSeconds == used)
    }

    @Test("with the mode ignored, the manual stretch is used")
    func modeIgnored() throws {
        let report = try Self.identify(PlantRecording(), settings: LoopIdentificationSettings(usableModes: nil)).get()
        #expect(!report.leftOut.contains { $0.reason == "mode" })
        #expect(report.usableSeconds == Double(3600 - 60))
    }

    @Test("values held from before the window (report by exception) count from the window's first second")
    func heldValues() throws {
        // The MVs last changed before second 1010 and the mode long before: each is known from the start.
        let report = try Self.identify(PlantRecording(), since: 1010).get()
        #expect(!report.leftOut.contains { $0.reason == "no-data" }, "\(report.leftOut)")
        #expect(report.usableSeconds == Double(3600 - 1010 - 200 - 60))
    }

    @Test("an MV at its limit is left out as saturated, named with the limit")
    func saturated() throws {
        var recording = PlantRecording()
        recording.manual = 0..<0
        let dir = try TemporaryDirectory("edgepilot-identify")
        defer { dir.remove() }
        let path = dir.path + "/history.db"
        // Valve 1 pinned at its high limit for 200 s, then back.
        let t0 = recording.startMicroseconds + 1_000 * 1_000_000
        let t1 = t0 + 200 * 1_000_000
        try recording.write(to: path) { rows in
            rows.removeAll { $0.tag == PlantRecording.mvs[0] && $0.timestamp >= t0 && $0.timestamp <= t1 }
            rows.append(HistoryRow(tag: PlantRecording.mvs[0], timestamp: t0, value: .real(9.5)))
            rows.append(HistoryRow(tag: PlantRecording.mvs[0], timestamp: t1, value: .real(3)))
        }
        let reader = try HistoryReader(path: path)
        let loop = try PlantRecording.loopDefinition()
        let history = try LoopHistory.read(
            reader, loop: loop, since: recording.startMicroseconds,
            until: recording.startMicroseconds + 3600 * 1_000_000)
        reader.close()
        let signals = LoopSignals(loop: loop, history: history, usableModes: ["mpc"])
        let prepared = try DataPreparation(period: 1, window: 0...3599)
            .prepare(inputs: signals.inputTags().map(signals.signal), outputs: signals.outputTags.map(signals.signal))
        let left = signals.describe(prepared.excluded, minimumSegmentSamples: 100).filter { $0.reason == "saturated" }
        #expect(left.count == 1)
        #expect(left.first?.tag == PlantRecording.mvs[0])
        #expect(left.first?.detail == "plant/valve1 at its high limit 9.5")
        #expect(left.first?.seconds == 200)
    }

    @Test("an MV that never moved is refused, naming it and the value it held")
    func mvNeverMoved() throws {
        var recording = PlantRecording()
        recording.moveSecondMV = false
        let result = try Self.identify(recording)
        guard case .failure(let error) = result else {
            Issue.record("identified a model with an MV that never moved")
            return
        }
        #expect(error.description.contains("MV plant/valve2 never moved"), "\(error)")
        #expect(error.description.contains("held at 3"), "\(error)")
    }

    @Test("a window without history is refused, naming the loop's tags and the file")
    func emptyWindow() throws {
        let recording = PlantRecording()
        let result = try Self.identify(recording, since: -7200, until: -3600)
        guard case .failure(let error) = result else {
            Issue.record("identified a model from an empty window")
            return
        }
        #expect(error.description.contains("no samples of loop 'unit'"), "\(error)")
        #expect(error.description.contains("history.db"), "\(error)")
        #expect(error.description.contains("plant/level"), "\(error)")
    }

    @Test("a window all in manual is refused, saying what was left out and how to use manual data")
    func allManual() throws {
        var recording = PlantRecording()
        recording.manual = 0..<3600
        let result = try Self.identify(recording, since: 10)
        guard case .failure(let error) = result else {
            Issue.record("identified a model from manual data with manual excluded")
            return
        }
        #expect(error.description.contains("no usable data"), "\(error)")
        #expect(error.description.contains("mode"), "\(error)")
        #expect(error.description.contains("--modes"), "\(error)")
    }

    @Test("the state-space structure reproduces the plant's steady-state gains")
    func stateSpace() throws {
        let recording = PlantRecording()
        let report = try Self.identify(
            recording, settings: LoopIdentificationSettings(structure: .stateSpace(order: 2))
        )
        .get()
        #expect(report.stateSpace?.order == 2)
        for (i, mv) in PlantRecording.mvs.enumerated() {
            let gain = try #require(report.paths.first { $0.input == mv }?.gain)
            #expect(abs(gain - recording.gains[i]) <= 0.1 * abs(recording.gains[i]), "gain of \(mv): \(gain)")
        }
        #expect(report.model.contains("type: state_space"))
    }
}
