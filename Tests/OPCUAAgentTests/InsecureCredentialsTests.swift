import Foundation
import TestSupport
import Testing

/// Issue 15, Medium 9, against asyncua's server: a user and password over `security_policy: none` are refused by
/// `config check` and at start, with the file and line and the explicit opt-in; with the opt-in the agent connects.
@Suite(.serialized) struct InsecureCredentialsTests {
    @Test func credentialsOverPolicyNoneNeedAnExplicitOptIn() throws {
        let dir = try TemporaryDirectory("opcua-insecure")
        defer { dir.remove() }
        let sim = try OPCUASimulator(serverPKI: dir.path + "/server-pki")
        defer { sim.kill() }
        let password = dir.path + "/password"
        try "secret\n".write(toFile: password, atomically: true, encoding: .utf8)
        let security = "    security_policy: none\n    user: operator\n    password_file: \(password)"
        let agent = try AgentProcess(
            config: DaemonOPCUATests.config(endpoint: sim.endpoint, security: security), dir: dir, start: false)

        let check = try edgepilot(["config", "check", agent.configPath])
        let out = check.stdout + check.stderr
        #expect(check.status != 0, "refused: \(out)")
        #expect(out.contains("edgepilot.yaml:"), "with file and line: \(out)")
        #expect(out.contains("clear text") && out.contains("allow_insecure_credentials: true"), "\(out)")
        let run: CommandResult = try runCommand(agent.binary, ["run", "--config", agent.configPath], timeout: 30)
        let said = run.stdout + run.stderr
        #expect(run.status != 0, "the agent does not start")
        #expect(said.contains("allow_insecure_credentials"), "\(said)")

        // Opted in: a warning, and the session with the real server works.
        let allowed = try AgentProcess(
            config: DaemonOPCUATests.config(
                endpoint: sim.endpoint, security: security + "\n    allow_insecure_credentials: true"),
            dir: try TemporaryDirectory("opcua-insecure-allowed"), check: true)
        defer { _ = allowed.stop() }
        let warned = try edgepilot(["config", "check", allowed.configPath])
        #expect(warned.status == 0)
        #expect((warned.stdout + warned.stderr).contains("clear text"), "warned")
        let connected = eventually(timeout: 20) {
            let tag = try? allowed.tag("tank1/level")
            return tag?["quality"] as? String == "good"
        }
        #expect(connected, "connected with user and password over policy none")
    }
}
