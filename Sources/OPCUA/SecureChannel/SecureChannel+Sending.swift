import Foundation

// Sending: a message cut into chunks, each signed and encrypted (OPN asymmetrically, MSG and CLO
// symmetrically) and sent in sequence.
extension SecureChannel {
    private func nextSequenceNumber() -> UInt32 {
        let s = sendSequence
        // OPC 10000-6 §6.7.2.4: no wrap until the number exceeds UInt32.max − 1024; restart below 1024.
        sendSequence = s > UInt32.max - 1024 ? 1 : s + 1
        return s
    }

    func sendAsymmetric(requestId: UInt32, body: [UInt8]) throws {
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

    func sendSymmetric(type: StaticString, requestId: UInt32, body: [UInt8]) throws {
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
}
