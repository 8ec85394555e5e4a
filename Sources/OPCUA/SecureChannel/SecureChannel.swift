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

    private struct Token {
        var id: UInt32
        var lifetimeMs: UInt32
        var openedAt: Double
        var client: SymmetricKeys?
        var server: SymmetricKeys?
    }

    let config: ChannelConfiguration
    private let connection: TCPConnection
    private let asym: AsymmetricContext?
    private(set) var peerLimits = TransportLimits(
        receiveBufferSize: 8192, sendBufferSize: 8192, maxMessageSize: 0, maxChunkCount: 0)

    private let lock = NSLock()
    private let sendLock = NSLock()
    private var pending: [UInt32: PendingRequest] = [:]
    /// Bodies of multi-chunk borrowed responses, and the entries of borrowing requests, kept for the next ones
    /// (guarded by `lock`).
    private var spareBodies: [[UInt8]] = []
    private var sparePending: [PendingRequest] = []
    /// Chunks are built here, under `sendLock`, so sending does not allocate a buffer per chunk.
    private var sendBuffer = BinaryWriter(capacity: 0)
    private var nextRequestId: UInt32 = 1
    private var sendSequence: UInt32
    private var lastReceivedSequence: UInt32?
    private var channelId: UInt32 = 0
    private var current: Token?
    private var previous: Token?
    private var closedError: OPCUAError?
    private var renewing = false
    private var reader: Thread?
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

    // MARK: Requests

    private func allocateRequestId() -> UInt32 {
        lock.lock()
        defer { lock.unlock() }
        let id = nextRequestId
        nextRequestId = nextRequestId == UInt32.max ? 1 : nextRequestId + 1
        return id
    }

    private func register(_ id: UInt32, _ p: PendingRequest) throws {
        lock.lock()
        defer { lock.unlock() }
        if let e = closedError { throw e }
        p.requestId = id
        p.chunks = 0
        pending[id] = p
    }

    private func unregister(_ id: UInt32) {
        lock.lock()
        pending[id] = nil
        lock.unlock()
    }

    private func encodeRequest<R: ServiceRequest>(_ req: R, requestId: UInt32) -> [UInt8] {
        var w = BinaryWriter(capacity: 1024)
        encodeRequest(req, requestId: requestId, into: &w)
        return w.bytes
    }

    private func encodeRequest<R: ServiceRequest>(_ req: R, requestId: UInt32, into w: inout BinaryWriter) {
        var r = req
        r.header.requestHandle = requestId
        r.header.timestamp = .now()
        w.write(NodeId(R.typeId))
        w.write(r)
    }

    private func sendOpen(_ req: OpenSecureChannelRequest, completion: @escaping Completion) throws {
        let id = allocateRequestId()
        try register(id, PendingRequest(.copy(completion)))
        do {
            try sendAsymmetric(requestId: id, body: encodeRequest(req, requestId: id))
        } catch {
            unregister(id)
            throw error
        }
    }

    /// Sends a service request; `completion` runs on the reader thread with the raw response body.
    @discardableResult
    func send<R: ServiceRequest>(_ req: R, completion: @escaping Completion) throws -> UInt32 {
        let id = allocateRequestId()
        try register(id, PendingRequest(.copy(completion)))
        try send(requestId: id, body: encodeRequest(req, requestId: id))
        return id
    }

    /// Sends a request that `encode` writes (encoding NodeId first) into the caller's reusable `writer`, with the
    /// request id it is given as RequestHandle. Its response is walked in place: `completion` runs on the reader
    /// thread with a reader over the body in the receive buffer, which it must not keep past its return. Nothing is
    /// allocated per request once the buffers have grown to the message sizes.
    func send(
        writer: inout BinaryWriter, borrowing completion: @escaping BorrowedCompletion,
        encode: (inout BinaryWriter, _ requestId: UInt32) -> Void
    ) throws {
        let id = allocateRequestId()
        writer.bytes.removeAll(keepingCapacity: true)
        encode(&writer, id)
        lock.lock()
        if let e = closedError {
            lock.unlock()
            throw e
        }
        let p = sparePending.popLast() ?? PendingRequest(.borrow(completion))
        p.delivery = .borrow(completion)
        p.requestId = id
        p.chunks = 0
        pending[id] = p
        lock.unlock()
        try send(requestId: id, body: writer.bytes)
    }

    private func send(requestId id: UInt32, body: [UInt8]) throws {
        do {
            try sendSymmetric(type: "MSG", requestId: id, body: body)
        } catch {
            unregister(id)
            if case .invalidArgument = error as? OPCUAError { throw error }
            fail(error as? OPCUAError ?? .transport("\(error)"), notify: true)
            throw error
        }
    }

    /// Sends a request that `encode` writes into the caller's reusable `writer` (as for `send(writer:…)`) and
    /// blocks until its response is in `response.bytes` or `timeout`. `pending` is the caller's reusable entry,
    /// made for `response`. Nothing is allocated per call once the buffers have grown to the message sizes.
    func call(
        writer: inout BinaryWriter, pending: PendingRequest, response: ResponseBuffer, timeout: Double, what: String,
        encode: (inout BinaryWriter, _ requestId: UInt32) -> Void
    ) throws {
        let id = allocateRequestId()
        writer.bytes.removeAll(keepingCapacity: true)
        encode(&writer, id)
        try register(id, pending)
        try send(requestId: id, body: writer.bytes)
        do {
            try response.wait(for: id, timeout: timeout, what: what)
        } catch {
            unregister(id)
            throw error
        }
    }

    /// Sends a request and blocks the calling thread until its response or `timeout`.
    func call<R: ServiceRequest>(_ req: R, timeout: Double? = nil) throws -> R.Response {
        let waiter = Waiter()
        var r = req
        let t = timeout ?? config.timeout
        r.header.timeoutHint = UInt32(min(t * 1000, Double(UInt32.max)))
        let id = try send(r) { waiter.complete($0) }
        do {
            return try decodeResponse(R.self, try waiter.wait(timeout: t, what: R.name))
        } catch {
            unregister(id)
            throw error
        }
    }

    func decodeResponse<R: ServiceRequest>(_: R.Type, _ bytes: [UInt8]) throws -> R.Response {
        try SecureChannel.decodeResponse(R.self, bytes, limits: config.decodingLimits)
    }

    /// Decodes a response body: its encoding NodeId, then the response or a ServiceFault.
    static func decodeResponse<R: ServiceRequest>(_: R.Type, _ bytes: [UInt8], limits: DecodingLimits) throws
        -> R.Response
    {
        var r = BinaryReader(bytes, limits: limits)
        let typeId = try r.read(NodeId.self)
        if typeId == NodeId(serviceFaultTypeId) {
            let header = try r.read(ResponseHeader.self)
            throw OPCUAError.serviceFault(service: R.name, status: header.serviceResult)
        }
        guard typeId == NodeId(R.Response.typeId) else {
            throw OPCUAError.protocolViolation(
                "\(R.name) answered with type \(typeId), expected i=\(R.Response.typeId)")
        }
        let resp = try R.Response(from: &r)
        if resp.header.serviceResult.isBad {
            throw OPCUAError.serviceFault(service: R.name, status: resp.header.serviceResult)
        }
        return resp
    }

    // MARK: Sending chunks

    private func nextSequenceNumber() -> UInt32 {
        let s = sendSequence
        // OPC 10000-6 §6.7.2.4: no wrap until the number exceeds UInt32.max − 1024; restart below 1024.
        sendSequence = s > UInt32.max - 1024 ? 1 : s + 1
        return s
    }

    private func sendAsymmetric(requestId: UInt32, body: [UInt8]) throws {
        sendLock.lock()
        defer { sendLock.unlock() }
        lock.lock()
        let chId = channelId
        lock.unlock()
        var w = BinaryWriter(capacity: body.count + 2048)
        w.write(raw: Array("OPNF".utf8))
        w.write(UInt32(0))
        w.write(chId)
        w.write(string: config.policy.uri)
        w.write(byteString: asym?.ownCertificate)
        w.write(byteString: asym?.peerThumbprint)
        let securityHeaderEnd = w.count
        w.write(nextSequenceNumber())
        w.write(requestId)
        w.write(raw: body)
        guard let asym else {
            w.patch(UInt32(w.count), at: 4)
            if w.count > peerLimits.receiveBufferSize {
                throw OPCUAError.protocolViolation("OpenSecureChannel of \(w.count) bytes exceeds the peer's buffer")
            }
            return try connection.send(w.bytes)
        }
        let plainBlock = asym.peerKeyBytes - SecurityPolicy.oaepOverhead
        let extra = asym.peerKeyBytes > 256 ? 1 : 0
        let sigSize = asym.ownKeyBytes
        let plainLen = w.count - securityHeaderEnd
        let padCount = (plainBlock - (plainLen + 1 + extra + sigSize) % plainBlock) % plainBlock
        w.write(raw: [UInt8](repeating: UInt8(truncatingIfNeeded: padCount), count: padCount + 1))
        if extra == 1 { w.write(UInt8(truncatingIfNeeded: padCount >> 8)) }
        let encryptedLen = (w.count - securityHeaderEnd + sigSize) / plainBlock * asym.peerKeyBytes
        w.patch(UInt32(securityHeaderEnd + encryptedLen), at: 4)
        if securityHeaderEnd + encryptedLen > peerLimits.receiveBufferSize {
            throw OPCUAError.protocolViolation("OpenSecureChannel exceeds the peer's receive buffer")
        }
        w.write(raw: try asym.sign(w.bytes[...]))
        let encrypted = try asym.encrypt(w.bytes[securityHeaderEnd...])
        try connection.send(Array(w.bytes[..<securityHeaderEnd]) + encrypted)
    }

    private func sendSymmetric(type: StaticString, requestId: UInt32, body: [UInt8]) throws {
        lock.lock()
        let chId = channelId
        let token = current
        let closed = closedError
        lock.unlock()
        if let closed { throw closed }
        guard let token else { throw OPCUAError.notConnected }
        let mode = config.mode
        let chunkSize = Int(peerLimits.receiveBufferSize)
        let sigSize = mode == .none ? 0 : config.policy.symmetricSignatureSize
        let maxBody: Int
        switch mode {
        case .none: maxBody = chunkSize - 24
        case .sign: maxBody = chunkSize - 24 - sigSize
        case .signAndEncrypt: maxBody = (chunkSize - 16) / 16 * 16 - 8 - sigSize - 1
        }
        let chunkCount = max(1, (body.count + maxBody - 1) / maxBody)
        if peerLimits.maxMessageSize != 0 && body.count > peerLimits.maxMessageSize {
            throw OPCUAError.invalidArgument(
                "request of \(body.count) bytes exceeds the server's MaxMessageSize \(peerLimits.maxMessageSize)")
        }
        if peerLimits.maxChunkCount != 0 && chunkCount > peerLimits.maxChunkCount {
            throw OPCUAError.invalidArgument(
                "request needs \(chunkCount) chunks, the server accepts \(peerLimits.maxChunkCount)")
        }
        sendLock.lock()
        defer { sendLock.unlock() }
        var i = 0
        while i < chunkCount {
            let partStart = i * maxBody
            let partEnd = min(body.count, partStart + maxBody)
            sendBuffer.bytes.removeAll(keepingCapacity: true)
            type.withUTF8Buffer { sendBuffer.bytes.append(contentsOf: $0) }
            sendBuffer.write(UInt8(ascii: i == chunkCount - 1 ? "F" : "C"))
            sendBuffer.write(UInt32(0))
            sendBuffer.write(chId)
            sendBuffer.write(token.id)
            sendBuffer.write(nextSequenceNumber())
            sendBuffer.write(requestId)
            sendBuffer.bytes.append(contentsOf: body[partStart..<partEnd])
            if mode == .signAndEncrypt {
                let padCount = (16 - (sendBuffer.count - 16 + 1 + sigSize) % 16) % 16
                for _ in 0...padCount { sendBuffer.write(UInt8(padCount)) }
            }
            sendBuffer.patch(UInt32(sendBuffer.count + sigSize), at: 4)
            i += 1
            guard let keys = token.client else {
                try connection.send(sendBuffer.bytes)
                continue
            }
            sendBuffer.write(raw: keys.sign(sendBuffer.bytes[...]))
            if mode == .signAndEncrypt {
                try connection.send(Array(sendBuffer.bytes[..<16]) + keys.encrypt(sendBuffer.bytes[16...]))
            } else {
                try connection.send(sendBuffer.bytes)
            }
        }
    }

    // MARK: Receiving

    private func startReader() {
        // Weak: the channel keeps its Thread, and a Thread keeps its block after it has run.
        let t = Thread { [weak self] in self?.readLoop() }
        t.name = "opcua-reader"
        t.stackSize = 1 << 20
        reader = t
        t.start()
    }

    private func readLoop() {
        let maxChunk = Int(config.receiveBufferSize)
        // One buffer for every chunk: whoever looks at a chunk's bytes is done with them before the next read,
        // so the buffer is never shared when it is cleared and keeps its capacity.
        var chunk: [UInt8] = []
        chunk.reserveCapacity(maxChunk)
        while true {
            config.loopProbe?(.reader)
            do {
                chunk.removeAll(keepingCapacity: true)
                try connection.read(8, into: &chunk)
                let size = Int(
                    UInt32(chunk[4]) | UInt32(chunk[5]) << 8 | UInt32(chunk[6]) << 16 | UInt32(chunk[7]) << 24)
                guard size >= 16, size <= maxChunk else {
                    throw OPCUAError.protocolViolation("chunk size \(size) outside 16…\(maxChunk)")
                }
                try connection.read(size - 8, into: &chunk)
                try handleChunk(chunk)
            } catch {
                fail(error as? OPCUAError ?? .transport("\(error)"), notify: true)
                return
            }
        }
    }

    private func handleChunk(_ chunk: [UInt8]) throws {
        let chunkType = chunk[3]
        switch (chunk[0], chunk[1], chunk[2]) {
        case (0x45, 0x52, 0x52):  // ERR
            var r = BinaryReader(chunk, from: 8, to: chunk.count, limits: config.decodingLimits)
            let status = try r.read(StatusCode.self)
            throw OPCUAError.serverError(status, try r.readString() ?? "")
        case (0x4F, 0x50, 0x4E):  // OPN
            let (requestId, plain, body) = try openAsymmetric(chunk)
            guard chunkType == UInt8(ascii: "F") else {
                throw OPCUAError.protocolViolation("chunked OpenSecureChannel response")
            }
            deliver(requestId, chunkType: chunkType, plain, body)
        case (0x4D, 0x53, 0x47), (0x43, 0x4C, 0x4F):  // MSG, CLO
            let (requestId, plain, body) = try openSymmetric(chunk)
            deliver(requestId, chunkType: chunkType, plain, body)
        default:
            throw OPCUAError.protocolViolation(
                "unknown message type '\(String(decoding: chunk[0..<3], as: UTF8.self))'")
        }
    }

    /// Hands a chunk's body (`plain[body]`) to the request it answers. A single-chunk response to a borrowing
    /// request is walked right where it lies; everything else is first gathered into a buffer.
    private func deliver(_ requestId: UInt32, chunkType: UInt8, _ plain: [UInt8], _ body: Range<Int>) {
        lock.lock()
        guard let p = pending[requestId] else {
            lock.unlock()
            return  // the caller gave up (timeout); the late answer is dropped
        }
        var failure: OPCUAError?
        var complete = false
        var inPlace = false
        switch chunkType {
        case UInt8(ascii: "C"), UInt8(ascii: "F"):
            let first = p.chunks == 0
            p.chunks += 1
            let maxChunks = Int(config.maxMessageSize / config.receiveBufferSize + 1)
            if first, chunkType == UInt8(ascii: "F"), case .borrow = p.delivery {
                inPlace = true
            } else {
                if first {
                    if case .into(let target) = p.delivery {
                        target.bytes.removeAll(keepingCapacity: true)
                    } else if case .borrow = p.delivery, let spare = spareBodies.popLast() {
                        p.body = spare
                    }
                }
                p.withBody { $0.append(contentsOf: plain[body]) }
            }
            if p.bodyCount > config.maxMessageSize || p.chunks > maxChunks {
                failure = .decoding("response exceeds \(config.maxMessageSize) bytes / \(maxChunks) chunks")
            } else if chunkType == UInt8(ascii: "F") {
                complete = true
            }
        case UInt8(ascii: "A"):
            var r = BinaryReader(Array(plain[body]), limits: config.decodingLimits)
            let status = (try? r.read(StatusCode.self)) ?? .badUnexpectedError
            let reason = (try? r.readString()) ?? nil
            failure = .serverError(status, "message aborted: \(reason ?? "")")
        default:
            failure = .protocolViolation("chunk type \(chunkType)")
        }
        // A finished borrowing entry goes back to the pool before its completion runs: the completion lets the
        // client send the next Publish request, which must find an entry there rather than allocate one.
        var borrowed: SecureChannel.BorrowedCompletion?
        var gathered: [UInt8] = []
        if failure != nil || complete {
            pending[requestId] = nil
            if case .borrow(let completion) = p.delivery {
                borrowed = completion
                gathered = p.body
                p.body = []
                // The completion may hold the channel (the client's does, through its link); a pooled entry must
                // not, or the channel would keep itself alive.
                p.delivery = .borrow(PendingRequest.idle)
                if sparePending.count < sparePending.capacity { sparePending.append(p) }
            }
        }
        lock.unlock()
        guard let borrowed else {
            if let failure {
                p.fail(failure)
            } else if complete {
                p.finish()
            }
            return
        }
        if let failure {
            borrowed(.failure(failure))
        } else if inPlace {
            borrowed(
                .success(BinaryReader(plain, from: body.lowerBound, to: body.upperBound, limits: config.decodingLimits))
            )
        } else {
            borrowed(.success(BinaryReader(gathered, limits: config.decodingLimits)))
        }
        if gathered.capacity > 0 {
            // The completion has returned, so nothing else refers to the buffer: keep it for the next one.
            gathered.removeAll(keepingCapacity: true)
            lock.lock()
            if spareBodies.count < 2 { spareBodies.append(gathered) }
            lock.unlock()
        }
    }

    private func checkSequence(_ seq: UInt32) throws {
        lock.lock()
        defer { lock.unlock() }
        if let last = lastReceivedSequence {
            let wrapped = last >= UInt32.max - 1024 && seq < 1024
            if seq != last &+ 1 && !wrapped {
                throw OPCUAError.protocolViolation("sequence number \(seq) after \(last) (BadSequenceNumberInvalid)")
            }
        }
        lastReceivedSequence = seq
    }

    private func openAsymmetric(_ chunk: [UInt8]) throws -> (UInt32, [UInt8], Range<Int>) {
        var r = BinaryReader(chunk, from: 12, to: chunk.count, limits: config.decodingLimits)
        let policyUri = try r.readString()
        let senderCert = try r.readByteString()
        let thumbprint = try r.readByteString()
        guard policyUri == config.policy.uri else {
            throw OPCUAError.security("OpenSecureChannel response uses policy \(policyUri ?? "null")")
        }
        let headerEnd = r.position
        var plain = chunk
        var bodyEnd = chunk.count
        if let asym {
            guard senderCert == asym.peerCertificate else {
                throw OPCUAError.security("OpenSecureChannel response signed with a different certificate")
            }
            guard thumbprint == Array(Insecure.SHA1.hash(data: asym.ownCertificate)) else {
                throw OPCUAError.security("OpenSecureChannel response is for another client certificate")
            }
            plain = Array(chunk[..<headerEnd]) + (try asym.decrypt(chunk[headerEnd...]))
            let sigSize = asym.peerKeyBytes
            guard plain.count >= headerEnd + 8 + sigSize + 1 else {
                throw OPCUAError.security("OpenSecureChannel response too short for its signature")
            }
            let sigStart = plain.count - sigSize
            guard asym.verify(plain[sigStart...], for: plain[..<sigStart]) else {
                throw OPCUAError.security("OpenSecureChannel response signature invalid (BadSecurityChecksFailed)")
            }
            bodyEnd = try stripPadding(plain, sigStart: sigStart, extra: asym.ownKeyBytes > 256, from: headerEnd + 8)
        }
        var s = BinaryReader(plain, from: headerEnd, to: bodyEnd, limits: config.decodingLimits)
        let seq = try s.readUInt32()
        let requestId = try s.readUInt32()
        try checkSequence(seq)
        return (requestId, plain, s.position..<bodyEnd)
    }

    private func stripPadding(_ plain: [UInt8], sigStart: Int, extra: Bool, from minStart: Int) throws -> Int {
        var padCount = Int(plain[sigStart - 1])
        var overhead = 1
        if extra {
            padCount = padCount << 8 | Int(plain[sigStart - 2])
            overhead = 2
        }
        let end = sigStart - overhead - padCount
        guard end >= minStart else { throw OPCUAError.security("padding of \(padCount) bytes exceeds the message") }
        let low = UInt8(truncatingIfNeeded: padCount)
        for i in end..<(sigStart - (extra ? 1 : 0)) where plain[i] != low {
            throw OPCUAError.security("malformed padding")
        }
        return end
    }

    private func openSymmetric(_ chunk: [UInt8]) throws -> (UInt32, [UInt8], Range<Int>) {
        var r = BinaryReader(chunk, from: 8, to: chunk.count, limits: config.decodingLimits)
        let chId = try r.readUInt32()
        let tokenId = try r.readUInt32()
        lock.lock()
        let expectedChannel = channelId
        let token = current?.id == tokenId ? current : previous?.id == tokenId ? previous : nil
        lock.unlock()
        guard chId == expectedChannel else {
            throw OPCUAError.protocolViolation("message for channel \(chId), ours is \(expectedChannel)")
        }
        guard let token else {
            throw OPCUAError.protocolViolation("unknown security token \(tokenId) (BadSecureChannelTokenUnknown)")
        }
        var plain = chunk
        var bodyEnd = chunk.count
        if let keys = token.server {
            if config.mode == .signAndEncrypt {
                guard (chunk.count - 16) % 16 == 0 else {
                    throw OPCUAError.security("encrypted chunk length \(chunk.count - 16) not a multiple of 16")
                }
                plain = Array(chunk[..<16]) + (try keys.decrypt(chunk[16...]))
            }
            let sigSize = config.policy.symmetricSignatureSize
            guard plain.count >= 16 + 8 + sigSize + (config.mode == .signAndEncrypt ? 1 : 0) else {
                throw OPCUAError.security("chunk too short for its signature")
            }
            let sigStart = plain.count - sigSize
            guard keys.verify(plain[sigStart...], for: plain[..<sigStart]) else {
                throw OPCUAError.security("message signature invalid (BadSecurityChecksFailed)")
            }
            bodyEnd =
                config.mode == .signAndEncrypt
                ? try stripPadding(plain, sigStart: sigStart, extra: false, from: 24) : sigStart
        }
        guard bodyEnd >= 24 else { throw OPCUAError.decoding("chunk of \(chunk.count) bytes has no sequence header") }
        var s = BinaryReader(plain, from: 16, to: bodyEnd, limits: config.decodingLimits)
        let seq = try s.readUInt32()
        let requestId = try s.readUInt32()
        try checkSequence(seq)
        return (requestId, plain, 24..<bodyEnd)
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

/// A request waiting for its response, in `SecureChannel.pending`.
final class PendingRequest: @unchecked Sendable {
    /// How the response reaches whoever waits for it.
    enum Delivery {
        /// An owned copy of the body, for responses that are decoded into structures anyway.
        case copy(SecureChannel.Completion)
        /// A reader over the body where it lies, on the reader thread: the receive buffer for a single-chunk
        /// response, else a gathering buffer the channel reuses. Nothing is copied or allocated for it.
        case borrow(SecureChannel.BorrowedCompletion)
        /// The body is gathered into the caller's reusable buffer, and the caller woken through it.
        case into(ResponseBuffer)
    }

    /// Fixed for `.into` entries; a reused `.borrow` entry gets its completion again with each request.
    var delivery: Delivery
    /// Set by `register`; a reused entry gets a new one for every request.
    var requestId: UInt32 = 0
    var chunks = 0
    /// Gathers the chunks of `.copy` and multi-chunk `.borrow` responses.
    var body: [UInt8] = []

    init(_ delivery: Delivery) { self.delivery = delivery }

    /// The completion of a pooled entry between requests; it captures nothing, so assigning it allocates nothing.
    static let idle: SecureChannel.BorrowedCompletion = { _ in }

    var bodyCount: Int {
        if case .into(let target) = delivery { return target.bytes.count }
        return body.count
    }

    func withBody(_ change: (inout [UInt8]) -> Void) {
        if case .into(let target) = delivery { change(&target.bytes) } else { change(&body) }
    }

    /// Completes a `.copy` or `.into` request with the gathered body (`.borrow` ones complete in `deliver`).
    func finish() {
        switch delivery {
        case .copy(let completion):
            let b = body
            body = []
            completion(.success(b))
        case .borrow:
            break
        case .into(let target):
            target.complete(requestId, nil)
        }
    }

    func fail(_ e: OPCUAError) {
        switch delivery {
        case .copy(let completion): completion(.failure(e))
        case .borrow(let completion): completion(.failure(e))
        case .into(let target): target.complete(requestId, e)
        }
    }
}

/// A response buffer one caller reuses request after request, and the condition the caller waits on.
///
/// The reader thread appends into `bytes` under the channel's lock while the request is pending; the caller reads
/// `bytes` only after `wait` returned for its request id, and sends its next request only after that.
final class ResponseBuffer: @unchecked Sendable {
    var bytes: [UInt8] = []
    private let cond = NSCondition()
    /// The last request completed, and how; a late completion of an abandoned request carries another id.
    private var completed: UInt32 = 0
    private var failure: OPCUAError?

    func complete(_ requestId: UInt32, _ error: OPCUAError?) {
        cond.lock()
        completed = requestId
        failure = error
        cond.signal()
        cond.unlock()
    }

    func wait(for requestId: UInt32, timeout: Double, what: String) throws {
        let deadline = Date(timeIntervalSinceNow: timeout)
        cond.lock()
        defer { cond.unlock() }
        while completed != requestId {
            if !cond.wait(until: deadline) && completed != requestId {
                throw OPCUAError.timeout("\(what) got no response within \(timeout) s")
            }
        }
        if let failure { throw failure }
    }
}

/// A one-shot result box that a calling thread blocks on.
final class Waiter: @unchecked Sendable {
    private let cond = NSCondition()
    private var result: Result<[UInt8], OPCUAError>?

    func complete(_ r: Result<[UInt8], OPCUAError>) {
        cond.lock()
        if result == nil { result = r }
        cond.signal()
        cond.unlock()
    }

    func wait(timeout: Double, what: String) throws -> [UInt8] {
        let deadline = Date(timeIntervalSinceNow: timeout)
        cond.lock()
        defer { cond.unlock() }
        while result == nil {
            if !cond.wait(until: deadline) && result == nil {
                result = .failure(.timeout("\(what) got no response within \(timeout) s"))
            }
        }
        return try result!.get()
    }
}

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
