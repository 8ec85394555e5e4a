import Foundation

// Service calls on the current session: Read, Write, Browse, TranslateBrowsePathsToNodeIds.
extension OPCUAClient {
    func currentLink() throws -> Link {
        lock.lock()
        defer { lock.unlock() }
        guard let link, currentState == .connected else { throw OPCUAError.notConnected }
        return link
    }

    func call<R: ServiceRequest>(_ req: R) throws -> R.Response {
        let l = try currentLink()
        var r = req
        r.header.authenticationToken = l.authToken
        do {
            return try l.channel.call(r, timeout: configuration.requestTimeout)
        } catch let e as OPCUAError {
            if OPCUAClient.isSessionLoss(e) {
                post { [self] in connectionLost(gen: l.generation, e) }
            }
            throw e
        }
    }

    static func isSessionLoss(_ e: OPCUAError) -> Bool {
        guard case .serviceFault(_, let s) = e else { return false }
        return [
            .badSessionIdInvalid, .badSessionClosed, .badSessionNotActivated, .badSecureChannelIdInvalid,
            .badSecureChannelTokenUnknown,
        ].contains(StatusCode(s.rawValue & 0xFFFF_0000))
    }

    /// Reads one attribute (Value by default) of each node. Results are in the order of `nodes`;
    /// a per-node failure is a DataValue with a bad status, not a thrown error.
    public func read(
        _ nodes: [NodeId], attribute: AttributeId = .value, timestamps: TimestampsToReturn = .both, maxAge: Double = 0
    ) throws -> [DataValue] {
        if nodes.isEmpty { return [] }
        let resp = try call(
            ReadRequest(
                maxAge: maxAge, timestampsToReturn: timestamps,
                nodesToRead: nodes.map { ReadValueId(nodeId: $0, attributeId: attribute.rawValue) }))
        guard resp.results.count == nodes.count else {
            throw OPCUAError.protocolViolation("Read of \(nodes.count) nodes returned \(resp.results.count) results")
        }
        return resp.results
    }

    /// Reads the nodes of `prepared` and hands the results to `body`, on the calling thread, as they lie in the
    /// response: nothing is built per node and, once the buffers of `prepared` have grown to the message sizes,
    /// nothing is allocated per call either. Results are in the order of `prepared.nodes`; a per-node failure is a
    /// value with a bad status. `body` is not called for an empty node list. One `PreparedRead` serves one call at
    /// a time (concurrent calls wait for each other).
    public func read(_ prepared: PreparedRead, _ body: (DataValueBatch) throws -> Void) throws {
        if prepared.nodes.isEmpty { return }
        let l = try currentLink()
        prepared.useLock.lock()
        defer { prepared.useLock.unlock() }
        let timeout = configuration.requestTimeout
        let batch: DataValueBatch
        do {
            try l.channel.call(
                writer: &prepared.request, pending: prepared.pending, response: prepared.response, timeout: timeout,
                what: ReadRequest.name
            ) { w, id in
                var header = RequestHeader()
                header.authenticationToken = l.authToken
                header.requestHandle = id
                header.timeoutHint = UInt32(min(timeout * 1000, Double(UInt32.max)))
                prepared.encodeRequest(header: header, to: &w)
            }
            batch = try InPlaceResponses.read(
                BinaryReader(prepared.response.bytes, limits: configuration.decodingLimits),
                expected: prepared.nodes.count)
        } catch let e as OPCUAError {
            if OPCUAClient.isSessionLoss(e) {
                post { [self] in connectionLost(gen: l.generation, e) }
            }
            throw e
        }
        try body(batch)
    }

    /// Writes values (only the value: no status or timestamps, and the Variant type must match the node's).
    public func write(_ values: [(NodeId, Variant)]) throws -> [StatusCode] {
        if values.isEmpty { return [] }
        let resp = try call(
            WriteRequest(
                nodesToWrite: values.map {
                    WriteValue(nodeId: $0.0, attributeId: AttributeId.value.rawValue, value: DataValue($0.1))
                }))
        guard resp.results.count == values.count else {
            throw OPCUAError.protocolViolation("Write of \(values.count) values returned \(resp.results.count) results")
        }
        return resp.results
    }

    /// Browses all references of a node, following continuation points (BrowseNext) to the end.
    public func browse(
        _ node: NodeId, direction: BrowseDirection = .forward, referenceType: NodeId = NodeId(33),
        includeSubtypes: Bool = true, maxReferencesPerCall: UInt32 = 0
    ) throws -> [ReferenceDescription] {
        let desc = BrowseDescription(
            nodeId: node, direction: direction, referenceTypeId: referenceType, includeSubtypes: includeSubtypes)
        let first = try call(BrowseRequest(requestedMaxReferencesPerNode: maxReferencesPerCall, nodesToBrowse: [desc]))
        guard var result = first.results.first else { throw OPCUAError.protocolViolation("Browse returned no result") }
        var refs: [ReferenceDescription] = []
        while true {
            if result.statusCode.isBad { throw OPCUAError.serviceFault(service: "Browse", status: result.statusCode) }
            refs += result.references
            guard let cp = result.continuationPoint, !cp.isEmpty else { return refs }
            let next = try call(BrowseNextRequest(releaseContinuationPoints: false, continuationPoints: [cp]))
            guard let r = next.results.first else {
                throw OPCUAError.protocolViolation("BrowseNext returned no result")
            }
            result = r
        }
    }

    /// Resolves a path of browse names (following hierarchical references) to a NodeId.
    public func translateBrowsePath(from start: NodeId = NodeId(85), path: [RelativePathElement]) throws -> NodeId {
        let resp = try call(TranslateBrowsePathsRequest(browsePaths: [BrowsePath(startingNode: start, elements: path)]))
        guard let r = resp.results.first else {
            throw OPCUAError.protocolViolation("TranslateBrowsePathsToNodeIds returned no result")
        }
        if r.statusCode.isBad {
            throw OPCUAError.serviceFault(service: "TranslateBrowsePathsToNodeIds", status: r.statusCode)
        }
        guard let t = r.targets.first(where: { $0.1 == UInt32.max }) ?? r.targets.first else {
            throw OPCUAError.serviceFault(service: "TranslateBrowsePathsToNodeIds", status: StatusCode(0x806F_0000))
        }
        return t.0.nodeId
    }
}
