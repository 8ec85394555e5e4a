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
    /// Taken off the write queue more than `agent.write_limits.max_age` after it was queued: not carried out, so a
    /// write that waited behind a slow device never reaches the PLC late.
    case expired(waitedMilliseconds: Int, maxAgeMilliseconds: Int)
    /// The device's write queue already held `agent.write_limits.max_queue` writes.
    case queueFull(Int)

    public var description: String {
        switch self {
        case .refused(let r): return "write refused: \(r)"
        case .device(let e): return "write failed: \(e)"
        case .notRunning: return "write failed: the device's poller is not running"
        case .timedOut: return "write failed: not performed in time (device busy or unreachable)"
        case .expired(let waited, let maxAge):
            return "write expired: waited \(waited) ms in the device's write queue, over write_limits.max_age "
                + "(\(maxAge) ms); not written"
        case .queueFull(let n):
            return "write failed: the device's write queue is full (\(n) writes waiting, write_limits.max_queue)"
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
