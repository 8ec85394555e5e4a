import Devices
import Foundation
import Logging
import OPCUA
import Synchronization
import Tags

/// Keeps the tags of one OPC UA device current: subscriptions for `mode: subscribe` poll groups, batched Reads on an
/// absolute schedule for `mode: poll` groups, and checked writes.
///
/// Threads: the driver's own thread (`opcua-<device>`) makes the first connection — retried with exponential backoff
/// and jitter, since `OPCUAClient.connect` throws instead of retrying — resolves browse paths, creates the
/// subscriptions and runs the polled groups. Once connected, the client's thread reconnects by itself and recreates
/// the subscriptions; its callbacks (data changes, state changes) write the table too. The table has one writer at a
/// time because every table update here holds `tableLock`.
///
/// Quality: while the client is not connected every tag is `disconnected`, never a stale good value; the server's
/// status codes map to `.uncertain` / `.deviceStatus` with the code as detail; the sample time is the source
/// timestamp (falling back to the server's, then to the local clock); the server timestamp is kept per tag.
public final class OPCUADeviceDriver: DeviceDriver, @unchecked Sendable {
    public let device: DeviceDefinition
    public let table: TagTable
    let settings: OPCUAEndpointSettings
    /// Poll groups that have tags of this device; `subscription != nil` marks a subscribed one.
    let groups: [PollGroup]

    /// How a tag is addressed before connecting.
    enum Address {
        case node(NodeId)
        case path([RelativePathElement])
        case invalid(String)
    }

    let addresses: [Address]
    /// Tags (table indices) of each group, in `groups` order.
    let members: [[Int]]
    private let groupOfTag: [Int]

    // Resolved at connect (driver thread), read by writers; guarded by `lock`.
    let lock = NSLock()
    var client: OPCUAClient?
    var resolved: [NodeId?]
    var serverTypes: [(type: BuiltinType, array: Bool)?]
    /// The Read requests of each polled group (empty for subscribed ones), prepared at connect.
    var pollBatches: [[PollBatch]]
    var wasConnected = false

    /// Tags read by one Read request, and the request.
    struct PollBatch {
        let tags: [Int]
        let read: PreparedRead
    }

    let tableLock = NSLock()
    var textBuffer: [UInt8] = []
    let serverTimestamps: UnsafeMutablePointer<Atomic<Int64>>

    let statistics = Mutex(DeviceDriverStatus())
    /// Connection losses, failures and returns, and failed writes, go here (the journal, in the agent).
    let logger: Logger
    /// The outage the journal has been told of, if any; touched by the driver's and the client's threads.
    let journal = Mutex<OPCUAOutageJournal?>(nil)
    /// Per tag: a failed write was journaled and no write to the tag has succeeded since.
    let writeFailureLogged: Mutex<[Bool]>
    private let wake = NSCondition()
    private var wakeSignalled = false
    private let stopping = Atomic<Bool>(false)
    private var thread: Thread?
    private let threadDone = Atomic<Bool>(true)
    var backoffSeconds = 0.0
    /// Test hook: adjusts the client configuration before each connect.
    var configureClient: (@Sendable (inout ClientConfiguration) -> Void)?

    /// Builds the driver for `device`'s OPC UA tags in `table`; throws if the device is not an OPC UA device.
    /// Connection losses, connect failures (with the hint that fixes them), returns and failed writes go to `logger`.
    public init(
        device: DeviceDefinition, pollGroups: [PollGroup], table: TagTable,
        logger: Logger = Logger(label: "edgepilot.opcua")
    ) throws {
        guard case .opcua(let settings) = device.transport else {
            throw DeviceStartError("device \(device.name) is not an OPC UA device")
        }
        self.device = device
        self.table = table
        self.settings = settings
        self.logger = logger
        writeFailureLogged = Mutex([Bool](repeating: false, count: table.count))
        var addresses: [Address] = []
        var groupIndex: [String: Int] = [:]
        var groups: [PollGroup] = []
        var members: [[Int]] = []
        var groupOfTag: [Int] = []
        for (i, d) in table.definitions.enumerated() {
            switch d.source {
            case .opcua(let text):
                do { addresses.append(.node(try NodeId(parsing: text))) } catch {
                    addresses.append(.invalid("\(error)"))
                }
            case .opcuaBrowsePath(let text):
                if let steps = OPCUABrowsePath.parse(text) {
                    addresses.append(.path(steps))
                } else {
                    addresses.append(.invalid("browse path '\(text)' is malformed"))
                }
            case .modbus, .computed:
                addresses.append(.invalid("a Modbus address on an OPC UA device"))
            }
            guard d.device == device.name, let group = pollGroups.first(where: { $0.name == d.pollGroup }) else {
                throw DeviceStartError("tag \(d.name): poll group \(d.pollGroup) is not defined")
            }
            if groupIndex[group.name] == nil {
                groupIndex[group.name] = groups.count
                groups.append(group)
                members.append([])
            }
            members[groupIndex[group.name]!].append(i)
            groupOfTag.append(groupIndex[group.name]!)
        }
        self.addresses = addresses
        self.groups = groups
        self.members = members
        self.groupOfTag = groupOfTag
        resolved = Array(repeating: nil, count: table.count)
        serverTypes = Array(repeating: nil, count: table.count)
        pollBatches = Array(repeating: [], count: groups.count)
        serverTimestamps = .allocate(capacity: max(1, table.count))
        for i in 0..<max(1, table.count) { (serverTimestamps + i).initialize(to: Atomic<Int64>(0)) }
        textBuffer.reserveCapacity(table.definitions.map(\.type.textCapacity).max() ?? 0)
    }

    deinit {
        stop()
        serverTimestamps.deinitialize(count: max(1, table.count))
        serverTimestamps.deallocate()
    }

    public var driverStatus: DeviceDriverStatus { statistics.withLock { $0 } }

    /// The server timestamp (Unix µs) of the last value of tag `index`, 0 if none.
    public func serverTimestamp(of index: Int) -> Int64 { serverTimestamps[index].load(ordering: .relaxed) }

    // MARK: - Thread

    public func start() {
        guard thread == nil else { return }
        guard device.enabled else {
            markAll(Quality(.outOfService))
            statistics.withLock { $0.state = "disabled" }
            return
        }
        stopping.store(false, ordering: .releasing)
        threadDone.store(false, ordering: .releasing)
        let t = Thread { [self] in
            run()
            threadDone.store(true, ordering: .releasing)
        }
        t.name = "opcua-\(device.name)"
        thread = t
        t.start()
    }

    /// Stops polling and closes the session; returns after at most one request timeout.
    public func stop() {
        guard thread != nil else { return }
        stopping.store(true, ordering: .releasing)
        signal()
        while !threadDone.load(ordering: .acquiring) { usleep(1000) }
        thread = nil
        let c = lock.withLock {
            defer { client = nil }
            return client
        }
        c?.disconnect()
        statistics.withLock { $0.state = "stopped" }
    }

    var isStopping: Bool { stopping.load(ordering: .acquiring) }

    func signal() {
        wake.lock()
        wakeSignalled = true
        wake.signal()
        wake.unlock()
    }

    private func sleep(until deadline: Date) {
        wake.lock()
        while !wakeSignalled, !isStopping, wake.wait(until: deadline) {}
        wakeSignalled = false
        wake.unlock()
    }

    private func run() {
        var nextDue = [Date](repeating: .distantPast, count: groups.count)
        var nextConnect = Date()
        while !isStopping {
            guard lock.withLock({ client }) != nil else {
                if Date() >= nextConnect {
                    if connect() {
                        nextDue = nextDue.map { _ in Date() }
                        continue
                    }
                    nextConnect = Date(timeIntervalSinceNow: jitteredBackoff())
                }
                sleep(until: nextConnect)
                continue
            }
            var earliest: Int?
            for g in groups.indices where groups[g].subscription == nil {
                if earliest == nil || nextDue[g] < nextDue[earliest!] { earliest = g }
            }
            guard let g = earliest else {
                sleep(until: Date(timeIntervalSinceNow: 3600))
                continue
            }
            let due = nextDue[g]
            if due > Date() {
                sleep(until: due)
                continue
            }
            poll(group: g)
            // Absolute schedule: the next cycle is due one period after this one was due; missed ones are skipped.
            let period = Double(groups[g].periodMilliseconds) / 1000
            var next = due.addingTimeInterval(period)
            let now = Date()
            if next <= now {
                next = next.addingTimeInterval(period * (now.timeIntervalSince(next) / period).rounded(.up))
            }
            if next <= now { next = now.addingTimeInterval(period) }
            nextDue[g] = next
        }
    }

    /// Equal jitter: half the step fixed, half random, so agents that lost the same server do not retry in lockstep.
    private func jitteredBackoff() -> Double {
        let minimum = Double(max(10, device.reconnectMinMilliseconds)) / 1000
        let maximum = max(minimum, Double(device.reconnectMaxMilliseconds) / 1000)
        backoffSeconds = backoffSeconds == 0 ? minimum : min(maximum, backoffSeconds * 2)
        let delay = backoffSeconds / 2 + Double.random(in: 0...(backoffSeconds / 2))
        statistics.withLock { $0.state = "backing_off" }
        return delay
    }

    // MARK: - Quality and status

    func markQuality(_ index: Int, _ quality: Quality, _ time: Int64) {
        tableLock.withLock { table.markQuality(index, quality, timestamp: time) }
    }

    func markAll(_ quality: Quality) {
        let now = unixMicros()
        tableLock.withLock {
            for i in 0..<table.count { table.markQuality(i, quality, timestamp: now) }
        }
    }

    func recordError(_ text: String, connectFailure: Bool = false, timeout: Bool = false) {
        let now = unixMicros()
        statistics.withLock {
            $0.errors &+= 1
            if timeout { $0.timeouts &+= 1 }
            if connectFailure { $0.state = "backing_off" }
            $0.lastError = text
            $0.lastErrorTime = now
        }
    }
}

@inline(__always) func unixMicros() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
}
