import Tags

/// What `edgepilot modbus probe` read from a device.
public struct ModbusProbeResult: Sendable, Equatable {
    public var area: ModbusArea
    public var address: Int
    /// The registers as received (register areas; empty for bit areas).
    public var registers: [UInt16]
    /// The bits as received (bit areas; empty for register areas).
    public var bits: [Bool]
    /// The values decoded from consecutive groups of registers when a type was given, one per whole value.
    public var decoded: [TagValue]
}

/// Reads a device directly, without the daemon, for commissioning: connects, reads `count` registers or bits of
/// `area` from `address`, and — when `type` is given — decodes consecutive values of that type in `order`.
///
/// A decode that fails (non-ASCII text) throws `ModbusError.invalidResponse` naming the offset, so the engineer sees
/// the data does not match the assumed type rather than a silently wrong number.
public func modbusProbe(
    device: DeviceDefinition, area: ModbusArea, address: Int, count: Int, type: TagDataType? = nil,
    order: WordOrder = .abcd
) throws(ModbusError) -> ModbusProbeResult {
    let limit = area.isBitArea ? 2000 : 125
    guard count >= 1 && count <= limit else {
        throw .invalidRequest("count \(count) is outside 1…\(limit) for \(area.rawValue)")
    }
    guard address >= 0 && address + count <= 65_536 else {
        throw .invalidRequest("address \(address) + count \(count) is outside 0…65535")
    }
    if let type, area.isBitArea, type != .bool {
        throw .invalidRequest("\(area.rawValue) holds bits; type \(type) needs a register area")
    }
    let connection = try ModbusConnection(device: device)
    try connection.connect()
    defer { connection.close() }
    var result = ModbusProbeResult(area: area, address: address, registers: [], bits: [], decoded: [])
    if area.isBitArea {
        var raw = [UInt8](repeating: 0, count: count)
        try raw.withUnsafeMutableBufferPointer { (b) throws(ModbusError) in
            try connection.readBits(area, start: address, count: count, into: b.baseAddress!)
        }
        result.bits = raw.map { $0 != 0 }
        if type != nil { result.decoded = result.bits.map { .bool($0) } }
        return result
    }
    var words = [UInt16](repeating: 0, count: count)
    try words.withUnsafeMutableBufferPointer { (b) throws(ModbusError) in
        try connection.readRegisters(area, start: address, count: count, into: b.baseAddress!)
    }
    result.registers = words
    guard let type else { return result }
    let size = type.registerCount
    var text = [UInt8](repeating: 0, count: 2 * max(size, 1))
    var offset = 0
    while offset + size <= count {
        let value = words.withUnsafeBufferPointer { w in
            text.withUnsafeMutableBytes { t in
                RegisterCodec.decode(
                    registers: w.baseAddress! + offset, type: type, order: order, scaling: nil, text: t)
            }
        }
        switch value {
        case nil:
            throw .invalidResponse("registers at \(address + offset) are not a valid \(type)")
        case .some(.text(let length)):
            result.decoded.append(.string(String(decoding: text.prefix(length), as: UTF8.self)))
        case .some(let v):
            if let tagValue = tagValue(v) { result.decoded.append(tagValue) }
        }
        offset += size
    }
    return result
}

private func tagValue(_ v: SampleValue) -> TagValue? {
    switch v {
    case .none, .text: return nil
    case .bool(let b): return .bool(b)
    case .int(let i): return .int(i)
    case .uint(let u): return .uint(u)
    case .double(let d): return .double(d)
    }
}
