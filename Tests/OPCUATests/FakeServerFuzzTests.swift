import Foundation
import TestSupport
import Testing

@testable import OPCUA

#if canImport(Glibc)
    import Glibc
#endif

/// A scripted server on 127.0.0.1 that answers HEL, OPN and GetEndpoints with mutated or truncated
/// messages. The client must fail with an error (or succeed), never crash or hang: this exercises the
/// chunk, security-header and sequence-header parsing that only network input reaches.
@Suite(.serialized) struct FakeServerFuzzTests {
    /// One listening socket; each `serve` call accepts one connection and runs `script` on it.
    final class FakeServer: @unchecked Sendable {
        let fd: Int32
        let port: UInt16

        private let listener: SilentListener

        init() throws {
            listener = try SilentListener()
            fd = listener.fd
            port = UInt16(listener.port)
        }

        func serve(_ script: @escaping @Sendable (Int32) -> Void) -> Thread {
            let listener = fd
            let t = Thread {
                let c = accept(listener, nil, nil)
                if c < 0 { return }
                script(c)
                close(c)
            }
            t.start()
            return t
        }
    }

    static func readMessage(_ fd: Int32) -> [UInt8]? {
        var header = [UInt8](repeating: 0, count: 8)
        guard recv(fd, &header, 8, Int32(MSG_WAITALL)) == 8 else { return nil }
        let size = Int(header[4]) | Int(header[5]) << 8 | Int(header[6]) << 16 | Int(header[7]) << 24
        guard size >= 8, size < 1 << 20 else { return nil }
        var rest = [UInt8](repeating: 0, count: size - 8)
        if size > 8 { guard recv(fd, &rest, size - 8, Int32(MSG_WAITALL)) == size - 8 else { return nil } }
        return header + rest
    }

    static func send(_ fd: Int32, _ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    static func frame(_ type: String, _ body: [UInt8]) -> [UInt8] {
        var w = BinaryWriter()
        w.write(raw: Array(type.utf8))
        w.write(UInt32(8 + body.count))
        w.write(raw: body)
        return w.bytes
    }

    static var ack: [UInt8] {
        var w = BinaryWriter()
        for v: UInt32 in [0, 65535, 65535, 0, 0] { w.write(v) }
        return frame("ACKF", w.bytes)
    }

    static func responseHeader(_ w: inout BinaryWriter, handle: UInt32) {
        w.write(DateTime.now())
        w.write(handle)
        w.write(StatusCode.good)
        w.write(UInt8(0))
        w.write(Int32(-1))
        w.write(ExtensionObject.null)
    }

    static func openResponse(requestId: UInt32) -> [UInt8] {
        var w = BinaryWriter()
        w.write(UInt32(7))  // channel id
        w.write(string: SecurityPolicy.none.uri)
        w.write(byteString: nil)
        w.write(byteString: nil)
        w.write(UInt32(1))  // sequence number
        w.write(requestId)
        w.write(NodeId(449))
        responseHeader(&w, handle: requestId)
        w.write(UInt32(0))
        w.write(UInt32(7))  // token: channel, id, created, lifetime
        w.write(UInt32(1))
        w.write(DateTime.now())
        w.write(UInt32(600_000))
        w.write(byteString: [])
        return frame("OPNF", w.bytes)
    }

    static func endpointsResponse(requestId: UInt32) -> [UInt8] {
        var w = BinaryWriter()
        w.write(UInt32(7))
        w.write(UInt32(1))  // token id
        w.write(UInt32(2))  // sequence number
        w.write(requestId)
        w.write(NodeId(431))
        responseHeader(&w, handle: requestId)
        w.write(Int32(1))
        w.write(string: "opc.tcp://127.0.0.1/")
        w.write(ApplicationDescription(applicationUri: "urn:fake", productUri: "urn:fake", name: "fake", type: 0))
        w.write(byteString: nil)
        w.write(MessageSecurityMode.none.rawValue)
        w.write(string: SecurityPolicy.none.uri)
        w.write(Int32(1))
        w.write(string: "anonymous")
        w.write(UInt32(0))
        w.write(string: nil)
        w.write(string: nil)
        w.write(string: nil)
        w.write(string: nil)
        w.write(UInt8(0))
        return frame("MSGF", w.bytes)
    }

    /// Reads a request's RequestId (after an asymmetric or symmetric security header).
    static func requestId(_ msg: [UInt8]) -> UInt32 {
        var r = BinaryReader(msg, from: 12, to: msg.count)
        if msg.starts(with: Array("OPN".utf8)) {
            _ = try? r.readString()
            _ = try? r.readByteString()
            _ = try? r.readByteString()
        } else {
            _ = try? r.readUInt32()
        }
        _ = try? r.readUInt32()
        return (try? r.readUInt32()) ?? 0
    }

    /// Runs one exchange; `mutate(stage, bytes)` may change the message of stage 0 (ACK), 1 (OPN), 2 (MSG).
    private static func hangUp() { usleep(20_000) }

    /// After the mutated message the server hangs up, as a real peer would after sending garbage; a
    /// client that waited for more would then see EOF rather than sit out its timeout.
    private func exchange(
        _ server: FakeServer, stage: Int = -1, mutate: @escaping @Sendable (Int, [UInt8]) -> [UInt8]
    ) -> Result<[EndpointDescription], Error> {
        let t = server.serve { fd in
            typealias F = FakeServerFuzzTests
            let hangUp = F.hangUp
            guard F.readMessage(fd) != nil else { return }
            F.send(fd, mutate(0, F.ack))
            guard stage != 0, let opn = F.readMessage(fd) else { return hangUp() }
            F.send(fd, mutate(1, F.openResponse(requestId: F.requestId(opn))))
            guard stage != 1, let msg = F.readMessage(fd) else { return hangUp() }
            F.send(fd, mutate(2, F.endpointsResponse(requestId: F.requestId(msg))))
            usleep(20_000)
        }
        defer { while !t.isFinished { usleep(1000) } }
        return Result {
            try OPCUAClient.getEndpoints(
                endpointURL: "opc.tcp://127.0.0.1:\(server.port)/",
                configuration: ClientConfiguration(requestTimeout: 2))
        }
    }

    @Test("Unmutated exchange succeeds")
    func unmutatedExchangeSucceeds() throws {
        let server = try FakeServer()
        let eps = try exchange(server) { _, b in b }.get()
        #expect(eps.count == 1)
        #expect(eps.first?.server.applicationUri == "urn:fake")
    }

    @Test("Mutated and truncated server messages fail cleanly")
    func mutatedAndTruncatedServerMessagesFailCleanly() throws {
        let server = try FakeServer()
        var outcomes = [0, 0]
        for seed in UInt64(1)...150 {
            let stage = Int(seed % 3)
            let result = exchange(server, stage: stage) { s, bytes in
                guard s == stage else { return bytes }
                var rng = FuzzTests.SplitMix64(state: seed)
                var b = bytes
                switch seed % 4 {
                case 0: b = Array(b.prefix(Int.random(in: 0..<b.count, using: &rng)))  // truncated
                case 1:  // forged size field
                    let size = UInt32.random(in: 0...UInt32.max, using: &rng)
                    b.replaceSubrange(4..<8, with: withUnsafeBytes(of: size.littleEndian, Array.init))
                default:
                    for _ in 0..<Int.random(in: 1...8, using: &rng) {
                        b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                    }
                }
                return b
            }
            switch result {
            case .success: outcomes[0] += 1
            case .failure(let e):
                outcomes[1] += 1
                #expect(e is OPCUAError, "seed \(seed): \(e)")
            }
        }
        #expect(outcomes[1] > 100, "most mutations must be detected: \(outcomes)")
    }
}
