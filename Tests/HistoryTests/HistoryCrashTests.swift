import Foundation
import History
import XCTest

/// kill -9 the writer at random moments; every sample it reported committed must survive, and the file must be intact.
final class HistoryCrashTests: XCTestCase {
    func testKillNineLosesNoCommittedSampleAndNeverCorrupts() throws {
        let executable = try Self.crashWriterURL()
        let dir = try TemporaryDirectory()
        let path = dir.path("crash/history.db")
        var generator = SystemRandomNumberGenerator()
        var lastReported: Int64 = 0
        for round in 0..<5 {
            let process = Process()
            process.executableURL = executable
            process.arguments = [path, String(Int.random(in: 50...400, using: &generator))]
            let output = Pipe()
            process.standardOutput = output
            let errors = Pipe()
            process.standardError = errors
            try process.run()

            // Let it report a random number of commits, then kill it wherever it happens to be.
            let wanted = Int.random(in: 1...40, using: &generator)
            var buffer = Data()
            var lines: [Int64] = []
            let reader = output.fileHandleForReading
            while lines.count < wanted {
                let chunk = reader.availableData
                guard !chunk.isEmpty else { break }  // EOF: it died on its own
                buffer.append(chunk)
                while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                    if let n = Int64(String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self)) {
                        lines.append(n)
                    }
                    buffer.removeSubrange(buffer.startIndex...newline)
                }
            }
            usleep(UInt32.random(in: 0...20_000, using: &generator))
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            // The writer ran ahead of what was read so far: the last report is the last complete line in the pipe.
            buffer.append(reader.readDataToEndOfFile())
            let rest = String(decoding: buffer, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
            lines += rest.dropLast().compactMap { Int64($0) }
            let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            XCTAssertEqual(
                process.terminationReason, .uncaughtSignal, "round \(round): writer exited by itself: \(stderr)")
            XCTAssertGreaterThanOrEqual(
                lines.count, wanted, "round \(round): writer stopped reporting early: \(stderr)")
            guard let reported = lines.last else { return XCTFail("round \(round): nothing reported") }
            XCTAssertGreaterThan(reported, lastReported)
            lastReported = reported

            // Check with a plain connection first, before anything of ours touches (and recovers) the file.
            do {
                let raw = try RawDatabase(path)
                XCTAssertEqual(raw.text("PRAGMA integrity_check"), "ok", "round \(round)")
                let count = raw.int("SELECT count(*) FROM samples")
                XCTAssertGreaterThanOrEqual(count, reported, "round \(round)")
                // Every reported sample is there, by its sequence value, exactly once.
                XCTAssertEqual(
                    raw.int("SELECT count(DISTINCT value) FROM samples WHERE value < \(reported)"), reported,
                    "round \(round)")
                XCTAssertEqual(
                    raw.int("SELECT count(*) FROM samples WHERE value < \(reported)"), reported, "round \(round)")
                // The row counter moves in the same transactions as the rows, so a crash cannot skew it.
                XCTAssertEqual(
                    raw.int("SELECT value FROM counters WHERE name = 'sample_rows'"), count, "round \(round)")
            }
            let store = try HistoryStore(path: path)
            XCTAssertGreaterThanOrEqual(try store.stats().rows, reported)
            store.close()
        }
    }

    /// The HistoryCrashWriter executable, which SwiftPM builds into the same products directory as the test bundle.
    static func crashWriterURL() throws -> URL {
        let name = "HistoryCrashWriter"
        var starts: [URL] = [Bundle(for: HistoryCrashTests.self).bundleURL, Bundle.main.bundleURL]
        starts.append(URL(fileURLWithPath: CommandLine.arguments[0]))
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            starts.append(URL(fileURLWithPath: exe))
        }
        var tried: [String] = []
        for start in starts {
            // The bundle may be a file (Linux .xctest) or a directory (macOS .xctest/Contents/MacOS): walk up a few.
            var directory = start.standardizedFileURL
            for _ in 0..<4 {
                let candidate = directory.appendingPathComponent(name)
                tried.append(candidate.path)
                if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
                directory = directory.deletingLastPathComponent()
            }
        }
        // A failure, not a skip: without the helper the crash guarantee would go untested.
        throw CrashWriterNotFound(
            message: "cannot find the \(name) executable (it must be a dependency of HistoryTests); looked at: "
                + tried.joined(separator: ", "))
    }
}

struct CrashWriterNotFound: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
