import Modbus
import Synchronization
import Tags

#if canImport(Glibc)
    import Glibc
#endif

/// What a poller is doing about its connection.
public enum ModbusConnectionState: String, Sendable {
    case idle
    case connecting
    case connected
    /// Waiting out the reconnect backoff after a failed connect or a dropped connection.
    case backingOff = "backing_off"
    case stopped
    /// The device is disabled in the configuration; its tags are out of service.
    case disabled
}

/// Counters and health of one poller, readable from any thread.
public struct ModbusPollerStatistics: Sendable, Equatable {
    public var state: ModbusConnectionState = .idle
    public var connects: UInt64 = 0
    public var connectFailures: UInt64 = 0
    /// Completed poll cycles (all groups).
    public var polls: UInt64 = 0
    public var requests: UInt64 = 0
    /// Failed requests and connects.
    public var errors: UInt64 = 0
    public var timeouts: UInt64 = 0
    public var exceptions: UInt64 = 0
    /// Requests the device refused as spanning unmapped addresses, now read in pieces.
    public var splitRequests: UInt64 = 0
    public var writes: UInt64 = 0
    public var writeErrors: UInt64 = 0
    /// Poll cycles that started later than one period after they were due (skipped, not queued).
    public var overruns: UInt64 = 0
    public var lastError: String?
    /// Unix microseconds of `lastError`.
    public var lastErrorTime: Int64 = 0
    public var lastCycleNanoseconds: Int64 = 0
    /// Requests the last poll cycle sent (including retries).
    public var lastRequestsPerCycle: Int = 0
    /// The backoff the poller is currently waiting out, in milliseconds (0 when connected).
    public var backoffMilliseconds: Int = 0
}

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

/// Polls one Modbus device on a dedicated thread and keeps its tags in the `TagTable` current.
///
/// Why a thread and not a task: libmodbus calls block for up to the response timeout, so each device gets its own
/// thread and a slow or dead device can only ever stall itself (see docs/decisions/0001-threading-model.md).
/// Poll groups run on an absolute monotonic schedule (a late cycle does not shift later ones; missed cycles are
/// skipped and counted). All buffers are allocated up front: a steady-state poll cycle allocates nothing.
///
/// Failures map to tag quality: exception answers give that request's tags `exception(code)`; a timeout is retried
/// `retries` times, then the request's tags go `timeout`; a lost connection makes every tag of the device
/// `disconnected` and the poller reconnects with exponential backoff (`reconnectMin…Max`, equal jitter).
///
/// Writes (`write(tag:_:)`) may come from any thread: they are validated on the caller's thread, then executed by
/// the poller between two reads, and the tag is read back at once.
public final class ModbusPoller: @unchecked Sendable {
    public let device: DeviceDefinition
    public let table: TagTable
    /// The read plan of each poll group, in the order given to `init`, as planned from the configuration.
    public let plans: [ReadPlan]
    // What the poller thread reads: `plans`, with the requests the device refused as spanning unmapped addresses
    // split into pieces it accepts (see `ReadPlan.splitting`). Touched only by the polling thread.
    private var activePlans: [ReadPlan]
    public let groups: [PollGroup]

    private let connection: ModbusConnection
    private let deviceTags: [Int]
    private let entryByTag: [Int: PlanEntry]
    private let periods: [Int64]
    private let nextDue: UnsafeMutablePointer<Int64>
    private let registers: UnsafeMutablePointer<UInt16>
    private let bits: UnsafeMutablePointer<UInt8>
    private let text: UnsafeMutableRawBufferPointer
    private let cycleObserver: (@Sendable (_ starting: Bool) -> Void)?

    private let statistics = Mutex(ModbusPollerStatistics())
    private let waker = Waker()
    private let stopping = Atomic<Bool>(false)
    private let running = Atomic<Bool>(false)
    private let pendingCount = Atomic<Int>(0)
    private let pending = Mutex<[PendingWrite]>([])
    private var thread: pthread_t?
    private var backoffNanoseconds: Int64 = 0
    private var random = SystemRandomNumberGenerator()

    private static let registerCapacity = 125
    private static let bitCapacity = 2000

    /// Builds the read plans of `device`'s Modbus tags in `table`, one per poll group that has tags.
    ///
    /// `cycleObserver`, if given, is called on the polling thread right before (`true`) and after (`false`) every
    /// poll cycle; benchmarks use it to count allocations on that thread.
    public init(
        device: DeviceDefinition, pollGroups: [PollGroup], table: TagTable,
        cycleObserver: (@Sendable (_ starting: Bool) -> Void)? = nil
    ) throws(ReadPlanError) {
        self.device = device
        self.table = table
        self.cycleObserver = cycleObserver
        var byGroup: [String: [(index: Int, definition: TagDefinition)]] = [:]
        var tags: [Int] = []
        for (i, d) in table.definitions.enumerated() where d.device == device.name {
            guard case .modbus = d.source else { continue }
            guard pollGroups.contains(where: { $0.name == d.pollGroup }) else {
                throw ReadPlanError(tag: d.name, reason: "poll group \(d.pollGroup) is not defined")
            }
            byGroup[d.pollGroup, default: []].append((i, d))
            tags.append(i)
        }
        deviceTags = tags
        var plans: [ReadPlan] = []
        var groups: [PollGroup] = []
        var entries: [Int: PlanEntry] = [:]
        for group in pollGroups {
            guard let members = byGroup[group.name] else { continue }
            let plan = try ReadPlan(device: device, tags: members)
            for e in plan.entries { entries[e.tag] = e }
            plans.append(plan)
            groups.append(group)
        }
        self.plans = plans
        activePlans = plans
        self.groups = groups
        entryByTag = entries
        periods = groups.map { Int64(max(1, $0.periodMilliseconds)) * 1_000_000 }
        nextDue = .allocate(capacity: max(1, groups.count))
        nextDue.initialize(repeating: 0, count: max(1, groups.count))
        do {
            connection = try ModbusConnection(device: device)
        } catch {
            nextDue.deallocate()
            throw ReadPlanError(tag: "(device \(device.name))", reason: error.description)
        }
        registers = .allocate(capacity: Self.registerCapacity)
        registers.initialize(repeating: 0, count: Self.registerCapacity)
        bits = .allocate(capacity: Self.bitCapacity)
        bits.initialize(repeating: 0, count: Self.bitCapacity)
        text = .allocate(byteCount: 2 * Self.registerCapacity, alignment: 8)
        text.initializeMemory(as: UInt8.self, repeating: 0)
    }

    deinit {
        stop()
        nextDue.deallocate()
        registers.deallocate()
        bits.deallocate()
        text.deallocate()
    }

    /// A snapshot of the counters.
    public var stats: ModbusPollerStatistics { statistics.withLock { $0 } }

    /// Indices (in the tag table) of the tags this poller owns.
    public var tagIndices: [Int] { deviceTags }

    // MARK: - Thread

    /// Starts the polling thread (or, for a disabled device, marks its tags out of service).
    public func start() {
        guard !running.load(ordering: .acquiring) else { return }
        guard device.enabled else {
            markAll(Quality(.outOfService))
            statistics.withLock { $0.state = .disabled }
            return
        }
        stopping.store(false, ordering: .releasing)
        running.store(true, ordering: .releasing)
        let box = Unmanaged.passRetained(self)
        var t = pthread_t()
        let rc = pthread_create(
            &t, nil,
            { raw in
                let poller = Unmanaged<ModbusPoller>.fromOpaque(raw!).takeRetainedValue()
                poller.run()
                return nil
            }, box.toOpaque())
        precondition(rc == 0, "cannot create poller thread: \(rc)")
        thread = t
    }

    /// Stops polling: wakes the thread (also out of a backoff), joins it and closes the connection.
    ///
    /// Returns after at most one in-flight request's response timeout.
    public func stop() {
        guard let t = thread else { return }
        stopping.store(true, ordering: .releasing)
        waker.signal()
        pthread_join(t, nil)
        thread = nil
        running.store(false, ordering: .releasing)
        failPendingWrites(.notRunning)
        connection.close()
        statistics.withLock { $0.state = .stopped }
    }

    private var isStopping: Bool { stopping.load(ordering: .acquiring) }

    private func run() {
        var nextConnect = monotonicNanoseconds()
        while !isStopping {
            let now = monotonicNanoseconds()
            if !connection.isConnected {
                if now >= nextConnect {
                    if tryConnect() {
                        for g in 0..<groups.count { nextDue[g] = monotonicNanoseconds() }
                        continue
                    }
                    nextConnect = monotonicNanoseconds() + jitteredBackoff()
                }
                failPendingWrites(.device(.disconnected))
                waker.wait(until: nextConnect)
                continue
            }
            serveWrites()
            guard connection.isConnected else {
                nextConnect = monotonicNanoseconds()
                continue
            }
            var earliest = 0
            for g in 1..<max(1, groups.count) where nextDue[g] < nextDue[earliest] { earliest = g }
            guard !groups.isEmpty else {
                waker.wait(until: now + 3_600_000_000_000)
                continue
            }
            let due = nextDue[earliest]
            if due > now {
                waker.wait(until: due)
                continue
            }
            runCycle(earliest)
            // Absolute schedule: the next cycle is due one period after this one was due, never after it ran.
            let period = periods[earliest]
            var next = due + period
            let after = monotonicNanoseconds()
            if next <= after {
                let missed = (after - next) / period + 1
                next += missed * period
                statistics.withLock { $0.overruns &+= UInt64(missed) }
            }
            nextDue[earliest] = next
            if !connection.isConnected { nextConnect = monotonicNanoseconds() }
        }
        statistics.withLock { $0.state = .stopped }
    }

    private func tryConnect() -> Bool {
        statistics.withLock { $0.state = .connecting }
        do {
            try connection.connect()
            backoffNanoseconds = 0
            statistics.withLock {
                $0.state = .connected
                $0.connects &+= 1
                $0.backoffMilliseconds = 0
            }
            return true
        } catch {
            markAll(error.quality)
            recordError("connect to \(device.name) failed: \(error)", connectFailure: true)
            return false
        }
    }

    /// Exponential backoff with equal jitter: half the step is fixed, half random, so many agents that lost the
    /// same device do not reconnect in lockstep.
    private func jitteredBackoff() -> Int64 {
        let minimum = Int64(max(1, device.reconnectMinMilliseconds)) * 1_000_000
        let maximum = max(minimum, Int64(device.reconnectMaxMilliseconds) * 1_000_000)
        backoffNanoseconds = backoffNanoseconds == 0 ? minimum : min(maximum, backoffNanoseconds * 2)
        let half = backoffNanoseconds / 2
        let delay = half + Int64.random(in: 0...half, using: &random)
        statistics.withLock {
            $0.state = .backingOff
            $0.backoffMilliseconds = Int(delay / 1_000_000)
        }
        return delay
    }

    // MARK: - Polling

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
    private func runCycle(_ g: Int) -> Int {
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
            $0.lastRequestsPerCycle = sent
        }
        cycleObserver?(false)
        return failed
    }

    /// Reads request `r` (with retries on timeout) and updates its tags; returns requests sent, success, and
    /// whether the device refused a request of several tags as an illegal data address (the caller splits it).
    private func performRead(_ plan: ReadPlan, _ r: Int) -> (Int, Bool, Bool) {
        let request = plan.requests[r]
        var attempts = 0
        while true {
            attempts += 1
            do {
                try connection.read(request, registers: registers, bits: bits)
                decode(plan, request)
                return (attempts, true, false)
            } catch {
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

    private func isInvalidResponse(_ error: ModbusError) -> Bool {
        if case .invalidResponse = error { return true }
        return false
    }

    private func handleReadError(_ error: ModbusError, _ plan: ReadPlan, _ request: ReadRequest) {
        recordError("\(request.area.rawValue) \(request.start)+\(request.count): \(error)", error: error)
        if error.breaksConnection {
            connection.close()
            markAll(Quality(.disconnected))
            return
        }
        let timestamp = unixMicroseconds()
        for k in request.entryRange { table.markQuality(plan.entries[k].tag, error.quality, timestamp: timestamp) }
    }

    private func markAll(_ quality: Quality) {
        let timestamp = unixMicroseconds()
        for t in deviceTags { table.markQuality(t, quality, timestamp: timestamp) }
    }

    private func recordError(_ text: String, error: ModbusError? = nil, connectFailure: Bool = false) {
        let time = unixMicroseconds()
        statistics.withLock {
            $0.errors &+= 1
            if connectFailure { $0.connectFailures &+= 1 }
            if error == .timeout { $0.timeouts &+= 1 }
            if case .exception = error { $0.exceptions &+= 1 }
            if error?.breaksConnection == true || connectFailure { $0.state = .backingOff }
            $0.lastError = text
            $0.lastErrorTime = time
        }
    }

    // MARK: - Writes

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
        pending.withLock { $0.append(ticket) }
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

    private func serveWrites() {
        guard pendingCount.load(ordering: .acquiring) > 0 else { return }
        while let ticket = pending.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) {
            pendingCount.subtract(1, ordering: .relaxed)
            guard ticket.begin() else { continue }
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
            if error == .timeout || isInvalidResponse(error) { try? connection.resynchronize() }
            recordError("write \(table.definitions[op.tag].name): \(error)", error: error)
            statistics.withLock { $0.writeErrors &+= 1 }
            if error.breaksConnection { markAll(Quality(.disconnected)) }
            return .failure(.device(error))
        }
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

    private func failPendingWrites(_ error: ModbusWriteError) {
        guard pendingCount.load(ordering: .acquiring) > 0 else { return }
        let tickets = pending.withLock { list in
            defer { list.removeAll() }
            return list
        }
        pendingCount.subtract(tickets.count, ordering: .relaxed)
        for t in tickets where t.begin() { t.complete(.failure(error)) }
    }
}

struct WriteOperation: Sendable {
    var tag: Int
    var entry: PlanEntry
    var area: ModbusArea
    var address: Int
    var words: [UInt16]
    var bit: Bool
}

/// A write waiting for the poller thread, and the caller waiting for its result.
final class PendingWrite: @unchecked Sendable {
    let operation: WriteOperation
    private let waker = Waker()
    // 0 queued, 1 taken by the poller, 2 abandoned by the caller
    private let state = Atomic<Int>(0)
    private let result = Mutex<Result<ModbusWriteResult, ModbusWriteError>?>(nil)

    init(_ operation: WriteOperation) { self.operation = operation }

    /// The poller claims the write; false if the caller already gave up.
    func begin() -> Bool { state.compareExchange(expected: 0, desired: 1, ordering: .acquiringAndReleasing).exchanged }

    func complete(_ r: Result<ModbusWriteResult, ModbusWriteError>) {
        result.withLock { $0 = r }
        waker.signal()
    }

    func await(until deadline: Int64) -> Result<ModbusWriteResult, ModbusWriteError>? {
        while true {
            if let r = result.withLock({ $0 }) { return r }
            if monotonicNanoseconds() >= deadline {
                // Abandon only if not started; once the poller has it, the device sees it, so report its outcome.
                if state.compareExchange(expected: 0, desired: 2, ordering: .acquiringAndReleasing).exchanged {
                    return nil
                }
                waker.wait(until: monotonicNanoseconds() + 50_000_000)
                continue
            }
            waker.wait(until: deadline)
        }
    }
}
