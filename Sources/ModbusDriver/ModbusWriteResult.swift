import Modbus
import Tags

/// Why a write did not happen or did not succeed.
public enum ModbusWriteError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Refused before reaching the device.
    case refused(WriteRefusal)
    /// The device or the connection failed the write.
    case device(ModbusError)
    /// The poller is not running, so nothing can carry the write.
    case notRunning
    /// The poller did not perform the write within the caller's timeout; it will not be performed later.
    case timedOut

    public var description: String {
        switch self {
        case .refused(let r): return "write refused: \(r)"
        case .device(let e): return "write failed: \(e)"
        case .notRunning: return "write failed: the device's poller is not running"
        case .timedOut: return "write failed: not performed in time (device busy or unreachable)"
        }
    }
}

/// The outcome of a successful write.
public struct ModbusWriteResult: Sendable, Equatable {
    /// The Modbus function used (5, 6 or 16).
    public var functionCode: UInt8
    /// The tag's value read back right after the write (nil if the read-back failed).
    public var readBack: TagValue?
    public var readBackQuality: Quality
}
