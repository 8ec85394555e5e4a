import Crypto
import Foundation

// The reader thread: chunks received, their security checked and stripped (signature, decryption, padding,
// sequence numbers), and their bodies handed to the requests they answer.
extension SecureChannel {
    func startReader() {
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
}
