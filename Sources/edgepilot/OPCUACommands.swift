import Agent
import ArgumentParser
import Configuration
import Foundation
import LocalControl
import LoopRuntime
import OPCUA
import OPCUADriver
import SparkplugPublisher
import Tags

/// `edgepilot opcua …`: commissioning an OPC UA server without the agent running.
struct OPCUACommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "opcua", abstract: "Talk to OPC UA servers directly, for commissioning (no agent needed).",
        discussion: """
            Connections use Basic256Sha256 with SignAndEncrypt unless --security none is given. The client \
            certificate and the trust list live in --pki-dir (default \(OPCUADefaults.pkiDirectory), the agent's \
            own): own/ holds the certificate, trusted/ the servers you trust, rejected/ the ones seen but not trusted. \
            Nodes are NodeIds (ns=2;s=Tank1.Level, i=2258) or browse paths (Objects/2:Plant/2:Tank1/2:Level).
            """,
        subcommands: [Endpoints.self, Browse.self, Read.self, Write.self, Cert.self, Trust.self])

    /// Connection options shared by the commands that open a session.
    struct ClientOptions: ParsableArguments {
        @Option(name: .long, help: "Security policy: Basic256Sha256, Aes128_Sha256_RsaOaep or none.")
        var security: String = "Basic256Sha256"
        @Option(name: .long, help: "Security mode: SignAndEncrypt, Sign or none (default: none with --security none).")
        var mode: String?
        @Option(name: .long, help: "User name (default: anonymous).") var user: String?
        @Option(name: .customLong("password-file"), help: "File with the user's password on its first line.")
        var passwordFile: String?
        @Option(name: .long, help: "Client certificate (DER or PEM) instead of the one in --pki-dir.") var cert: String?
        @Option(name: .long, help: "Private key (PEM) of --cert.") var key: String?
        @Option(name: .customLong("pki-dir"), help: "PKI directory (own/, trusted/, rejected/).")
        var pkiDir: String = ProcessInfo.processInfo.environment["EDGEPILOT_PKI_DIR"] ?? OPCUADefaults.pkiDirectory
        @Option(
            name: .customLong("application-uri"), help: "ApplicationUri of the client (default: urn:edgepilot:<host>).")
        var applicationUri: String?
        @Option(name: .long, help: "Request timeout in seconds.") var timeout: Double = 10

        var policy: OPCUAEndpointSettings.Policy? {
            OPCUAEndpointSettings.Policy.allCases.first { $0.rawValue.lowercased() == security.lowercased() }
        }

        var securityMode: OPCUAEndpointSettings.Mode? {
            guard let mode else {
                return policy == OPCUAEndpointSettings.Policy.none
                    ? OPCUAEndpointSettings.Mode.none : OPCUAEndpointSettings.Mode.signAndEncrypt
            }
            return OPCUAEndpointSettings.Mode.allCases.first { $0.rawValue.lowercased() == mode.lowercased() }
        }

        func validate() throws {
            guard let policy else {
                throw ValidationError("--security must be Basic256Sha256, Aes128_Sha256_RsaOaep or none")
            }
            guard let m = securityMode else { throw ValidationError("--mode must be SignAndEncrypt, Sign or none") }
            if (policy == .none) != (m == .none) {
                throw ValidationError("--mode \(m.rawValue) does not go with --security \(policy.rawValue)")
            }
            if (user == nil) != (passwordFile == nil) {
                throw ValidationError("--user and --password-file go together")
            }
            if (cert == nil) != (key == nil) { throw ValidationError("--cert and --key go together") }
            if timeout <= 0 { throw ValidationError("--timeout must be positive") }
        }

        func securityConfiguration() throws -> SecurityConfiguration {
            guard policy != OPCUAEndpointSettings.Policy.none else { return .none }
            let identity: ApplicationIdentity
            do {
                if let cert, let key {
                    identity = try ApplicationIdentity.load(
                        certificatePath: cert, keyPath: key, applicationUri: applicationUri)
                } else {
                    identity = try ApplicationIdentity.loadOrCreate(
                        pkiDirectory: pkiDir, applicationUri: applicationUri ?? OPCUADefaults.applicationUri,
                        applicationName: "EdgePilot")
                }
            } catch {
                throw CLIError(
                    "cannot load or create the client certificate in \(pkiDir)/own: \(error)\n"
                        + "check that this user may write \(pkiDir), or give --pki-dir, or --cert and --key")
            }
            return SecurityConfiguration(
                identity: identity, trust: .trustList(pkiDirectory: pkiDir),
                policy: policy == .aes128Sha256RsaOaep ? .aes128Sha256RsaOaep : .basic256Sha256,
                mode: securityMode == .sign ? .sign : .signAndEncrypt)
        }

        func userIdentity() throws -> UserIdentity {
            guard let user, let passwordFile else { return .anonymous }
            guard let text = try? String(contentsOfFile: passwordFile, encoding: .utf8) else {
                throw CLIError("cannot read the password file \(passwordFile)")
            }
            let line = text.split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) ?? ""
            return .userName(user, password: line.trimmingCharacters(in: CharacterSet(charactersIn: "\r")))
        }

        /// Opens a session, turning the errors a technician meets into instructions.
        func connect(_ url: String) throws -> OPCUAClient {
            let security = try securityConfiguration()
            // The URI sent in CreateSession must be the one in the certificate.
            let uri = security.identity?.applicationUri ?? applicationUri ?? OPCUADefaults.applicationUri
            let client = OPCUAClient(configuration: ClientConfiguration(applicationUri: uri, requestTimeout: timeout))
            do {
                try client.connect(endpointURL: url, security: security, identity: try userIdentity())
            } catch let error as OPCUAError {
                throw CLIError(Self.explain(error, url: url, pkiDir: pkiDir))
            }
            return client
        }

        static func explain(_ error: OPCUAError, url: String, pkiDir: String) -> String {
            switch error {
            case .certificateUntrusted(let thumbprint, let path?):
                return """
                    the server certificate of \(url) is not trusted (SHA-1 thumbprint \(thumbprint)).
                    It was saved to \(path).
                    Compare the thumbprint with the one the server shows, then trust it with:
                      edgepilot opcua trust \(thumbprint) --pki-dir \(pkiDir)
                    """
            case .certificateUntrusted(let thumbprint, nil):
                return "the server certificate of \(url) (thumbprint \(thumbprint)) does not match the pinned one"
            case .serviceFault(_, let status)
            where status.rawValue & 0xFFFF_0000 == StatusCode.badUserAccessDenied.rawValue
                || status.rawValue & 0xFFFF_0000 == StatusCode.badIdentityTokenRejected.rawValue:
                return "the server refused the user identity (\(status)): check --user and --password-file"
            case .serviceFault(_, let status)
            where status.rawValue & 0xFFFF_0000 == StatusCode.badCertificateUntrusted.rawValue
                || status.rawValue & 0xFFFF_0000 == StatusCode.badSecurityChecksFailed.rawValue:
                return "the server does not trust this client's certificate (\(status)); trust "
                    + "\(pkiDir)/own/cert.der on the server (most servers put it in their rejected list first)"
            default:
                return "\(url): \(error)"
            }
        }
    }

    /// A NodeId or, for text with '/', a browse path from the Objects folder.
    static func resolve(_ text: String, with client: OPCUAClient) throws -> NodeId {
        if text.contains("/") && !text.contains("=") || text.hasPrefix("Objects/") || text.hasPrefix("/") {
            guard let steps = OPCUAAddressSyntax.browsePath(text) else {
                throw CLIError("'\(text)' is not a browse path such as Objects/2:Plant/2:Level")
            }
            do {
                return try client.translateBrowsePath(
                    path: steps.map { RelativePathElement(QualifiedName(namespace: $0.namespace, $0.name)) })
            } catch {
                throw CLIError("browse path '\(text)' was not found: \(error)")
            }
        }
        do { return try NodeId(parsing: text) } catch { throw CLIError("'\(text)' is not a NodeId: \(error)") }
    }

    // MARK: - endpoints

    struct Endpoints: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the endpoints (security policies, modes, user tokens) a server offers.")
        @Argument(help: "Server URL, e.g. opc.tcp://10.0.0.5:4840/") var url: String
        @Option(name: .long, help: "Request timeout in seconds.") var timeout: Double = 10
        @OptionGroup var output: OutputOptions

        struct Row: Encodable {
            var endpointUrl: String
            var securityPolicy: String
            var securityMode: String
            var securityLevel: Int
            var userTokens: [String]
            var applicationUri: String
            var serverCertificateThumbprint: String?
        }

        func run() throws {
            let endpoints: [EndpointDescription]
            do {
                endpoints = try OPCUAClient.getEndpoints(
                    endpointURL: url, configuration: ClientConfiguration(requestTimeout: timeout))
            } catch let error as OPCUAError {
                throw CLIError("\(url): \(error)")
            }
            let rows = endpoints.map { e in
                Row(
                    endpointUrl: e.endpointUrl,
                    securityPolicy: String(e.securityPolicyUri.split(separator: "#").last ?? "?"),
                    securityMode: e.securityMode.description, securityLevel: Int(e.securityLevel),
                    userTokens: e.userIdentityTokens.map { token in
                        switch token.tokenType {
                        case .anonymous: return "anonymous"
                        case .userName: return "username"
                        case .certificate: return "certificate"
                        case .issuedToken: return "issued"
                        }
                    },
                    applicationUri: e.server.applicationUri ?? "",
                    serverCertificateThumbprint: e.serverCertificate.isEmpty
                        ? nil : certificateThumbprint(e.serverCertificate))
            }
            if output.json { return try printJSON(rows) }
            print(
                table(
                    ["POLICY", "MODE", "LEVEL", "USER TOKENS", "ENDPOINT"],
                    rows.map {
                        [
                            $0.securityPolicy, $0.securityMode, String($0.securityLevel),
                            $0.userTokens.joined(separator: ","), $0.endpointUrl,
                        ]
                    }))
            let thumbs = Set(rows.compactMap { $0.serverCertificateThumbprint })
            for t in thumbs.sorted() { print("server certificate SHA-1 thumbprint: \(t)") }
        }
    }

    // MARK: - browse

    struct Browse: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the children of a node (default: the Objects folder), with variables' values.")
        @Argument(help: "Server URL.") var url: String
        @Argument(help: "Node to browse (NodeId or browse path); default i=85 (Objects).") var node: String?
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions

        struct Row: Encodable {
            var nodeId: String
            var browseName: String
            var displayName: String
            var nodeClass: String
            var value: String?
            var dataType: String?
            var status: String?
        }

        func run() throws {
            let c = try client.connect(url)
            defer { c.disconnect() }
            let start = try node.map { try OPCUACommand.resolve($0, with: c) } ?? NodeId(85)
            let refs: [ReferenceDescription]
            do { refs = try c.browse(start) } catch { throw CLIError("browse \(start) failed: \(error)") }
            let children = refs.filter(\.isForward)
            let variables = children.filter { $0.nodeClass == 2 }.map(\.nodeId.nodeId)
            let values = (try? c.read(variables)) ?? []
            var valueByNode: [NodeId: DataValue] = [:]
            for (n, v) in zip(variables, values) { valueByNode[n] = v }
            let rows = children.map { r -> Row in
                let v = valueByNode[r.nodeId.nodeId]
                return Row(
                    nodeId: r.nodeId.nodeId.description, browseName: r.browseName.description,
                    displayName: r.displayName.text ?? "", nodeClass: nodeClassName(r.nodeClass),
                    value: v.map { OPCUAValues.describe($0.value) },
                    dataType: v?.value.builtinType.map { OPCUAValues.typeName($0) + (v!.value.isArray ? "[]" : "") },
                    status: v.map { $0.status.name })
            }
            if output.json { return try printJSON(rows) }
            print(
                table(
                    ["NODE", "BROWSE NAME", "CLASS", "TYPE", "VALUE"],
                    rows.map {
                        [
                            $0.nodeId, $0.browseName, $0.nodeClass, $0.dataType ?? "",
                            $0.value.map { String($0.prefix(60)) } ?? "",
                        ]
                    }))
        }

        func nodeClassName(_ c: UInt32) -> String {
            switch c {
            case 1: return "Object"
            case 2: return "Variable"
            case 4: return "Method"
            case 8: return "ObjectType"
            case 16: return "VariableType"
            case 32: return "ReferenceType"
            case 64: return "DataType"
            case 128: return "View"
            default: return String(c)
            }
        }
    }

    // MARK: - read

    struct Read: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Read the values of nodes, with status and timestamps.")
        @Argument(help: "Server URL.") var url: String
        @Argument(help: "Nodes (NodeIds or browse paths).") var nodes: [String]
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions

        struct Row: Encodable {
            var node: String
            var nodeId: String
            /// A number or a boolean as such in `--json`; other types as their text.
            var value: JSONValue?
            var type: String?
            var status: String
            var statusCode: UInt32
            var sourceTimestamp: String?
            var serverTimestamp: String?
        }

        func validate() throws {
            if nodes.isEmpty { throw ValidationError("give at least one node") }
        }

        func run() throws {
            let c = try client.connect(url)
            defer { c.disconnect() }
            let ids = try nodes.map { try OPCUACommand.resolve($0, with: c) }
            let values: [DataValue]
            do { values = try c.read(ids) } catch { throw CLIError("read failed: \(error)") }
            let rows = zip(zip(nodes, ids), values).map { pair, v in
                Row(
                    node: pair.0, nodeId: pair.1.description, value: Self.json(v.value),
                    type: v.value.builtinType.map { OPCUAValues.typeName($0) + (v.value.isArray ? "[]" : "") },
                    status: v.status.name,
                    statusCode: v.status.rawValue, sourceTimestamp: v.sourceTimestamp.map(OPCUAValues.describeTime),
                    serverTimestamp: v.serverTimestamp.map(OPCUAValues.describeTime))
            }
            if output.json { return try printJSON(rows) }
            print(
                table(
                    ["NODE", "VALUE", "TYPE", "STATUS", "SOURCE TIME", "SERVER TIME"],
                    rows.map {
                        [
                            $0.node, $0.value?.description ?? "-", $0.type ?? "-", $0.status, $0.sourceTimestamp ?? "-",
                            $0.serverTimestamp ?? "-",
                        ]
                    }))
            // A node that does not exist is "not found" (2); any other Bad status is a failed read (1).
            let bad = rows.filter { $0.statusCode & 0x8000_0000 != 0 }
            guard !bad.isEmpty else { return }
            let unknown: Set<UInt32> = [StatusCode.badNodeIdUnknown.rawValue, 0x8033_0000]  // …Unknown, …Invalid
            throw ExitCode(bad.allSatisfy { unknown.contains($0.statusCode & 0xFFFF_0000) } ? 2 : 1)
        }

        /// Scalars a script compares as numbers stay numbers; a float as its own shortest decimal.
        static func json(_ v: Variant) -> JSONValue? {
            switch v {
            case .null: return nil
            case .boolean(let b): return .bool(b)
            case .sbyte(let x): return .int(Int64(x))
            case .byte(let x): return .uint(UInt64(x))
            case .int16(let x): return .int(Int64(x))
            case .uint16(let x): return .uint(UInt64(x))
            case .int32(let x): return .int(Int64(x))
            case .uint32(let x): return .uint(UInt64(x))
            case .int64(let x): return .int(x)
            case .uint64(let x): return .uint(x)
            case .float(let x): return .double(Double(x.description) ?? Double(x))
            case .double(let x): return .double(x)
            default: return .string(OPCUAValues.describe(v))
            }
        }
    }

    // MARK: - write

    struct Write: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a value to a node, as exactly the given built-in type, and read it back.",
            discussion: """
                --type is the OPC UA built-in type (Boolean, SByte, Byte, Int16, UInt16, Int32, UInt32, Int64, \
                UInt64, Float, Double, String, DateTime, Guid, ByteString, …); add [] for an array, written as \
                [1, 2, 3]. Without --type the node's current type is used.
                """)
        @Argument(help: "Server URL.") var url: String
        @Argument(help: "Node (NodeId or browse path).") var node: String
        @Argument(help: "The value.") var value: String
        @Option(name: .long, help: "Built-in type of the value, e.g. Double or Int32[].") var type: String?
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions

        struct Result: Encodable {
            var nodeId: String
            var written: String
            var type: String
            var status: String
            var readBack: String?
        }

        func validate() throws {
            if let type, OPCUAValues.builtinType(named: type.replacingOccurrences(of: "[]", with: "")) == nil {
                throw ValidationError("unknown --type '\(type)'; use an OPC UA built-in type name such as Double")
            }
        }

        func run() throws {
            let c = try client.connect(url)
            defer { c.disconnect() }
            let id = try OPCUACommand.resolve(node, with: c)
            var builtin: BuiltinType
            var array: Bool
            if let type {
                array = type.hasSuffix("[]")
                builtin = OPCUAValues.builtinType(named: type.replacingOccurrences(of: "[]", with: ""))!
            } else {
                guard let current = try? c.read([id])[0], let t = current.value.builtinType else {
                    throw CLIError("cannot learn the type of \(id); give --type")
                }
                (builtin, array) = (t, current.value.isArray)
            }
            let variant: Variant
            do { variant = try OPCUAValues.variant(parsing: value, as: builtin, array: array) } catch {
                throw CLIError("\(error)".replacingOccurrences(of: "write refused: ", with: ""))
            }
            let status: StatusCode
            do { status = try c.write([(id, variant)])[0] } catch { throw CLIError("write failed: \(error)") }
            let back = status.isGood ? (try? c.read([id]))?.first.map { OPCUAValues.describe($0.value) } : nil
            let result = Result(
                nodeId: id.description, written: OPCUAValues.describe(variant),
                type: OPCUAValues.typeName(builtin) + (array ? "[]" : ""), status: status.name, readBack: back)
            if output.json {
                try printJSON(result)
            } else if status.isGood {
                print("wrote \(result.written) as \(result.type) to \(id)" + (back.map { "; reads back \($0)" } ?? ""))
            }
            guard status.isGood else {
                let hint =
                    status.rawValue & 0xFFFF_0000 == StatusCode.badTypeMismatch.rawValue
                    ? "; the node holds another type: try without --type to use its current one" : ""
                throw CLIError("the server refused the write to \(id): \(status)\(hint)")
            }
        }
    }

    // MARK: - cert

    struct Cert: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Manage the client's application certificate.", subcommands: [Create.self])

        struct Create: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Create the client certificate in <pki-dir>/own (kept if it exists, unless --force).")
            @Option(name: .customLong("pki-dir"), help: "PKI directory.")
            var pkiDir: String = ProcessInfo.processInfo.environment["EDGEPILOT_PKI_DIR"] ?? OPCUADefaults.pkiDirectory
            @Option(name: .customLong("application-uri"), help: "ApplicationUri (default: urn:edgepilot:<host>).")
            var applicationUri: String?
            @Option(name: .long, help: "Host name for the certificate's DNS name.")
            var hostname: String = ProcessInfo.processInfo.hostName
            @Flag(name: .long, help: "Replace an existing certificate.") var force = false
            @OptionGroup var output: OutputOptions

            struct Result: Encodable {
                var certificate: String
                var privateKey: String
                var applicationUri: String
                var thumbprint: String
                var created: Bool
            }

            func run() throws {
                let certPath = pkiDir + "/own/cert.der"
                let keyPath = pkiDir + "/own/private/key.pem"
                let existed = FileManager.default.fileExists(atPath: certPath)
                if force && existed {
                    try? FileManager.default.removeItem(atPath: certPath)
                    try? FileManager.default.removeItem(atPath: keyPath)
                }
                let identity: ApplicationIdentity
                do {
                    identity = try ApplicationIdentity.loadOrCreate(
                        pkiDirectory: pkiDir, applicationUri: applicationUri ?? OPCUADefaults.applicationUri,
                        applicationName: "EdgePilot", hostName: hostname)
                } catch {
                    throw CLIError("cannot create the certificate in \(pkiDir)/own: \(error)")
                }
                let result = Result(
                    certificate: certPath, privateKey: keyPath, applicationUri: identity.applicationUri,
                    thumbprint: identity.thumbprint, created: force || !existed)
                if output.json { return try printJSON(result) }
                print(
                    "\(result.created ? "created" : "kept existing") \(certPath)\n  ApplicationUri \(result.applicationUri)"
                        + "\n  SHA-1 thumbprint \(result.thumbprint)\n  trust this certificate on each server")
            }
        }
    }

    // MARK: - trust

    struct Trust: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Trust a server certificate: move it from rejected/ to trusted/ (no argument: list both).")
        @Argument(help: "A thumbprint of a certificate in rejected/, or a certificate file.") var certificate: String?
        @Option(name: .customLong("pki-dir"), help: "PKI directory.")
        var pkiDir: String = ProcessInfo.processInfo.environment["EDGEPILOT_PKI_DIR"] ?? OPCUADefaults.pkiDirectory
        @OptionGroup var output: OutputOptions

        struct Entry: Encodable {
            var list: String
            var file: String
            var thumbprint: String
            var subject: String
        }

        func run() throws {
            let fm = FileManager.default
            let trusted = pkiDir + "/trusted"
            let rejected = pkiDir + "/rejected"
            guard let certificate else {
                var entries: [Entry] = []
                for (name, dir) in [("trusted", trusted), ("rejected", rejected)] {
                    for file in ((try? fm.contentsOfDirectory(atPath: dir)) ?? []).sorted() {
                        guard let data = fm.contents(atPath: dir + "/" + file),
                            let s = certificateSummary([UInt8](data))
                        else { continue }
                        entries.append(
                            Entry(
                                list: name, file: dir + "/" + file, thumbprint: certificateThumbprint(s.der),
                                subject: s.subject))
                    }
                }
                if output.json { return try printJSON(entries) }
                if entries.isEmpty { print("no certificates in \(trusted) or \(rejected)") }
                print(table(["LIST", "THUMBPRINT", "SUBJECT"], entries.map { [$0.list, $0.thumbprint, $0.subject] }))
                return
            }
            let source: String
            if fm.fileExists(atPath: certificate) {
                source = certificate
            } else {
                let want = certificate.lowercased().filter(\.isHexDigit)
                let files = (try? fm.contentsOfDirectory(atPath: rejected)) ?? []
                let match = files.first { file in
                    guard let data = fm.contents(atPath: rejected + "/" + file),
                        let s = certificateSummary([UInt8](data))
                    else { return false }
                    return certificateThumbprint(s.der) == want
                }
                guard want.count == 40, let match else {
                    throw CLIError(
                        "no certificate with thumbprint \(certificate) in \(rejected)\n"
                            + "connect once over a secured session so the server's certificate lands there, e.g. "
                            + "'edgepilot opcua read URL i=2258 --pki-dir \(pkiDir)' ('opcua endpoints' saves none), "
                            + "or give the certificate file", notFound: true)
                }
                source = rejected + "/" + match
            }
            guard let data = fm.contents(atPath: source), let summary = certificateSummary([UInt8](data)) else {
                throw CLIError("\(source) is not a certificate (DER or PEM)")
            }
            let thumbprint = certificateThumbprint(summary.der)
            do {
                try fm.createDirectory(atPath: trusted, withIntermediateDirectories: true)
                let destination = trusted + "/\(thumbprint).der"
                if fm.fileExists(atPath: destination) { try fm.removeItem(atPath: destination) }
                try Data(summary.der).write(to: URL(fileURLWithPath: destination))
                if source.hasPrefix(rejected + "/") { try fm.removeItem(atPath: source) }
                if output.json {
                    return try printJSON(
                        Entry(list: "trusted", file: destination, thumbprint: thumbprint, subject: summary.subject))
                }
                print("trusted \(summary.subject) (\(thumbprint)) → \(destination)")
            } catch {
                throw CLIError("cannot write to \(trusted): \(error.localizedDescription)")
            }
        }
    }
}
