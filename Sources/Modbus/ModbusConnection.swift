import CModbus
import Tags

#if canImport(Glibc)
    import Glibc
#endif

/// Why a Modbus operation failed.
public enum ModbusError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The device did not answer within the response timeout.
    case timeout
    /// The device answered with Modbus exception `code` (1 illegal function, 2 illegal data address, …).
    case exception(code: UInt8)
    /// There is no open connection to the device.
    case disconnected
    /// The transport failed (connect refused, connection reset, …): `errno` and libmodbus' text for it.
    case io(errno: Int32, message: String)
    /// The device answered with something that is not a valid reply to the request.
    case invalidResponse(String)
    /// The request itself was rejected before sending (bad address, count, or context setup).
    case invalidRequest(String)

    public var description: String {
        switch self {
        case .timeout: return "timeout"
        case .exception(let code):
            return "Modbus exception \(code)\(modbusExceptionName(UInt32(code)).map { " (\($0))" } ?? "")"
        case .disconnected: return "not connected"
        case .io(let errno, let message): return "I/O error \(errno): \(message)"
        case .invalidResponse(let message): return "invalid response: \(message)"
        case .invalidRequest(let message): return "invalid request: \(message)"
        }
    }

    /// The tag quality a failed read gives the tags it should have delivered.
    public var quality: Quality {
        switch self {
        case .timeout: return Quality(.timeout)
        case .exception(let code): return Quality(.exception, detail: UInt32(code))
        case .disconnected, .io: return Quality(.disconnected)
        case .invalidResponse, .invalidRequest: return Quality(.decodeError)
        }
    }

    /// Whether the connection must be closed and reopened after this error.
    public var breaksConnection: Bool {
        switch self {
        case .disconnected, .io: return true
        default: return false
        }
    }

    /// Maps libmodbus' errno after a failed call.
    static func fromErrno(_ code: Int32) -> ModbusError {
        let base = Int32(MODBUS_ENOBASE)
        if code == ETIMEDOUT { return .timeout }
        if code > base && code <= base + Int32(MODBUS_EXCEPTION_GATEWAY_TARGET) {
            return .exception(code: UInt8(code - base))
        }
        let message = String(cString: modbus_strerror(code))
        if code > base { return .invalidResponse(message) }
        if code == EINVAL { return .invalidRequest(message) }
        return .io(errno: code, message: message)
    }
}

/// A thin wrapper over one libmodbus context (TCP or RTU), used by a single thread at a time.
///
/// Reads go into caller-provided buffers and nothing here allocates after `init`, so the poll path stays
/// fixed-memory. The response timeout comes from the device definition; libmodbus also applies it to TCP connect.
public final class ModbusConnection {
    public let device: DeviceDefinition
    private let context: OpaquePointer
    public private(set) var isConnected = false

    public init(device: DeviceDefinition) throws(ModbusError) {
        self.device = device
        let ctx: OpaquePointer?
        switch device.transport {
        case .modbusTCP(let host, let port):
            ctx = modbus_new_tcp_pi(host, String(port))
        case .modbusRTU(let path, let baud, let parity, let dataBits, let stopBits):
            ctx = modbus_new_rtu(path, Int32(baud), CChar(parity.letter.asciiValue!), Int32(dataBits), Int32(stopBits))
        case .opcua, .agent:
            throw .invalidRequest("device \(device.name) is not a Modbus device")
        }
        guard let ctx else {
            throw .invalidRequest("cannot create libmodbus context for \(device.name): \(Self.lastErrorText())")
        }
        context = ctx
        let timeout = max(1, device.timeoutMilliseconds)
        modbus_set_response_timeout(ctx, UInt32(timeout / 1000), UInt32((timeout % 1000) * 1000))
        // Byte timeout 0 would disable it; keep it equal to the response timeout for slow serial gateways.
        modbus_set_byte_timeout(ctx, UInt32(timeout / 1000), UInt32((timeout % 1000) * 1000))
        guard modbus_set_slave(ctx, Int32(device.unitID)) == 0 else {
            modbus_free(ctx)
            throw .invalidRequest("unit id \(device.unitID) rejected: \(Self.lastErrorText())")
        }
    }

    deinit {
        if isConnected { modbus_close(context) }
        modbus_free(context)
    }

    private static func lastErrorText() -> String { String(cString: modbus_strerror(ep_modbus_errno())) }

    public func connect() throws(ModbusError) {
        if isConnected { return }
        guard modbus_connect(context) == 0 else {
            let e = ep_modbus_errno()
            modbus_close(context)
            // A connect that runs into the response timeout is still a connection failure, not a device timeout.
            if e == ETIMEDOUT || e == EINPROGRESS {
                throw .io(errno: ETIMEDOUT, message: "connect timed out")
            }
            throw .io(errno: e, message: String(cString: modbus_strerror(e)))
        }
        isConnected = true
    }

    public func close() {
        if isConnected { modbus_close(context) }
        isConnected = false
    }

    /// Makes sure no late answer to an abandoned request can be taken for the answer to the next one.
    ///
    /// Over TCP a late reply may still be on its way after a timeout; flushing cannot catch it, so the socket is
    /// replaced (libmodbus would otherwise report a transaction-id mismatch on the next request). On a serial line
    /// the line is drained until it has been silent for one response timeout (see `drainSerialLine`).
    public func resynchronize() throws(ModbusError) {
        guard isConnected else { throw .disconnected }
        if case .modbusTCP = device.transport {
            close()
            try connect()
        } else {
            drainSerialLine()
        }
    }

    /// RTU frames carry no transaction id, so a reply that arrives after its request timed out is taken for the
    /// answer to the next request of the same function and size: a good-quality value in the wrong tag (seen with
    /// the simulator answering 150 ms after a 300 ms timeout). A flush right after the timeout misses such a reply,
    /// which is still on its way; so discard input until the line has been quiet for twice the response timeout.
    /// Once the quiet period was one timeout, and a fresh-clone run on a loaded machine still saw the wrong tag: the
    /// late reply, due 150 ms after the timeout, came more than 300 ms after it. The wait is on the fault path only.
    /// A reply later than that stays indistinguishable; the response timeout must cover the device.
    private func drainSerialLine() {
        let quiet = Int32(clamping: 2 * max(1, device.timeoutMilliseconds))
        var descriptor = pollfd(fd: modbus_get_socket(context), events: Int16(POLLIN), revents: 0)
        // Bounded, so a device that never stops talking cannot hold the poller forever.
        for _ in 0..<8 {
            _ = modbus_flush(context)
            if poll(&descriptor, 1, quiet) == 0 { return }
        }
        _ = modbus_flush(context)
    }

    /// Discards bytes still in flight (a late answer to a timed-out request) so they cannot pair with the next one.
    public func flush() {
        if isConnected { _ = modbus_flush(context) }
    }

    /// Function 1 or 2: reads `count` bits, one byte each, into `into`.
    public func readBits(_ area: ModbusArea, start: Int, count: Int, into: UnsafeMutablePointer<UInt8>)
        throws(ModbusError)
    {
        guard isConnected else { throw .disconnected }
        let rc =
            area == .coil
            ? modbus_read_bits(context, Int32(start), Int32(count), into)
            : modbus_read_input_bits(context, Int32(start), Int32(count), into)
        try check(rc, expected: count)
    }

    /// Function 3 or 4: reads `count` registers into `into`.
    public func readRegisters(_ area: ModbusArea, start: Int, count: Int, into: UnsafeMutablePointer<UInt16>)
        throws(ModbusError)
    {
        guard isConnected else { throw .disconnected }
        let rc =
            area == .holdingRegister
            ? modbus_read_registers(context, Int32(start), Int32(count), into)
            : modbus_read_input_registers(context, Int32(start), Int32(count), into)
        try check(rc, expected: count)
    }

    /// Reads the request's range into the buffer matching its area.
    @inline(__always)
    public func read(_ request: ReadRequest, registers: UnsafeMutablePointer<UInt16>, bits: UnsafeMutablePointer<UInt8>)
        throws(ModbusError)
    {
        if request.area.isBitArea {
            try readBits(request.area, start: request.start, count: request.count, into: bits)
        } else {
            try readRegisters(request.area, start: request.start, count: request.count, into: registers)
        }
    }

    /// Function 5.
    public func writeCoil(_ address: Int, _ value: Bool) throws(ModbusError) {
        guard isConnected else { throw .disconnected }
        try check(modbus_write_bit(context, Int32(address), value ? 1 : 0), expected: 1)
    }

    /// Function 6.
    public func writeRegister(_ address: Int, _ value: UInt16) throws(ModbusError) {
        guard isConnected else { throw .disconnected }
        try check(modbus_write_register(context, Int32(address), value), expected: 1)
    }

    /// Function 15: one byte per bit.
    public func writeCoils(_ address: Int, _ values: UnsafeBufferPointer<UInt8>) throws(ModbusError) {
        guard isConnected else { throw .disconnected }
        try check(
            modbus_write_bits(context, Int32(address), Int32(values.count), values.baseAddress), expected: values.count)
    }

    /// Function 16.
    public func writeRegisters(_ address: Int, _ values: UnsafeBufferPointer<UInt16>) throws(ModbusError) {
        guard isConnected else { throw .disconnected }
        try check(
            modbus_write_registers(context, Int32(address), Int32(values.count), values.baseAddress),
            expected: values.count)
    }

    @inline(__always)
    private func check(_ rc: Int32, expected: Int) throws(ModbusError) {
        if rc == Int32(expected) { return }
        if rc >= 0 { throw .invalidResponse("expected \(expected) items, got \(rc)") }
        let error = ModbusError.fromErrno(ep_modbus_errno())
        if error.breaksConnection { close() }
        throw error
    }
}
