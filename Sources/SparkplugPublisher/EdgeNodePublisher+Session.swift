import Foundation
import MQTT
import Sparkplug

/// Session driving: the MQTT client and its events, CONNECT with the NDEATH Will and a persisted bdSeq, the births
/// (NBIRTH and one DBIRTH per reachable device), rebirth, STATE gating by the Primary Host, devices coming and going,
/// and the one place where session transitions are performed (`step`).
extension EdgeNodePublisher {
    // MARK: - Session (publisher thread, except `start`)

    /// A new session with every device and its metrics, births ready for the next CONNECT, and a new client.
    func startSession(connect: Bool = true) throws {
        let now = Self.nowMs()
        var s = try EdgeNodeSession(
            configuration: EdgeNodeConfiguration(
                groupID: settings.groupID, edgeNodeID: settings.edgeNodeID, primaryHostID: settings.primaryHostID,
                allowNextServer: settings.commands != .off),
            nodeMetrics: nodeMetrics(now: now), lastBdSeq: bdSeqStore.load())
        deviceOnline = [:]
        let bindings = declareTemplates(in: &s)
        for d in view.devices {
            let metrics = d.table.definitions.indices.map {
                SparkplugMapping.birthMetric(d.table.definitions[$0], table: d.table, index: $0, now: now)
            }
            let online = d.driver?.driverStatus.state == "connected"
            deviceOnline[d.name] = online
            _ = try s.addDevice(d.name, metrics: metrics, template: bindings[d.name], online: online, now: now)
        }
        sentNodeValues = [:]
        let c = try makeClient()
        sessionLock.withLock {
            session = s
            client = c
        }
        // During the startup delay a rebuilt session waits for it too.
        if connect && firstConnectDue == nil { c.start() }
    }

    /// NDEATH and disconnect; what the broker did not confirm or acknowledge goes to the queue.
    func endSession() {
        // A last receipt request: the client's graceful stop waits for its answer, so live samples the broker has
        // read are not queued again.
        requestReceipt(force: true)
        let c: MQTTClient? = sessionLock.withLock {
            if let actions = session?.shutdown(now: Self.nowMs()) {
                for case .publish(let p) in actions { try? client?.publish(Self.message(p)) }
            }
            return client
        }
        // Not on a client callback thread: stop() joins libmosquitto's thread.
        c?.stop()
        sessionLock.withLock {
            client = nil
            session = nil
        }
        // The answers that arrived while the client drained, then what is still unconfirmed goes to the queue.
        for tag in takeAcknowledgements() { process(.acknowledged(tag)) }
        receipts.requeueUnconfirmed()
        receipts.forgetRequests()
        replayer.restart()
    }

    /// Removes the acknowledgements from the pending events, keeping the others in order.
    private func takeAcknowledgements() -> [UInt64] {
        cond.withLock {
            var tags: [UInt64] = []
            var rest: [Event] = []
            for e in events {
                if case .acknowledged(let tag) = e { tags.append(tag) } else { rest.append(e) }
            }
            events = rest
            return tags
        }
    }

    private func makeClient() throws -> MQTTClient {
        // Every broker with its own TLS and credentials.
        let brokers = settings.brokers.map { b in
            let tls = b.tls.map {
                MQTTTLSConfiguration(
                    caFile: $0.caFile, certificateFile: $0.certificateFile, keyFile: $0.keyFile,
                    verifyServer: $0.verify)
            }
            let security = MQTTSecurity(
                username: b.username, password: b.passwordFile.flatMap { passwords[$0] }, tls: tls)
            return MQTTBroker(host: b.host, port: b.port, security: security)
        }
        var config = MQTTClientConfiguration(
            brokers: brokers, clientID: "edgepilot-\(settings.groupID)-\(settings.edgeNodeID)",
            protocolVersion: settings.mqttVersion == .v5 ? .v5 : .v311, keepAlive: max(5, settings.keepAliveSeconds),
            reconnect: MQTTReconnectPolicy(
                initialDelay: .milliseconds(max(10, settings.reconnectMinMilliseconds)),
                maxDelay: .milliseconds(max(10, settings.reconnectMaxMilliseconds)),
                startupDelayMax: .milliseconds(min(2000, settings.reconnectMaxMilliseconds))))
        // Receipt requests are UNSUBSCRIBEs of this filter already; with confirm_live off the broker must see none
        // (decision 0023), and an idle connection then relies on libmosquitto's own keepalive check.
        if settings.storeAndForward.confirmLive { config.idleProbeFilter = receipts.receiptFilter }
        // MQTT 5: a DISCONNECT must ask for the NDEATH Will as well (Sparkplug 3.0, docs/SPARKPLUG.md).
        config.disconnectWithWill = true
        let c: MQTTClient
        do {
            c = try MQTTClient(configuration: config) { [weak self] in self?.handle($0) }
        } catch {
            throw PublisherStartError("sparkplug: \(error)")
        }
        c.willProvider = { [weak self] _ in self?.prepareWill() }
        return c
    }

    /// On the client's supervisor thread, before each CONNECT: the NDEATH Will with the session's bdSeq (the next
    /// one unless the last CONNECT certainly was not accepted), persisted first so a crash right after cannot reuse
    /// a bdSeq a broker may hold.
    private func prepareWill() -> MQTTMessage? {
        sessionLock.withLock {
            guard session != nil else { return nil }
            let will = session!.prepareConnect(now: Self.nowMs())
            let bdSeq = session!.bdSeq!
            if bdSeq != savedBdSeq {
                do {
                    try bdSeqStore.save(bdSeq)
                    savedBdSeq = bdSeq
                } catch {
                    logger.error("cannot persist bdSeq to \(bdSeqStore.path): \(error)")
                }
            }
            return Self.message(will)
        }
    }

    /// On libmosquitto's thread: hand over, never block.
    private func handle(_ event: MQTTClientEvent) {
        switch event {
        case .connected(let b): post(.connected(b))
        case .disconnected(let b, let error):
            if let error { logger.warning("MQTT connection to \(b) lost: \(error)") }
            post(.disconnected)
        case .connectionFailed(let error, let retry):
            // On the supervisor thread before its next attempt: the next Will reuses the bdSeq when no broker can
            // hold this one.
            if !error.connectMayHaveBeenAccepted { sessionLock.withLock { session?.connectNotAccepted() } }
            let text = "\(error)" + (Self.hint(for: error).map { "; \($0)" } ?? "")
            counters.withLock { $0.lastError = text }
            logger.warning("MQTT connect failed, retrying in \(retry): \(text)")
        case .message(let m): post(.message(m))
        case .published(let tag): if tag != 0 { post(.acknowledged(tag)) }
        case .receipt(let tag): post(.acknowledged(tag))
        }
    }

    /// What the operator should check after a failed connect, in the configuration's terms; nil when the error
    /// says it all. OpenSSL reports a certificate issued for another host, an unknown CA and an expired certificate
    /// alike ("certificate verify failed"), so a TLS failure names all three.
    static func hint(for error: MQTTClientError) -> String? {
        guard error.kind == .tls, let host = error.broker?.host else { return nil }
        // An IPv6 literal has colons, an IPv4 one only digits and dots; anything else is a DNS name.
        let isAddress = host.contains(":") || host.allSatisfy { $0.isASCII && ($0.isNumber || $0 == ".") }
        let name = isAddress ? "IP:\(host)" : "DNS:\(host)"
        return "hint: the broker's certificate must be issued for \(host) (subjectAltName \(name), the host of the "
            + "broker url), signed by the CA in tls ca_file, and within its validity dates"
    }

    // MARK: - Connection events (publisher thread)

    /// CONNACK: subscriptions, then the births (or the wait for the Primary Host's STATE).
    func connected(to broker: MQTTBroker) {
        counters.withLock {
            $0.connects += 1
            $0.lastError = nil
        }
        logger.notice("MQTT connected to \(broker)")
        commandSource = Self.commandSource(settings, broker: broker)
        counters.withLock {
            $0.primaryHostOnline = nil
            $0.primaryHostStateTimestamp = nil
        }
        replayer.restart()
        receipts.forgetRequests()
        refreshBirthValues()
        step { $0.connected(now: Self.nowMs()) }
    }

    func connectionLost() {
        sessionLock.withLock { session?.connectionLost() }
        replayer.restart()
        // What the broker did not confirm may have died with the connection: queued, replayed after the births.
        receipts.forgetRequests()
        receipts.requeueUnconfirmed()
    }

    /// NCMD, DCMD or the Primary Host's STATE.
    func received(_ m: MQTTMessage) {
        guard m.payload.count <= settings.commandLimits.maxPayloadBytes else {
            // Refused before decoding: a huge payload costs neither decoding nor a huge audit row.
            commands.refuseOversize(topic: m.topic, bytes: m.payload.count, source: commandSource)
            return
        }
        guard let host = settings.primaryHostID, m.topic == SparkplugTopic.state(hostID: host) else {
            step { try $0.handleMessage(topic: m.topic, payload: m.payload, now: Self.nowMs()) }
            return
        }
        // STATE online may bring the births.
        refreshBirthValues()
        step { s in
            do {
                return try s.handleMessage(topic: m.topic, payload: m.payload, now: Self.nowMs())
            } catch {
                counters.withLock { $0.statesRejected += 1 }
                logger.warning("STATE of \(host) ignored: \(error)", metadata: ["broker": "\(commandSource)"])
                return []
            }
        }
        // What the session now believes, not what the message said.
        let (online, timestamp) = sessionLock.withLock { (session?.primaryHostOnline, session?.lastStateTimestamp) }
        counters.withLock {
            $0.primaryHostOnline = online
            $0.primaryHostStateTimestamp = timestamp
        }
    }

    /// Asks for a fresh NBIRTH and DBIRTHs with the same bdSeq, coalesced with other requests like an NCMD Rebirth.
    func rebirthNow() {
        sessionLock.withLock { session?.requestRebirth(now: Self.nowMs()) }
    }

    /// The pending rebirth, once due (see `EdgeNodeSession.requestRebirth`).
    func serveDueRebirth() {
        let due = sessionLock.withLock { session?.rebirthDueAt.map { $0 <= Self.nowMs() } ?? false }
        guard due else { return }
        refreshBirthValues()
        step { $0.serveDueRebirth(now: Self.nowMs()) }
    }

    /// Gives the session every device's current values and qualities, read from the tag tables, so the births
    /// that may follow carry what the devices hold now rather than what was declared before the first poll.
    func refreshBirthValues() {
        let now = Self.nowMs()
        // Node metrics too, while no data can go out: the NBIRTH then carries values read now, and NDATA compares
        // against what that NBIRTH said (a value the host already has is not sent again).
        let node = nodeMetrics(now: now)
        sessionLock.withLock {
            guard session != nil else { return }
            if (try? session!.refreshNode(node)) == true {
                for m in node { if let name = m.name, let v = m.value { sentNodeValues[name] = v } }
            }
            for d in view.devices {
                let metrics = d.table.definitions.indices.map { i in
                    let sample = d.table.read(i)
                    return SparkplugMapping.metric(
                        d.table.definitions[i], value: d.table.value(of: i, sample), quality: sample.quality,
                        timestampMicros: sample.timestamp > 0 ? sample.timestamp : Int64(now) * 1000)
                }
                try? session!.refreshDevice(d.name, metrics)
            }
        }
    }

    func reload(_ next: View) {
        let changed = next.signature != view.signature
        view = next
        // A scan rate set by NCMD holds for the devices of the new configuration too (decision 0032).
        applyScanRate()
        if changed {
            logger.notice("devices or tags changed: new Sparkplug session with new births")
            endSession()
            do {
                try startSession()
            } catch {
                counters.noteError("cannot rebuild the Sparkplug session: \(error)")
            }
        }
    }

    /// DBIRTH when a device comes back, DDEATH when it goes.
    func checkDevices() {
        for d in view.devices {
            let online = d.driver?.driverStatus.state == "connected"
            guard deviceOnline[d.name] != online else { continue }
            deviceOnline[d.name] = online
            let now = Self.nowMs()
            if online {
                refreshBirthValues()
                step { s in try s.deviceOnline(d.name, now: now) }
                replayer.deviceCameOnline()
            } else {
                step { s in try s.deviceOffline(d.name, now: now) }
            }
        }
    }

    // MARK: - Session step (publisher thread)

    /// What one session step did: whether every publish was accepted by the client, how many there were, and
    /// whether the session was online afterwards (read under the same lock, so a Will prepared on the supervisor
    /// thread in between cannot make data look published when it was not).
    struct StepResult {
        var ok = true
        var published = 0
        var online = false
    }

    /// Runs a session transition and performs its actions under the session lock, so wire order is seq order.
    /// With `receiptTag`, a receipt request follows the publishes on the same connection; its answer, which
    /// covers them, comes back as `.acknowledged(receiptTag)` (`ok` is false when it could not be sent). Unless
    /// `byReceipt`: then the last publish carries the tag and is acknowledged once written to the socket (QoS 0
    /// goes out in order, so the others were written before it). `atLeastOnce` (the replay benchmark's QoS 1 path
    /// only, `EDGEPILOT_BENCH_REPLAY_QOS1`): publishes at QoS 1, the tag acknowledged by the PUBACK.
    @discardableResult
    func step(
        receiptTag: UInt64? = nil, byReceipt: Bool = true, atLeastOnce: Bool = false,
        _ transition: (inout EdgeNodeSession) throws -> [EdgeNodeAction]
    ) -> StepResult {
        var commandsToRun: [(String, [SparkplugMetric])] = []
        // Carried out after the lock: a Scan Rate write answers with NDATA, itself a step.
        var nodeCommands: [[SparkplugMetric]] = []
        var result = StepResult()
        sessionLock.withLock {
            defer { result.online = session?.isOnline ?? false }
            guard session != nil, let client else { return }
            let actions: [EdgeNodeAction]
            do {
                actions = try transition(&session!)
            } catch {
                counters.withLock { $0.commandsRejected += 1 }
                logger.warning("Sparkplug message rejected: \(error)")
                return
            }
            let lastPublish = actions.lastIndex { if case .publish = $0 { true } else { false } }
            for (index, action) in actions.enumerated() {
                switch action {
                case .publish(let p):
                    do {
                        let tag = !byReceipt && index == lastPublish ? receiptTag ?? 0 : 0
                        var m = try outgoing(p)
                        if atLeastOnce { m.qos = .atLeastOnce }
                        try client.publish(m, tag: tag)
                        result.published += 1
                        counters.withLock {
                            $0.messagesPublished += 1
                            if p.topic.contains("/NBIRTH/") { $0.births += 1 }
                        }
                    } catch {
                        result.ok = false
                    }
                case .subscribe(let topic, let qos):
                    do {
                        try client.subscribe(topic, qos: qos == 1 ? .atLeastOnce : .atMostOnce)
                    } catch {
                        counters.withLock { $0.lastError = "\(error)" }
                    }
                case .disconnect:
                    // Followed by .nextServer (Primary Host offline, NCMD Next Server): the move closes the
                    // connection. A lone disconnect only comes from shutdown, which endSession handles.
                    break
                case .nextServer:
                    logger.notice("moving to the next MQTT server")
                    client.moveToNextBroker()
                case .nodeCommand(let metrics):
                    nodeCommands.append(metrics)
                case .deviceCommand(let device, let metrics):
                    commandsToRun.append((device, metrics))
                }
            }
            if let receiptTag, byReceipt, result.ok, result.published > 0 {
                do {
                    try client.requestReceipt(tag: receiptTag, filter: receipts.receiptFilter)
                } catch {
                    result.ok = false
                }
            }
        }
        for metrics in nodeCommands { nodeCommand(metrics) }
        for (device, metrics) in commandsToRun {
            commands.run(device: device, metrics, source: commandSource, view: view) { [self] device, tag in
                post(.republish(device: device, tag: tag))
            }
        }
        return result
    }
}
