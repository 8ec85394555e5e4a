import Configuration
import Foundation
import LocalControl

/// Writes the bundle's files one by one, shows progress on stderr, and records each file, or why it is missing,
/// in the manifest.
struct BundleCollector {
    let root: URL
    let quiet: Bool
    private(set) var manifest = BundleManifest(
        created: "", host: "", cliVersion: "", agentVersion: nil, since: "", archive: "", files: [], notes: [])

    init(root: URL, quiet: Bool) {
        self.root = root
        self.quiet = quiet
    }

    /// Runs `make` and writes its bytes to `path` inside the bundle; a failure is recorded, never fatal.
    mutating func collect(_ path: String, _ make: () throws -> Data) {
        progress("collecting \(path) … ")
        do {
            let data = try make()
            // Last line of defence: whatever a source held, no private key leaves the box.
            if SecretRedaction.containsPrivateKey(String(decoding: data, as: UTF8.self)) {
                throw CLIError("left out: it contains private key material")
            }
            let url = root.appendingPathComponent(path)
            try FileManager.default.createDirectory(
                at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try data.write(to: url)
            manifest.files.append(BundleManifest.File(path: path, bytes: data.count, error: nil))
            progress("\(formatBytes(Int64(data.count)))\n")
        } catch {
            manifest.files.append(BundleManifest.File(path: path, bytes: 0, error: "\(error)"))
            progress("not collected: \(error)\n")
        }
    }

    /// Like `collect`, for an answer of the agent that may have failed.
    mutating func collect(
        _ path: String, from answer: Result<ControlResponse, Error>, _ encode: (ControlResponse) throws -> Data
    ) {
        collect(path) { try encode(try answer.get()) }
    }

    mutating func skip(_ path: String, reason: String) {
        manifest.files.append(BundleManifest.File(path: path, bytes: 0, error: reason))
        progress("skipping \(path): \(reason)\n")
    }

    mutating func note(_ text: String) { manifest.notes.append(text) }

    /// Writes manifest.json last, so it lists everything above.
    mutating func finish(manifest header: BundleManifest) throws {
        var m = header
        m.files = manifest.files
        m.notes = manifest.notes
        manifest = m
        try encodeJSON(m).write(to: root.appendingPathComponent("manifest.json"))
    }

    private func progress(_ text: String) {
        if !quiet { FileHandle.standardError.write(Data(text.utf8)) }
    }
}

/// What the bundle holds; `error` says why a file is missing.
struct BundleManifest: Codable {
    struct File: Codable {
        var path: String
        var bytes: Int
        var error: String?
    }
    var created: String
    var host: String
    var cliVersion: String
    var agentVersion: String?
    var since: String
    var archive: String
    var files: [File]
    var notes: [String]
}

/// Requests to the agent that return their failure instead of throwing: one missing answer must not stop the rest.
struct AgentQuery {
    let connection: ConnectionOptions

    func ask(_ request: ControlRequest) -> Result<ControlResponse, Error> {
        Result { try ControlClient(path: connection.resolvedPath()).send(request) }
    }
}

func encodeJSON<T: Encodable>(_ value: T) throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return try encoder.encode(value)
}

/// Runs a system tool found on PATH and captures its output.
func runTool(_ tool: String, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [tool] + arguments
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    // Read before waiting: a long journal fills the pipe and would block the tool.
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
}
