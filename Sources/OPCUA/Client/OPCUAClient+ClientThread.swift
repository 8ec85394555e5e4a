import Foundation

// The client's own thread (`opcua-client`): its event loop, the connection state, session keep-alives and
// housekeeping.
extension OPCUAClient {
    func startWorker() {
        cond.lock()
        defer { cond.unlock() }
        if worker != nil { return }
        let flag = StopFlag()
        workerStop = flag
        let t = Thread { [self] in runWorker(flag) }
        t.name = "opcua-client"
        worker = t
        t.start()
    }

    func post(_ event: @escaping () -> Void) {
        cond.lock()
        events.append(event)
        cond.signal()
        cond.unlock()
    }

    private func runWorker(_ flag: StopFlag) {
        while true {
            configuration.loopProbe?(.client)
            cond.lock()
            if events.isEmpty && publishOutcomes.isEmpty && !flag.stopped {
                _ = cond.wait(until: Date(timeIntervalSinceNow: 0.1))
            }
            let batch = events
            if !events.isEmpty { events = [] }
            // Swapped, not copied: both arrays keep their capacity, so a Publish outcome costs no allocation.
            swap(&publishOutcomes, &drainedOutcomes)
            let stop = flag.stopped
            cond.unlock()
            if stop { return }
            if !batch.isEmpty {
                for e in batch { e() }
            }
            var k = 0
            while k < drainedOutcomes.count {
                handlePublish(drainedOutcomes[k])
                k += 1
            }
            drainedOutcomes.removeAll(keepingCapacity: true)
            housekeeping()
        }
    }

    /// Hands a Publish outcome from the reader thread to the client thread.
    func enqueue(_ outcome: PublishOutcome) {
        cond.lock()
        publishOutcomes.append(outcome)
        cond.signal()
        cond.unlock()
    }

    func setState(_ s: ConnectionState) {
        lock.lock()
        let changed = currentState != s
        currentState = s
        lock.unlock()
        if changed { configuration.onStateChange?(s) }
    }

    private func housekeeping() {
        let now = monotonicSeconds()
        lock.lock()
        let l = link
        let st = currentState
        let hasSubs = !byServerId.isEmpty
        let slowest = slowestKeepAlive
        lock.unlock()
        if case .reconnecting = st {
            if now >= nextReconnectAt { reconnect() }
            return
        }
        guard st == .connected, let l else { return }
        l.channel.renewIfDue()
        if let sent = keepAliveSentAt {
            if now - sent > configuration.requestTimeout {
                connectionLost(gen: l.generation, .timeout("session keep-alive got no answer"))
                return
            }
        } else if now - lastKeepAlive >= configuration.keepAliveInterval {
            sendKeepAlive(l)
        }
        if hasSubs && outstandingPublish > 0 && now - lastPublishActivity > 2 * slowest + configuration.requestTimeout {
            connectionLost(gen: l.generation, .timeout("no Publish response within twice the keep-alive period"))
            return
        }
        pumpPublish()
    }

    private func sendKeepAlive(_ l: Link) {
        keepAliveSentAt = monotonicSeconds()
        var req = ReadRequest(
            timestampsToReturn: .neither, nodesToRead: [ReadValueId(nodeId: NodeId(2259), attributeId: 13)])
        req.header.authenticationToken = l.authToken
        do {
            try l.channel.send(req) { [weak self] result in
                self?.post { [weak self] in
                    guard let self, l.generation == self.currentGeneration else { return }
                    self.keepAliveSentAt = nil
                    self.lastKeepAlive = monotonicSeconds()
                    if case .success(let bytes) = result {
                        do { _ = try l.channel.decodeResponse(ReadRequest.self, bytes) } catch let e as OPCUAError {
                            if OPCUAClient.isSessionLoss(e) { self.connectionLost(gen: l.generation, e) }
                        } catch {}
                    }
                }
            }
        } catch {
            keepAliveSentAt = nil
        }
    }

    var currentGeneration: Int {
        lock.lock()
        defer { lock.unlock() }
        return generation
    }
}
