import Foundation

// The Publish loop: requests kept outstanding, responses walked on the reader thread, acknowledgements and
// faults handled on the client thread.
extension OPCUAClient {
    /// A Publish response as the reader thread hands it to the client thread, its values already delivered.
    struct PublishOutcome {
        enum Result {
            case delivered(PublishSummary)
            /// The response was a fault or malformed.
            case refused(OPCUAError)
            /// The channel failed; its `onClose` reports the loss.
            case channelFailed
        }
        var generation: Int
        var result: Result
    }

    func pumpPublish() {
        lock.lock()
        guard let l = link, currentState == .connected, !byServerId.isEmpty else {
            lock.unlock()
            return
        }
        lock.unlock()
        // One completion per link, reused by every Publish request on it.
        let completion: SecureChannel.BorrowedCompletion
        if let c = publishCompletion, c.generation == l.generation {
            completion = c.completion
        } else {
            completion = { [weak self] result in self?.receivePublish(result, link: l) }
            publishCompletion = (l.generation, completion)
        }
        while outstandingPublish < publishTarget {
            if outstandingPublish == 0 { lastPublishActivity = monotonicSeconds() }
            outstandingPublish += 1
            guard sendPublish(l, completion) else {
                outstandingPublish -= 1
                return
            }
            pendingAcks.removeAll(keepingCapacity: true)
        }
    }

    private func sendPublish(_ l: Link, _ completion: @escaping SecureChannel.BorrowedCompletion) -> Bool {
        do {
            try l.channel.send(writer: &publishWriter, borrowing: completion) { w, id in
                var header = RequestHeader()
                header.authenticationToken = l.authToken
                header.requestHandle = id
                w.write(NodeId(PublishRequest.typeId))
                PublishRequest.encode(header: header, acknowledgements: pendingAcks, to: &w)
            }
            return true
        } catch {
            return false
        }
    }

    /// Runs on the reader thread: walks the response in place, hands the values to their subscription, and
    /// passes what is left to do (acknowledge, recreate, send the next request) to the client thread.
    private func receivePublish(_ result: Result<BinaryReader, OPCUAError>, link l: Link) {
        guard l.generation == currentGeneration else { return }
        switch result {
        case .failure:
            enqueue(PublishOutcome(generation: l.generation, result: .channelFailed))
        case .success(let reader):
            do {
                var delivered = false
                let summary = try InPlaceResponses.publish(reader) { id in
                    let t = target(forSubscription: id, link: l.generation)
                    delivered = t != nil
                    return t
                }
                if delivered && summary.notificationCount > 0 { noteDelivered(summary) }
                enqueue(PublishOutcome(generation: l.generation, result: .delivered(summary)))
            } catch {
                enqueue(
                    PublishOutcome(
                        generation: l.generation, result: .refused(error as? OPCUAError ?? .decoding("\(error)"))))
            }
        }
    }

    /// Remembers the last message delivered per subscription; keep-alives carry no notification and do not count.
    private func noteDelivered(_ summary: PublishSummary) {
        lock.lock()
        byServerId[summary.subscriptionId]?.lastSequence = summary.sequenceNumber
        lock.unlock()
    }

    /// Where a subscription's values go, while the link they came on is the current one: a response that arrives
    /// after its channel was given up is neither delivered nor counted as delivered, so a reactivation republishes it.
    private func target(forSubscription serverId: UInt32, link generation: Int) -> PublishTarget? {
        lock.lock()
        defer { lock.unlock() }
        guard link?.generation == generation, let sub = byServerId[serverId] else { return nil }
        return PublishTarget(handleBase: sub.handleBase, itemCount: sub.items.count, deliver: sub.deliver)
    }

    func handlePublish(_ outcome: PublishOutcome) {
        guard outcome.generation == currentGeneration else { return }
        outstandingPublish = max(0, outstandingPublish - 1)
        lastPublishActivity = monotonicSeconds()
        let summary: PublishSummary
        switch outcome.result {
        case .channelFailed:
            return
        case .refused(let e):
            if case .serviceFault(_, let s) = e {
                switch s.rawValue & 0xFFFF_0000 {
                case StatusCode.badTooManyPublishRequests.rawValue: publishTarget = max(1, outstandingPublish)
                case StatusCode.badNoSubscription.rawValue, StatusCode.badTimeout.rawValue: break
                default:
                    if OPCUAClient.isSessionLoss(e) { connectionLost(gen: outcome.generation, e) }
                }
            } else {
                connectionLost(gen: outcome.generation, e)
            }
            return
        case .delivered(let s):
            summary = s
        }
        // A Publish response shows the session is alive as well as a keep-alive Read would.
        lastKeepAlive = monotonicSeconds()
        if summary.statusChange == nil {
            lock.lock()
            let onResponse = byServerId[summary.subscriptionId]?.onResponse
            lock.unlock()
            onResponse?()
        }
        // Acknowledge even notifications nobody wants any more, or the server keeps them for Republish.
        if summary.notificationCount > 0 {
            pendingAcks.append(
                SubscriptionAcknowledgement(
                    subscriptionId: summary.subscriptionId, sequenceNumber: summary.sequenceNumber))
        }
        if let status = summary.statusChange, status.isBad {
            // The server dropped the subscription (e.g. lifetime expired): make it again.
            lock.lock()
            let sub = byServerId.removeValue(forKey: summary.subscriptionId)
            sub?.serverId = nil
            let l = link
            lock.unlock()
            if let sub, let l { _ = try? createOnServer(sub, link: l) }
        }
        pumpPublish()
    }
}
