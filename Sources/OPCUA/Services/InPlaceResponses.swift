// Publish and Read responses decoded where they lie in the receive buffer.
//
// These are the two responses whose size grows with the number of values, and the ones a running agent receives
// all the time. Instead of building `[ExtensionObject]` → `DataChangeNotification` → `[DataValue]`, a walker first
// checks the whole message (pass 1, nothing delivered) and then hands out `DataValueBatch`es over the same bytes
// (pass 2). Checking first keeps the old all-or-nothing behaviour: a message that is malformed anywhere delivers no
// value at all, as when it was decoded into structures before use.

/// What the client thread needs of a Publish response once its values went to their subscription.
struct PublishSummary: Sendable {
    var subscriptionId: UInt32
    var sequenceNumber: UInt32
    /// NotificationData entries; non-zero means the message must be acknowledged.
    var notificationCount: Int
    /// The status of a StatusChangeNotification in the message, if there was one.
    var statusChange: StatusCode?
}

/// Where one subscription's values go, as the walker needs it.
struct PublishTarget {
    var handleBase: UInt32
    var itemCount: Int
    var deliver: @Sendable (DataValueBatch) -> Void
}

enum InPlaceResponses {
    /// Reads the encoding NodeId and the ResponseHeader of `service`; throws the ServiceFault or a bad
    /// ServiceResult as `SecureChannel.decodeResponse` does.
    static func openResponse(_ r: inout BinaryReader, service: String, typeId expected: UInt32) throws {
        let typeId = try r.readNumericTypeId()
        if typeId == serviceFaultTypeId {
            let result = try r.skipResponseHeader()
            throw OPCUAError.serviceFault(service: service, status: result)
        }
        guard typeId == expected else {
            throw OPCUAError.protocolViolation(
                "\(service) answered with type \(typeId.map { "i=\($0)" } ?? "(not numeric)"), expected i=\(expected)")
        }
        let result = try r.skipResponseHeader()
        if result.isBad { throw OPCUAError.serviceFault(service: service, status: result) }
    }

    /// The header of one NotificationData entry (an ExtensionObject): its numeric type id, if it has one, and the
    /// range of its binary body, if it has one (an empty range for a null body, as `ExtensionObject` decodes it).
    private static func notificationHeader(_ r: inout BinaryReader) throws -> (typeId: UInt32?, body: Range<Int>?) {
        let typeId = try r.readNumericTypeId()
        switch try r.readUInt8() {
        case 0: return (typeId, nil)
        case 1:
            let start = r.position
            return (typeId, try r.skipByteString() ?? start..<start)
        case 2:
            _ = try r.skipString()
            return (typeId, nil)
        case let e: throw r.error("ExtensionObject encoding byte \(e) is not 0, 1 or 2")
        }
    }

    /// Checks a DataChangeNotification body as `DataChangeNotification(from:)` would; returns the number of
    /// MonitoredItemNotifications and where the first starts.
    static func checkDataChanges(_ r: inout BinaryReader) throws -> (count: Int, start: Int) {
        let count = try r.readLength("MonitoredItems", cap: r.limits.maxArrayLength, minElementSize: 5) ?? 0
        let start = r.position
        var i = 0
        while i < count {
            _ = try r.readUInt32()
            _ = try DataValueView.decode(&r)
            i += 1
        }
        try r.skipDiagnosticInfoArray()
        return (count, start)
    }

    /// Checks a whole Publish response, then hands each valid DataChangeNotification to the target `target(id)`
    /// finds for its subscription id. A DataChangeNotification that is malformed on its own is skipped, as before;
    /// anything else malformed throws before any value is delivered.
    static func publish(_ reader: BinaryReader, target: (UInt32) -> PublishTarget?) throws -> PublishSummary {
        var r = reader
        try openResponse(&r, service: PublishRequest.name, typeId: PublishRequest.Response.typeId)
        let subscriptionId = try r.readUInt32()
        if let n = try r.readLength("AvailableSequenceNumbers", cap: r.limits.maxArrayLength, minElementSize: 4) {
            try r.skip(n * 4)
        }
        _ = try r.readBool()  // moreNotifications: the client keeps two Publish requests out anyway
        let sequenceNumber = try r.readUInt32()
        try r.skip(8)  // publishTime
        let count = try r.readLength("ExtensionObject[]", cap: r.limits.maxArrayLength, minElementSize: 1) ?? 0
        let notificationsStart = r.position
        let (sound, statusChange) = try checkNotifications(&r, count: count)
        try r.skipStatusCodeArray()
        try r.skipDiagnosticInfoArray()
        if count > 0, let t = target(subscriptionId) {
            try deliverNotifications(reader, from: notificationsStart, count: count, sound: sound, to: t)
        }
        return PublishSummary(
            subscriptionId: subscriptionId, sequenceNumber: sequenceNumber, notificationCount: count,
            statusChange: statusChange)
    }

    /// Pass 1 over a NotificationData array whose `count` entries start at `r`: which DataChangeNotifications are
    /// sound is remembered for the first 64 (a message has one or two in practice; any beyond are checked again
    /// just before delivery), and the status of a StatusChangeNotification, if there is one.
    private static func checkNotifications(_ r: inout BinaryReader, count: Int) throws -> (
        sound: UInt64, statusChange: StatusCode?
    ) {
        var sound: UInt64 = 0
        var statusChange: StatusCode?
        var i = 0
        while i < count {
            let (typeId, body) = try notificationHeader(&r)
            if let body, typeId == DataChangeNotification.typeId || typeId == StatusChangeNotification.typeId {
                var b = BinaryReader(r.bytes, from: body.lowerBound, to: body.upperBound, limits: r.limits)
                if typeId == DataChangeNotification.typeId {
                    if (try? checkDataChanges(&b)) != nil, i < 64 { sound |= 1 << UInt64(i) }
                } else if let status = try? StatusCode(from: &b), (try? b.skipDiagnosticInfo()) != nil {
                    statusChange = status
                }
            }
            i += 1
        }
        return (sound, statusChange)
    }

    /// Pass 2: hands each sound DataChangeNotification of the array checked by `checkNotifications` to `t`.
    private static func deliverNotifications(
        _ reader: BinaryReader, from start: Int, count: Int, sound: UInt64, to t: PublishTarget
    ) throws {
        var r = BinaryReader(reader.bytes, from: start, to: reader.end, limits: reader.limits)
        var i = 0
        while i < count {
            let (typeId, body) = try notificationHeader(&r)
            if let body, typeId == DataChangeNotification.typeId {
                var b = BinaryReader(r.bytes, from: body.lowerBound, to: body.upperBound, limits: r.limits)
                var changes: (count: Int, start: Int)?
                if i < 64 {
                    if sound & (1 << UInt64(i)) != 0 { changes = try? checkDataChanges(&b) }
                } else {
                    changes = try? checkDataChanges(&b)
                }
                if let changes {
                    t.deliver(
                        DataValueBatch(
                            storage: r.bytes, start: changes.start, end: body.upperBound, limits: r.limits,
                            count: changes.count, handleBase: t.handleBase, itemCount: t.itemCount))
                }
            }
            i += 1
        }
    }

    /// Checks a whole Republish response and, if it carries the NotificationMessage `expected` (a server that no
    /// longer has it may answer with an empty message instead of BadMessageNotAvailable), hands its
    /// DataChangeNotifications to `t` as a Publish response would. Returns the message's sequence number and its
    /// number of NotificationData entries.
    static func republish(_ reader: BinaryReader, expected: UInt32, target t: PublishTarget?) throws -> (
        sequenceNumber: UInt32, notificationCount: Int
    ) {
        var r = reader
        try openResponse(&r, service: RepublishRequest.name, typeId: RepublishRequest.Response.typeId)
        let sequenceNumber = try r.readUInt32()
        try r.skip(8)  // publishTime
        let count = try r.readLength("ExtensionObject[]", cap: r.limits.maxArrayLength, minElementSize: 1) ?? 0
        let start = r.position
        let (sound, _) = try checkNotifications(&r, count: count)
        if sequenceNumber == expected, count > 0, let t {
            try deliverNotifications(reader, from: start, count: count, sound: sound, to: t)
        }
        return (sequenceNumber, count)
    }

    /// Checks a whole Read response of `expected` results; returns the batch of its results.
    static func read(_ reader: BinaryReader, expected: Int) throws -> DataValueBatch {
        var r = reader
        try openResponse(&r, service: ReadRequest.name, typeId: ReadRequest.Response.typeId)
        let count = try r.readLength("DataValue[]", cap: r.limits.maxArrayLength, minElementSize: 1) ?? 0
        let start = r.position
        var i = 0
        while i < count {
            _ = try DataValueView.decode(&r)
            i += 1
        }
        let end = r.position
        try r.skipDiagnosticInfoArray()
        guard count == expected else {
            throw OPCUAError.protocolViolation("Read of \(expected) nodes returned \(count) results")
        }
        return DataValueBatch(
            storage: r.bytes, start: start, end: end, limits: r.limits, count: count, handleBase: nil, itemCount: count)
    }
}
