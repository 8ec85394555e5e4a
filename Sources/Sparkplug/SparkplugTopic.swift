/// A topic of the Sparkplug B namespace: `spBv1.0/<group>/<type>/<edge node>[/<device>]` (chapter 4).
public struct SparkplugTopic: Sendable, Hashable, CustomStringConvertible {
    /// The message types an edge node and its devices send or receive.
    public enum MessageType: String, Sendable, Hashable, CaseIterable {
        case nbirth = "NBIRTH"
        case ndeath = "NDEATH"
        case ndata = "NDATA"
        case ncmd = "NCMD"
        case dbirth = "DBIRTH"
        case ddeath = "DDEATH"
        case ddata = "DDATA"
        case dcmd = "DCMD"

        var isDeviceMessage: Bool { [.dbirth, .ddeath, .ddata, .dcmd].contains(self) }
    }

    public static let namespace = "spBv1.0"

    public var groupID: String
    public var messageType: MessageType
    public var edgeNodeID: String
    public var deviceID: String?

    public init(groupID: String, messageType: MessageType, edgeNodeID: String, deviceID: String? = nil) {
        self.groupID = groupID
        self.messageType = messageType
        self.edgeNodeID = edgeNodeID
        self.deviceID = deviceID
    }

    /// The MQTT topic string.
    public var description: String {
        var s = "\(Self.namespace)/\(groupID)/\(messageType.rawValue)/\(edgeNodeID)"
        if let deviceID { s += "/\(deviceID)" }
        return s
    }

    /// Parses a node or device topic; STATE topics are not edge node topics and are rejected.
    public init(parsing topic: String) throws(SparkplugError) {
        let parts = topic.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 4 || parts.count == 5, parts[0] == Self.namespace,
            let type = MessageType(rawValue: parts[2]), type.isDeviceMessage == (parts.count == 5),
            parts[1...].allSatisfy({ !$0.isEmpty })
        else {
            throw .invalidTopic(topic)
        }
        self.init(
            groupID: parts[1], messageType: type, edgeNodeID: parts[3], deviceID: parts.count == 5 ? parts[4] : nil)
    }

    /// The Primary Host's STATE topic (`spBv1.0/STATE/<host id>`, Sparkplug 3.0).
    public static func state(hostID: String) -> String { "\(namespace)/STATE/\(hostID)" }

    /// Group, edge node, device and host IDs: non-empty UTF-8 without the MQTT separators and wildcards
    /// `/`, `+`, `#` (tck-id-topic-structure-namespace-valid-group-id and its edge node / device siblings).
    public static func validateID(_ id: String, role: String) throws(SparkplugError) {
        guard !id.isEmpty, !id.contains(where: { $0 == "/" || $0 == "+" || $0 == "#" }) else {
            throw .invalidRequest("\(role) '\(id)' must be non-empty and must not contain '/', '+' or '#'")
        }
    }
}
