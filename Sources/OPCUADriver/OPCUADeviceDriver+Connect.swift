import Devices
import Foundation
import OPCUA
import Tags

// Connecting: security and user identity, browse paths resolved, polled Reads prepared and subscriptions
// created; the client's connection state mapped to the driver's.
extension OPCUADeviceDriver {
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
    func connect() -> Bool {
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
            let failure = explain(error)
            recordError(failure.text, connectFailure: true)
            journalFailure(failure)
            return false
        }
        do {
            try setUp(c)
        } catch {
            c.disconnect()
            markAll(Quality(.disconnected))
            let failure = OPCUAFailureExplanation(
                text: "setting up \(settings.endpointURL) failed: \(error)", needsOperator: false)
            recordError(failure.text, connectFailure: true)
            journalFailure(failure)
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
        journalBack()
        return true
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
            // Keep-alives at least every half second (or every period, if longer) confirm the values that did not
            // change, so a loop's input-age check sees them as current.
            let keepAliveCount = UInt32(max(1, min(10, 500 / max(1, group.periodMilliseconds))))
            let confirm: @Sendable () -> Void = { [weak self, weak c] in
                guard let self, let c else { return }
                self.confirmSubscribed(tags, client: c)
            }
            let (_, results) = try c.subscribe(
                items, publishingInterval: Double(group.periodMilliseconds), keepAliveCount: keepAliveCount,
                onResponse: confirm
            ) { [weak self, weak c] batch in
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
                journalLost(reason)
            } else if let error = c?.lastConnectionError {
                // Each attempt's own reason, with the same hints as the first connect: a server that came back
                // with a new certificate must say "trust it", not repeat the loss.
                let failure = explain(error, verb: "reconnect to")
                recordError(failure.text)
                journalFailure(failure)
            }
            statistics.withLock { $0.state = "reconnecting" }
        case .connected:
            guard c != nil, !connectedBefore else { return }
            lock.withLock { wasConnected = true }
            let recovery = c?.lastRecovery.map(Self.describe)
            statistics.withLock {
                $0.state = "connected"
                $0.connects &+= 1
                $0.reconnects &+= 1
                if let recovery { $0.lastRecovery = recovery }
            }
            journalBack(recovery: recovery)
            // Polled groups are read at once rather than at their next period.
            signal()
        case .disconnected, .connecting:
            break
        }
    }

    /// A recovery in the technician's terms, for status and the journal.
    static func describe(_ r: RecoveryReport) -> String {
        switch r.path {
        case .reactivated:
            var text = "reactivated (\(r.republished) missed message\(r.republished == 1 ? "" : "s") republished"
            if r.unavailable > 0 { text += ", \(r.unavailable) no longer available: their changes are lost" }
            if r.recreatedSubscriptions > 0 { text += ", \(r.recreatedSubscriptions) subscription(s) made again" }
            return text + ")"
        case .recreated:
            return "recreated\(r.reason.map { ": \($0)" } ?? ""); changes during the outage are lost"
        }
    }
}
