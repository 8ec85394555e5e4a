import Foundation
import TestSupport
import Testing

/// `edgepilot opcua …` against the asyncua simulator, as a technician commissions a server.
@Suite(.serialized) struct CommissioningCLITests {
    @Test func untrustedThenTrustedThenReadBrowseWrite() throws {
        let dir = try TemporaryDirectory("opcua-cli")
        defer { dir.remove() }
        let sim = try OPCUASimulator(serverPKI: dir.path + "/server-pki")
        defer { sim.kill() }
        let pki = dir.path + "/pki"
        let url = sim.endpoint

        // endpoints: no session, no trust needed; shows what the server offers and its certificate's thumbprint.
        let endpoints = try jsonObject(try edgepilot(["opcua", "endpoints", url, "--json"])) as! [[String: Any]]
        #expect(
            endpoints.contains {
                $0["securityPolicy"] as? String == "Basic256Sha256" && $0["securityMode"] as? String == "SignAndEncrypt"
            })
        let thumbprint = try #require(
            endpoints.first { $0["securityMode"] as? String != "None" }?["serverCertificateThumbprint"] as? String)

        // cert create makes the client certificate once and keeps it.
        let created =
            try jsonObject(try edgepilot(["opcua", "cert", "create", "--pki-dir", pki, "--json"])) as! [String: Any]
        #expect(created["created"] as? Bool == true)
        #expect(FileManager.default.fileExists(atPath: pki + "/own/cert.der"))
        let again =
            try jsonObject(try edgepilot(["opcua", "cert", "create", "--pki-dir", pki, "--json"])) as! [String: Any]
        #expect(
            again["created"] as? Bool == false && again["thumbprint"] as? String == created["thumbprint"] as? String)

        // `endpoints` saved no certificate, so trusting by thumbprint finds none and says what does save one.
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: pki + "/rejected")) ?? []).isEmpty)
        let early = try edgepilot(["opcua", "trust", thumbprint, "--pki-dir", pki])
        #expect(early.status == 2, "\(early.stderr)")
        #expect(early.stderr.contains("'edgepilot opcua read URL i=2258 --pki-dir \(pki)'"), "\(early.stderr)")
        #expect(early.stderr.contains("'opcua endpoints' saves none"), "\(early.stderr)")

        // The first secure connection fails: the certificate lands in rejected/ and the error says what to run.
        let untrusted = try edgepilot(["opcua", "read", url, "ns=2;s=QuadTank.h1", "--pki-dir", pki])
        #expect(untrusted.status != 0)
        #expect(untrusted.stderr.contains("not trusted"), "\(untrusted.stderr)")
        #expect(untrusted.stderr.contains("\(pki)/rejected/\(thumbprint).der"), "\(untrusted.stderr)")
        let command = "edgepilot opcua trust \(thumbprint) --pki-dir \(pki)"
        #expect(untrusted.stderr.contains(command), "\(untrusted.stderr)")
        let listed = try jsonObject(try edgepilot(["opcua", "trust", "--pki-dir", pki, "--json"])) as! [[String: Any]]
        #expect(
            listed.map { $0["list"] as? String } == ["rejected"] && listed[0]["thumbprint"] as? String == thumbprint)

        // Run exactly the suggested command.
        let trust = try edgepilot(Array(command.split(separator: " ").dropFirst().map(String.init)))
        #expect(trust.status == 0, "\(trust.stderr)")
        #expect(FileManager.default.fileExists(atPath: "\(pki)/trusted/\(thumbprint).der"))
        #expect(!FileManager.default.fileExists(atPath: "\(pki)/rejected/\(thumbprint).der"))

        // read: NodeIds and browse paths, values with type, status and timestamps.
        let rows =
            try jsonObject(
                try edgepilot([
                    "opcua", "read", url, "ns=2;s=Scalar.UInt64", "Objects/2:QuadTank/2:h2", "ns=2;s=Array.Int32",
                    "--pki-dir", pki, "--json",
                ])) as! [[String: Any]]
        // Numbers as JSON numbers (they were strings), a UInt64 beyond Int64 included.
        #expect(
            (rows[0]["value"] as? NSNumber)?.uint64Value == 18_000_000_000_000_000_000
                && rows[0]["type"] as? String == "UInt64", "\(rows[0])")
        #expect(rows[1]["value"] is Double, "\(rows[1])")
        #expect(rows[1]["nodeId"] as? String == "ns=2;s=QuadTank.h2" && rows[1]["status"] as? String == "Good")
        #expect(rows[1]["sourceTimestamp"] != nil && rows[1]["serverTimestamp"] != nil)
        #expect(rows[2]["value"] as? String == "[1, -2, 3, -4]" && rows[2]["type"] as? String == "Int32[]")
        let missing = try edgepilot(["opcua", "read", url, "ns=2;s=Nope", "--pki-dir", pki])
        #expect(missing.status == 2 && missing.stdout.contains("BadNodeIdUnknown"))

        // browse: the Objects folder, then a folder with its variables' values.
        let objects =
            try jsonObject(try edgepilot(["opcua", "browse", url, "--pki-dir", pki, "--json"])) as! [[String: Any]]
        #expect(
            objects.contains { $0["browseName"] as? String == "2:QuadTank" && $0["nodeClass"] as? String == "Object" })
        let scalars =
            try jsonObject(
                try edgepilot(["opcua", "browse", url, "ns=2;s=Scalar", "--pki-dir", pki, "--json"]))
            as! [[String: Any]]
        let int16 = try #require(scalars.first { $0["nodeId"] as? String == "ns=2;s=Scalar.Int16" })
        #expect(int16["dataType"] as? String == "Int16" && int16["value"] as? String == "-30000")

        // write: exact type, read back; a wrong type is the server's BadTypeMismatch, reported clearly.
        let written =
            try jsonObject(
                try edgepilot([
                    "opcua", "write", url, "ns=2;s=Scalar.Int32", "123456", "--type", "Int32", "--pki-dir", pki,
                    "--json",
                ])) as! [String: Any]
        #expect(written["readBack"] as? String == "123456" && written["status"] as? String == "Good")
        let mismatch = try edgepilot([
            "opcua", "write", url, "ns=2;s=Scalar.Int32", "1.5", "--type", "Double", "--pki-dir", pki,
        ])
        #expect(mismatch.status != 0 && mismatch.stderr.contains("BadTypeMismatch"), "\(mismatch.stderr)")
        let inferred = try edgepilot(["opcua", "write", url, "ns=2;s=Array.Double", "[2.5, -1]", "--pki-dir", pki])
        #expect(inferred.status == 0 && inferred.stdout.contains("Double[]"), "\(inferred.stderr)")
        let back = try jsonObject(
            try edgepilot(["opcua", "read", url, "ns=2;s=Array.Double", "--pki-dir", pki, "--json"]))
        #expect((back as! [[String: Any]])[0]["value"] as? String == "[2.5, -1.0]")
        let outOfRange = try edgepilot([
            "opcua", "write", url, "ns=2;s=Scalar.Byte", "300", "--type", "Byte", "--pki-dir", pki,
        ])
        #expect(outOfRange.status != 0 && outOfRange.stderr.contains("0 to 255"), "\(outOfRange.stderr)")

        // User name over SignAndEncrypt, and an explicit unsecured session.
        let password = dir.path + "/password"
        try "secret\n".write(toFile: password, atomically: true, encoding: .utf8)
        let user = try edgepilot([
            "opcua", "read", url, "i=2258", "--user", "operator", "--password-file", password, "--pki-dir", pki,
        ])
        #expect(user.status == 0, "\(user.stderr)")
        try "wrong\n".write(toFile: password, atomically: true, encoding: .utf8)
        let denied = try edgepilot([
            "opcua", "read", url, "i=2258", "--user", "operator", "--password-file", password, "--pki-dir", pki,
        ])
        #expect(denied.status != 0 && denied.stderr.contains("refused the user identity"), "\(denied.stderr)")
        let plain = try edgepilot([
            "opcua", "read", url, "i=2258", "--security", "none", "--pki-dir", dir.path + "/none",
        ])
        #expect(plain.status == 0 && !FileManager.default.fileExists(atPath: dir.path + "/none/own"), "\(plain.stderr)")
    }
}
