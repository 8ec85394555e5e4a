// historybench: batched ingest into the history database (real schema, WAL, synchronous=FULL) in samples/s,
// against a peer in the same run: Python's sqlite3 executemany into a file with the same schema and pragmas.
//
// Run in release: swift run -c release historybench [SAMPLES] [TAGS]
// The peer runs with $PYTHON, else the repository's .venv/bin/python, else python3 from PATH.
import CSQLite
import Foundation
import History

let arguments = CommandLine.arguments
let sampleCount = arguments.count > 1 ? Int(arguments[1]) ?? 1_000_000 : 1_000_000
let tagCount = arguments.count > 2 ? Int(arguments[2]) ?? 100 : 100
let batchSizes = [1_000, 10_000]
// The machine is shared, so each side runs several times, alternating, and the best run of each is reported.
let rounds = 3

let sourceDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
let repository = sourceDirectory.deletingLastPathComponent().deletingLastPathComponent()
let python: String = {
    if let p = ProcessInfo.processInfo.environment["PYTHON"] { return p }
    let venv = repository.appendingPathComponent(".venv/bin/python").path
    return FileManager.default.isExecutableFile(atPath: venv) ? venv : "python3"
}()

let directory = FileManager.default.temporaryDirectory.appendingPathComponent("historybench-\(getpid())")
try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(at: directory) }

func removeDatabase(_ path: String) {
    for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
}

func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

// Rows are built before timing, as the peer builds its tuples before timing.
let names = (0..<tagCount).map { "tag.\($0)" }
let base: Int64 = 1_700_000_000_000_000
let rows = (0..<sampleCount).map { i in
    HistoryRow(tag: names[i % tagCount], timestamp: base + Int64(i) * 1000, value: .real(Double(i) * 0.25))
}

func swiftIngest(batch: Int) throws -> Double {
    let path = directory.appendingPathComponent("swift-\(batch).db").path
    removeDatabase(path)
    let store = try HistoryStore(path: path)
    let clock = ContinuousClock()
    let start = clock.now
    var offset = 0
    while offset < rows.count {
        let end = min(offset + batch, rows.count)
        try store.append(rows[offset..<end])
        offset = end
    }
    let elapsed = seconds(clock.now - start)
    let stored = try store.stats().rows
    precondition(stored == Int64(sampleCount), "stored \(stored) rows, expected \(sampleCount)")
    store.close()
    removeDatabase(path)
    return Double(sampleCount) / elapsed
}

func peerIngest(batch: Int) throws -> Double {
    let path = directory.appendingPathComponent("peer-\(batch).db").path
    removeDatabase(path)
    try HistoryStore(path: path).close()  // the real schema, created by the real code
    let process = Process()
    // Through env, so $PYTHON may be a bare name found on PATH.
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [
        python, sourceDirectory.appendingPathComponent("peer.py").path, path, String(sampleCount), String(batch),
        String(tagCount),
    ]
    let output = Pipe()
    process.standardOutput = output
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    removeDatabase(path)
    let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    guard process.terminationStatus == 0, let rate = Double(text) else {
        fatalError("peer.py failed (status \(process.terminationStatus)): \(text)")
    }
    return rate
}

print("historybench: \(sampleCount) samples over \(tagCount) tags, WAL, synchronous=FULL, one transaction per batch")
print("peer: \(python) sqlite3 executemany (SQLite \(String(cString: sqlite3_libversion())))")
print("best of \(rounds) alternating runs each")
print("batch      swift samples/s   python samples/s   swift/python")
for batch in batchSizes {
    var swiftRate = 0.0
    var peerRate = 0.0
    for _ in 0..<rounds {
        swiftRate = max(swiftRate, try swiftIngest(batch: batch))
        peerRate = max(peerRate, try peerIngest(batch: batch))
    }
    print(
        String(batch).padding(toLength: 11, withPad: " ", startingAt: 0)
            + String(format: "%15.0f   %16.0f   %12.2f", swiftRate, peerRate, swiftRate / peerRate))
}
