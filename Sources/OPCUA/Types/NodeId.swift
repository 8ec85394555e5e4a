import Foundation

/// An OPC UA NodeId: a namespace index plus a numeric, string, GUID or opaque identifier.
public struct NodeId: Hashable, Sendable, CustomStringConvertible {
    /// The identifier part of a NodeId.
    public enum Identifier: Hashable, Sendable {
        case numeric(UInt32)
        case string(String)
        case guid(UUID)
        case opaque([UInt8])
    }

    public var namespace: UInt16
    public var identifier: Identifier

    public init(namespace: UInt16 = 0, _ identifier: Identifier) {
        self.namespace = namespace
        self.identifier = identifier
    }

    public init(_ numeric: UInt32, namespace: UInt16 = 0) {
        self.init(namespace: namespace, .numeric(numeric))
    }

    public init(_ string: String, namespace: UInt16) {
        self.init(namespace: namespace, .string(string))
    }

    public static let null = NodeId(0)

    public var isNull: Bool { self == .null }

    /// Parses the standard text form `ns=2;s=Name`, `i=85`, `ns=1;g=<uuid>`, `ns=3;b=<base64>`.
    public init(parsing text: String) throws {
        var rest = Substring(text)
        var ns: UInt16 = 0
        if rest.hasPrefix("ns=") {
            guard let semi = rest.firstIndex(of: ";"),
                let n = UInt16(rest[rest.index(rest.startIndex, offsetBy: 3)..<semi])
            else { throw OPCUAError.invalidArgument("NodeId '\(text)': expected ns=<0-65535>; before the identifier") }
            ns = n
            rest = rest[rest.index(after: semi)...]
        }
        guard rest.count >= 2, rest.dropFirst().first == "=" else {
            throw OPCUAError.invalidArgument("NodeId '\(text)': expected i=, s=, g= or b= identifier")
        }
        let value = String(rest.dropFirst(2))
        switch rest.first {
        case "i":
            guard let v = UInt32(value) else { throw OPCUAError.invalidArgument("NodeId '\(text)': bad numeric id") }
            self.init(namespace: ns, .numeric(v))
        case "s": self.init(namespace: ns, .string(value))
        case "g":
            guard let u = UUID(uuidString: value) else {
                throw OPCUAError.invalidArgument("NodeId '\(text)': bad GUID")
            }
            self.init(namespace: ns, .guid(u))
        case "b":
            guard let d = Data(base64Encoded: value) else {
                throw OPCUAError.invalidArgument("NodeId '\(text)': bad base64 opaque id")
            }
            self.init(namespace: ns, .opaque([UInt8](d)))
        default: throw OPCUAError.invalidArgument("NodeId '\(text)': expected i=, s=, g= or b= identifier")
        }
    }

    public var description: String {
        let prefix = namespace == 0 ? "" : "ns=\(namespace);"
        switch identifier {
        case .numeric(let v): return prefix + "i=\(v)"
        case .string(let s): return prefix + "s=\(s)"
        case .guid(let g): return prefix + "g=\(g.uuidString.lowercased())"
        case .opaque(let b): return prefix + "b=\(Data(b).base64EncodedString())"
        }
    }
}

extension NodeId: BinaryCodable {
    /// Encodes with the flag bits of an ExpandedNodeId or'ed into the encoding byte.
    func encode(to w: inout BinaryWriter, flags: UInt8) {
        switch identifier {
        case .numeric(let v) where namespace == 0 && v <= 0xFF:
            w.write(0x00 | flags)
            w.write(UInt8(v))
        case .numeric(let v) where namespace <= 0xFF && v <= 0xFFFF:
            w.write(0x01 | flags)
            w.write(UInt8(namespace))
            w.write(UInt16(v))
        case .numeric(let v):
            w.write(0x02 | flags)
            w.write(namespace)
            w.write(v)
        case .string(let s):
            w.write(0x03 | flags)
            w.write(namespace)
            w.write(string: s)
        case .guid(let g):
            w.write(0x04 | flags)
            w.write(namespace)
            w.write(g)
        case .opaque(let b):
            w.write(0x05 | flags)
            w.write(namespace)
            w.write(byteString: b)
        }
    }

    func encode(to w: inout BinaryWriter) { encode(to: &w, flags: 0) }

    init(from r: inout BinaryReader) throws {
        let (id, flags) = try NodeId.decode(from: &r)
        if flags != 0 { throw r.error("NodeId encoding byte has ExpandedNodeId flags 0x\(String(flags, radix: 16))") }
        self = id
    }

    static func decode(from r: inout BinaryReader) throws -> (NodeId, UInt8) {
        let b = try r.readUInt8()
        let flags = b & 0xC0
        switch b & 0x3F {
        case 0x00: return (NodeId(UInt32(try r.readUInt8())), flags)
        case 0x01:
            let ns = UInt16(try r.readUInt8())
            return (NodeId(UInt32(try r.readUInt16()), namespace: ns), flags)
        case 0x02:
            let ns = try r.readUInt16()
            return (NodeId(try r.readUInt32(), namespace: ns), flags)
        case 0x03:
            let ns = try r.readUInt16()
            return (NodeId(namespace: ns, .string(try r.readString() ?? "")), flags)
        case 0x04:
            let ns = try r.readUInt16()
            return (NodeId(namespace: ns, .guid(try r.read(UUID.self))), flags)
        case 0x05:
            let ns = try r.readUInt16()
            return (NodeId(namespace: ns, .opaque(try r.readByteString() ?? [])), flags)
        default:
            throw r.error("unknown NodeId encoding 0x\(String(b, radix: 16))")
        }
    }
}

/// A NodeId that may name its namespace by URI and live on another server.
public struct ExpandedNodeId: Hashable, Sendable, CustomStringConvertible {
    public var nodeId: NodeId
    public var namespaceUri: String?
    public var serverIndex: UInt32

    public init(_ nodeId: NodeId, namespaceUri: String? = nil, serverIndex: UInt32 = 0) {
        self.nodeId = nodeId
        self.namespaceUri = namespaceUri
        self.serverIndex = serverIndex
    }

    public var description: String {
        var s = serverIndex != 0 ? "svr=\(serverIndex);" : ""
        if let namespaceUri { s += "nsu=\(namespaceUri);" }
        return s + nodeId.description
    }
}

extension ExpandedNodeId: BinaryCodable {
    func encode(to w: inout BinaryWriter) {
        let flags: UInt8 = (namespaceUri != nil ? 0x80 : 0) | (serverIndex != 0 ? 0x40 : 0)
        nodeId.encode(to: &w, flags: flags)
        if let namespaceUri { w.write(string: namespaceUri) }
        if serverIndex != 0 { w.write(serverIndex) }
    }

    init(from r: inout BinaryReader) throws {
        let (id, flags) = try NodeId.decode(from: &r)
        nodeId = id
        namespaceUri = flags & 0x80 != 0 ? try r.readString() : nil
        serverIndex = flags & 0x40 != 0 ? try r.readUInt32() : 0
    }
}

extension UUID: BinaryCodable {
    /// OPC UA GUIDs put Data1–Data3 little-endian and Data4 as-is; UUID stores RFC 4122 big-endian order.
    func encode(to w: inout BinaryWriter) {
        let u = uuid
        w.write(raw: [u.3, u.2, u.1, u.0, u.5, u.4, u.7, u.6, u.8, u.9, u.10, u.11, u.12, u.13, u.14, u.15])
    }

    init(from r: inout BinaryReader) throws {
        let b = try r.readRaw(16)
        self.init(
            uuid: (b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15])
        )
    }
}
