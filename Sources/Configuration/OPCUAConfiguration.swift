import Foundation
import Tags
import Yams

/// Defaults shared by the agent's configuration and the `edgepilot opcua` commissioning commands, so both use the
/// same client certificate and trust list.
public enum OPCUADefaults {
    /// `urn:edgepilot:<host name>`: unique per machine, as OPC UA expects of an ApplicationUri.
    public static var applicationUri: String {
        var name = [CChar](repeating: 0, count: 256)
        let host =
            gethostname(&name, name.count) == 0
            ? String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "localhost"
        return "urn:edgepilot:\(host.isEmpty ? "localhost" : host)"
    }

    /// The PKI directory beside the history database (`/var/lib/edgepilot/pki` for the default database).
    public static func pkiDirectory(besideHistory path: String) -> String {
        let directory = (path as NSString).deletingLastPathComponent
        return (directory.isEmpty ? "." : directory) + "/pki"
    }

    /// The PKI directory when no configuration is at hand.
    public static let pkiDirectory = "/var/lib/edgepilot/pki"
}

/// The text forms of OPC UA addresses in the configuration, checked without the OPC UA client.
public enum OPCUAAddressSyntax {
    /// Why a NodeId text is malformed, or nil if it is well formed (`ns=2;s=Name`, `i=85`, `ns=1;g=<uuid>`, `b=`).
    public static func nodeIdProblem(_ text: String) -> String? {
        var rest = Substring(text)
        if rest.hasPrefix("ns=") {
            guard let semi = rest.firstIndex(of: ";"),
                UInt16(rest[rest.index(rest.startIndex, offsetBy: 3)..<semi]) != nil
            else { return "expected ns=<0…65535>; before the identifier" }
            rest = rest[rest.index(after: semi)...]
        }
        guard rest.count >= 2, rest.dropFirst().first == "=" else { return "expected i=, s=, g= or b= identifier" }
        let value = String(rest.dropFirst(2))
        switch rest.first {
        case "i": return UInt32(value) == nil ? "numeric identifier '\(value)' is not 0…4294967295" : nil
        case "s": return value.isEmpty ? "string identifier is empty" : nil
        case "g": return UUID(uuidString: value) == nil ? "'\(value)' is not a GUID" : nil
        case "b": return Data(base64Encoded: value) == nil ? "'\(value)' is not base64" : nil
        default: return "expected i=, s=, g= or b= identifier"
        }
    }

    /// Splits `Objects/2:Plant/2:Tank1/2:Level` into (namespace index, browse name) steps from the Objects folder.
    ///
    /// A leading `Objects` (or `/`) names the starting folder and is dropped; a step without `ns:` is in namespace 0.
    public static func browsePath(_ text: String) -> [(namespace: UInt16, name: String)]? {
        var parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if parts.first == "" { parts.removeFirst() }
        if parts.first == "Objects" || parts.first == "0:Objects" { parts.removeFirst() }
        guard !parts.isEmpty else { return nil }
        var steps: [(UInt16, String)] = []
        for part in parts {
            if let colon = part.firstIndex(of: ":"), let ns = UInt16(part[..<colon]) {
                let name = String(part[part.index(after: colon)...])
                guard !name.isEmpty else { return nil }
                steps.append((ns, name))
            } else {
                guard !part.isEmpty else { return nil }
                steps.append((0, part))
            }
        }
        return steps
    }
}

extension TagDataType {
    /// Extra spellings OPC UA tags accept: `string` without a size (256 bytes) and the built-in type names.
    init?(opcuaName: String) {
        switch opcuaName.lowercased() {
        case "string", "text", "localizedtext", "datetime", "guid", "bytestring", "nodeid", "array":
            self = .string(registers: 128)
        case "sbyte", "int8": self = .int16
        case "byte", "uint8": self = .uint16
        default: return nil
        }
    }
}

extension Builder {
    /// Reads the keys of a `type: opcua` device; nil if a required key is missing or wrong (already reported).
    mutating func readOPCUADevice(_ r: inout MappingReader, what: String, device: inout DeviceDefinition)
        -> DeviceTransport?
    {
        // OPC UA requests carry more than a Modbus frame (security, session); one second is short for a busy PLC.
        device.timeoutMilliseconds = 5000
        let endpoint = r.string("endpoint", required: true, sink: &sink)
        if let endpoint, !endpoint.lowercased().hasPrefix("opc.tcp://"), let v = r.value("endpoint") {
            sink.error(
                v.line, v.column, "\(what) endpoint must start with opc.tcp://, found '\(endpoint)'",
                hint: "e.g. opc.tcp://10.0.0.5:4840/ ; 'edgepilot opcua endpoints URL' lists what a server offers")
        }
        var policy = OPCUAEndpointSettings.Policy.basic256Sha256
        var mode = OPCUAEndpointSettings.Mode.signAndEncrypt
        if let text = r.string("security_policy", sink: &sink), let v = r.value("security_policy") {
            if let p = OPCUAEndpointSettings.Policy.allCases.first(where: {
                $0.rawValue.lowercased() == text.lowercased()
            }) {
                policy = p
            } else {
                sink.error(
                    v.line, v.column, "\(what) has unknown security_policy '\(text)'",
                    hint: "use Basic256Sha256 (default), Aes128_Sha256_RsaOaep or none")
            }
        }
        if policy == .none { mode = .none }
        if let text = r.string("security_mode", sink: &sink), let v = r.value("security_mode") {
            if let m = OPCUAEndpointSettings.Mode.allCases.first(where: {
                $0.rawValue.lowercased() == text.lowercased()
            }) {
                mode = m
                if (policy == .none) != (m == .none) {
                    sink.error(
                        v.line, v.column,
                        "\(what): security_mode \(m.rawValue) does not go with security_policy \(policy.rawValue)",
                        hint: policy == .none
                            ? "policy none has mode none; choose a policy such as Basic256Sha256 to sign or encrypt"
                            : "use Sign or SignAndEncrypt; for no security set security_policy: none")
                }
            } else {
                sink.error(
                    v.line, v.column, "\(what) has unknown security_mode '\(text)'",
                    hint: "use SignAndEncrypt (default), Sign or none")
            }
        }
        let user = r.string("user", sink: &sink)
        let passwordFile = r.string("password_file", sink: &sink)
        if (user == nil) != (passwordFile == nil) {
            sink.error(
                r.value("user")?.line ?? r.value("password_file")?.line ?? r.line, 1,
                "\(what): user and password_file go together",
                hint: "leave both out for an anonymous session")
        }
        if let passwordFile, let v = r.value("password_file") {
            let path = passwordFile.hasPrefix("/") ? passwordFile : baseDirectory + "/" + passwordFile
            if !FileManager.default.fileExists(atPath: path) {
                sink.error(
                    v.line, v.column, "\(what) password_file '\(path)' does not exist",
                    hint: "put the password on the first line of a file readable only by the service user (0600)")
            }
        }
        // A password over policy none crosses the network in clear text to a server whose certificate is never
        // checked (issue 15, Medium 9): refused unless the configuration says, in so many words, that this is meant.
        let allowInsecure = r.bool("allow_insecure_credentials", sink: &sink) ?? false
        if policy == .none, user != nil {
            let at = r.value("user") ?? r.value("security_policy")
            if allowInsecure {
                sink.warning(
                    at?.line ?? r.line, at?.column ?? 1,
                    "\(what): user and password over security_policy none (allowed by allow_insecure_credentials): "
                        + "the password crosses the network in clear text and the server is not authenticated")
            } else {
                sink.error(
                    at?.line ?? r.line, at?.column ?? 1,
                    "\(what): user and password_file with security_policy none would send the password in clear text "
                        + "to a server whose certificate is never checked",
                    hint: "use security_policy Basic256Sha256 (the default) with trust, or, only on an isolated "
                        + "network, set allow_insecure_credentials: true")
            }
        } else if allowInsecure, let v = r.value("allow_insecure_credentials") {
            sink.warning(
                v.line, v.column,
                "\(what): allow_insecure_credentials has no effect unless security_policy is none with a user")
        }
        let pki =
            r.string("pki_dir", sink: &sink) ?? OPCUADefaults.pkiDirectory(besideHistory: history.path)
        var trust = OPCUAEndpointSettings.Trust.trustList
        if let text = r.string("trust", sink: &sink), let v = r.value("trust") {
            let hexDigits = text.lowercased().filter { $0.isHexDigit }
            if ["trust_list", "list", "trusted"].contains(text.lowercased()) {
                trust = .trustList
            } else if hexDigits.count == 40, text.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == " " }) {
                trust = .pinnedThumbprint(hexDigits)
            } else {
                sink.error(
                    v.line, v.column,
                    "\(what) trust must be trust_list or a 40-digit SHA-1 thumbprint, found '\(text)'",
                    hint: "'edgepilot opcua endpoints URL' shows the server certificate's thumbprint")
            }
        }
        if policy == .none, r.has("trust"), let v = r.value("trust") {
            sink.warning(v.line, v.column, "\(what): trust has no effect with security_policy none")
        }
        let uri = r.string("application_uri", sink: &sink) ?? OPCUADefaults.applicationUri
        let maxNodes = r.int("max_nodes_per_read", range: 1...100_000, sink: &sink) ?? 1000
        guard let endpoint else { return nil }
        return .opcua(
            OPCUAEndpointSettings(
                endpointURL: endpoint, policy: policy, mode: mode, userName: user,
                passwordFile: passwordFile.map { $0.hasPrefix("/") ? $0 : baseDirectory + "/" + $0 },
                pkiDirectory: pki, trust: trust, applicationUri: uri, maxNodesPerRead: maxNodes))
    }

    /// Reads `mode`, `sampling_interval`, `deadband` and `queue_size` of a poll group; nil for `mode: poll`.
    mutating func readPollGroupMode(_ r: inout MappingReader) -> OPCUASubscriptionSettings? {
        let mode = r.string("mode", sink: &sink)?.lowercased()
        let keys = ["sampling_interval", "deadband", "queue_size"]
        switch mode {
        case nil, "poll":
            for key in keys where r.has(key) {
                if let v = r.value(key) {
                    sink.error(
                        v.line, v.column, "'\(key)' applies to poll groups with mode: subscribe",
                        hint: "add mode: subscribe, or remove '\(key)'")
                }
            }
            return nil
        case "subscribe", "subscription":
            var settings = OPCUASubscriptionSettings()
            if let ms = r.duration("sampling_interval", sink: &sink) { settings.samplingIntervalMilliseconds = ms }
            settings.queueSize = r.int("queue_size", range: 1...1000, sink: &sink) ?? 1
            if let text = r.string("deadband", sink: &sink), let v = r.value("deadband") {
                let t = text.trimmingCharacters(in: .whitespaces)
                if t.hasSuffix("%"), let p = Double(t.dropLast().trimmingCharacters(in: .whitespaces)), p >= 0, p <= 100
                {
                    settings.deadband = .percent(p)
                } else if let d = Double(t), d >= 0, d.isFinite {
                    settings.deadband = d == 0 ? .none : .absolute(d)
                } else {
                    sink.error(
                        v.line, v.column,
                        "deadband must be a number (absolute) or a percentage like 2%, found '\(text)'")
                }
            }
            return settings
        case let other?:
            let v = r.value("mode")
            sink.error(
                v?.line ?? r.line, v?.column ?? 1, "unknown poll group mode '\(other)'", hint: "use poll or subscribe")
            return nil
        }
    }
}

/// Checks that only OPC UA tags and devices have: addresses, types and writes.
enum OPCUAValidator {
    /// Checks `tag` when it or its device is OPC UA; returns false for a Modbus tag on a Modbus device.
    static func check(_ tag: TagDefinition, device: DeviceDefinition, at: Location, sink: inout DiagnosticSink) -> Bool
    {
        let what = "tag '\(tag.name)'"
        let isOPCUADevice: Bool
        if case .opcua = device.transport { isOPCUADevice = true } else { isOPCUADevice = false }
        func error(_ message: String, hint: String? = nil) {
            sink.diagnostics.append(
                ConfigDiagnostic(.error, file: at.file, line: at.line, column: at.column, message: message, hint: hint))
        }
        switch tag.source {
        case .modbus:
            guard isOPCUADevice else { return false }
            error(
                "\(what) has a Modbus area and address, but device '\(device.name)' is an OPC UA device",
                hint: "address OPC UA tags with node: \"ns=2;s=Name\" or browse_path: Objects/2:Folder/2:Name")
            return true
        case .opcua(let node):
            if !isOPCUADevice {
                error("\(what) names an OPC UA node, but device '\(device.name)' is a Modbus device")
                return true
            }
            if let problem = OPCUAAddressSyntax.nodeIdProblem(node) {
                error(
                    "\(what) node '\(node)' is not a valid NodeId: \(problem)",
                    hint: "write it as ns=<index>;s=<name>, ns=<index>;i=<number>, g=<guid> or b=<base64>")
            }
        case .computed:
            return false
        case .opcuaBrowsePath(let path):
            if !isOPCUADevice {
                error("\(what) has a browse_path, but device '\(device.name)' is a Modbus device")
                return true
            }
            if OPCUAAddressSyntax.browsePath(path) == nil {
                error(
                    "\(what) browse_path '\(path)' is not a path of browse names",
                    hint: "write it as Objects/2:Plant/2:Tank1/2:Level (namespace index, colon, browse name)")
            }
        }
        if tag.order != .abcd {
            sink.diagnostics.append(
                ConfigDiagnostic(
                    .warning, file: at.file, line: at.line, column: at.column,
                    message: "\(what): order applies to Modbus registers; OPC UA values are typed and it is ignored"))
        }
        if tag.writable, tag.type.isNumeric {
            guard let limits = tag.limits else {
                error(
                    "\(what) is writable but has no limits",
                    hint: "add limits: {min: …, max: …} in engineering units; writes outside them are refused")
                return true
            }
            if let range = ConfigValidator.rawRange(tag.type) {
                for (label, value) in [("min", limits.minimum), ("max", limits.maximum)] {
                    let raw = tag.scaling?.toRaw(value) ?? value
                    if raw < range.lowerBound || raw > range.upperBound {
                        error(
                            "\(what): limit \(label) \(formatDouble(value)) cannot be written as \(tag.type)",
                            hint:
                                "\(tag.type) holds \(formatDouble(range.lowerBound)) … \(formatDouble(range.upperBound))"
                        )
                    }
                }
            }
        } else if !tag.writable, tag.limits != nil {
            sink.diagnostics.append(
                ConfigDiagnostic(
                    .warning, file: at.file, line: at.line, column: at.column,
                    message: "\(what) has limits but is not writable; they are ignored"))
        }
        return true
    }
}
