import Foundation

// Requests: ids, pending entries, encoding, waiting for the response and decoding it.
extension SecureChannel {
    func allocateRequestId() -> UInt32 {
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

    func sendOpen(_ req: OpenSecureChannelRequest, completion: @escaping Completion) throws {
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

    /// Sends a request and blocks until its response, which it returns undecoded (for responses walked in place).
    func callForBody<R: ServiceRequest>(_ req: R, timeout: Double) throws -> [UInt8] {
        let waiter = Waiter()
        var r = req
        r.header.timeoutHint = UInt32(min(timeout * 1000, Double(UInt32.max)))
        let id = try send(r) { waiter.complete($0) }
        do {
            return try waiter.wait(timeout: timeout, what: R.name)
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
}
