/// An OPC UA StatusCode: severity in the top two bits, the code in bits 16–27, info bits below.
public struct StatusCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32

    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public init(_ rawValue: UInt32) { self.rawValue = rawValue }

    public var isGood: Bool { rawValue & 0xC000_0000 == 0 }
    public var isUncertain: Bool { rawValue & 0xC000_0000 == 0x4000_0000 }
    public var isBad: Bool { rawValue & 0x8000_0000 != 0 }

    /// The symbolic name from Part 6 Annex A, looked up without the info bits (e.g. "BadSessionIdInvalid").
    public var name: String {
        let key = rawValue & 0xFFFF_0000
        var lo = 0
        var hi = statusCodeNameTable.count - 1
        while lo <= hi {
            let mid = (lo + hi) / 2
            let c = statusCodeNameTable[mid].code
            if c == key { return statusCodeNameTable[mid].name }
            if c < key { lo = mid + 1 } else { hi = mid - 1 }
        }
        return isGood ? "Good" : isUncertain ? "Uncertain" : "Bad"
    }

    public var description: String {
        "\(name) (0x\(String(rawValue, radix: 16, uppercase: true)))"
    }

    public static let good = StatusCode(0)
    public static let uncertain = StatusCode(0x4000_0000)
    public static let bad = StatusCode(0x8000_0000)
    public static let badUnexpectedError = StatusCode(0x8001_0000)
    public static let badInternalError = StatusCode(0x8002_0000)
    public static let badCommunicationError = StatusCode(0x8005_0000)
    public static let badEncodingError = StatusCode(0x8006_0000)
    public static let badDecodingError = StatusCode(0x8007_0000)
    public static let badTimeout = StatusCode(0x800A_0000)
    public static let badServiceUnsupported = StatusCode(0x800B_0000)
    public static let badShutdown = StatusCode(0x800C_0000)
    public static let badServerNotConnected = StatusCode(0x800D_0000)
    public static let badNothingToDo = StatusCode(0x800F_0000)
    public static let badTooManyOperations = StatusCode(0x8010_0000)
    public static let badCertificateInvalid = StatusCode(0x8012_0000)
    public static let badSecurityChecksFailed = StatusCode(0x8013_0000)
    public static let badCertificateUntrusted = StatusCode(0x801A_0000)
    public static let badUserAccessDenied = StatusCode(0x801F_0000)
    public static let badIdentityTokenInvalid = StatusCode(0x8020_0000)
    public static let badIdentityTokenRejected = StatusCode(0x8021_0000)
    public static let badSecureChannelIdInvalid = StatusCode(0x8022_0000)
    public static let badSessionIdInvalid = StatusCode(0x8025_0000)
    public static let badSessionClosed = StatusCode(0x8026_0000)
    public static let badSessionNotActivated = StatusCode(0x8027_0000)
    public static let badSubscriptionIdInvalid = StatusCode(0x8028_0000)
    public static let badNodeIdUnknown = StatusCode(0x8034_0000)
    public static let badAttributeIdInvalid = StatusCode(0x8035_0000)
    public static let badNotWritable = StatusCode(0x803B_0000)
    public static let badSecureChannelTokenUnknown = StatusCode(0x8087_0000)
    public static let badSequenceNumberInvalid = StatusCode(0x8088_0000)
    public static let badTcpMessageTooLarge = StatusCode(0x8080_0000)
    public static let badWriteNotSupported = StatusCode(0x8073_0000)
    public static let badTypeMismatch = StatusCode(0x8074_0000)
    public static let badTooManyPublishRequests = StatusCode(0x8078_0000)
    public static let badNoSubscription = StatusCode(0x8079_0000)
    public static let badSecurityPolicyRejected = StatusCode(0x8055_0000)
    public static let badConnectionClosed = StatusCode(0x80AE_0000)
    public static let badRequestTooLarge = StatusCode(0x80B8_0000)
    public static let badResponseTooLarge = StatusCode(0x80B9_0000)
}

extension StatusCode: BinaryCodable {
    func encode(to w: inout BinaryWriter) { w.write(rawValue) }
    init(from r: inout BinaryReader) throws { rawValue = try r.readUInt32() }
}

/// Errors raised by the OPC UA client. Each case says what failed and, where known, where.
public enum OPCUAError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Malformed or truncated bytes from the peer; the message says which field and at what offset.
    case decoding(String)
    /// A value the client was asked to send cannot be encoded (e.g. an array whose elements differ in type).
    case invalidArgument(String)
    /// Socket-level failure (connect, send, receive).
    case transport(String)
    /// The connection or secure channel went away while a request was outstanding.
    case connectionClosed(String)
    /// No response within the request timeout.
    case timeout(String)
    /// The server sent an ERR message (transport level) with this status.
    case serverError(StatusCode, String)
    /// A service returned a bad ServiceResult (ServiceFault or bad response header).
    case serviceFault(service: String, status: StatusCode)
    /// A violation of the OPC UA protocol by the peer (wrong message type, bad sequence number, …).
    case protocolViolation(String)
    /// Signature, encryption or certificate check failure.
    case security(String)
    /// The server certificate is not trusted; it was copied to `rejectedPath` for an operator to inspect.
    case certificateUntrusted(thumbprint: String, rejectedPath: String?)
    /// The client is not connected (never connected, closed, or reconnecting).
    case notConnected

    public var description: String {
        switch self {
        case .decoding(let m): return "OPC UA decoding error: \(m)"
        case .invalidArgument(let m): return "invalid argument: \(m)"
        case .transport(let m): return "OPC UA transport error: \(m)"
        case .connectionClosed(let m): return "OPC UA connection closed: \(m)"
        case .timeout(let m): return "OPC UA timeout: \(m)"
        case .serverError(let s, let m): return "OPC UA server error \(s): \(m)"
        case .serviceFault(let service, let s): return "OPC UA \(service) failed: \(s)"
        case .protocolViolation(let m): return "OPC UA protocol violation: \(m)"
        case .security(let m): return "OPC UA security error: \(m)"
        case .certificateUntrusted(let t, let p):
            return "server certificate \(t) is not trusted" + (p.map { "; stored at \($0) for review" } ?? "")
        case .notConnected: return "OPC UA client is not connected"
        }
    }

    /// The status code carried by the error, if any.
    public var statusCode: StatusCode? {
        switch self {
        case .serverError(let s, _), .serviceFault(_, let s): return s
        case .timeout: return .badTimeout
        case .certificateUntrusted: return .badCertificateUntrusted
        case .security: return .badSecurityChecksFailed
        case .decoding: return .badDecodingError
        case .connectionClosed, .transport, .notConnected: return .badConnectionClosed
        default: return nil
        }
    }
}
