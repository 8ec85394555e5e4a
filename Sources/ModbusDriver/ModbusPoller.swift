import Logging
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
/// A connection counts as healthy only once the device has answered on it: a server (or gateway) that accepts the
/// TCP connection and then resets it is a failed connect, backed off like a refused one, and `status` shows the
/// device `connecting`, not `connected`, until a reply arrives. Losses and recoveries go to the journal once per
/// change of state, with a reminder at most once a minute while the device stays unreachable.
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
    /// The factor `scalePollPeriods(by:)` set, as the bit pattern of a Double (1.0 = as configured).
    let periodScale = Atomic<UInt64>(1.0.bitPattern)
    /// Set with `periodScale`: the polling thread reschedules its groups.
    let rescaled = Atomic<Bool>(false)
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
    let logger: Logger
    /// Polling thread only: whether the device answered on the current connection, and the failing streak.
    var linkConfirmed = false
    /// Polling thread only: requests in a row that timed out on a confirmed connection with no answer in between,
    /// the Unix µs of the first of them, and whether that made the device `notAnswering`.
    var silentRequests = 0
    private var firstSilentAt: Int64 = 0
    var notAnswering = false
    private var outage: (since: Int64, failures: Int, suppressed: Int, lastLogged: Int64)?
    /// Time between two journal reminders that a device is still unreachable.
    private static let reminderNanoseconds: Int64 = 60_000_000_000

    private static let registerCapacity = 125
    private static let bitCapacity = 2000

    /// Builds the read plans of `device`'s Modbus tags in `table`, one per poll group that has tags.
    ///
    /// Connection losses and recoveries go to `logger`. `cycleObserver`, if given, is called on the polling thread
    /// right before (`true`) and after (`false`) every poll cycle; benchmarks use it to count allocations on that
    /// thread.
    public init(
        device: DeviceDefinition, pollGroups: [PollGroup], table: TagTable,
        logger: Logger = Logger(label: "edgepilot.modbus"),
        cycleObserver: (@Sendable (_ starting: Bool) -> Void)? = nil
    ) throws(ReadPlanError) {
        self.device = device
        self.logger = logger
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
                nextConnect = reconnectTime()
                continue
            }
            if rescaled.exchange(false, ordering: .acquiringAndReleasing) {
                // A shorter period applies now, not after the longer wait already scheduled.
                let scale = Double(bitPattern: periodScale.load(ordering: .relaxed))
                for g in 0..<groups.count {
                    nextDue[g] = min(nextDue[g], now + max(1_000_000, Int64(Double(periods[g]) * scale)))
                }
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
            let scale = Double(bitPattern: periodScale.load(ordering: .relaxed))
            let period = scale == 1 ? periods[earliest] : max(1_000_000, Int64(Double(periods[earliest]) * scale))
            var next = due + period
            let after = monotonicNanoseconds()
            if next <= after {
                let missed = (after - next) / period + 1
                next += missed * period
                statistics.withLock { $0.overruns &+= UInt64(missed) }
            }
            nextDue[earliest] = next
            if !connection.isConnected { nextConnect = reconnectTime() }
        }
        statistics.withLock { $0.state = .stopped }
    }

    func tryConnect() -> Bool {
        statistics.withLock {
            $0.state = .connecting
            $0.notAnsweringSince = nil
        }
        silentRequests = 0
        notAnswering = false
        do {
            try connection.connect()
            // Not healthy yet: only a reply proves the device is there (see `confirmLink`).
            linkConfirmed = false
            return true
        } catch {
            markAll(error.quality)
            let text = "connect to \(device.name) failed: \(error)"
            recordError(text, connectFailure: true)
            noteFailure(text)
            return false
        }
    }

    /// The device answered on the current connection (a value or a Modbus exception): the link is healthy, the
    /// backoff starts over, and a recovery is reported.
    @inline(__always)
    func confirmLink() {
        silentRequests = 0
        guard !linkConfirmed || notAnswering else { return }
        let newConnection = !linkConfirmed
        linkConfirmed = true
        notAnswering = false
        backoffNanoseconds = 0
        statistics.withLock {
            $0.state = .connected
            if newConnection { $0.connects &+= 1 }
            $0.backoffMilliseconds = 0
            $0.notAnsweringSince = nil
        }
        if let o = outage {
            outage = nil
            let seconds = Double((monotonicNanoseconds() - o.since) / 1_000_000) / 1000
            logger.notice(
                "Modbus device \(device.name) answers again",
                metadata: [
                    "device": "\(device.name)", "down_s": "\(seconds)", "failed_attempts": "\(o.failures)",
                ])
        }
    }

    /// A request timed out (after its retries) on a connection the device had answered on. Two in a row with no
    /// answer in between (or the only request there is) make the device `notAnswering`, said once in the journal;
    /// one timed-out request among answered ones (an address a gateway never answers) does not. Further timeouts
    /// are reminders, at most one a minute.
    func noteTimeout(_ text: String) {
        guard linkConfirmed else { return }
        if notAnswering { return noteFailure(text, connected: true) }
        if silentRequests == 0 { firstSilentAt = unixMicroseconds() }
        silentRequests += 1
        let requests = activePlans.reduce(0) { $0 + $1.requests.count }
        guard silentRequests >= min(2, max(1, requests)) else { return }
        notAnswering = true
        let since = firstSilentAt
        statistics.withLock {
            $0.state = .notAnswering
            $0.notAnsweringSince = since
        }
        noteFailure(text, connected: true)
    }

    /// When to connect again after the connection broke: at once if the device had answered on it, after the
    /// backoff if it broke before any reply (accept-then-reset must not become a reconnect storm).
    private func reconnectTime() -> Int64 {
        let now = monotonicNanoseconds()
        if notAnswering {
            notAnswering = false
            statistics.withLock { $0.notAnsweringSince = nil }
        }
        if linkConfirmed {
            linkConfirmed = false
            let text = statistics.withLock { $0.lastError } ?? "connection lost"
            noteFailure(text)
            return now
        }
        let text = "connection to \(device.name) closed before any reply"
        statistics.withLock {
            $0.connectFailures &+= 1
            if $0.lastError == nil { $0.lastError = text }
        }
        noteFailure(statistics.withLock { $0.lastError } ?? text)
        return now + jitteredBackoff()
    }

    /// Journals a failed connect, a lost connection or a device that stopped answering on a live one (`connected`):
    /// the first of a streak at once, then at most one reminder a minute with the count of attempts in between.
    private func noteFailure(_ text: String, connected: Bool = false) {
        let now = monotonicNanoseconds()
        guard var o = outage else {
            outage = (now, 1, 0, now)
            let line =
                connected
                ? "Modbus device \(device.name) not answering: \(text); the connection is up, its tags are bad until "
                    + "it answers"
                : "Modbus device \(device.name) unreachable: \(text); retrying with backoff"
            logger.warning("\(line)", metadata: ["device": "\(device.name)"])
            return
        }
        o.failures += 1
        if now - o.lastLogged >= Self.reminderNanoseconds {
            logger.warning(
                "Modbus device \(device.name) still \(connected ? "not answering" : "unreachable"): \(text)",
                metadata: [
                    "device": "\(device.name)", "failed_attempts": "\(o.failures)",
                    "suppressed": "\(o.suppressed)",
                ])
            o.suppressed = 0
            o.lastLogged = now
        } else {
            o.suppressed += 1
        }
        outage = o
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
