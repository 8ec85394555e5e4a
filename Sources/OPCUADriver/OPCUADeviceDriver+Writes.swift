import Devices
import Foundation
import OPCUA
import Tags

// Checked writes, read back.
extension OPCUADeviceDriver {
    /// Checks the write against the tag's configuration (writable, limits, type), converts it to the exact built-in
    /// type the node holds, writes it and reads the value back. Runs on the caller's thread; blocks it for at most
    /// two request timeouts.
    public func writeTag(_ index: Int, _ value: TagValue) throws(DeviceWriteError) -> DeviceWriteOutcome {
        guard index >= 0, index < table.count else { throw .refused("no tag #\(index) on device \(device.name)") }
        let d = table.definitions[index]
        guard d.writable else { throw .refused("tag \(d.name) is not writable (set writable: true and limits)") }
        if d.type.isNumeric, let limits = d.limits {
            if case .string = value { throw .refused("expected a number for \(d.name), got '\(value)'") }
            guard let number = value.doubleValue else {
                throw .refused("expected a number for \(d.name), got '\(value)'")
            }
            guard limits.contains(number) else {
                throw .refused(
                    "\(formatDouble(number)) is outside the limits of \(d.name) "
                        + "(\(formatDouble(limits.minimum)) … \(formatDouble(limits.maximum)))")
            }
        }
        if d.type == .bool, value.doubleValue.map({ $0 != 0 && $0 != 1 }) ?? true {
            throw .refused("expected true or false for \(d.name), got '\(value)'")
        }
        let (c, node, known) = lock.withLock { (client, resolved[index], serverTypes[index]) }
        guard let c, c.state == .connected else {
            journalWriteFailure(index, "not connected")
            throw .failed("device \(device.name) is not connected")
        }
        guard let node else { throw .failed("tag \(d.name) has no node on the server (see edgepilot status)") }
        var serverType = known
        if serverType == nil {
            // Never written or read yet: ask the server what the node holds, so the Variant type is exact.
            do {
                let dv = try c.read([node])[0]
                if let t = dv.value.builtinType { serverType = (t, dv.value.isArray) }
            } catch {
                journalWriteFailure(index, "cannot read it to learn its type: \(error)")
                throw .failed("cannot read \(d.name) to learn its type: \(error)")
            }
        }
        guard let serverType else { throw .failed("\(d.name) has no value, so its type is unknown") }
        let variant = try OPCUAValues.variant(
            for: value, definition: d, serverType: serverType.type, array: serverType.array)
        let status: StatusCode
        do {
            status = try c.write([(node, variant)])[0]
        } catch {
            recordError("write \(d.name): \(error)")
            journalWriteFailure(index, "\(error)")
            throw .failed("\(error)")
        }
        guard status.isGood else {
            recordError("write \(d.name): \(status)")
            journalWriteFailure(index, "the server answered \(status)")
            throw .failed("the server answered \(status)")
        }
        statistics.withLock { $0.writes &+= 1 }
        journalWriteSucceeded(index)
        var readBack: TagValue?
        if let dv = try? c.read([node])[0] {
            let now = unixMicros()
            tableLock.withLock { store(DataValueView(dv), tag: index, now: now) }
            let sample = table.read(index)
            if sample.quality.isGood { readBack = table.value(of: index, sample) }
        }
        return DeviceWriteOutcome(
            detail: "Variant \(OPCUAValues.typeName(serverType.type))\(serverType.array ? "[]" : "")",
            readBack: readBack)
    }
}
