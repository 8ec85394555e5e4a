import Foundation
import Testing

@testable import OPCUA

@Suite struct EncodingTests {
    private func encode<T: BinaryEncodable>(_ v: T) -> [UInt8] {
        var w = BinaryWriter()
        v.encode(to: &w)
        return w.bytes
    }

    private func roundTrip<T: BinaryCodable & Equatable>(
        _ v: T, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let bytes = encode(v)
        var r = BinaryReader(bytes)
        #expect(try T(from: &r) == v, sourceLocation: sourceLocation)
        #expect(r.isAtEnd, "trailing bytes after \(v)", sourceLocation: sourceLocation)
    }

    static let guid = UUID(uuidString: "72962B91-FA75-4AE6-8D28-B404DC7DAF63")!

    /// One sample of every built-in type (extremes where they matter).
    static let scalars: [Variant] = [
        .boolean(true), .sbyte(-128), .byte(255), .int16(.min), .uint16(.max), .int32(.min), .uint32(.max),
        .int64(.min), .uint64(.max), .float(-1.5e-7), .double(.pi), .string("Grüße ✓"),
        .dateTime(DateTime(ticks: 133_000_000_000_000_123)), .guid(guid), .byteString([0, 1, 2, 255]),
        .xmlElement("<a b=\"1\"/>"), .nodeId(NodeId("Tank.h1", namespace: 2)),
        .expandedNodeId(ExpandedNodeId(NodeId(1234), namespaceUri: "urn:x", serverIndex: 3)),
        .statusCode(.badTypeMismatch), .qualifiedName(QualifiedName(namespace: 2, "Name")),
        .localizedText(LocalizedText("Hallo", locale: "de-DE")),
        .extensionObject(ExtensionObject(typeId: NodeId(724), body: .binary([1, 2, 3]))),
        .dataValue(DataValue(.int32(7), status: .uncertain, sourceTimestamp: DateTime(ticks: 5))),
        .diagnosticInfo(
            {
                var d = DiagnosticInfo()
                d.symbolicId = 3
                d.additionalInfo = "x"
                var inner = DiagnosticInfo()
                inner.innerStatusCode = .badTimeout
                d.innerDiagnosticInfo = inner
                return d
            }()),
    ]

    @Test("Every built-in type round-trips as scalar and array")
    func everyBuiltinTypeRoundTripsAsScalarAndArray() throws {
        #expect(Set(EncodingTests.scalars.compactMap { $0.builtinType }).count == 24)  // all but Variant
        for v in EncodingTests.scalars {
            try roundTrip(v)
            let arr = Variant.array(try VariantArray(v.builtinType!, [v, v, v]))
            try roundTrip(arr)
        }
        // Arrays of Variant (type 24) may mix element types.
        try roundTrip(Variant.array(try VariantArray(.variant, [.int32(1), .string("two"), .double(3)])))
        try roundTrip(Variant.null)
    }

    @Test("Matrix keeps dimensions")
    func matrixKeepsDimensions() throws {
        let m = Variant.array(try VariantArray(.double, (1...6).map { .double(Double($0)) }, dimensions: [2, 3]))
        let bytes = encode(m)
        #expect(bytes[0] == (11 | 0x80 | 0x40))
        try roundTrip(m)
        #expect(throws: (any Error).self) { try VariantArray(.double, [.double(1)], dimensions: [2, 3]) }
        #expect(throws: (any Error).self) { try VariantArray(.double, [.int32(1)]) }
    }

    @Test("NodeId compact encodings")
    func nodeIdCompactEncodings() throws {
        #expect(encode(NodeId(85)) == [0x00, 85])
        #expect(encode(NodeId(1025, namespace: 5)) == [0x01, 5, 0x01, 0x04])
        #expect(encode(NodeId(70000, namespace: 1)) == [0x02, 1, 0, 0x70, 0x11, 0x01, 0x00])
        #expect(encode(NodeId(5, namespace: 300)) == [0x02, 0x2C, 0x01, 5, 0, 0, 0])
        #expect(encode(NodeId("ab", namespace: 2)) == [0x03, 2, 0, 2, 0, 0, 0, 0x61, 0x62])
        #expect(encode(NodeId(namespace: 1, .opaque([9, 8]))) == [0x05, 1, 0, 2, 0, 0, 0, 9, 8])
        // OPC 10000-6 §5.1.3: Data1..Data3 little-endian, Data4 as bytes.
        #expect(
            encode(NodeId(namespace: 0, .guid(EncodingTests.guid))) == [
                0x04, 0, 0, 0x91, 0x2B, 0x96, 0x72, 0x75, 0xFA, 0xE6, 0x4A, 0x8D, 0x28, 0xB4, 0x04, 0xDC, 0x7D, 0xAF,
                0x63,
            ])
        for id in [
            NodeId(0), NodeId(255), NodeId(256), NodeId(65535, namespace: 255), NodeId(65536, namespace: 255),
            NodeId(UInt32.max, namespace: UInt16.max), NodeId("", namespace: 0), NodeId(namespace: 7, .guid(UUID())),
            NodeId(namespace: 7, .opaque([])),
        ] {
            try roundTrip(id)
        }
        // An ExpandedNodeId's flag bits are rejected where a plain NodeId is expected.
        var r = BinaryReader([0x80, 85, 0, 0, 0, 0])
        #expect(throws: (any Error).self) { try NodeId(from: &r) }
    }

    @Test("ExpandedNodeId flags")
    func expandedNodeIdFlags() throws {
        #expect(encode(ExpandedNodeId(NodeId(1))) == [0x00, 1])
        #expect(encode(ExpandedNodeId(NodeId(1), serverIndex: 2)) == [0x40, 1, 2, 0, 0, 0])
        #expect(encode(ExpandedNodeId(NodeId(1), namespaceUri: "u")) == [0x80, 1, 1, 0, 0, 0, 0x75])
        try roundTrip(ExpandedNodeId(NodeId("s", namespace: 3), namespaceUri: "urn:a", serverIndex: 9))
    }

    @Test("NodeId text form")
    func nodeIdTextForm() throws {
        #expect(try NodeId(parsing: "i=85") == NodeId(85))
        #expect(try NodeId(parsing: "ns=2;s=QuadTank.h1") == NodeId("QuadTank.h1", namespace: 2))
        #expect(
            try NodeId(parsing: "ns=1;g=72962b91-fa75-4ae6-8d28-b404dc7daf63")
                == NodeId(namespace: 1, .guid(EncodingTests.guid)))
        #expect(try NodeId(parsing: "ns=3;b=AQI=") == NodeId(namespace: 3, .opaque([1, 2])))
        for id in [NodeId(85), NodeId("a;b=c", namespace: 4), NodeId(namespace: 1, .opaque([0xFF]))] {
            #expect(try NodeId(parsing: id.description) == id)
        }
        for bad in ["", "x=1", "ns=;i=1", "ns=70000;i=1", "i=abc", "g=nope"] {
            #expect(throws: (any Error).self, "\(bad)") { try NodeId(parsing: bad) }
        }
    }

    @Test("DataValue mask and field order")
    func dataValueMaskAndFieldOrder() throws {
        let dv = DataValue(
            .double(1), status: .badNodeIdUnknown, sourceTimestamp: DateTime(ticks: 1),
            serverTimestamp: DateTime(ticks: 2),
            sourcePicoseconds: 3, serverPicoseconds: 4)
        let bytes = encode(dv)
        #expect(bytes[0] == 0x3F)
        // value(1+8) status(4) sourceTs(8) sourcePico(2) serverTs(8) serverPico(2)
        #expect(Array(bytes[14..<22]) == [1, 0, 0, 0, 0, 0, 0, 0])
        #expect(Array(bytes[22..<24]) == [3, 0])
        #expect(Array(bytes[24..<32]) == [2, 0, 0, 0, 0, 0, 0, 0])
        try roundTrip(dv)
        #expect(encode(DataValue()) == [0])
    }

    @Test("Strings and nulls")
    func stringsAndNulls() throws {
        var w = BinaryWriter()
        w.write(string: nil)
        w.write(string: "")
        w.write(byteString: nil)
        #expect(w.bytes == [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF])
        var r = BinaryReader(w.bytes)
        #expect(try r.readString() == nil)
        #expect(try r.readString() == "")
        #expect(try r.readByteString() == nil)
    }

    @Test("DateTime epochs")
    func dateTimeEpochs() throws {
        #expect(DateTime(Date(timeIntervalSince1970: 0)).ticks == 116_444_736_000_000_000)
        let d = Date(timeIntervalSince1970: 1_700_000_000.5)
        #expect(abs(DateTime(d).date.timeIntervalSince1970 - d.timeIntervalSince1970) <= 1e-6)
    }

    @Test("Status code names")
    func statusCodeNames() throws {
        #expect(StatusCode.badSessionIdInvalid.name == "BadSessionIdInvalid")
        #expect(StatusCode(0x8022_0000).name == "BadSecureChannelIdInvalid")
        #expect(StatusCode(0x8013_0000).name == "BadSecurityChecksFailed")
        #expect(StatusCode(0x801A_0000).name == "BadCertificateUntrusted")
        #expect(StatusCode(0x8078_0000).name == "BadTooManyPublishRequests")
        #expect(StatusCode(0x0000_0000).name == "Good")
        #expect(StatusCode(0x8074_0400).name == "BadTypeMismatch")  // info bits ignored
        #expect(StatusCode(0x80FF_0000).name == "Bad")  // unknown code: severity only
        #expect(StatusCode(0x4092_0000).isUncertain)
        #expect(StatusCode.badTypeMismatch.description == "BadTypeMismatch (0x80740000)")
    }

    @Test("Service fault is decoded with name")
    func serviceFaultIsDecodedWithName() throws {
        var w = BinaryWriter()
        w.write(NodeId(397))
        w.write(DateTime(ticks: 1))
        w.write(UInt32(7))
        w.write(StatusCode.badSessionIdInvalid)
        w.write(UInt8(0))  // diagnostics
        w.write(Int32(-1))  // string table
        w.write(ExtensionObject.null)
        if let e = #expect(
            throws: (any Error).self,
            performing: { try SecureChannel.decodeResponse(ReadRequest.self, w.bytes, limits: DecodingLimits()) })
        {
            #expect(e as? OPCUAError == .serviceFault(service: "Read", status: .badSessionIdInvalid))
            #expect("\(e)".contains("BadSessionIdInvalid"))
        }
    }

    @Test("Endpoint URL parsing")
    func endpointUrlParsing() throws {
        let a = try EndpointAddress(url: "opc.tcp://127.0.0.1:4841/path/x")
        #expect(a.host == "127.0.0.1")
        #expect(a.port == 4841)
        #expect(try EndpointAddress(url: "opc.tcp://plc").port == 4840)
        #expect(try EndpointAddress(url: "opc.tcp://[::1]:5000/").host == "::1")
        #expect(throws: (any Error).self) { try EndpointAddress(url: "http://x:1") }
        #expect(throws: (any Error).self) { try EndpointAddress(url: "opc.tcp://x:99999") }
    }

    @Test("P_SHA256 known answer")
    func pSHA256KnownAnswer() throws {
        // RFC 5246 style P_SHA256 test vector (from the IETF TLS WG, "test vectors for TLS 1.2 PRF" without label).
        let secret: [UInt8] = [
            0x9b, 0xbe, 0x43, 0x6b, 0xa9, 0x40, 0xf0, 0x17, 0xb1, 0x76, 0x52, 0x84, 0x9a, 0x71, 0xdb, 0x35,
        ]
        let seed =
            Array("test label".utf8) + [
                0xa0, 0xba, 0x9f, 0x93, 0x6c, 0xda, 0x31, 0x18, 0x27, 0xa6, 0xf7, 0x96, 0xff, 0xd5, 0x19, 0x8c,
            ]
        let out = SymmetricKeys.pSHA256(secret: secret, seed: seed, length: 16)
        #expect(
            out == [0xe3, 0xf2, 0x29, 0xba, 0x72, 0x7b, 0xe1, 0x7b, 0x8d, 0x12, 0x26, 0x20, 0x55, 0x7c, 0xd4, 0x53])
    }
}
