import Foundation
import TestSupport

/// The project's Python (TestSupport's `pythonPath`: $EDGEPILOT_PYTHON or the repository's venv); a missing one fails
/// the test with the command that creates it.
func venvPython() throws -> String {
    let python = pythonPath
    guard FileManager.default.isExecutableFile(atPath: python) else {
        throw TestFailure(
            "\(python) missing: python3 -m venv .venv && .venv/bin/pip install -r requirements.txt "
                + "&& .venv/bin/pip install --no-deps -r requirements-nodeps.txt")
    }
    return python
}

func peerScript(_ name: String) -> String {
    repositoryRoot.appendingPathComponent("Tests/Peers/\(name)").path
}

/// Decodes payloads with the Tahu schema in Python; returns one JSON object per payload, in order.
func decodeWithTahu(_ payloads: [[UInt8]]) throws -> [[String: Any]] {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("spb-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    var files: [String] = []
    for (i, p) in payloads.enumerated() {
        let f = dir.appendingPathComponent(String(format: "p%04d.bin", i)).path
        try Data(p).write(to: URL(fileURLWithPath: f))
        files.append(f)
    }
    let out = try run(try venvPython(), ["-W", "ignore", peerScript("sparkplug_decode.py")] + files)
    guard let json = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any] else {
        throw TestFailure("decoder printed no JSON object: \(out.prefix(500))")
    }
    return try files.map { f in
        guard let d = json[(f as NSString).lastPathComponent] as? [String: Any] else {
            throw TestFailure("decoder output lacks \(f)")
        }
        return d
    }
}

/// Accessors for the decoder's JSON.
extension Dictionary where Key == String, Value == Any {
    var metrics: [[String: Any]] { self["metrics"] as? [[String: Any]] ?? [] }
    func metric(_ name: String) -> [String: Any]? { metrics.first { $0["name"] as? String == name } }
    func int(_ key: String) -> Int64? { (self[key] as? NSNumber)?.int64Value }
    func uint(_ key: String) -> UInt64? { (self[key] as? NSNumber)?.uint64Value }
    func string(_ key: String) -> String? { self[key] as? String }
    func bool(_ key: String) -> Bool? { (self[key] as? NSNumber)?.boolValue }
    func dict(_ key: String) -> [String: Any]? { self[key] as? [String: Any] }
}
