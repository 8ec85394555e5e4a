import Modbus
import Synchronization
import Tags

#if canImport(Glibc)
    import Glibc
#endif

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
    var activePlans: [ReadPlan]
    public let groups: [PollGroup]

    let connection: ModbusConnection
    private let deviceTags: [Int]
    let entryByTag: [Int: PlanEntry]
    private let periods: [Int64]
    private let nextDue: UnsafeMutablePointer<Int64>
    let registers: UnsafeMutablePointer<UInt16>
    let bits: UnsafeMutablePointer<UInt8>
    let text: UnsafeMutableRawBufferPointer
    let cycleObserver: (@Sendable (_ starting: Bool) -> Void)?

    let statistics = Mutex(ModbusPollerStatistics())
    let waker = Waker()
    private let stopping = Atomic<Bool>(false)
    let running = Atomic<Bool>(false)
    let pendingCount = Atomic<Int>(0)
    let pending = Mutex<[PendingWrite]>([])
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

    var isStopping: Bool { stopping.load(ordering: .acquiring) }

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

    func tryConnect() -> Bool {
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

    // MARK: - Quality and status

    func markAll(_ quality: Quality) {
        let timestamp = unixMicroseconds()
        for t in deviceTags { table.markQuality(t, quality, timestamp: timestamp) }
    }

    func recordError(_ text: String, error: ModbusError? = nil, connectFailure: Bool = false) {
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
}
