import Modbus
import Synchronization
import Tags

// Writes: checked on the caller's thread, queued, performed by the polling thread between reads and read back.
extension ModbusPoller {
    /// Writes `value` (engineering units) to tag `index` and returns once the device confirmed it and the tag was
    /// read back; callable from any thread.
    ///
    /// The value is checked first — tag writable, area writable, inside the tag's limits, right type and range —
    /// and refused with a reason otherwise, so an invalid write never reaches the PLC. Blocks the caller (never
    /// another device) for at most `timeout`; a write that could not start in time is dropped, not left queued.
    public func write(tag index: Int, _ value: TagValue, timeout: Duration? = nil) throws(ModbusWriteError)
        -> ModbusWriteResult
    {
        let operation = try prepareWrite(index, value)
        guard running.load(ordering: .acquiring), !isStopping else { throw .notRunning }
        let perAttempt = Int64(max(1, device.timeoutMilliseconds)) * 1_000_000
        let wait =
            timeout.map { Int64($0.components.seconds) * 1_000_000_000 + $0.components.attoseconds / 1_000_000_000 }
            ?? (perAttempt * Int64(2 * (device.retries + 1) + 2))
        let ticket = PendingWrite(operation)
        let limit = max(1, device.writeLimits.maxQueue)
        let admitted = pending.withLock { list -> Bool in
            guard list.count < limit else { return false }
            list.append(ticket)
            return true
        }
        guard admitted else {
            statistics.withLock { $0.writesDropped &+= 1 }
            throw .queueFull(limit)
        }
        pendingCount.add(1, ordering: .releasing)
        waker.signal()
        guard let result = ticket.await(until: monotonicNanoseconds() + wait) else { throw .timedOut }
        return try result.get()
    }

    private func prepareWrite(_ index: Int, _ value: TagValue) throws(ModbusWriteError) -> WriteOperation {
        guard index >= 0 && index < table.count, let entry = entryByTag[index] else {
            throw .refused(.unknownTag(index >= 0 && index < table.count ? table.definitions[index].name : "#\(index)"))
        }
        let d = table.definitions[index]
        guard d.writable else { throw .refused(.notWritable(tag: d.name)) }
        guard case .modbus(let area, let address) = d.source else { throw .refused(.notModbus(tag: d.name)) }
        guard area.isWritable else { throw .refused(.readOnlyArea(tag: d.name, area: area)) }
        if let limits = d.limits, d.type.isNumeric {
            if case .string = value {
                throw .refused(.typeMismatch(expected: "a number for \(d.type)", got: value.description))
            }
            guard let number = value.doubleValue else {
                throw .refused(.typeMismatch(expected: "a number for \(d.type)", got: value.description))
            }
            guard limits.contains(number) else {
                throw .refused(.outsideLimits(tag: d.name, value: number, limits: limits))
            }
        }
        do {
            if area.isBitArea {
                return WriteOperation(
                    tag: index, entry: entry, area: area, address: address, words: [],
                    bit: try RegisterCodec.encodeBool(value))
            }
            var words = [UInt16](repeating: 0, count: d.type.registerCount)
            try words.withUnsafeMutableBufferPointer { (buffer) throws(WriteRefusal) in
                try RegisterCodec.encode(value, type: d.type, order: d.order, scaling: entry.scaling, into: buffer)
            }
            return WriteOperation(tag: index, entry: entry, area: area, address: address, words: words, bit: false)
        } catch {
            throw .refused(error)
        }
    }

    func serveWrites() {
        guard pendingCount.load(ordering: .acquiring) > 0 else { return }
        let maxAge = Int64(max(1, device.writeLimits.maxAgeMilliseconds)) * 1_000_000
        while let ticket = pending.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) {
            pendingCount.subtract(1, ordering: .relaxed)
            guard ticket.begin() else { continue }
            // Checked as each write is taken: a write that waited behind a slow poll must not reach the PLC late.
            let waited = monotonicNanoseconds() - ticket.queuedAt
            if waited > maxAge {
                statistics.withLock { $0.writesExpired &+= 1 }
                ticket.complete(
                    .failure(
                        .expired(
                            waitedMilliseconds: Int(waited / 1_000_000),
                            maxAgeMilliseconds: device.writeLimits.maxAgeMilliseconds)))
                continue
            }
            ticket.complete(perform(ticket.operation))
        }
    }

    private func perform(_ op: WriteOperation) -> Result<ModbusWriteResult, ModbusWriteError> {
        let function: UInt8
        do {
            if op.area.isBitArea {
                function = 5
                try connection.writeCoil(op.address, op.bit)
            } else if op.words.count == 1 {
                function = 6
                try connection.writeRegister(op.address, op.words[0])
            } else {
                function = 16
                try op.words.withUnsafeBufferPointer { (b) throws(ModbusError) in
                    try connection.writeRegisters(op.address, b)
                }
            }
        } catch {
            if case .exception = error { confirmLink() }
            if error == .timeout || isInvalidResponse(error) { try? connection.resynchronize() }
            let text = "write \(table.definitions[op.tag].name): \(error)"
            recordError(text, error: error)
            // A frozen PLC times out writes as well as reads; while writes queue up (a loop's MVs and heartbeat)
            // the poller may do few reads, so a timed-out write counts toward "not answering" too.
            if error == .timeout { noteTimeout(text) }
            statistics.withLock { $0.writeErrors &+= 1 }
            if error.breaksConnection { markAll(Quality(.disconnected)) }
            return .failure(.device(error))
        }
        confirmLink()
        statistics.withLock { $0.writes &+= 1 }
        // Read back at once so consumers see the new value without waiting for the next poll.
        let request = ReadRequest(
            area: op.area, start: op.address, count: op.area.isBitArea ? 1 : op.entry.type.registerCount,
            entryRange: 0..<1)
        var entry = op.entry
        entry.offset = 0
        entry.request = 0
        let plan = ReadPlan(single: request, entry: entry)
        let (_, ok, _) = performRead(plan, 0)
        let sample = table.read(op.tag)
        return .success(
            ModbusWriteResult(
                functionCode: function, readBack: ok ? table.value(of: op.tag, sample) : nil,
                readBackQuality: sample.quality))
    }

    func failPendingWrites(_ error: ModbusWriteError) {
        guard pendingCount.load(ordering: .acquiring) > 0 else { return }
        let tickets = pending.withLock { list in
            defer { list.removeAll() }
            return list
        }
        pendingCount.subtract(tickets.count, ordering: .relaxed)
        for t in tickets where t.begin() { t.complete(.failure(error)) }
    }
}
