// Crash-test helper for HistoryTests: appends batches of samples to a history database in an endless loop and,
// after each COMMIT has returned, prints the total number of committed samples (flushed), so the test can kill -9
// it at any moment and check that every sample it saw reported survived.
//
// Usage: HistoryCrashWriter PATH [BATCH_ROWS]
// Sample values are sequence numbers 0, 1, 2, … continuing across runs on the same file.
import Foundation
import History

let arguments = CommandLine.arguments
guard arguments.count >= 2 else {
    FileHandle.standardError.write(Data("usage: HistoryCrashWriter PATH [BATCH_ROWS]\n".utf8))
    exit(2)
}
let batchRows = arguments.count >= 3 ? Int(arguments[2]) ?? 200 : 200

do {
    let store = try HistoryStore(path: arguments[1])
    var next = try store.stats().rows
    var batch: [HistoryRow] = []
    batch.reserveCapacity(batchRows)
    while true {
        batch.removeAll(keepingCapacity: true)
        for i in 0..<Int64(batchRows) {
            let seq = next + i
            batch.append(
                HistoryRow(tag: "crash.\(seq % 4)", timestamp: 1_700_000_000_000_000 + seq, value: .integer(seq)))
        }
        try store.append(batch)
        if next % 2000 < Int64(batchRows) {
            try store.recordAudit(
                AuditRecord(
                    timestamp: HistoryClock.now(), source: "crash-writer", tag: "crash.0", value: "\(next)",
                    result: "ok"))
        }
        next += Int64(batchRows)
        // Unbuffered: the line must reach the pipe before the next batch, or a kill would hide a reported count.
        FileHandle.standardOutput.write(Data("\(next)\n".utf8))
    }
} catch {
    FileHandle.standardError.write(Data("HistoryCrashWriter: \(error)\n".utf8))
    exit(1)
}
