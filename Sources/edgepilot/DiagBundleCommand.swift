import Agent
import ArgumentParser
import Configuration
import Foundation
import LocalControl
import LoopRuntime
import Tags

/// `edgepilot diag`: support artifacts.
struct DiagCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diag", abstract: "Collect what a support ticket needs.", subcommands: [DiagBundleCommand.self])
}

/// `edgepilot diag bundle`: one archive with what the agent knows about itself, for a support ticket.
///
/// Collected by the CLI, not the agent: a bundle matters most when the agent is down, and then the CLI still
/// gathers the system, the configuration and the journal. Never copies a file a secret lives in (`password_file`,
/// `key_file`, the OPC UA private key); the configuration goes through `SecretRedaction`, and every collected file
/// is checked for private key material before the archive is written.
struct DiagBundleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bundle", abstract: "Write a support archive: versions, status, health, redacted config, journal.",
        discussion: """
            The archive (tar.gz, readable only by you) holds: the versions of the agent and the system, the agent's \
            status, health, loops and their statistics, Sparkplug and device state, every tag's current value, the \
            audit trail and each loop's mode and reason history since --since, the configuration with secrets \
            redacted (and its tag files), the journal since --since, the OPC UA certificate stores' file names, and \
            a manifest of what was collected or why not. Passwords, keys and private certificates are never \
            included. When the agent is not running, what can be collected without it still is.
            """)

    @Option(name: .long, help: "How far back the journal, audit and mode history go (30m, 2h, 1d) or an ISO-8601 time.")
    var since: String = "1h"
    @Option(
        name: [.short, .customLong("output")], help: "The archive to write (default: edgepilot-diag-HOST-TIME.tar.gz).")
    var outputFile: String?
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let sinceMicros = try parseSince(since)
        let stamp = Self.stamp(Date())
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "host"
        let name = "edgepilot-diag-\(host)-\(stamp)"
        let archive = URL(fileURLWithPath: outputFile ?? "\(name).tar.gz").standardizedFileURL.path
        let work = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("\(name)-\(getpid())")
        let root = work.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }

        var collector = BundleCollector(root: root, quiet: output.json)
        let agent = AgentQuery(connection: connection)
        collector.collect("system.txt") { try Data(Self.systemText().utf8) }

        let status = agent.ask(ControlRequest(command: .status))
        collector.collect("agent/status.json", from: status) { try encodeJSON($0.status) }
        collector.collect("agent/health.json", from: agent.ask(ControlRequest(command: .health))) {
            try encodeJSON($0.health)
        }
        let loops = agent.ask(ControlRequest(command: .loops))
        collector.collect("agent/loops.json", from: loops) { try encodeJSON(LoopsFile(loops: $0.loops, kpis: $0.kpis)) }
        collector.collect("agent/mqtt.json", from: agent.ask(ControlRequest(command: .mqttStatus))) {
            try encodeJSON($0.mqtt)
        }
        collector.collect("agent/tags.json", from: agent.ask(ControlRequest(command: .tags))) {
            try encodeJSON($0.tags)
        }
        collector.collect("agent/audit.json", from: agent.ask(ControlRequest(command: .audit, since: sinceMicros))) {
            try encodeJSON($0.audit)
        }
        if case .success(let response) = loops {
            collector.collect("agent/mode-history.json") {
                try encodeJSON(Self.modeHistory(response.loops ?? [], since: sinceMicros, agent: agent))
            }
        }

        // The configuration the agent runs (its status says which file), else the one named with --config.
        let configPath = (try? status.get().status?.configPath) ?? connection.config
        var loaded: LoadedConfiguration?
        if let configPath {
            loaded = try? ConfigurationLoader.load(contentsOf: configPath)
            collector.collect("config/\(URL(fileURLWithPath: configPath).lastPathComponent)") {
                let text = try String(contentsOfFile: configPath, encoding: .utf8)
                return Data(SecretRedaction.redact(text).text.utf8)
            }
            let tagFiles = Set((loaded?.tagLocations.values.map(\.file) ?? []).filter { $0 != configPath })
            for file in tagFiles.sorted() {
                collector.collect("config/\(URL(fileURLWithPath: file).lastPathComponent)") {
                    Data(SecretRedaction.redact(try String(contentsOfFile: file, encoding: .utf8)).text.utf8)
                }
            }
        } else {
            collector.skip("config/", reason: "the agent is unreachable and no --config was given")
        }
        if let configuration = loaded?.configuration {
            collector.collect("opcua-pki.txt") { Data(Self.pkiListing(configuration).utf8) }
        }
        collector.collect("journal.txt") { try Data(Self.journal(since: sinceMicros).utf8) }

        if case .failure(let error) = status {
            collector.note("agent unreachable: \(error)")
        }
        try collector.finish(
            manifest: BundleManifest(
                created: ISO8601DateFormatter().string(from: Date()), host: ProcessInfo.processInfo.hostName,
                cliVersion: AgentVersion.current, agentVersion: try? status.get().status?.version,
                since: ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(sinceMicros) / 1e6)),
                archive: archive, files: [], notes: []))
        try Self.archive(work: work, name: name, to: archive)
        let manifest = collector.manifest
        if output.json {
            try printJSON(manifest)
        } else {
            let size = (try? FileManager.default.attributesOfItem(atPath: archive)[.size] as? Int64) ?? 0
            let skipped = manifest.files.filter { $0.error != nil }.count
            print(
                "wrote \(archive) (\(formatBytes(size)), \(manifest.files.count - skipped) files"
                    + (skipped > 0 ? ", \(skipped) not collected: see manifest.json" : "") + ")")
        }
    }

    /// Each loop's mode and reason tags over the period: what an operator did and every shed, in order.
    static func modeHistory(_ loops: [LoopSnapshot], since: Int64, agent: AgentQuery) throws -> [String: [HistoryPoint]]
    {
        var out: [String: [HistoryPoint]] = [:]
        for loop in loops {
            for suffix in ["mode", "requested_mode", "reason"] {
                let tag = "loop/\(loop.name)/\(suffix)"
                out[tag] =
                    try agent.ask(ControlRequest(command: .history, tag: tag, since: since, limit: 10_000))
                    .get().history ?? []
            }
        }
        return out
    }

    static func systemText() throws -> String {
        var text = "edgepilot \(AgentVersion.current)\n"
        var u = utsname()
        uname(&u)
        func field<T>(_ value: T) -> String {
            withUnsafeBytes(of: value) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        text += "kernel: \(field(u.sysname)) \(field(u.release)) \(field(u.version)) \(field(u.machine))\n"
        text += "host: \(ProcessInfo.processInfo.hostName)\n"
        text += "uptime: \(Int(ProcessInfo.processInfo.systemUptime)) s\n"
        if let release = try? String(contentsOfFile: "/etc/os-release", encoding: .utf8) {
            text += "\n/etc/os-release:\n\(release)"
        }
        return text
    }

    /// File names in each OPC UA device's certificate stores; `own/private` is never listed or read.
    static func pkiListing(_ configuration: AgentConfiguration) -> String {
        var text = ""
        for device in configuration.devices {
            guard case .opcua(let settings) = device.transport else { continue }
            text += "\(device.name): \(settings.pkiDirectory)\n"
            for store in ["own", "trusted", "rejected", "issuers"] {
                let path = settings.pkiDirectory + "/" + store
                let names = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [])
                    .filter { $0 != "private" && !$0.hasSuffix(".pem") && !$0.hasSuffix(".key") }.sorted()
                text += "  \(store)/: \(names.isEmpty ? "(empty or missing)" : names.joined(separator: ", "))\n"
            }
        }
        return text.isEmpty ? "no OPC UA devices\n" : text
    }

    /// `journalctl -u edgepilot` since the start of the period; its own error when there is no journal to read.
    static func journal(since: Int64) throws -> String {
        let result = try runTool(
            "journalctl",
            ["-u", "edgepilot", "--since", "@\(since / 1_000_000)", "--no-pager", "-o", "short-iso-precise"])
        guard result.status == 0 else {
            throw CLIError("journalctl failed (\(result.status)): \(result.stderr.prefix(500))")
        }
        let stderr = result.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        return result.stdout.isEmpty
            ? "(journalctl printed no entries\(stderr.isEmpty ? "" : ": " + stderr))\n" : result.stdout
    }

    /// tar.gz of the bundle folder, created readable by its owner only (it holds plant data).
    static func archive(work: URL, name: String, to path: String) throws {
        let previous = umask(0o077)
        defer { umask(previous) }
        let result = try runTool("tar", ["-czf", path, "-C", work.path, name])
        guard result.status == 0 else { throw CLIError("cannot write \(path): \(result.stderr)") }
    }

    static func stamp(_ date: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return f.string(from: date)
    }

    struct LoopsFile: Encodable {
        var loops: [LoopSnapshot]?
        var kpis: [LoopKPIReport]?
    }
}
