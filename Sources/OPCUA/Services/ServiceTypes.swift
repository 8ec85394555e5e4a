import Foundation

// Request/response structures of OPC 10000-4, encoded field by field as in OPC 10000-6 (binary).
// Only the services the client uses are modelled; each carries its binary encoding NodeId.

struct RequestHeader: BinaryEncodable {
    var authenticationToken: NodeId = .null
    var timestamp = DateTime.now()
    var requestHandle: UInt32 = 0
    var returnDiagnostics: UInt32 = 0
    var auditEntryId: String? = nil
    var timeoutHint: UInt32 = 0

    func encode(to w: inout BinaryWriter) {
        w.write(authenticationToken)
        w.write(timestamp)
        w.write(requestHandle)
        w.write(returnDiagnostics)
        w.write(string: auditEntryId)
        w.write(timeoutHint)
        w.write(ExtensionObject.null)
    }
}

struct ResponseHeader: BinaryDecodable {
    var timestamp: DateTime
    var requestHandle: UInt32
    var serviceResult: StatusCode

    init(from r: inout BinaryReader) throws {
        timestamp = try r.read(DateTime.self)
        requestHandle = try r.readUInt32()
        serviceResult = try r.read(StatusCode.self)
        _ = try r.read(DiagnosticInfo.self)
        _ = try r.readArray("StringTable") { r in try r.readString() }
        _ = try r.read(ExtensionObject.self)
    }
}

/// A request of a service; `Response` is what the server answers when it does not fault.
protocol ServiceRequest: BinaryEncodable, Sendable {
    associatedtype Response: ServiceResponse
    static var typeId: UInt32 { get }
    static var name: String { get }
    var header: RequestHeader { get set }
}

protocol ServiceResponse: BinaryDecodable, Sendable {
    static var typeId: UInt32 { get }
    var header: ResponseHeader { get }
}

let serviceFaultTypeId: UInt32 = 397

/// Message security modes of an endpoint or channel.
public enum MessageSecurityMode: UInt32, Sendable, Hashable, CustomStringConvertible {
    case none = 1
    case sign = 2
    case signAndEncrypt = 3

    public var description: String {
        switch self {
        case .none: return "None"
        case .sign: return "Sign"
        case .signAndEncrypt: return "SignAndEncrypt"
        }
    }
}

// MARK: - Secure channel

struct ChannelSecurityToken: BinaryDecodable {
    var channelId: UInt32
    var tokenId: UInt32
    var createdAt: DateTime
    var revisedLifetime: UInt32

    init(from r: inout BinaryReader) throws {
        channelId = try r.readUInt32()
        tokenId = try r.readUInt32()
        createdAt = try r.read(DateTime.self)
        revisedLifetime = try r.readUInt32()
    }
}

struct OpenSecureChannelRequest: ServiceRequest {
    static let typeId: UInt32 = 446
    static let name = "OpenSecureChannel"
    var header = RequestHeader()
    var renew: Bool
    var securityMode: MessageSecurityMode
    var clientNonce: [UInt8]
    var requestedLifetime: UInt32

    func encode(to w: inout BinaryWriter) {
        w.write(header)
        w.write(UInt32(0))  // protocol version
        w.write(UInt32(renew ? 1 : 0))
        w.write(securityMode.rawValue)
        w.write(byteString: clientNonce)
        w.write(requestedLifetime)
    }

    struct Response: ServiceResponse {
        static let typeId: UInt32 = 449
        var header: ResponseHeader
        var token: ChannelSecurityToken
        var serverNonce: [UInt8]

        init(from r: inout BinaryReader) throws {
            header = try r.read(ResponseHeader.self)
            _ = try r.readUInt32()
            token = try r.read(ChannelSecurityToken.self)
            serverNonce = try r.readByteString() ?? []
        }
    }
}

struct CloseSecureChannelRequest: ServiceRequest {
    static let typeId: UInt32 = 452
    static let name = "CloseSecureChannel"
    var header = RequestHeader()
    func encode(to w: inout BinaryWriter) { w.write(header) }

    struct Response: ServiceResponse {
        static let typeId: UInt32 = 455
        var header: ResponseHeader
        init(from r: inout BinaryReader) throws { header = try r.read(ResponseHeader.self) }
    }
}

// MARK: - Discovery

/// Describes an OPC UA application (client or server).
public struct ApplicationDescription: Sendable, Hashable, BinaryCodable {
    public var applicationUri: String?
    public var productUri: String?
    public var applicationName: LocalizedText
    /// 0 server, 1 client, 2 client and server, 3 discovery server.
    public var applicationType: UInt32
    public var discoveryUrls: [String]

    init(applicationUri: String, productUri: String, name: String, type: UInt32) {
        self.applicationUri = applicationUri
        self.productUri = productUri
        self.applicationName = LocalizedText(name)
        self.applicationType = type
        self.discoveryUrls = []
    }

    func encode(to w: inout BinaryWriter) {
        w.write(string: applicationUri)
        w.write(string: productUri)
        w.write(applicationName)
        w.write(applicationType)
        w.write(string: nil)  // gatewayServerUri
        w.write(string: nil)  // discoveryProfileUri
        w.write(array: discoveryUrls) { w, s in w.write(string: s) }
    }

    init(from r: inout BinaryReader) throws {
        applicationUri = try r.readString()
        productUri = try r.readString()
        applicationName = try r.read(LocalizedText.self)
        applicationType = try r.readUInt32()
        _ = try r.readString()
        _ = try r.readString()
        discoveryUrls = try r.readArray("DiscoveryUrls") { r in try r.readString() ?? "" } ?? []
    }
}

/// The kinds of user identity token an endpoint accepts.
public enum UserTokenType: UInt32, Sendable, Hashable {
    case anonymous = 0
    case userName = 1
    case certificate = 2
    case issuedToken = 3
}

/// One identity token an endpoint accepts, and the security policy that protects its secret.
public struct UserTokenPolicy: Sendable, Hashable, BinaryDecodable {
    public var policyId: String?
    public var tokenType: UserTokenType
    public var securityPolicyUri: String?

    init(from r: inout BinaryReader) throws {
        policyId = try r.readString()
        let t = try r.readUInt32()
        guard let type = UserTokenType(rawValue: t) else { throw r.error("UserTokenType \(t) unknown") }
        tokenType = type
        _ = try r.readString()
        _ = try r.readString()
        securityPolicyUri = try r.readString()
    }
}

/// An endpoint offered by a server (GetEndpoints).
public struct EndpointDescription: Sendable, Hashable, BinaryDecodable {
    public var endpointUrl: String
    public var server: ApplicationDescription
    public var serverCertificate: [UInt8]
    public var securityMode: MessageSecurityMode
    public var securityPolicyUri: String
    public var userIdentityTokens: [UserTokenPolicy]
    public var securityLevel: UInt8

    init(from r: inout BinaryReader) throws {
        endpointUrl = try r.readString() ?? ""
        server = try r.read(ApplicationDescription.self)
        serverCertificate = try r.readByteString() ?? []
        let m = try r.readUInt32()
        guard let mode = MessageSecurityMode(rawValue: m) else { throw r.error("MessageSecurityMode \(m) unknown") }
        securityMode = mode
        securityPolicyUri = try r.readString() ?? ""
        userIdentityTokens = try r.readArray(of: UserTokenPolicy.self)
        _ = try r.readString()
        securityLevel = try r.readUInt8()
    }
}

struct GetEndpointsRequest: ServiceRequest {
    static let typeId: UInt32 = 428
    static let name = "GetEndpoints"
    var header = RequestHeader()
    var endpointUrl: String

    func encode(to w: inout BinaryWriter) {
        w.write(header)
        w.write(string: endpointUrl)
        w.write(Int32(0))  // localeIds
        w.write(Int32(0))  // profileUris
    }

    struct Response: ServiceResponse {
        static let typeId: UInt32 = 431
        var header: ResponseHeader
        var endpoints: [EndpointDescription]

        init(from r: inout BinaryReader) throws {
            header = try r.read(ResponseHeader.self)
            endpoints = try r.readArray(of: EndpointDescription.self)
        }
    }
}

// MARK: - Session

struct SignatureData: BinaryCodable {
    var algorithm: String?
    var signature: [UInt8]?

    init(algorithm: String? = nil, signature: [UInt8]? = nil) {
        self.algorithm = algorithm
        self.signature = signature
    }

    func encode(to w: inout BinaryWriter) {
        w.write(string: algorithm)
        w.write(byteString: signature)
    }

    init(from r: inout BinaryReader) throws {
        algorithm = try r.readString()
        signature = try r.readByteString()
    }
}

struct CreateSessionRequest: ServiceRequest {
    static let typeId: UInt32 = 461
    static let name = "CreateSession"
    var header = RequestHeader()
    var clientDescription: ApplicationDescription
    var endpointUrl: String
    var sessionName: String
    var clientNonce: [UInt8]?
    var clientCertificate: [UInt8]?
    var requestedSessionTimeout: Double
    var maxResponseMessageSize: UInt32

    func encode(to w: inout BinaryWriter) {
        w.write(header)
        w.write(clientDescription)
        w.write(string: nil)  // serverUri
        w.write(string: endpointUrl)
        w.write(string: sessionName)
        w.write(byteString: clientNonce)
        w.write(byteString: clientCertificate)
        w.write(requestedSessionTimeout)
        w.write(maxResponseMessageSize)
    }

    struct Response: ServiceResponse {
        static let typeId: UInt32 = 464
        var header: ResponseHeader
        var sessionId: NodeId
        var authenticationToken: NodeId
        var revisedSessionTimeout: Double
        var serverNonce: [UInt8]
        var serverCertificate: [UInt8]
        var serverEndpoints: [EndpointDescription]
        var serverSignature: SignatureData
        var maxRequestMessageSize: UInt32

        init(from r: inout BinaryReader) throws {
            header = try r.read(ResponseHeader.self)
            sessionId = try r.read(NodeId.self)
            authenticationToken = try r.read(NodeId.self)
            revisedSessionTimeout = try r.readDouble()
            serverNonce = try r.readByteString() ?? []
            serverCertificate = try r.readByteString() ?? []
            serverEndpoints = try r.readArray(of: EndpointDescription.self)
            _ = try r.readArray("SoftwareCertificates") { r in
                (try r.readByteString(), try r.readByteString())
            }
            serverSignature = try r.read(SignatureData.self)
            maxRequestMessageSize = try r.readUInt32()
        }
    }
}

struct AnonymousIdentityToken: BinaryEncodable {
    static let typeId: UInt32 = 321
    var policyId: String?
    func encode(to w: inout BinaryWriter) { w.write(string: policyId) }
}

struct UserNameIdentityToken: BinaryEncodable {
    static let typeId: UInt32 = 324
    var policyId: String?
    var userName: String
    var password: [UInt8]
    var encryptionAlgorithm: String?

    func encode(to w: inout BinaryWriter) {
        w.write(string: policyId)
        w.write(string: userName)
        w.write(byteString: password)
        w.write(string: encryptionAlgorithm)
    }
}

struct ActivateSessionRequest: ServiceRequest {
    static let typeId: UInt32 = 467
    static let name = "ActivateSession"
    var header = RequestHeader()
    var clientSignature = SignatureData()
    var userIdentityToken: ExtensionObject
    var userTokenSignature = SignatureData()

    func encode(to w: inout BinaryWriter) {
        w.write(header)
        w.write(clientSignature)
        w.write(Int32(0))  // clientSoftwareCertificates
        w.write(Int32(0))  // localeIds
        w.write(userIdentityToken)
        w.write(userTokenSignature)
    }

    struct Response: ServiceResponse {
        static let typeId: UInt32 = 470
        var header: ResponseHeader
        var serverNonce: [UInt8]

        init(from r: inout BinaryReader) throws {
            header = try r.read(ResponseHeader.self)
            serverNonce = try r.readByteString() ?? []
            _ = try r.readArray(of: StatusCode.self)
            _ = try r.readArray(of: DiagnosticInfo.self)
        }
    }
}

struct CloseSessionRequest: ServiceRequest {
    static let typeId: UInt32 = 473
    static let name = "CloseSession"
    var header = RequestHeader()
    var deleteSubscriptions = true

    func encode(to w: inout BinaryWriter) {
        w.write(header)
        w.write(deleteSubscriptions)
    }

    struct Response: ServiceResponse {
        static let typeId: UInt32 = 476
        var header: ResponseHeader
        init(from r: inout BinaryReader) throws { header = try r.read(ResponseHeader.self) }
    }
}

// MARK: - Attribute services

/// Attribute ids of OPC 10000-4 Annex A used by the client.
public enum AttributeId: UInt32, Sendable {
    case nodeId = 1
    case nodeClass = 2
    case browseName = 3
    case displayName = 4
    case description = 5
    case value = 13
    case dataType = 14
    case valueRank = 15
    case arrayDimensions = 16
    case accessLevel = 17
}

/// Which timestamps Read and monitored items return.
public enum TimestampsToReturn: UInt32, Sendable {
    case source = 0
    case server = 1
    case both = 2
    case neither = 3
}

struct ReadValueId: BinaryEncodable, Sendable {
    var nodeId: NodeId
    var attributeId: UInt32
    var indexRange: String? = nil

    func encode(to w: inout BinaryWriter) {
        w.write(nodeId)
        w.write(attributeId)
        w.write(string: indexRange)
        w.write(QualifiedName(namespace: 0, ""))  // dataEncoding: default
    }
}

package struct ReadRequest: ServiceRequest {
    static let typeId: UInt32 = 631
    static let name = "Read"
    var header = RequestHeader()
    var maxAge: Double = 0
    var timestampsToReturn: TimestampsToReturn
    var nodesToRead: [ReadValueId]

    func encode(to w: inout BinaryWriter) {
        w.write(header)
        w.write(maxAge)
        w.write(timestampsToReturn.rawValue)
        w.write(array: nodesToRead)
    }

    struct Response: ServiceResponse {
        static let typeId: UInt32 = 634
        var header: ResponseHeader
        var results: [DataValue]

        init(from r: inout BinaryReader) throws {
            header = try r.read(ResponseHeader.self)
            results = try r.readArray(of: DataValue.self)
            _ = try r.readArray(of: DiagnosticInfo.self)
        }
    }
}

/// A Read of a fixed list of nodes, for polling them again and again: the request body is encoded once, and the
/// response is received into a buffer that is kept for the next call (see `OPCUAClient.read(_:_:)`).
public final class PreparedRead: @unchecked Sendable {
    public let nodes: [NodeId]
    public let attribute: AttributeId
    public let timestamps: TimestampsToReturn
    /// Oldest acceptable cached value in milliseconds; 0 makes the server read the device.
    public let maxAge: Double
    let encodedNodes: [UInt8]
    // Per-call state, owned by whoever holds `useLock`.
    let useLock = NSLock()
    var request = BinaryWriter(capacity: 0)
    let response = ResponseBuffer()
    let pending: PendingRequest

    public init(
        _ nodes: [NodeId], attribute: AttributeId = .value, timestamps: TimestampsToReturn = .both, maxAge: Double = 0
    ) {
        self.nodes = nodes
        self.attribute = attribute
        self.timestamps = timestamps
        self.maxAge = maxAge
        var w = BinaryWriter(capacity: 16 + nodes.count * 16)
        w.write(array: nodes.map { ReadValueId(nodeId: $0, attributeId: attribute.rawValue) })
        encodedNodes = w.bytes
        pending = PendingRequest(.into(response))
    }

    /// The ReadRequest, encoding NodeId first, with the NodesToRead encoded at creation.
    func encodeRequest(header: RequestHeader, to w: inout BinaryWriter) {
        w.write(NodeId(ReadRequest.typeId))
        w.write(header)
        w.write(maxAge)
        w.write(timestamps.rawValue)
        w.bytes.append(contentsOf: encodedNodes)
    }
}

struct WriteValue: BinaryEncodable, Sendable {
    var nodeId: NodeId
    var attributeId: UInt32
    var value: DataValue

    func encode(to w: inout BinaryWriter) {
        w.write(nodeId)
        w.write(attributeId)
        w.write(string: nil)
        w.write(value)
    }
}

struct WriteRequest: ServiceRequest {
    static let typeId: UInt32 = 673
    static let name = "Write"
    var header = RequestHeader()
    var nodesToWrite: [WriteValue]

    func encode(to w: inout BinaryWriter) {
        w.write(header)
        w.write(array: nodesToWrite)
    }

    struct Response: ServiceResponse {
        static let typeId: UInt32 = 676
        var header: ResponseHeader
        var results: [StatusCode]

        init(from r: inout BinaryReader) throws {
            header = try r.read(ResponseHeader.self)
            results = try r.readArray(of: StatusCode.self)
            _ = try r.readArray(of: DiagnosticInfo.self)
        }
    }
}

// MARK: - View services

/// A reference found by Browse.
public struct ReferenceDescription: Sendable, Hashable, BinaryDecodable {
    public var referenceTypeId: NodeId
    public var isForward: Bool
    public var nodeId: ExpandedNodeId
    public var browseName: QualifiedName
    public var displayName: LocalizedText
    /// NodeClass bit value: 1 Object, 2 Variable, 4 Method, 8 ObjectType, 16 VariableType, …
    public var nodeClass: UInt32
    public var typeDefinition: ExpandedNodeId

    init(from r: inout BinaryReader) throws {
        referenceTypeId = try r.read(NodeId.self)
        isForward = try r.readBool()
        nodeId = try r.read(ExpandedNodeId.self)
        browseName = try r.read(QualifiedName.self)
        displayName = try r.read(LocalizedText.self)
        nodeClass = try r.readUInt32()
        typeDefinition = try r.read(ExpandedNodeId.self)
    }
}

struct BrowseResult: BinaryDecodable, Sendable {
    var statusCode: StatusCode
    var continuationPoint: [UInt8]?
    var references: [ReferenceDescription]

    init(from r: inout BinaryReader) throws {
        statusCode = try r.read(StatusCode.self)
        continuationPoint = try r.readByteString()
        references = try r.readArray(of: ReferenceDescription.self)
    }
}

/// Direction of references to follow when browsing.
public enum BrowseDirection: UInt32, Sendable {
    case forward = 0
    case inverse = 1
    case both = 2
}

struct BrowseDescription: BinaryEncodable, Sendable {
    var nodeId: NodeId
    var direction: BrowseDirection
    var referenceTypeId: NodeId
    var includeSubtypes: Bool
    var nodeClassMask: UInt32 = 0
    var resultMask: UInt32 = 0x3F

    func encode(to w: inout BinaryWriter) {
        w.write(nodeId)
        w.write(direction.rawValue)
        w.write(referenceTypeId)
        w.write(includeSubtypes)
        w.write(nodeClassMask)
        w.write(resultMask)
    }
}

struct BrowseRequest: ServiceRequest {
    static let typeId: UInt32 = 527
    static let name = "Browse"
    var header = RequestHeader()
    var requestedMaxReferencesPerNode: UInt32
    var nodesToBrowse: [BrowseDescription]

    func encode(to w: inout BinaryWriter) {
        w.write(header)
        w.write(NodeId.null)  // view
        w.write(DateTime.null)
        w.write(UInt32(0))
        w.write(requestedMaxReferencesPerNode)
        w.write(array: nodesToBrowse)
    }

    struct Response: ServiceResponse {
        static let typeId: UInt32 = 530
        var header: ResponseHeader
        var results: [BrowseResult]

        init(from r: inout BinaryReader) throws {
            header = try r.read(ResponseHeader.self)
            results = try r.readArray(of: BrowseResult.self)
            _ = try r.readArray(of: DiagnosticInfo.self)
        }
    }
}

struct BrowseNextRequest: ServiceRequest {
    static let typeId: UInt32 = 533
    static let name = "BrowseNext"
    var header = RequestHeader()
    var releaseContinuationPoints: Bool
    var continuationPoints: [[UInt8]]

    func encode(to w: inout BinaryWriter) {
        w.write(header)
        w.write(releaseContinuationPoints)
        w.write(array: continuationPoints) { w, c in w.write(byteString: c) }
    }

    struct Response: ServiceResponse {
        static let typeId: UInt32 = 536
        var header: ResponseHeader
        var results: [BrowseResult]

        init(from r: inout BinaryReader) throws {
            header = try r.read(ResponseHeader.self)
            results = try r.readArray(of: BrowseResult.self)
            _ = try r.readArray(of: DiagnosticInfo.self)
        }
    }
}

/// One step of a browse path: follow `referenceTypeId` (HierarchicalReferences by default) to `targetName`.
public struct RelativePathElement: Sendable, Hashable, BinaryEncodable {
    public var referenceTypeId: NodeId
    public var isInverse: Bool
    public var includeSubtypes: Bool
    public var targetName: QualifiedName

    public init(
        _ targetName: QualifiedName, referenceTypeId: NodeId = NodeId(33), isInverse: Bool = false,
        includeSubtypes: Bool = true
    ) {
        self.targetName = targetName
        self.referenceTypeId = referenceTypeId
        self.isInverse = isInverse
        self.includeSubtypes = includeSubtypes
    }

    func encode(to w: inout BinaryWriter) {
        w.write(referenceTypeId)
        w.write(isInverse)
        w.write(includeSubtypes)
        w.write(targetName)
    }
}

struct BrowsePath: BinaryEncodable, Sendable {
    var startingNode: NodeId
    var elements: [RelativePathElement]

    func encode(to w: inout BinaryWriter) {
        w.write(startingNode)
        w.write(array: elements)
    }
}

struct BrowsePathResult: BinaryDecodable, Sendable {
    var statusCode: StatusCode
    var targets: [(ExpandedNodeId, UInt32)]

    init(from r: inout BinaryReader) throws {
        statusCode = try r.read(StatusCode.self)
        targets =
            try r.readArray("BrowsePathTargets") { r in (try r.read(ExpandedNodeId.self), try r.readUInt32()) } ?? []
    }
}

struct TranslateBrowsePathsRequest: ServiceRequest {
    static let typeId: UInt32 = 554
    static let name = "TranslateBrowsePathsToNodeIds"
    var header = RequestHeader()
    var browsePaths: [BrowsePath]

    func encode(to w: inout BinaryWriter) {
        w.write(header)
        w.write(array: browsePaths)
    }

    struct Response: ServiceResponse {
        static let typeId: UInt32 = 557
        var header: ResponseHeader
        var results: [BrowsePathResult]

        init(from r: inout BinaryReader) throws {
            header = try r.read(ResponseHeader.self)
            results = try r.readArray(of: BrowsePathResult.self)
            _ = try r.readArray(of: DiagnosticInfo.self)
        }
    }
}

// MARK: - Subscriptions

struct CreateSubscriptionRequest: ServiceRequest {
    static let typeId: UInt32 = 787
    static let name = "CreateSubscription"
    var header = RequestHeader()
    var publishingInterval: Double
    var lifetimeCount: UInt32
    var maxKeepAliveCount: UInt32
    var maxNotificationsPerPublish: UInt32 = 0
    var priority: UInt8 = 0

    func encode(to w: inout BinaryWriter) {
        w.write(header)
        w.write(publishingInterval)
        w.write(lifetimeCount)
        w.write(maxKeepAliveCount)
        w.write(maxNotificationsPerPublish)
        w.write(true)  // publishingEnabled
        w.write(priority)
    }

    struct Response: ServiceResponse {
        static let typeId: UInt32 = 790
        var header: ResponseHeader
        var subscriptionId: UInt32
        var revisedPublishingInterval: Double
        var revisedLifetimeCount: UInt32
        var revisedMaxKeepAliveCount: UInt32

        init(from r: inout BinaryReader) throws {
            header = try r.read(ResponseHeader.self)
            subscriptionId = try r.readUInt32()
            revisedPublishingInterval = try r.readDouble()
            revisedLifetimeCount = try r.readUInt32()
            revisedMaxKeepAliveCount = try r.readUInt32()
        }
    }
}

/// Deadband of a DataChangeFilter.
public enum Deadband: Sendable, Hashable {
    case none
    /// Report only when |new − last reported| exceeds the value, in engineering units.
    case absolute(Double)
    /// Percentage of the EURange of the variable.
    case percent(Double)
}

/// What change of a monitored value is reported.
public enum DataChangeTrigger: UInt32, Sendable {
    case status = 0
    case statusValue = 1
    case statusValueTimestamp = 2
}

struct DataChangeFilter: BinaryEncodable {
    static let typeId: UInt32 = 724
    var trigger: DataChangeTrigger
    var deadband: Deadband

    func encode(to w: inout BinaryWriter) {
        w.write(trigger.rawValue)
        switch deadband {
        case .none:
            w.write(UInt32(0))
            w.write(0.0)
        case .absolute(let v):
            w.write(UInt32(1))
            w.write(v)
        case .percent(let v):
            w.write(UInt32(2))
            w.write(v)
        }
    }
}

struct MonitoredItemCreateRequest: BinaryEncodable, Sendable {
    var item: ReadValueId
    var clientHandle: UInt32
    var samplingInterval: Double
    var filter: ExtensionObject
    var queueSize: UInt32

    func encode(to w: inout BinaryWriter) {
        w.write(item)
        w.write(UInt32(2))  // monitoring mode: reporting
        w.write(clientHandle)
        w.write(samplingInterval)
        w.write(filter)
        w.write(queueSize)
        w.write(true)  // discardOldest
    }
}

struct MonitoredItemCreateResult: BinaryDecodable, Sendable {
    var statusCode: StatusCode
    var monitoredItemId: UInt32
    var revisedSamplingInterval: Double
    var revisedQueueSize: UInt32

    init(from r: inout BinaryReader) throws {
        statusCode = try r.read(StatusCode.self)
        monitoredItemId = try r.readUInt32()
        revisedSamplingInterval = try r.readDouble()
        revisedQueueSize = try r.readUInt32()
        _ = try r.read(ExtensionObject.self)
    }
}

struct CreateMonitoredItemsRequest: ServiceRequest {
    static let typeId: UInt32 = 751
    static let name = "CreateMonitoredItems"
    var header = RequestHeader()
    var subscriptionId: UInt32
    var timestampsToReturn: TimestampsToReturn
    var items: [MonitoredItemCreateRequest]

    func encode(to w: inout BinaryWriter) {
        w.write(header)
        w.write(subscriptionId)
        w.write(timestampsToReturn.rawValue)
        w.write(array: items)
    }

    struct Response: ServiceResponse {
        static let typeId: UInt32 = 754
        var header: ResponseHeader
        var results: [MonitoredItemCreateResult]

        init(from r: inout BinaryReader) throws {
            header = try r.read(ResponseHeader.self)
            results = try r.readArray(of: MonitoredItemCreateResult.self)
            _ = try r.readArray(of: DiagnosticInfo.self)
        }
    }
}

struct SubscriptionAcknowledgement: BinaryEncodable, Sendable, Hashable {
    var subscriptionId: UInt32
    var sequenceNumber: UInt32

    func encode(to w: inout BinaryWriter) {
        w.write(subscriptionId)
        w.write(sequenceNumber)
    }
}

struct PublishRequest: ServiceRequest {
    static let typeId: UInt32 = 826
    static let name = "Publish"
    var header = RequestHeader()
    var acknowledgements: [SubscriptionAcknowledgement]

    func encode(to w: inout BinaryWriter) {
        PublishRequest.encode(header: header, acknowledgements: acknowledgements, to: &w)
    }

    /// The request body from its parts, so that the client can encode it from the acknowledgements it keeps,
    /// without building the request.
    static func encode(header: RequestHeader, acknowledgements: [SubscriptionAcknowledgement], to w: inout BinaryWriter)
    {
        w.write(header)
        w.write(Int32(acknowledgements.count))
        var i = 0
        while i < acknowledgements.count {
            acknowledgements[i].encode(to: &w)
            i += 1
        }
    }

    struct Response: ServiceResponse {
        static let typeId: UInt32 = 829
        var header: ResponseHeader
        var subscriptionId: UInt32
        var availableSequenceNumbers: [UInt32]
        var moreNotifications: Bool
        var sequenceNumber: UInt32
        var publishTime: DateTime
        var notificationData: [ExtensionObject]
        var results: [StatusCode]

        init(from r: inout BinaryReader) throws {
            header = try r.read(ResponseHeader.self)
            subscriptionId = try r.readUInt32()
            availableSequenceNumbers =
                try r.readArray("AvailableSequenceNumbers", minElementSize: 4) { r in
                    try r.readUInt32()
                } ?? []
            moreNotifications = try r.readBool()
            sequenceNumber = try r.readUInt32()
            publishTime = try r.read(DateTime.self)
            notificationData = try r.readArray(of: ExtensionObject.self)
            results = try r.readArray(of: StatusCode.self)
            _ = try r.readArray(of: DiagnosticInfo.self)
        }
    }
}

struct DataChangeNotification: BinaryDecodable {
    static let typeId: UInt32 = 811
    var items: [(clientHandle: UInt32, value: DataValue)]

    init(from r: inout BinaryReader) throws {
        items =
            try r.readArray("MonitoredItems", minElementSize: 5) { r in
                (try r.readUInt32(), try r.read(DataValue.self))
            } ?? []
        _ = try r.readArray(of: DiagnosticInfo.self)
    }
}

struct StatusChangeNotification: BinaryDecodable {
    static let typeId: UInt32 = 820
    var status: StatusCode

    init(from r: inout BinaryReader) throws {
        status = try r.read(StatusCode.self)
        _ = try r.read(DiagnosticInfo.self)
    }
}

struct DeleteSubscriptionsRequest: ServiceRequest {
    static let typeId: UInt32 = 847
    static let name = "DeleteSubscriptions"
    var header = RequestHeader()
    var subscriptionIds: [UInt32]

    func encode(to w: inout BinaryWriter) {
        w.write(header)
        w.write(array: subscriptionIds) { w, v in w.write(v) }
    }

    struct Response: ServiceResponse {
        static let typeId: UInt32 = 850
        var header: ResponseHeader
        var results: [StatusCode]

        init(from r: inout BinaryReader) throws {
            header = try r.read(ResponseHeader.self)
            results = try r.readArray(of: StatusCode.self)
            _ = try r.readArray(of: DiagnosticInfo.self)
        }
    }
}
