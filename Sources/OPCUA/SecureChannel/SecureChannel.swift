import Crypto
import Foundation

/// Buffer sizes of one side of a connection, as exchanged in HEL/ACK.
struct TransportLimits: Sendable {
    var receiveBufferSize: UInt32
    var sendBufferSize: UInt32
    var maxMessageSize: UInt32
    var maxChunkCount: UInt32
}

/// Settings of one secure channel.
struct ChannelConfiguration: Sendable {
    var endpointURL: String
    var policy: SecurityPolicy
    var mode: MessageSecurityMode
    var identity: ApplicationIdentity?
    var serverCertificate: [UInt8]?
    var requestedLifetimeMs: UInt32 = 600_000
    var timeout: Double = 10
    var decodingLimits = DecodingLimits()
    var receiveBufferSize: UInt32 = 65_535
    var maxMessageSize: UInt32 = 64 << 20
    /// First sequence number sent; tests move it close to the wrap-around.
    var initialSequenceNumber: UInt32 = 1
    /// Test hook, see `LoopProbe`.
    var loopProbe: LoopProbe?
}

/// Where a `LoopProbe` is called: the top of the channel's reader loop or of the client's worker loop.
enum LoopSite: Sendable {
    case reader
    case client
}

/// Test hook called on a client thread each time it is about to wait for work, so that a test can read that
/// thread's own counters (heap allocations) at points where the thread holds no half-done work.
typealias LoopProbe = @Sendable (LoopSite) -> Void

/// One UASC secure channel over one TCP connection (OPC 10000-6 §6.7).
///
/// A dedicated reader thread receives chunks, checks and strips security, reassembles messages and
/// completes the pending request with the same RequestId. Any thread may send; a send lock keeps each
/// message's chunks contiguous on the wire, since sequence numbers must arrive in order.
final class SecureChannel: @unchecked Sendable {
    typealias Completion = @Sendable (Result<[UInt8], OPCUAError>) -> Void
    /// Gets a reader over the response body where it lies in the channel's receive buffer; runs on the reader
    /// thread and must be done with the bytes when it returns (see `PendingRequest.Delivery.borrow`).
    typealias BorrowedCompletion = @Sendable (Result<BinaryReader, OPCUAError>) -> Void

    struct Token {
        var id: UInt32
        var lifetimeMs: UInt32
        var openedAt: Double
        var client: SymmetricKeys?
        var server: SymmetricKeys?
    }

    let config: ChannelConfiguration
    let connection: TCPConnection
    let asym: AsymmetricContext?
    private(set) var peerLimits = TransportLimits(
        receiveBufferSize: 8192, sendBufferSize: 8192, maxMessageSize: 0, maxChunkCount: 0)

    let lock = NSLock()
    let sendLock = NSLock()
    var pending: [UInt32: PendingRequest] = [:]
    /// Bodies of multi-chunk borrowed responses, and the entries of borrowing requests, kept for the next ones
    /// (guarded by `lock`).
    var spareBodies: [[UInt8]] = []
    var sparePending: [PendingRequest] = []
    /// Chunks are built here, under `sendLock`, so sending does not allocate a buffer per chunk.
    var sendBuffer = BinaryWriter(capacity: 0)
    var nextRequestId: UInt32 = 1
    var sendSequence: UInt32
    var lastReceivedSequence: UInt32?
    var channelId: UInt32 = 0
    var current: Token?
    var previous: Token?
    var closedError: OPCUAError?
    private var renewing = false
    var reader: Thread?
    /// Called once, from the reader thread or `close`, when the channel fails or is closed.
    private var onClose: (@Sendable (OPCUAError) -> Void)?

    private init(config: ChannelConfiguration, connection: TCPConnection, asym: AsymmetricContext?) {
        self.config = config
        self.connection = connection
        self.asym = asym
        self.sendSequence = config.initialSequenceNumber
        spareBodies.reserveCapacity(2)
        sparePending.reserveCapacity(4)
    }

    /// Connects, exchanges HEL/ACK, starts the reader thread and opens the channel.
    static func open(_ config: ChannelConfiguration, onClose: @escaping @Sendable (OPCUAError) -> Void) throws
        -> SecureChannel
    {
        var asym: AsymmetricContext?
        if config.policy != .none {
            guard let identity = config.identity, let cert = config.serverCertificate else {
                throw OPCUAError.invalidArgument(
                    "security policy \(config.policy) needs a client identity and server certificate")
            }
            asym = try AsymmetricContext(identity: identity, serverCertificate: cert)
        }
        let address = try EndpointAddress(url: config.endpointURL)
        let conn = try TCPConnection(address: address, timeout: config.timeout)
        let ch = SecureChannel(config: config, connection: conn, asym: asym)
        do {
            conn.setReceiveTimeout(config.timeout)
            try ch.hello()
            conn.setReceiveTimeout(0)
            ch.onClose = onClose
            ch.startReader()
            try ch.openSecureChannel(renew: false)
        } catch {
            ch.fail(error as? OPCUAError ?? .transport("\(error)"), notify: false)
            throw error
        }
        return ch
    }

    var isOpen: Bool {
        lock.lock()
        defer { lock.unlock() }
        return closedError == nil
    }

    // MARK: HEL / ACK

    private func hello() throws {
        var w = BinaryWriter()
        w.write(raw: Array("HELF".utf8))
        w.write(UInt32(0))
        w.write(UInt32(0))  // protocol version
        w.write(config.receiveBufferSize)
        w.write(config.receiveBufferSize)  // our send buffer size
        w.write(config.maxMessageSize)
        w.write(config.maxMessageSize / config.receiveBufferSize + 1)
        w.write(string: config.endpointURL)
        w.patch(UInt32(w.count), at: 4)
        try connection.send(w.bytes)

        var header: [UInt8] = []
        try connection.read(8, into: &header)
        var hr = BinaryReader(header)
        let type = String(decoding: try hr.readRaw(3), as: UTF8.self)
        _ = try hr.readUInt8()
        let size = Int(try hr.readUInt32())
        guard size >= 8, size <= 8192 else { throw OPCUAError.protocolViolation("\(type) of \(size) bytes") }
        var body: [UInt8] = []
        try connection.read(size - 8, into: &body)
        var r = BinaryReader(body, limits: config.decodingLimits)
        switch type {
        case "ACK":
            _ = try r.readUInt32()
            peerLimits = TransportLimits(
                receiveBufferSize: try r.readUInt32(), sendBufferSize: try r.readUInt32(),
                maxMessageSize: try r.readUInt32(), maxChunkCount: try r.readUInt32())
            if peerLimits.receiveBufferSize < 8192 || peerLimits.sendBufferSize > config.receiveBufferSize {
                throw OPCUAError.protocolViolation(
                    "ACK buffer sizes \(peerLimits.receiveBufferSize)/\(peerLimits.sendBufferSize) out of range")
            }
        case "ERR":
            let status = try r.read(StatusCode.self)
            throw OPCUAError.serverError(status, try r.readString() ?? "")
        default:
            throw OPCUAError.protocolViolation("expected ACK, got \(type)")
        }
    }

    // MARK: Open / renew / close

    private func openSecureChannel(renew: Bool) throws {
        let clientNonce = secureRandomBytes(config.policy.nonceLength)
        let req = OpenSecureChannelRequest(
            renew: renew, securityMode: config.mode, clientNonce: clientNonce,
            requestedLifetime: config.requestedLifetimeMs)
        let waiter = Waiter()
        try sendOpen(req) { [self] result in
            switch result {
            case .failure(let e): waiter.complete(.failure(e))
            case .success(let bytes):
                do {
                    try self.installToken(bytes, clientNonce: clientNonce)
                    waiter.complete(.success([]))
                } catch {
                    waiter.complete(.failure(error as? OPCUAError ?? .decoding("\(error)")))
                }
            }
        }
        _ = try waiter.wait(timeout: config.timeout, what: "OpenSecureChannel")
    }

    private func installToken(_ bytes: [UInt8], clientNonce: [UInt8]) throws {
        let resp = try decodeResponse(OpenSecureChannelRequest.self, bytes)
        if config.policy != .none && resp.serverNonce.count != config.policy.nonceLength {
            throw OPCUAError.security("server nonce has \(resp.serverNonce.count) bytes, expected 32")
        }
        var token = Token(
            id: resp.token.tokenId, lifetimeMs: resp.token.revisedLifetime, openedAt: monotonicSeconds())
        if config.policy != .none {
            token.client = SymmetricKeys.derive(secret: resp.serverNonce, seed: clientNonce, policy: config.policy)
            token.server = SymmetricKeys.derive(secret: clientNonce, seed: resp.serverNonce, policy: config.policy)
        }
        lock.lock()
        channelId = resp.token.channelId
        if let c = current { previous = c }
        current = token
        renewing = false
        lock.unlock()
    }

    /// Renews the token once 75% of its lifetime has passed. Called periodically by the client thread;
    /// the renewal itself completes on the reader thread. A failed renewal closes the channel.
    func renewIfDue() {
        lock.lock()
        guard closedError == nil, !renewing, let t = current,
            monotonicSeconds() - t.openedAt >= Double(t.lifetimeMs) * 0.75 / 1000
        else {
            lock.unlock()
            return
        }
        renewing = true
        lock.unlock()
        let clientNonce = secureRandomBytes(config.policy.nonceLength)
        let req = OpenSecureChannelRequest(
            renew: true, securityMode: config.mode, clientNonce: clientNonce,
            requestedLifetime: config.requestedLifetimeMs)
        do {
            try sendOpen(req) { [self] result in
                do {
                    if let fault = self.takeRenewalFault() { throw fault }
                    try self.installToken(try result.get(), clientNonce: clientNonce)
                } catch {
                    self.fail(.security("secure channel renewal failed: \(error)"), notify: true)
                }
            }
        } catch {
            fail(.transport("secure channel renewal failed: \(error)"), notify: true)
        }
    }

    /// Test hook: the next renewal response is treated as this error, as if the server had refused it.
    private var renewalFault: OPCUAError?

    func injectRenewalFault(_ e: OPCUAError) {
        lock.lock()
        renewalFault = e
        lock.unlock()
    }

    private func takeRenewalFault() -> OPCUAError? {
        lock.lock()
        defer { lock.unlock() }
        let f = renewalFault
        renewalFault = nil
        return f
    }

    /// Seconds since the current token was issued, and its lifetime (for tests and diagnostics).
    var tokenInfo: (id: UInt32, age: Double, lifetime: Double)? {
        lock.lock()
        defer { lock.unlock() }
        return current.map { ($0.id, monotonicSeconds() - $0.openedAt, Double($0.lifetimeMs) / 1000) }
    }

    /// Sends CLO (which has no response) and shuts the connection down.
    func close() {
        // The server may drop the socket as soon as it reads CLO; the reader seeing that EOF must not
        // report a failure of a channel we are closing on purpose.
        lock.lock()
        onClose = nil
        lock.unlock()
        if isOpen {
            var body = BinaryWriter()
            body.write(NodeId(CloseSecureChannelRequest.typeId))
            body.write(CloseSecureChannelRequest())
            try? sendSymmetric(type: "CLO", requestId: allocateRequestId(), body: body.bytes)
        }
        fail(.connectionClosed("channel closed by client"), notify: false)
    }

    // MARK: Failure

    /// Closes the socket and fails every outstanding request with `error`.
    func fail(_ error: OPCUAError, notify: Bool) {
        lock.lock()
        if closedError != nil {
            lock.unlock()
            return
        }
        closedError = error
        let waiting = pending
        pending = [:]
        sparePending = []
        spareBodies = []
        let callback = notify ? onClose : nil
        onClose = nil
        lock.unlock()
        connection.shutdown()
        for (_, p) in waiting { p.fail(error) }
        callback?(error)
    }
}
