import Modbus
import Synchronization
import Tags

// Poll cycles: each request read (with retries, split when the device refuses it) and decoded into the table.
extension ModbusPoller {
    /// Runs one poll cycle of group `group` on the calling thread, connecting first if needed; returns the number
    /// of requests that failed (all of them when the device cannot be reached).
    ///
    /// The polling thread uses the same path. Meant for tests and benchmarks that measure a cycle on their own
    /// thread; never call it while the poller is started.
    @discardableResult
    public func pollOnce(group: Int = 0) -> Int {
        precondition(!running.load(ordering: .acquiring), "pollOnce while the poller thread runs")
        if !connection.isConnected && !tryConnect() { return plans[group].requests.count }
        return runCycle(group)
    }

    @discardableResult
    func runCycle(_ g: Int) -> Int {
        cycleObserver?(true)
        let started = monotonicNanoseconds()
        var plan = activePlans[g]
        var sent = 0
        var failed = 0
        var r = 0
        while r < plan.requests.count {
            if pendingCount.load(ordering: .relaxed) > 0 { serveWrites() }
            guard connection.isConnected, !isStopping else {
                failed += plan.requests.count - r
                break
            }
            let (attempts, ok, refusedAddress) = performRead(plan, r)
            sent += attempts
            if refusedAddress, let split = plan.splitting(request: r) {
                // Read the pieces at once (the same index now holds the first of them); from now on they replace it.
                let request = plan.requests[r]
                let pieces = split.requests.count - plan.requests.count + 1
                logSplit(request, pieces: pieces)
                activePlans[g] = split
                plan = split
                continue
            }
            if !ok { failed += 1 }
            r += 1
        }
        let duration = monotonicNanoseconds() - started
        statistics.withLock {
            $0.polls &+= 1
            $0.requests &+= UInt64(sent)
            $0.lastCycleNanoseconds = duration
            $0.cycleDurations.record(nanoseconds: duration)
            $0.lastRequestsPerCycle = sent
        }
        cycleObserver?(false)
        return failed
    }

    /// Reads request `r` (with retries on timeout) and updates its tags; returns requests sent, success, and
    /// whether the device refused a request of several tags as an illegal data address (the caller splits it).
    func performRead(_ plan: ReadPlan, _ r: Int) -> (Int, Bool, Bool) {
        let request = plan.requests[r]
        var attempts = 0
        while true {
            attempts += 1
            do {
                try connection.read(request, registers: registers, bits: bits)
                confirmLink()
                decode(plan, request)
                return (attempts, true, false)
            } catch {
                if case .exception = error { confirmLink() }
                if error == .exception(code: 2) && request.entryRange.count > 1 {
                    statistics.withLock { $0.exceptions &+= 1 }
                    return (attempts, false, true)
                }
                var failure = error
                if error == .timeout || isInvalidResponse(error) {
                    do {
                        try connection.resynchronize()
                        if error == .timeout && attempts <= device.retries && !isStopping { continue }
                    } catch {
                        failure = error
                    }
                }
                handleReadError(failure, plan, request)
                return (attempts, false, false)
            }
        }
    }

    @inline(__always)
    private func decode(_ plan: ReadPlan, _ request: ReadRequest) {
        let timestamp = unixMicroseconds()
        for k in request.entryRange {
            let e = plan.entries[k]
            let value: SampleValue?
            if request.area.isBitArea {
                value = RegisterCodec.decodeBit(bits[e.offset])
            } else {
                value = RegisterCodec.decode(
                    registers: registers + e.offset, type: e.type, order: e.order, scaling: e.scaling, text: text)
            }
            guard let value else {
                table.markQuality(e.tag, Quality(.decodeError), timestamp: timestamp)
                continue
            }
            let sample = TagSample(value: value, quality: .good, timestamp: timestamp)
            if case .text(let length) = value {
                table.update(e.tag, sample, text: UnsafeRawBufferPointer(rebasing: text[0..<length]))
            } else {
                table.update(e.tag, sample)
            }
        }
    }

    private func logSplit(_ request: ReadRequest, pieces: Int) {
        let text =
            "\(request.area.rawValue) \(request.start)+\(request.count): exception 2 (illegal data address); "
            + "reading it as \(pieces) requests from now on"
        statistics.withLock {
            $0.lastError = text
            $0.lastErrorTime = unixMicroseconds()
            $0.splitRequests &+= 1
        }
        // `edgepilot status` shows it as the device's last error, so a technician sees why requests per cycle rose.
    }

    func isInvalidResponse(_ error: ModbusError) -> Bool {
        if case .invalidResponse = error { return true }
        return false
    }

    private func handleReadError(_ error: ModbusError, _ plan: ReadPlan, _ request: ReadRequest) {
        var text = "\(request.area.rawValue) \(request.start)+\(request.count): \(error)"
        // On a serial line a wrong address or line setting looks exactly like a dead device: silence. Say what to check.
        if error == .timeout,
            case .modbusRTU(let port, let baud, let parity, let dataBits, let stopBits) = device.transport
        {
            text +=
                " (no answer from unit \(device.unitID) on \(port) at \(baud)-\(dataBits)\(parity.letter)\(stopBits): "
                + "check the unit id, baud rate, parity and stop bits against the device, and the A/B wiring)"
        }
        recordError(text, error: error)
        if error == .timeout { noteTimeout(text) }
        if error.breaksConnection {
            connection.close()
            markAll(Quality(.disconnected))
            return
        }
        let timestamp = unixMicroseconds()
        for k in request.entryRange { table.markQuality(plan.entries[k].tag, error.quality, timestamp: timestamp) }
    }
}
