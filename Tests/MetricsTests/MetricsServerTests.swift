import Foundation
import Metrics
import Synchronization
import Tags
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A raw TCP client for the server's edge cases (urllib would hide them).
private final class RawClient: @unchecked Sendable {
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        if !ok { throw CocoaError(.fileReadUnknown) }
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func write(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Everything until the server closes (or the 20 s receive timeout).
    func readAll() -> String {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            out += buffer[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }
}

private func get(_ port: Int, _ path: String) throws -> String {
    let client = try RawClient(port: port)
    client.write("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return client.readAll()
}

@Suite struct MetricsServerTests {
    @Test func servesMetricsAtSlashMetricsAndNothingElse() throws {
        let server = try MetricsServer(host: "127.0.0.1", port: 0, respond: { "edgepilot_up 1\n" })
        server.start()
        defer { server.stop() }
        let ok = try get(server.port, "/metrics")
        #expect(ok.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(ok)")
        #expect(ok.contains("Content-Type: text/plain; version=0.0.4"), "\(ok)")
        #expect(ok.hasSuffix("\r\n\r\nedgepilot_up 1\n"), "\(ok)")
        #expect(try get(server.port, "/").hasPrefix("HTTP/1.1 404 "))
        #expect(try get(server.port, "/metrics/../etc").hasPrefix("HTTP/1.1 404 "))
        let post = try RawClient(port: server.port)
        post.write("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        #expect(post.readAll().hasPrefix("HTTP/1.1 405 "))
        #expect(server.answeredCount == 1)
    }

    @Test func aSlowClientIsDroppedAndTheNextScrapeIsAnswered() throws {
        var limits = MetricsServer.Limits()
        limits.readSeconds = 0.5
        let server = try MetricsServer(host: "127.0.0.1", port: 0, limits: limits, respond: { "edgepilot_up 1\n" })
        server.start()
        defer { server.stop() }
        // Slowloris: a request that never ends, one byte at a time, well past the read limit.
        let slow = try RawClient(port: server.port)
        let trickle = Thread {
            for c in "GET /metrics HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa" {
                slow.write(String(c))
                usleep(100_000)
            }
        }
        trickle.start()
        usleep(50_000)
        let next = try get(server.port, "/metrics")
        #expect(next.hasPrefix("HTTP/1.1 200 OK"), "\(next)")
        #expect(slow.readAll() == "", "the slow client got an answer")
        #expect(server.droppedCount == 1)
    }

    @Test func anOversizedRequestIsDroppedWithoutAnAnswer() throws {
        let server = try MetricsServer(host: "127.0.0.1", port: 0, respond: { "edgepilot_up 1\n" })
        server.start()
        defer { server.stop() }
        let big = try RawClient(port: server.port)
        big.write("GET /metrics HTTP/1.1\r\nX-Big: " + String(repeating: "a", count: 20_000) + "\r\n\r\n")
        #expect(!big.readAll().contains("200 OK"))
        #expect(try get(server.port, "/metrics").hasPrefix("HTTP/1.1 200 OK"))
        #expect(server.droppedCount == 1)
    }

    @Test func aPortInUseFailsAtConstructionWithTheAddress() throws {
        let first = try MetricsServer(host: "127.0.0.1", port: 0, respond: { "" })
        #expect(throws: MetricsServerError.self) {
            _ = try MetricsServer(host: "127.0.0.1", port: first.port, respond: { "" })
        }
    }
}

@Suite struct MetricsTextTests {
    @Test func rendersTypesLabelsEscapesAndCumulativeBuckets() {
        var counter = MetricFamily("edgepilot_polls_total", .counter, help: "Polls\\done")
        counter.add([("device", "plc \"1\"\nb")], UInt64(3))
        var histogram = MetricFamily("edgepilot_d_seconds", .histogram, help: "d")
        var h = DurationHistogram()
        h.record(nanoseconds: 3_000)  // ≤ 5 µs
        h.record(nanoseconds: 7_000)  // ≤ 10 µs
        h.record(nanoseconds: 60_000_000_000)  // above every bound
        histogram.add([("loop", "tanks")], h)
        let text = MetricsText.render([counter, histogram])
        #expect(text.contains("# HELP edgepilot_polls_total Polls\\\\done\n# TYPE edgepilot_polls_total counter\n"))
        #expect(text.contains("edgepilot_polls_total{device=\"plc \\\"1\\\"\\nb\"} 3\n"))
        #expect(text.contains("edgepilot_d_seconds_bucket{loop=\"tanks\",le=\"5e-06\"} 1\n"), "\(text)")
        #expect(text.contains("edgepilot_d_seconds_bucket{loop=\"tanks\",le=\"1e-05\"} 2\n"), "\(text)")
        #expect(text.contains("edgepilot_d_seconds_bucket{loop=\"tanks\",le=\"25\"} 2\n"), "\(text)")
        #expect(text.contains("edgepilot_d_seconds_bucket{loop=\"tanks\",le=\"+Inf\"} 3\n"))
        #expect(text.contains("edgepilot_d_seconds_count{loop=\"tanks\"} 3\n"))
        #expect(text.contains("edgepilot_d_seconds_sum{loop=\"tanks\"} 60.00001\n"), "\(text)")
    }
}
