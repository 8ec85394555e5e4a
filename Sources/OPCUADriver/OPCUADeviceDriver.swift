import Devices
import Foundation
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

    private let addresses: [Address]
    /// Tags (table indices) of each group, in `groups` order.
    private let members: [[Int]]
    private let groupOfTag: [Int]

    // Resolved at connect (driver thread), read by writers; guarded by `lock`.
    private let lock = NSLock()
    private var client: OPCUAClient?
    private var resolved: [NodeId?]
    private var serverTypes: [(type: BuiltinType, array: Bool)?]
    /// The Read requests of each polled group (empty for subscribed ones), prepared at connect.
    private var pollBatches: [[PollBatch]]
    private var wasConnected = false

    /// Tags read by one Read request, and the request.
    struct PollBatch {
        let tags: [Int]
        let read: PreparedRead
    }

    private let tableLock = NSLock()
    private var textBuffer: [UInt8] = []
    private let serverTimestamps: UnsafeMutablePointer<Atomic<Int64>>

    private let statistics = Mutex(DeviceDriverStatus())
    private let wake = NSCondition()
    private var wakeSignalled = false
    private let stopping = Atomic<Bool>(false)
    private var thread: Thread?
    private let threadDone = Atomic<Bool>(true)
    private var backoffSeconds = 0.0
    /// Test hook: adjusts the client configuration before each connect.
    var configureClient: (@Sendable (inout ClientConfiguration) -> Void)?

    /// Builds the driver for `device`'s OPC UA tags in `table`; throws if the device is not an OPC UA device.
    public init(device: DeviceDefinition, pollGroups: [PollGroup], table: TagTable) throws {
        guard case .opcua(let settings) = device.transport else {
            throw DeviceStartError("device \(device.name) is not an OPC UA device")
        }
        self.device = device
        self.table = table
        self.settings = settings
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

    private var isStopping: Bool { stopping.load(ordering: .acquiring) }

    private func signal() {
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

    // MARK: - Connect

    private func security() throws -> SecurityConfiguration {
        guard settings.policy != .none else { return .none }
        let identity = try ApplicationIdentity.loadOrCreate(
            pkiDirectory: settings.pkiDirectory, applicationUri: settings.applicationUri, applicationName: "EdgePilot")
        let trust: ServerTrust
        switch settings.trust {
        case .trustList: trust = .trustList(pkiDirectory: settings.pkiDirectory)
        case .pinnedThumbprint(let t): trust = .pinnedThumbprint(t)
        }
        return SecurityConfiguration(
            identity: identity, trust: trust,
            policy: settings.policy == .aes128Sha256RsaOaep ? .aes128Sha256RsaOaep : .basic256Sha256,
            mode: settings.mode == .sign ? .sign : .signAndEncrypt)
    }

    private func userIdentity() throws -> UserIdentity {
        guard let user = settings.userName, let file = settings.passwordFile else { return .anonymous }
        let text: String
        do { text = try String(contentsOfFile: file, encoding: .utf8) } catch {
            throw DeviceStartError("cannot read password_file \(file): \(error.localizedDescription)")
        }
        let password = text.split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) ?? ""
        return .userName(user, password: password.trimmingCharacters(in: CharacterSet(charactersIn: "\r")))
    }

    /// Connects, resolves browse paths, learns the server's Read limit and creates the subscriptions.
    private func connect() -> Bool {
        statistics.withLock { $0.state = "connecting" }
        let timeout = Double(max(100, device.timeoutMilliseconds)) / 1000
        var configuration = ClientConfiguration(
            applicationUri: settings.applicationUri, requestTimeout: timeout,
            keepAliveInterval: min(5, max(0.5, timeout)),
            reconnectMinDelay: Double(max(10, device.reconnectMinMilliseconds)) / 1000,
            reconnectMaxDelay: Double(max(10, device.reconnectMaxMilliseconds)) / 1000
        ) { [weak self] state in self?.clientStateChanged(state) }
        configureClient?(&configuration)
        let c = OPCUAClient(configuration: configuration)
        do {
            try c.connect(endpointURL: settings.endpointURL, security: try security(), identity: try userIdentity())
        } catch {
            markAll(Quality(.disconnected))
            recordError(describeConnectError(error), connectFailure: true)
            return false
        }
        do {
            try setUp(c)
        } catch {
            c.disconnect()
            markAll(Quality(.disconnected))
            recordError("setting up \(settings.endpointURL) failed: \(error)", connectFailure: true)
            return false
        }
        backoffSeconds = 0
        lock.withLock {
            client = c
            wasConnected = true
        }
        statistics.withLock {
            $0.state = "connected"
            $0.connects &+= 1
        }
        return true
    }

    private func describeConnectError(_ error: Error) -> String {
        if case .certificateUntrusted(let thumbprint, let path)? = error as? OPCUAError, let path {
            return
                "server certificate \(thumbprint) of \(settings.endpointURL) is not trusted; it was saved to \(path). "
                + "Check it, then run: edgepilot opcua trust \(thumbprint) --pki-dir \(settings.pkiDirectory)"
        }
        return "connect to \(settings.endpointURL) failed: \(error)"
    }

    private func setUp(_ c: OPCUAClient) throws {
        var nodes = [NodeId?](repeating: nil, count: table.count)
        let now = unixMicros()
        for (i, address) in addresses.enumerated() {
            switch address {
            case .node(let n): nodes[i] = n
            case .invalid(let reason):
                recordError("tag \(table.definitions[i].name): \(reason)")
                markQuality(i, Quality(.decodeError), now)
            case .path(let steps):
                do {
                    nodes[i] = try c.translateBrowsePath(path: steps)
                } catch let e as OPCUAError {
                    guard case .serviceFault(_, let status) = e else { throw e }
                    recordError("tag \(table.definitions[i].name): browse path not found (\(status))")
                    markQuality(i, Quality(.deviceStatus, detail: status.rawValue), now)
                }
            }
        }
        // The server's own cap on nodes per Read (Server.ServerCapabilities.OperationLimits.MaxNodesPerRead).
        var limit = max(1, settings.maxNodesPerRead)
        if let v = try? c.read([NodeId(11705)]).first, v.status.isGood, let n = v.value.doubleValue, n >= 1 {
            limit = min(limit, Int(n))
        }
        var batches: [[PollBatch]] = []
        for (g, group) in groups.enumerated() {
            var list: [PollBatch] = []
            if group.subscription == nil {
                let tags = members[g].filter { nodes[$0] != nil }
                var start = 0
                while start < tags.count {
                    let part = Array(tags[start..<min(tags.count, start + limit)])
                    list.append(PollBatch(tags: part, read: PreparedRead(part.map { nodes[$0]! })))
                    start += part.count
                }
            }
            batches.append(list)
        }
        lock.withLock {
            resolved = nodes
            pollBatches = batches
        }
        var monitored = 0
        for (g, group) in groups.enumerated() {
            guard let sub = group.subscription else { continue }
            let tags = members[g].filter { nodes[$0] != nil }
            guard !tags.isEmpty else { continue }
            let items = tags.map { i -> MonitoredItem in
                let d = table.definitions[i]
                let deadband: Deadband
                switch sub.deadband {
                case .absolute(let x): deadband = .absolute(x)
                case .percent(let p): deadband = .percent(p)
                case .none: deadband = d.type.isNumeric && d.deadband > 0 ? .absolute(d.deadband) : .none
                }
                return MonitoredItem(
                    nodes[i]!, samplingInterval: Double(sub.samplingIntervalMilliseconds ?? group.periodMilliseconds),
                    deadband: deadband, queueSize: UInt32(sub.queueSize))
            }
            let (_, results) = try c.subscribe(items, publishingInterval: Double(group.periodMilliseconds)) {
                [weak self, weak c] batch in
                guard let self, let c else { return }
                self.apply(batch, tags: tags, client: c)
            }
            monitored += tags.count
            for (k, status) in results.enumerated() where status.isBad {
                recordError("tag \(table.definitions[tags[k]].name): monitored item refused (\(status))")
                markQuality(tags[k], Quality(.deviceStatus, detail: status.rawValue), unixMicros())
            }
        }
        statistics.withLock { $0.monitoredItems = monitored }
    }

    /// Runs on the client's thread (and on ours during `connect`).
    private func clientStateChanged(_ state: ConnectionState) {
        let (c, connectedBefore) = lock.withLock { (client, wasConnected) }
        switch state {
        case .reconnecting(let attempt):
            if attempt == 0 {
                markAll(Quality(.disconnected))
                lock.withLock { wasConnected = false }
                let reason = c?.lastConnectionError.map { "\($0)" } ?? "connection lost"
                recordError("lost \(settings.endpointURL): \(reason); reconnecting")
            }
            statistics.withLock { $0.state = "reconnecting" }
        case .connected:
            guard c != nil, !connectedBefore else { return }
            lock.withLock { wasConnected = true }
            statistics.withLock {
                $0.state = "connected"
                $0.connects &+= 1
                $0.reconnects &+= 1
            }
            // Polled groups are read at once rather than at their next period.
            signal()
        case .disconnected, .connecting:
            break
        }
    }

    // MARK: - Data

    /// Runs on the client's reader thread with the values of one DataChangeNotification.
    private func apply(_ batch: DataValueBatch, tags: [Int], client c: OPCUAClient) {
        let now = unixMicros()
        var count = 0
        tableLock.withLock {
            // A value that arrived just before the link dropped must not overwrite the disconnected mark.
            guard c.state == .connected else { return }
            for change in batch {
                store(change.value, tag: tags[change.index], now: now)
                count += 1
            }
        }
        statistics.withLock { $0.notifications = ($0.notifications ?? 0) &+ UInt64(count) }
    }

    /// Maps one value onto tag `index`; the caller holds `tableLock`.
    ///
    /// Allocates nothing for numbers and Booleans on numeric and bool tags, nor for Strings on text tags: those are
    /// taken from the view as they lie in the message. Other combinations (an array shown as text, …) build the
    /// value first.
    func store(_ v: DataValueView, tag index: Int, now: Int64) {
        if let t = v.serverTimestamp, t.ticks != 0 {
            serverTimestamps[index].store(OPCUAValues.microseconds(t), ordering: .relaxed)
        }
        if let type = v.builtinType {
            lock.lock()
            let known = serverTypes[index]
            if known?.type != type || known?.array != v.isArray { serverTypes[index] = (type, v.isArray) }
            lock.unlock()
        }
        let time = OPCUAValues.sampleTime(source: v.sourceTimestamp, server: v.serverTimestamp, now: now)
        let quality = OPCUAValues.quality(v.status)
        if v.status.isBad || v.isNull {
            table.markQuality(index, v.status.isBad ? quality : Quality(.decodeError), timestamp: time)
            return
        }
        let type = table.definitions[index].type
        guard case .string = type else {
            var unused = ""
            guard let scalar = v.inlineScalar,
                let value = OPCUAValues.sampleValue(scalar, for: table.definitions[index], text: &unused)
            else {
                table.markQuality(index, Quality(.decodeError), timestamp: time)
                return
            }
            table.update(index, TagSample(value: value, quality: quality, timestamp: time))
            return
        }
        let capacity = type.textCapacity
        textBuffer.removeAll(keepingCapacity: true)
        let lent: Void? = v.withContentBytes { raw in
            if v.builtinType == .byteString {
                OPCUAValues.appendHex(raw, to: &textBuffer, capacity: capacity)
            } else {
                OPCUAValues.appendUTF8(raw, to: &textBuffer, capacity: capacity)
            }
        }
        if lent == nil {
            let text = OPCUAValues.describe((try? v.value()) ?? .null)
            var copy = text
            copy.withUTF8 { OPCUAValues.appendUTF8(UnsafeRawBufferPointer($0), to: &textBuffer, capacity: capacity) }
        }
        let sample = TagSample(value: .text(length: textBuffer.count), quality: quality, timestamp: time)
        _ = textBuffer.withUnsafeBytes { table.update(index, sample, text: $0) }
    }

    /// Reads one polled group, one prepared Read per batch. Internal rather than private so that tests can drive
    /// cycles themselves.
    func poll(group g: Int) {
        guard let c = lock.withLock({ client }) else { return }
        let started = DispatchTime.now().uptimeNanoseconds
        let batches = lock.withLock { pollBatches[g] }
        var requests = 0
        var b = 0
        while b < batches.count, !isStopping {
            let batch = batches[b]
            b += 1
            requests += 1
            do {
                try c.read(batch.read) { values in
                    let now = unixMicros()
                    tableLock.withLock {
                        // A value that arrived just before the link dropped must not overwrite the disconnected mark.
                        guard c.state == .connected else { return }
                        for e in values { store(e.value, tag: batch.tags[e.index], now: now) }
                    }
                }
            } catch {
                let quality: Quality
                switch error as? OPCUAError {
                case .timeout?: quality = Quality(.timeout)
                case .serviceFault(_, let status)?: quality = Quality(.deviceStatus, detail: status.rawValue)
                default: quality = Quality(.disconnected)
                }
                if error as? OPCUAError != .notConnected {
                    recordError("Read of \(batch.tags.count) nodes failed: \(error)", timeout: quality.code == .timeout)
                }
                let now = unixMicros()
                for t in batch.tags { markQuality(t, quality, now) }
                if quality.code == .disconnected { break }
            }
        }
        let elapsed = Int64(DispatchTime.now().uptimeNanoseconds - started)
        statistics.withLock {
            $0.polls &+= 1
            $0.requests &+= UInt64(requests)
            $0.requestsPerCycle = requests
            $0.lastCycleNanoseconds = elapsed
        }
    }

    private func markQuality(_ index: Int, _ quality: Quality, _ time: Int64) {
        tableLock.withLock { table.markQuality(index, quality, timestamp: time) }
    }

    private func markAll(_ quality: Quality) {
        let now = unixMicros()
        tableLock.withLock {
            for i in 0..<table.count { table.markQuality(i, quality, timestamp: now) }
        }
    }

    private func recordError(_ text: String, connectFailure: Bool = false, timeout: Bool = false) {
        let now = unixMicros()
        statistics.withLock {
            $0.errors &+= 1
            if timeout { $0.timeouts &+= 1 }
            if connectFailure { $0.state = "backing_off" }
            $0.lastError = text
            $0.lastErrorTime = now
        }
    }

    // MARK: - Writes

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
            throw .failed("\(error)")
        }
        guard status.isGood else {
            recordError("write \(d.name): \(status)")
            throw .failed("the server answered \(status)")
        }
        statistics.withLock { $0.writes &+= 1 }
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

/// Browse-path text → the OPC UA client's path elements.
enum OPCUABrowsePath {
    static func parse(_ text: String) -> [RelativePathElement]? {
        var parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if parts.first == "" { parts.removeFirst() }
        if parts.first == "Objects" || parts.first == "0:Objects" { parts.removeFirst() }
        guard !parts.isEmpty else { return nil }
        var steps: [RelativePathElement] = []
        for part in parts {
            if let colon = part.firstIndex(of: ":"), let ns = UInt16(part[..<colon]) {
                let name = String(part[part.index(after: colon)...])
                guard !name.isEmpty else { return nil }
                steps.append(RelativePathElement(QualifiedName(namespace: ns, name)))
            } else {
                guard !part.isEmpty else { return nil }
                steps.append(RelativePathElement(QualifiedName(part)))
            }
        }
        return steps
    }
}

@inline(__always) func unixMicros() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
}
