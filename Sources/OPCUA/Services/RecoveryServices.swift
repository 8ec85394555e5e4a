// The services of a session's recovery after a lost channel (OPC 10000-4 §6.7): TransferSubscriptions and Republish.

/// TransferSubscriptions (OPC 10000-4 §5.13.7): moves subscriptions to the calling session, or confirms they are
/// on it, and tells which of their NotificationMessages the server still keeps for Republish.
struct TransferSubscriptionsRequest: ServiceRequest {
    static let typeId: UInt32 = 841
    static let name = "TransferSubscriptions"
    var header = RequestHeader()
    var subscriptionIds: [UInt32]
    var sendInitialValues: Bool

    func encode(to w: inout BinaryWriter) {
        w.write(header)
        w.write(array: subscriptionIds) { w, v in w.write(v) }
        w.write(sendInitialValues)
    }

    /// One subscription's outcome: its status and the sequence numbers the server can republish.
    struct TransferResult: Sendable {
        var statusCode: StatusCode
        var availableSequenceNumbers: [UInt32]
    }

    struct Response: ServiceResponse {
        static let typeId: UInt32 = 844
        var header: ResponseHeader
        var results: [TransferResult]

        init(from r: inout BinaryReader) throws {
            header = try r.read(ResponseHeader.self)
            results =
                try r.readArray("TransferResult", minElementSize: 8) { r in
                    TransferResult(
                        statusCode: try r.read(StatusCode.self),
                        availableSequenceNumbers: try r.readArray("AvailableSequenceNumbers", minElementSize: 4) {
                            r in try r.readUInt32()
                        } ?? [])
                } ?? []
            _ = try r.readArray(of: DiagnosticInfo.self)
        }
    }
}

/// Republish (OPC 10000-4 §5.13.6): one NotificationMessage the client did not receive, by its sequence number.
/// The client walks the response in place (`InPlaceResponses.republish`); `Response` only names its type.
struct RepublishRequest: ServiceRequest {
    static let typeId: UInt32 = 832
    static let name = "Republish"
    var header = RequestHeader()
    var subscriptionId: UInt32
    var retransmitSequenceNumber: UInt32

    func encode(to w: inout BinaryWriter) {
        w.write(header)
        w.write(subscriptionId)
        w.write(retransmitSequenceNumber)
    }

    struct Response: ServiceResponse {
        static let typeId: UInt32 = 835
        var header: ResponseHeader
        init(from r: inout BinaryReader) throws { header = try r.read(ResponseHeader.self) }
    }
}

extension StatusCode {
    /// Republish: the server no longer keeps (or never had) the NotificationMessage asked for.
    static let badMessageNotAvailable = StatusCode(0x807B_0000)
}
