/// The data type of a tag as the plant engineer configures it; it decides how raw device data is decoded.
public enum TagDataType: Sendable, Hashable, CustomStringConvertible {
    case bool
    case int16, uint16, int32, uint32, int64, uint64
    case float32, float64
    /// ASCII text packed two characters per 16-bit register, high byte first.
    case string(registers: Int)

    /// Number of 16-bit registers one value occupies (1 for bits, which live in the bit areas).
    public var registerCount: Int {
        switch self {
        case .bool, .int16, .uint16: return 1
        case .int32, .uint32, .float32: return 2
        case .int64, .uint64, .float64: return 4
        case .string(let registers): return registers
        }
    }

    /// Whether a value of this type is a number that scaling and deadbands apply to.
    public var isNumeric: Bool {
        switch self {
        case .bool, .string: return false
        default: return true
        }
    }

    /// Bytes a text value can take in the tag table (0 for non-text types).
    public var textCapacity: Int {
        if case .string(let registers) = self { return registers * 2 }
        return 0
    }

    public var description: String {
        switch self {
        case .bool: return "bool"
        case .int16: return "int16"
        case .uint16: return "uint16"
        case .int32: return "int32"
        case .uint32: return "uint32"
        case .int64: return "int64"
        case .uint64: return "uint64"
        case .float32: return "float32"
        case .float64: return "float64"
        case .string(let n): return "string(\(n))"
        }
    }

    /// Parses the config spelling: `bool`, `int16` … `float64`, `string(N)` or `stringN`.
    public init?(configName: String) {
        switch configName.lowercased() {
        case "bool", "boolean": self = .bool
        case "int16": self = .int16
        case "uint16": self = .uint16
        case "int32": self = .int32
        case "uint32": self = .uint32
        case "int64": self = .int64
        case "uint64": self = .uint64
        case "float32", "float", "real": self = .float32
        case "float64", "double", "lreal": self = .float64
        default:
            let lower = configName.lowercased()
            guard lower.hasPrefix("string") else { return nil }
            let digits = lower.dropFirst("string".count).filter { $0.isNumber }
            guard let n = Int(String(digits)), n > 0, n <= 125 else { return nil }
            self = .string(registers: n)
        }
    }
}

/// A tag value as users see it: engineering units after scaling, or the device's own type when unscaled.
public enum TagValue: Sendable, Equatable, CustomStringConvertible {
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case string(String)

    /// The value as a number, when it is one (booleans count as 0/1 so they can drive numeric consumers).
    public var doubleValue: Double? {
        switch self {
        case .bool(let b): return b ? 1 : 0
        case .int(let i): return Double(i)
        case .uint(let u): return Double(u)
        case .double(let d): return d
        case .string: return nil
        }
    }

    public var description: String {
        switch self {
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .uint(let u): return String(u)
        case .double(let d): return formatDouble(d)
        case .string(let s): return s
        }
    }
}

/// Shortest round-tripping text for a double, without a trailing ".0" on integral values users would find noisy.
public func formatDouble(_ d: Double) -> String {
    if d.isFinite, d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
    return String(d)
}

/// Whether a tag's current value can be trusted, and if not, why.
///
/// A plain value type with no heap storage, so the poll path can pass it around without allocating.
public struct Quality: Sendable, Hashable, CustomStringConvertible {
    /// The reason behind a quality.
    public enum Code: UInt8, Sendable, Hashable, CaseIterable {
        case good = 0
        /// No read has completed since the agent started or the tag was configured.
        case waitingForInitialData = 1
        /// The device is not connected (connect failed or the connection dropped).
        case disconnected = 2
        /// The device did not answer in time.
        case timeout = 3
        /// The device answered with a Modbus exception; `detail` holds the exception code.
        case exception = 4
        /// The device answered but the data could not be decoded as configured.
        case decodeError = 5
        /// The device reported a bad status for the value; `detail` holds the device's status code.
        case deviceStatus = 6
        /// The value is older than its consumer accepts.
        case stale = 7
        /// The device or tag is disabled in the configuration.
        case outOfService = 8
        /// The device reported the value as uncertain; `detail` holds the device's status code.
        case uncertain = 9
    }

    public var code: Code
    /// Extra information for the code (Modbus exception code, OPC UA status code bits).
    public var detail: UInt32

    public init(_ code: Code, detail: UInt32 = 0) {
        self.code = code
        self.detail = detail
    }

    public static let good = Quality(.good)
    public static let waitingForInitialData = Quality(.waitingForInitialData)

    public var isGood: Bool { code == .good }

    public var description: String {
        switch code {
        case .good: return "good"
        case .waitingForInitialData: return "bad (waiting for initial data)"
        case .disconnected: return "bad (disconnected)"
        case .timeout: return "bad (timeout)"
        case .exception: return "bad (exception \(detail)\(modbusExceptionName(detail).map { ": " + $0 } ?? ""))"
        case .decodeError: return "bad (decode error)"
        case .deviceStatus: return "bad (device status 0x\(String(detail, radix: 16, uppercase: true)))"
        case .stale: return "bad (stale)"
        case .outOfService: return "bad (out of service)"
        case .uncertain: return "uncertain (0x\(String(detail, radix: 16, uppercase: true)))"
        }
    }

    /// A short machine-friendly name for JSON output and history.
    public var name: String {
        switch code {
        case .good: return "good"
        case .waitingForInitialData: return "waiting_for_initial_data"
        case .disconnected: return "disconnected"
        case .timeout: return "timeout"
        case .exception: return "exception_\(detail)"
        case .decodeError: return "decode_error"
        case .deviceStatus: return "device_status"
        case .stale: return "stale"
        case .outOfService: return "out_of_service"
        case .uncertain: return "uncertain"
        }
    }
}

/// The names the Modbus specification gives its exception codes.
public func modbusExceptionName(_ code: UInt32) -> String? {
    switch code {
    case 1: return "illegal function"
    case 2: return "illegal data address"
    case 3: return "illegal data value"
    case 4: return "server device failure"
    case 5: return "acknowledge"
    case 6: return "server device busy"
    case 8: return "memory parity error"
    case 10: return "gateway path unavailable"
    case 11: return "gateway target failed to respond"
    default: return nil
    }
}
