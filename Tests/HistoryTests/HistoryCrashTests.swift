import Foundation
import History
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// kill -9 the writer at random moments; every sample it reported committed must survive, and the file must be intact.
@Suite(.serialized) struct HistoryCrashTests {
    @Test("kill -9 loses no committed sample and never corrupts the file")
    func killNineLosesNoCommittedSampleAndNeverCorrupts() throws {
        let executable = try Self.crashWriterPath()
        let dir = try TemporaryDirectory("history-tests")
        defer { dir.remove() }
        let path = dir.path + "/crash/history.db"
        var generator = SystemRandomNumberGenerator()
        var lastReported: Int64 = 0
        for round in 0..<5 {
            // The writer's stdout and stderr go to a file; each report is one line, written unbuffered after its
            // COMMIT returned.
            let log = dir.path + "/writer-\(round).log"
            let process = try SpawnedProcess(
                executable, [path, String(Int.random(in: 50...400, using: &generator))], output: log, append: false)
            func reports() -> (complete: [Int64], text: String) {
                let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                // The last piece is an unfinished line (or empty): only complete lines count as reported.
                let lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
                return (lines.compactMap { Int64($0) }, text)
            }

            // Let it report a random number of commits, then kill it wherever it happens to be.
            let wanted = Int.random(in: 1...40, using: &generator)
            let deadline = Date().addingTimeInterval(60)
            while reports().complete.count < wanted && process.exitStatus() == nil && Date() < deadline {
                usleep(1_000)
            }
            usleep(UInt32.random(in: 0...20_000, using: &generator))
            process.signal(SIGKILL)
            let status = process.wait()
            // The writer ran ahead of what was read so far: the last report is the last complete line in the file.
            let (lines, output) = reports()
            #expect(status & 0x7f == SIGKILL, "round \(round): writer exited by itself (status \(status)): \(output)")
            #expect(lines.count >= wanted, "round \(round): writer stopped reporting early: \(output)")
            let reported = try #require(lines.last, "round \(round): nothing reported")
            #expect(reported > lastReported)
            lastReported = reported

            // Check with a plain connection first, before anything of ours touches (and recovers) the file.
            do {
                let raw = try RawDatabase(path)
                #expect(raw.text("PRAGMA integrity_check") == "ok", "round \(round)")
                let count = raw.int("SELECT count(*) FROM samples")
                #expect(count >= reported, "round \(round)")
                // Every reported sample is there, by its sequence value, exactly once.
                #expect(
                    raw.int("SELECT count(DISTINCT value) FROM samples WHERE value < \(reported)") == reported,
                    "round \(round)")
                #expect(
                    raw.int("SELECT count(*) FROM samples WHERE value < \(reported)") == reported, "round \(round)")
                // The row counter moves in the same transactions as the rows, so a crash cannot skew it.
                #expect(
                    raw.int("SELECT value FROM counters WHERE name = 'sample_rows'") == count, "round \(round)")
            }
            let store = try HistoryStore(path: path)
            #expect(try store.stats().rows >= reported)
            store.close()
        }
    }

    /// The HistoryCrashWriter executable, which SwiftPM builds into the products directory beside the tests.
    static func crashWriterPath() throws -> String {
        let candidates = [
            productsDirectory.appendingPathComponent("HistoryCrashWriter").path,
            URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
                .appendingPathComponent("HistoryCrashWriter").path,
        ]
        if let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) { return found }
        // A failure, not a skip: without the helper the crash guarantee would go untested.
        throw TestFailure(
            "cannot find the HistoryCrashWriter executable (it must be a dependency of HistoryTests); looked at: "
                + candidates.joined(separator: ", "))
    }
}
