import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// One scrape of a Prometheus endpoint as `prometheus_client`'s text parser read it (Peers/scrape_metrics.py):
/// an independent parser, so a body it rejects fails the test that scraped it.
public struct MetricsScrape {
    public struct Sample {
        public var name: String
        public var labels: [String: String]
        public var value: Double?
    }

    public var status: Int
    public var contentType: String?
    /// Family name (without `_total` for counters, as the parser names them) → type and samples.
    public var families: [String: (type: String, samples: [Sample])]

    /// Scrapes `url` once; throws when the parser rejected the body or the script failed.
    public init(url: String) throws {
        let script = repositoryRoot.appendingPathComponent("Tests/TestSupport/Peers/scrape_metrics.py").path
        let result = try runCommand(pythonPath, [script, url], timeout: 30)
        guard result.status == 0 else { throw PeerError("scrape of \(url) failed: \(result.stderr)") }
        guard let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] else {
            throw PeerError("scrape_metrics.py printed no JSON object: \(result.stdout)")
        }
        status = object["status"] as? Int ?? 0
        contentType = object["contentType"] as? String
        var families: [String: (type: String, samples: [Sample])] = [:]
        for (name, value) in object["families"] as? [String: [String: Any]] ?? [:] {
            let samples = (value["samples"] as? [[Any]] ?? []).map { s in
                Sample(
                    name: s[0] as? String ?? "", labels: s[1] as? [String: String] ?? [:],
                    value: (s[2] as? NSNumber)?.doubleValue)
            }
            families[name] = (value["type"] as? String ?? "", samples)
        }
        self.families = families
    }

    /// The value of sample `name` whose labels include `labels`; nil if there is none.
    public func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        for family in families.values {
            for s in family.samples where s.name == name && labels.allSatisfy({ s.labels[$0.key] == $0.value }) {
                return s.value
            }
        }
        return nil
    }
}

/// Whether anything accepts TCP connections on 127.0.0.1:`port`.
public func somethingListens(port: Int) -> Bool {
    guard let fd = try? connectTCP(port: port) else { return false }
    close(fd)
    return true
}

/// The TCP ports process `pid` listens on (IPv4 and IPv6): its socket inodes matched against /proc/net/tcp{,6}
/// entries in state LISTEN.
public func listeningTCPPorts(pid: Int32) -> [Int] {
    let fdDirectory = "/proc/\(pid)/fd"
    var inodes = Set<String>()
    for entry in (try? FileManager.default.contentsOfDirectory(atPath: fdDirectory)) ?? [] {
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: fdDirectory + "/" + entry),
            target.hasPrefix("socket:[")
        else { continue }
        inodes.insert(String(target.dropFirst("socket:[".count).dropLast()))
    }
    var ports: [Int] = []
    for table in ["/proc/\(pid)/net/tcp", "/proc/\(pid)/net/tcp6"] {
        let text = (try? String(contentsOfFile: table, encoding: .utf8)) ?? ""
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ")
            // sl local_address rem_address st tx:rx tr:tm retrnsmt uid timeout inode
            guard fields.count > 9, fields[3] == "0A", inodes.contains(String(fields[9])) else { continue }
            if let port = fields[1].split(separator: ":").last.flatMap({ Int($0, radix: 16) }) { ports.append(port) }
        }
    }
    return ports.sorted()
}
