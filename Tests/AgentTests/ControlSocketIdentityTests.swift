import Foundation
import History
import LocalControl
import TestSupport
import Testing

/// Local users over the control socket (issue 15, item 4; decision 0024): the audit names the peer the kernel
/// reports whatever the client claims, a read-only peer may read but not steer, idle clients cannot hold the socket,
/// and the agent's own files are private from the first start.
///
/// The other local user is `nobody` (uid and gid 65534, no supplementary groups) through `setpriv`; the read-only
/// group is `nogroup` (65534), so no group has to be created.
@Suite(.serialized) struct ControlSocketIdentityTests {
    static let nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"]

    static func config(port: Int) -> String {
        DaemonEndToEndTests.config(port: port, secondDevice: false)
            .replacingOccurrences(of: "  log_level: info\n", with: "  log_level: info\n  read_only_group: nogroup\n")
    }

    /// A running agent whose directory `nobody` may enter (the sockets' own modes decide the rest).
    static func agent(port: Int) throws -> AgentProcess {
        let agent = try AgentProcess(config: config(port: port))
        chmod(agent.dir.path, 0o755)
        return agent
    }

    /// `edgepilot ARGUMENTS --socket <operator socket>` as `nobody`, claiming to be root through the environment.
    static func cliAsNobody(_ agent: AgentProcess, _ arguments: [String]) throws -> CommandResult {
        try runCommand(
            "/usr/bin/setpriv", nobody + [agent.binary] + arguments + ["--socket", agent.socket],
            environment: ["SUDO_USER": "root", "USER": "root"])
    }

    /// One raw request line sent by `nobody` to `socket`, with whatever `source` it likes; returns the answer line.
    static func rawRequestAsNobody(socket: String, _ json: String) throws -> String {
        let script = """
            import socket, sys
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(sys.argv[1])
            s.sendall(sys.argv[2].encode() + b"\\n")
            print(s.makefile().readline(), end="")
            """
        let result = try runCommand("/usr/bin/setpriv", nobody + ["/usr/bin/python3", "-c", script, socket, json])
        guard result.status == 0 else { throw PeerError("raw request failed: \(result.stderr)") }
        return result.stdout
    }

    static func audit(_ agent: AgentProcess) throws -> [[String: Any]] {
        try agent.json(["audit"]) as? [[String: Any]] ?? []
    }

    @Test func auditNamesTheKernelsPeerWhateverTheClientClaims() throws {
        let plant = try QuadTank()
        defer { plant.stop() }
        let agent = try Self.agent(port: plant.port)
        defer { agent.dir.remove() }
        #expect(eventually { (try? agent.cli(["read", "pump1/voltage", "--json"]))?.stdout.contains("good") == true })

        // Root, claiming to be the Primary Host: written, and audited as root.
        let claimed = ControlRequest(
            command: .write, tag: "pump1/voltage", value: "2.5", source: "sparkplug:Ignition-Primary")
        #expect(try ControlClient(path: agent.socket).send(claimed).write?.result == "written")
        var rows: [[String: Any]] = []
        #expect(
            eventually {
                rows = (try? Self.audit(agent)) ?? []
                return rows.count == 1
            }, "\(rows)")
        #expect(rows.first?["source"] as? String == "cli:uid=0,user=root", "\(rows)")

        // nobody, claiming to be root, on the read-only socket: refused, and audited as nobody.
        let answer = try Self.rawRequestAsNobody(
            socket: ControlServer.readOnlyPath(for: agent.socket),
            #"{"command":"write","tag":"pump1/voltage","value":"7","source":"cli:uid=0,user=root"}"#)
        #expect(answer.contains("needs the operator role"), "\(answer)")

        // nobody through the CLI, whose environment says root.
        let cli = try Self.cliAsNobody(agent, ["write", "pump1/voltage", "8", "--yes"])
        #expect(cli.status == 1, "\(cli.stderr)")

        #expect(
            eventually {
                rows = (try? Self.audit(agent)) ?? []
                return rows.count == 3
            }, "\(rows)")
        #expect(
            rows.map { $0["source"] as? String } == [
                "cli:uid=0,user=root", "cli:uid=65534,user=nobody", "cli:uid=65534,user=nobody",
            ])
        #expect(rows.map { $0["result"] as? String } == ["ok", "refused", "refused"])
        #expect(rows.dropFirst().allSatisfy { $0["detail"] as? String == "read-only role" }, "\(rows)")
        let voltages = try plant.control(["cmd": "get"])["v"] as? [Double]
        #expect(abs((voltages?[0] ?? 0) - 2.5) < 1e-6, "only root's write reached the PLC")
    }

    @Test func readOnlyPeerMayReadButNotSteer() throws {
        let plant = try QuadTank()
        defer { plant.stop() }
        let agent = try Self.agent(port: plant.port)
        defer { agent.dir.remove() }
        #expect(eventually { (try? agent.cli(["read", "pump1/voltage", "--json"]))?.stdout.contains("good") == true })

        // Reading: the operator socket denies nobody, so the CLI uses the read-only socket beside it.
        for command in [["status"], ["tags"], ["read", "pump1/voltage"], ["audit"], ["health"]] {
            let r = try Self.cliAsNobody(agent, command)
            #expect(r.status == 0 || (command == ["health"] && r.status != 3), "\(command): \(r.status) \(r.stderr)")
        }
        // Steering: refused with the role it needs, exit 1.
        for command in [
            ["write", "pump1/voltage", "3", "--yes"], ["loop", "tanks", "mode", "manual"], ["mqtt", "rebirth"],
            ["config", "diff", agent.configPath],
        ] {
            let r = try Self.cliAsNobody(agent, command)
            #expect(r.status == 1, "\(command): \(r.status) \(r.stderr)")
            #expect(r.stderr.contains("needs the operator role"), "\(command): \(r.stderr)")
            #expect(r.stderr.contains("uid=65534 (nobody) has the read-only role"), "\(r.stderr)")
        }
        // Root on the same agent is an operator.
        #expect(try agent.cli(["write", "pump1/voltage", "3", "--yes"]).status == 0)

        // A user in neither group is turned away at the connection.
        let stranger = try runCommand(
            "/usr/bin/setpriv",
            ["--reuid=65534", "--regid=65533", "--clear-groups", agent.binary, "status", "--socket", agent.socket])
        #expect(stranger.status == 1, "\(stranger.stderr)")
        #expect(stranger.stderr.contains("may not use the agent's control socket"), "\(stranger.stderr)")
        // The same user with the read-only group as a supplementary group (SO_PEERGROUPS) may read, not write.
        let member = ["--reuid=65534", "--regid=65533", "--groups=65534", agent.binary]
        let status = try runCommand("/usr/bin/setpriv", member + ["status", "--socket", agent.socket])
        #expect(status.status == 0, "\(status.stderr)")
        let write = try runCommand(
            "/usr/bin/setpriv", member + ["write", "pump1/voltage", "4", "--yes", "--socket", agent.socket])
        #expect(write.status == 1 && write.stderr.contains("needs the operator role"), "\(write.stderr)")
    }

    /// 16 clients that connect and send nothing: `status` still answers, and the agent drops them.
    @Test func idleClientsDoNotStarveTheSocket() throws {
        let plant = try QuadTank()
        defer { plant.stop() }
        let agent = try Self.agent(port: plant.port)
        defer { agent.dir.remove() }
        #expect(try agent.cli(["status"]).status == 0)

        let idle = try (0..<ControlServer.maxClients).map { _ in try ControlClient(path: agent.socket) }
        usleep(200_000)
        let started = Date()
        let status = try agent.cli(["status"])
        #expect(status.status == 0, "\(status.stderr)")
        // Generous: the agent gives an idle client 2 s; it used to hold each for 30 s and turn others away.
        #expect(Date().timeIntervalSince(started) < 10)
        // The idle connections were closed by the agent: a request on one now finds nobody listening.
        #expect(idle.allSatisfy(Self.dropped))
    }

    /// Whether the agent has closed `client`: a request on it fails. One the agent accepted late (a loaded machine)
    /// and still answers is given longer than the request deadline to go idle again.
    static func dropped(_ client: ControlClient) -> Bool {
        for _ in 0..<4 {
            if (try? client.send(ControlRequest(command: .status))) == nil { return true }
            usleep(2_500_000)
        }
        return false
    }

    /// A request asking for every sample gets at most 10,000 of them, however many are stored.
    @Test func theAgentCapsWhatOneHistoryRequestReturns() throws {
        let dir = try TemporaryDirectory("edgepilot-agent")
        defer { dir.remove() }
        let store = try HistoryStore(path: dir.path + "/history.db")
        let start = HistoryClock.now() - 3_600_000_000
        // Rows 9,998…10,003 share one timestamp: the CLI's page boundary (10,000) falls inside them.
        func stamp(_ i: Int) -> Int64 { start + Int64((9_998..<10_004).contains(i) ? 9_998 : i) * 1000 }
        try store.append(
            (0..<10_050).map { HistoryRow(tag: "tank1/level", timestamp: stamp($0), value: .real(Double($0))) })
        store.close()
        let agent = try AgentProcess(
            config: "agent:\n  control_socket: @DIR@/control.sock\nhistory:\n  path: @DIR@/history.db\n", dir: dir)
        let request = ControlRequest(command: .history, tag: "tank1/level", since: 0, limit: Int.max)
        let points = try ControlClient(path: agent.socket).send(request).history ?? []
        #expect(points.count == 10_000)
        #expect(points.first?.timestamp == start)

        // The CLI pages: every row once, in order, across the boundary of equal timestamps.
        let all = try agent.cli(["history", "tank1/level", "--since", "2h", "--limit", "20000", "--json"])
        let values = try #require(
            (try JSONSerialization.jsonObject(with: Data(all.stdout.utf8)) as? [[String: Any]])?.map {
                ($0["value"] as? Double).map(Int.init) ?? -1
            }, "\(all.stderr)")
        #expect(values == Array(0..<10_050), "\(values.count) rows")
        #expect(!all.stderr.contains("more may follow"), "\(all.stderr)")
        // A limit below what is stored says how to go on.
        let first = try agent.cli(["history", "tank1/level", "--since", "2h", "--limit", "10001", "--json"])
        #expect((try JSONSerialization.jsonObject(with: Data(first.stdout.utf8)) as? [Any])?.count == 10_001)
        #expect(first.stderr.contains("showing the first 10001 samples; more may follow"), "\(first.stderr)")
        agent.stop()
    }

    @Test func agentFilesArePrivateFromTheFirstStart() throws {
        let dir = try TemporaryDirectory("edgepilot-agent")
        defer { dir.remove() }
        let port = try deadPort()
        let config = """
            agent:
              control_socket: @DIR@/control.sock
            history:
              path: @DIR@/history.db
            devices:
              - name: plc
                type: opcua
                endpoint: opc.tcp://127.0.0.1:\(port)/
            tags:
              - name: level
                device: plc
                node: "ns=2;s=Level"
                type: float64

            """
        // Started with umask 0000, as a careless shell or unit might: the agent must not inherit it.
        let agent = try AgentProcess(config: config, dir: dir, umask: 0)
        let pki = dir.path + "/pki"
        #expect(eventually(timeout: 30) { FileManager.default.fileExists(atPath: pki + "/own/private/key.pem") })
        #expect(eventually { FileManager.default.fileExists(atPath: dir.path + "/history.db") })
        agent.stop()

        func mode(_ path: String) -> mode_t {
            var s = stat()
            return stat(path, &s) == 0 ? s.st_mode & 0o7777 : 0o7777
        }
        #expect(mode(pki + "/own/private") == 0o700)
        #expect(mode(pki + "/own/private/key.pem") == 0o600)
        for path in [pki, pki + "/own", pki + "/own/cert.der", dir.path + "/history.db"] {
            #expect(mode(path) & 0o027 == 0, "\(path) is \(String(mode(path), radix: 8))")
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: pki + "/own/private")
        #expect(leftovers == ["key.pem"])
    }
}
