import Foundation

/// A throw-away PKI made with the openssl command line: a CA, a server certificate for 127.0.0.1 signed by it,
/// a client certificate signed by it, an unrelated CA that must not be trusted, and a server certificate signed by
/// the CA but issued for another host name (broker.invalid), which a client connecting to 127.0.0.1 must refuse.
public struct TestPKI {
    public let dir: URL
    /// The path of a file of the PKI: ca.crt, server.crt, server.key, client.crt, client.key, rogue-ca.crt,
    /// other-host.crt, other-host.key.
    public var path: (String) -> String { { dir.appendingPathComponent($0).path } }

    public init(in dir: URL) throws {
        self.dir = dir
        let openssl = "/usr/bin/openssl"
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        func p(_ name: String) -> String { dir.appendingPathComponent(name).path }
        for ca in ["ca", "rogue-ca"] {
            try run(
                openssl,
                ["req", "-x509"] + ec + [
                    "-keyout", p("\(ca).key"), "-out", p("\(ca).crt"), "-days", "2", "-subj",
                    "/CN=EdgePilot test \(ca)",
                ])
        }
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
            .write(toFile: p("server.ext"), atomically: true, encoding: .utf8)
        try "extendedKeyUsage=clientAuth\n".write(toFile: p("client.ext"), atomically: true, encoding: .utf8)
        try "subjectAltName=DNS:broker.invalid\nextendedKeyUsage=serverAuth\n"
            .write(toFile: p("other-host.ext"), atomically: true, encoding: .utf8)
        for leaf in ["server", "client", "other-host"] {
            try run(
                openssl,
                ["req"] + ec + [
                    "-keyout", p("\(leaf).key"), "-out", p("\(leaf).csr"), "-subj", "/CN=edgepilot-\(leaf)",
                ])
            try run(
                openssl,
                [
                    "x509", "-req", "-in", p("\(leaf).csr"), "-CA", p("ca.crt"), "-CAkey", p("ca.key"),
                    "-CAcreateserial",
                    "-out", p("\(leaf).crt"), "-days", "2", "-extfile", p("\(leaf).ext"),
                ])
        }
    }
}
