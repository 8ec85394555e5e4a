import Devices
import Tags

extension ModbusPoller: DeviceDriver {
    public func writeTag(_ index: Int, _ value: TagValue) throws(DeviceWriteError) -> DeviceWriteOutcome {
        do {
            let result = try write(tag: index, value)
            return DeviceWriteOutcome(detail: "function \(result.functionCode)", readBack: result.readBack)
        } catch {
            if case .refused = error { throw .refused("\(error)".replacingPrefix("write refused: ")) }
            if case .expired = error { throw .expired("\(error)".replacingPrefix("write expired: ")) }
            throw .failed("\(error)".replacingPrefix("write failed: "))
        }
    }

    public var driverStatus: DeviceDriverStatus {
        let s = stats
        var d = DeviceDriverStatus()
        d.state = s.state.rawValue
        d.connects = s.connects
        d.reconnects = s.connects > 0 ? s.connects - 1 : 0
        d.polls = s.polls
        d.requests = s.requests
        d.errors = s.errors
        d.timeouts = s.timeouts
        d.exceptions = s.exceptions
        d.writes = s.writes
        d.writesExpired = s.writesExpired
        d.writesDropped = s.writesDropped
        d.lastError = s.lastError
        d.lastErrorTime = s.lastErrorTime
        d.requestsPerCycle = s.lastRequestsPerCycle
        d.lastCycleNanoseconds = s.lastCycleNanoseconds
        d.cycleDurations = s.cycleDurations
        d.notAnsweringSince = s.notAnsweringSince
        return d
    }

    public var fastestPollPeriodMilliseconds: Int? { groups.map(\.periodMilliseconds).min() }

    /// Takes effect when the next cycle is scheduled; the sleeping thread is woken so a shorter period does not
    /// wait out the longer one first.
    public func scalePollPeriods(by factor: Double) {
        guard factor.isFinite, factor > 0 else { return }
        periodScale.store(factor.bitPattern, ordering: .relaxed)
        rescaled.store(true, ordering: .releasing)
        waker.signal()
    }
}

extension String {
    package func replacingPrefix(_ prefix: String) -> String {
        hasPrefix(prefix) ? String(dropFirst(prefix.count)) : self
    }

}
