// Walking encoded values without building them.
//
// The in-place decoders (DataValueView, the Publish and Read response walkers) must accept exactly what the
// building decoders (`Variant(from:)`, `DataValue(from:)`, …) accept, and stop at the same byte, or a value could
// pass validation here and then fail (or differ) when decoded in full. Each function below mirrors one building
// decoder check for check: the same length caps and minimum element sizes, the same nesting accounting, the same
// errors. FuzzTests compares the two on mutated input.

extension BinaryReader {
    mutating func skipBytes(_ what: String) throws {
        guard let n = try readLength(what, cap: limits.maxStringLength, minElementSize: 1) else { return }
        try skip(n)
    }

    /// Mirrors `readString()`; returns the content range, nil for the null string.
    mutating func skipString() throws -> Range<Int>? {
        guard let n = try readLength("String", cap: limits.maxStringLength, minElementSize: 1) else { return nil }
        let start = position
        try skip(n)
        return start..<position
    }

    /// Mirrors `readByteString()`; returns the content range, nil for the null ByteString.
    mutating func skipByteString() throws -> Range<Int>? {
        guard let n = try readLength("ByteString", cap: limits.maxStringLength, minElementSize: 1) else {
            return nil
        }
        let start = position
        try skip(n)
        return start..<position
    }

    /// Mirrors `NodeId.decode(from:)`; returns the ExpandedNodeId flag bits.
    mutating func skipNodeIdBody() throws -> UInt8 {
        let b = try readUInt8()
        switch b & 0x3F {
        case 0x00: try skip(1)
        case 0x01: try skip(3)
        case 0x02: try skip(6)
        case 0x03:
            try skip(2)
            _ = try skipString()
        case 0x04: try skip(2 + 16)
        case 0x05:
            try skip(2)
            _ = try skipByteString()
        default: throw error("unknown NodeId encoding 0x\(String(b, radix: 16))")
        }
        return b & 0xC0
    }

    /// Mirrors `NodeId(from:)`, which refuses ExpandedNodeId flags.
    mutating func skipNodeId() throws {
        let flags = try skipNodeIdBody()
        if flags != 0 { throw error("NodeId encoding byte has ExpandedNodeId flags 0x\(String(flags, radix: 16))") }
    }

    /// Reads a NodeId only if it is numeric in namespace 0 (the encoding ids of services and structures), without
    /// building other forms; returns nil for any other NodeId, which the caller treats as "not one of mine".
    mutating func readNumericTypeId() throws -> UInt32? {
        try need(1, "NodeId")
        let b = bytes[position]
        if b > 0x02 {
            try skipNodeId()
            return nil
        }
        try skip(1)
        switch b {
        case 0x00: return UInt32(try readUInt8())
        case 0x01:
            let ns = try readUInt8()
            let id = UInt32(try readUInt16())
            return ns == 0 ? id : nil
        default:
            let ns = try readUInt16()
            let id = try readUInt32()
            return ns == 0 ? id : nil
        }
    }

    /// Mirrors `ExpandedNodeId(from:)`.
    mutating func skipExpandedNodeId() throws {
        let flags = try skipNodeIdBody()
        if flags & 0x80 != 0 { _ = try skipString() }
        if flags & 0x40 != 0 { try skip(4) }
    }

    /// Mirrors `QualifiedName(from:)`.
    mutating func skipQualifiedName() throws {
        try skip(2)
        _ = try skipString()
    }

    /// Mirrors `LocalizedText(from:)`.
    mutating func skipLocalizedText() throws {
        let mask = try readUInt8()
        if mask & 1 != 0 { _ = try skipString() }
        if mask & 2 != 0 { _ = try skipString() }
    }

    /// Mirrors `ExtensionObject(from:)`.
    mutating func skipExtensionObject() throws {
        try skipNodeId()
        switch try readUInt8() {
        case 0: break
        case 1: _ = try skipByteString()
        case 2: _ = try skipString()
        case let e: throw error("ExtensionObject encoding byte \(e) is not 0, 1 or 2")
        }
    }

    /// Mirrors `DiagnosticInfo(from:)`, including its nesting.
    mutating func skipDiagnosticInfo() throws {
        let mask = try readUInt8()
        if mask & 0x01 != 0 { try skip(4) }
        if mask & 0x02 != 0 { try skip(4) }
        if mask & 0x08 != 0 { try skip(4) }
        if mask & 0x04 != 0 { try skip(4) }
        if mask & 0x10 != 0 { _ = try skipString() }
        if mask & 0x20 != 0 { try skip(4) }
        if mask & 0x40 != 0 { try nested { r in try r.skipDiagnosticInfo() } }
    }

    /// Mirrors `readArray(of: DiagnosticInfo.self)` (minimum element size 1).
    mutating func skipDiagnosticInfoArray() throws {
        guard let n = try readLength("DiagnosticInfo[]", cap: limits.maxArrayLength, minElementSize: 1) else {
            return
        }
        var i = 0
        while i < n {
            try skipDiagnosticInfo()
            i += 1
        }
    }

    /// Mirrors `readArray(of: StatusCode.self)`: the count is checked with a minimum element size of 1, then each
    /// element must be there.
    mutating func skipStatusCodeArray() throws {
        guard let n = try readLength("StatusCode[]", cap: limits.maxArrayLength, minElementSize: 1) else { return }
        try need(n * 4, "StatusCode[]")
        try skip(n * 4)
    }

    /// Mirrors `DataValue(from:)`.
    mutating func skipDataValue() throws {
        let mask = try readUInt8()
        if mask & 0x01 != 0 { try skipVariant() }
        if mask & 0x02 != 0 { try skip(4) }
        if mask & 0x04 != 0 { try skip(8) }
        if mask & 0x10 != 0 { try skip(2) }
        if mask & 0x08 != 0 { try skip(8) }
        if mask & 0x20 != 0 { try skip(2) }
    }

    /// Mirrors `Variant(from:)`, which counts one nesting level.
    mutating func skipVariant() throws {
        try nested { r in
            let mask = try r.readUInt8()
            try r.skipVariantBody(mask: mask)
        }
    }

    /// Mirrors `Variant.decodeVariant` after its mask byte; the caller accounts for the nesting level.
    mutating func skipVariantBody(mask: UInt8) throws {
        let typeByte = mask & 0x3F
        if typeByte == 0 {
            if mask & 0x80 != 0 { try skip(4) }
            return
        }
        guard let type = BuiltinType(rawValue: typeByte) else {
            throw error("Variant type \(typeByte) is not a built-in type")
        }
        if mask & 0x80 == 0 {
            if mask & 0x40 != 0 { throw error("Variant has dimensions but no array flag") }
            if type == .variant { throw error("scalar Variant inside a Variant") }
            return try skipScalar(type)
        }
        let count =
            try readLength(
                "Variant array", cap: limits.maxArrayLength, minElementSize: Variant.minimumEncodedSize(type))
            ?? 0
        var i = 0
        while i < count {
            if type == .variant { try skipVariant() } else { try skipScalar(type) }
            i += 1
        }
        if mask & 0x40 != 0 {
            let dims = try readLength("ArrayDimensions", cap: limits.maxArrayLength, minElementSize: 4) ?? 0
            var product = 1
            var k = 0
            while k < dims {
                let d = try readInt32()
                if d < 0 { throw error("negative array dimension \(d)") }
                product = product.multipliedReportingOverflow(by: Int(d)).partialValue
                k += 1
            }
            if product != count { throw error("ArrayDimensions do not match \(count) elements") }
        }
    }

    /// Mirrors `Variant.decodeScalar`.
    mutating func skipScalar(_ t: BuiltinType) throws {
        switch t {
        case .boolean, .sbyte, .byte: try skip(1)
        case .int16, .uint16: try skip(2)
        case .int32, .uint32, .float, .statusCode: try skip(4)
        case .int64, .uint64, .double, .dateTime: try skip(8)
        case .guid: try skip(16)
        case .string, .xmlElement: _ = try skipString()
        case .byteString: _ = try skipByteString()
        case .nodeId: try skipNodeId()
        case .expandedNodeId: try skipExpandedNodeId()
        case .qualifiedName: try skipQualifiedName()
        case .localizedText: try skipLocalizedText()
        case .extensionObject: try skipExtensionObject()
        case .dataValue: try nested { r in try r.skipDataValue() }
        case .diagnosticInfo: try skipDiagnosticInfo()
        case .variant: try skipVariant()
        }
    }

    /// Mirrors `ResponseHeader(from:)`; returns the ServiceResult.
    mutating func skipResponseHeader() throws -> StatusCode {
        try skip(8 + 4)
        let result = StatusCode(try readUInt32())
        try skipDiagnosticInfo()
        if let n = try readLength("StringTable", cap: limits.maxArrayLength, minElementSize: 1) {
            var i = 0
            while i < n {
                _ = try skipString()
                i += 1
            }
        }
        try skipExtensionObject()
        return result
    }
}
